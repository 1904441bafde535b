"""`mbmix-taichi render` (a rollout to a video or pictures) and `mbmix-taichi plot` (learning curves).

pyvista, imageio and matplotlib are imported only when a command runs, so that the CLI
starts fast.
"""
from __future__ import annotations

import click

from .options import no_task_option, task_option


@click.command("render")
@click.argument("target", metavar="TASK_OR_RUN_DIR")
@click.option("--out", default=None, metavar="FILE",
              help="Output: .mp4 or .gif (one file), .png (evenly spaced frames tiled into one picture), "
                   "or a folder (no extension, or ending in '/') of PNG frames.")
@click.option("--episodes", default=1, show_default=True, type=click.IntRange(min=1), help="Episodes to roll out.")
@click.option("--seed", default=0, show_default=True, type=int, help="Episode k starts from reset(seed + k).")
@click.option("--steps", default=None, type=click.IntRange(min=0),
              help="Steps per episode (default: the task's episode length). Each episode gives steps + 1 frames.")
@click.option("--width", default=640, show_default=True, type=click.IntRange(min=16))
@click.option("--height", default=480, show_default=True, type=click.IntRange(min=16))
@click.option("--fps", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--policy", type=click.Choice(["random", "zero"]), default=None,
              help="For a task name: random (default) or zero actions. For a run dir: overrides the trained policy.")
@click.option("--overlay/--no-overlay", default=True, show_default=True, help="Text of step, return and score.")
@click.option("--interactive", is_flag=True, help="Also show the rollout in a window (needs a display).")
@task_option("A task option, e.g. -o mesh=tshirt (repeatable; overrides a run's options).")
def render_command(target, out, episodes, seed, steps, width, height, fps, policy, overlay, interactive, task_options):
    """Render a rollout of a task (random/zero policy) or of a run directory's trained policy."""
    from ..viz.render import render

    result = render(target, out, episodes=episodes, seed=seed, steps=steps, width=width, height=height, fps=fps,
                    policy=policy, overlay=overlay, interactive=interactive,
                    task_options=task_options, progress=True)
    rets = ", ".join(f"{r:.3f}" for r in result["returns"])
    scores = ", ".join("-" if s is None else f"{s:.3f}" for s in result["scores"])
    if result["out"]:
        click.echo(f"wrote {result['frames']} frames of {result['task']} to {result['out']}")
    click.echo(f"episode returns: {rets}; final scores: {scores}")


@click.command("plot")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...")
@click.option("--out", required=True, metavar="FILE.png", help="Output picture (.png, .pdf or .svg).")
@click.option("--x", "x", type=click.Choice(["env_steps", "wall_time", "iteration"]), default=None,
              help="Only this x axis (default: both simulator steps and wall time).")
@click.option("--band", type=click.Choice(["minmax", "std"]), default="minmax", show_default=True,
              help="Spread across the seeds of one configuration.")
@click.option("--smooth", default=1, show_default=True, type=click.IntRange(min=1),
              help="Trailing moving-average window (iterations).")
@click.option("--title", default=None, help="Figure title.")
@no_task_option("plot")
def plot_command(run_dirs, out, x, band, smooth, title):
    """Learning curves (return and score) of run directories; seeds of one task+algo are grouped."""
    from ..viz.plot import plot_runs

    result = plot_runs(list(run_dirs), out, x=x, band=band, smooth=smooth, title=title)
    groups = ", ".join(f"{k} x{n}" for k, n in result["groups"].items())
    for d, why in result["skipped_reasons"].items():
        click.echo(f"skipped {d}: {why}", err=True)
    click.echo(f"wrote {result['out']} ({result['runs']} runs: {groups})")
