"""The simulator commands: `tasks` (the task table), `bench` (speed) and `gradcheck` (exact
derivatives against finite differences)."""
from __future__ import annotations

import math

import click

from ..errors import MbmixError, OptionError
from ..gradcheck import DEFAULT_EPS, DEFAULT_TOL, check
from .options import task_option


@click.command()
@click.pass_context
def tasks(ctx):
    """List tasks: name, state/obs/action dims, episode length, description (default options)."""
    from ..catalog import BUILTIN_TASKS, format_rows

    extra = bool(ctx.parent.params.get("tasks_dir")) or _has_task_entry_points()
    if not extra:  # the built-in tasks only: no torch, no taichi, no simulator built
        click.echo("\n".join(format_rows([(name, *row) for name, row in sorted(BUILTIN_TASKS.items())])))
        return
    from .. import _ti
    from ..env import make
    from ..registry import get_task_class, list_tasks

    _ti.check_arch()  # a bad TI_ARCH is an error, not a table of '?'
    rows = []
    for name in list_tasks():
        if name in BUILTIN_TASKS:
            rows.append((name, *BUILTIN_TASKS[name]))
            continue
        cls = get_task_class(name)
        try:
            env = make(name, num_envs=1)
            dims = (env.state_dim, env.obs_dim, env.act_dim, env.episode_length)
        except MbmixError:
            dims = (None,) * 4  # a task that needs options (e.g. model=PATH)
        rows.append((name, *dims, cls.description))
    click.echo("\n".join(format_rows(rows)))


def _has_task_entry_points() -> bool:
    try:
        from importlib.metadata import entry_points

        return bool(list(entry_points(group="mbmix_taichi.tasks")))
    except Exception:
        return True  # let the registry report it


def _ints(text: str, what: str) -> tuple:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise OptionError(f"{what} must be comma-separated integers, got {text!r}") from None


@click.command()
@click.option("--task", "tasks", multiple=True, default=("cloth-fold",), show_default=True)
@click.option("--envs", default="1,16,64", show_default=True, help="comma-separated env counts")
@click.option("--jacobian-envs", default="1,16", show_default=True, help="env counts at which to time full Jacobians")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--peer/--no-peer", default=False, help="also run Warp's cloth benchmark workload")
@click.option("--peer-sizes", default="32,64,128", show_default=True)
@task_option()
def bench(tasks, envs, jacobian_envs, dtype, peer, peer_sizes, task_options):
    """Measure simulator speed (steps/s, VJP, JVP, Jacobians, launches; Warp's cloth workload)."""
    from ..bench import bench_c_reference, bench_peer, bench_task, c_table, machine, peer_table, task_table

    envs, jacobian_envs = _ints(envs, "--envs"), _ints(jacobian_envs, "--jacobian-envs")
    for task in tasks:
        click.echo(task_table(bench_task(task, envs, jacobian_envs, dtype, **task_options)))
    if peer:
        sizes = _ints(peer_sizes, "--peer-sizes")
        click.echo(peer_table(bench_peer(sizes, layout="fused") + bench_peer(sizes, layout="wide")
                              + bench_peer(sizes, num_cloths=2)))
        # the same workload against a plain serial C loop of the same arithmetic (needs a C compiler)
        click.echo(c_table(bench_c_reference(sizes)))
    click.echo(machine())


@click.command()
@click.argument("task")
@click.option("--num-envs", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
@click.option("--eps", default=",".join(f"{e:g}" for e in DEFAULT_EPS), show_default=True,
              help="Central-difference steps (comma-separated, positive).")
@click.option("--tol", default=DEFAULT_TOL, show_default=True, type=float,
              help="Largest relative error that passes; beyond it the command exits with status 1.")
@task_option()
def gradcheck(task, num_envs, seed, eps, tol, task_options):
    """Check a task's VJP, JVP and Jacobian against float64 finite differences.

    Contact, friction and the pickers' ground clamp make a control step piecewise smooth: a
    central difference that straddles a kink is not a derivative, and a tiny step drowns in
    rounding. Each quantity, and each sampled Jacobian column, is therefore compared at several
    steps and the best agreement is reported with the step that gave it. Exits with status 1
    when an error exceeds --tol.
    """
    try:
        steps = [float(e) for e in str(eps).split(",") if e.strip()]
    except ValueError:
        raise OptionError(f"--eps must be comma-separated positive numbers, got {eps!r}") from None
    if not steps or not all(math.isfinite(e) and e > 0 for e in steps):
        raise OptionError(f"--eps must be comma-separated positive numbers, got {eps!r}")
    if not (math.isfinite(tol) and tol > 0):
        raise OptionError(f"--tol must be a positive number, got {tol}")
    r = check(task, num_envs=num_envs, seed=seed, eps=steps, **task_options)
    click.echo(f"{task} (float64, {num_envs} envs, state_dim {r['state_dim']}, seed {seed}): relative max "
               f"errors of one control step's derivatives vs central differences, best over steps "
               f"{', '.join(f'{h:g}' for h in steps)}:")

    def show(x):
        return "nan" if not math.isfinite(x) else f"{x:.1e}"

    rows = []
    for k, label in (("jvp", "JVP"), ("vjp", "VJP (directional)")):
        q = r[k]
        all_e = "  ".join(f"{show(e)}@{h:g}" for e, h in zip(q["all"], steps))
        rows.append((label, q["best"], f"eps {q['eps']:g}; all: {all_e}" if q["eps"] else f"all: {all_e}"))
    jac = r["jacobian"]
    n_cols = len(jac["columns"])
    rows.append((f"Jacobian ({n_cols} columns)", jac["best"],
                 f"the worst column, {jac['column']}, at its best eps {jac['eps']:g}" if jac["eps"] else "no finite error"))
    rows.append(("<u, J v> vs <J^T u, v>", r["dot"], "no differences"))
    for label, err, note in rows:
        click.echo(f"  {label:26s} {show(err):8s} ({note})")
    bad = [label for label, err, _ in rows if not (math.isfinite(err) and err <= tol)]
    if bad:
        click.echo(f"LARGE ERRORS (beyond --tol {tol:g}): {', '.join(bad)}")
        raise SystemExit(1)
    click.echo(f"OK (all errors <= --tol {tol:g})")
