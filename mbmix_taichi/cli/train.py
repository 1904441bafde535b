"""`mbmix-taichi train` (writes a run directory) and `mbmix-taichi eval` (scores its policy)."""
from __future__ import annotations

import json
import math

import click

from ..errors import OptionError
from .options import no_task_option, task_option


@click.command("train")
@click.argument("task")
@click.option("--algo", default="mbmix", show_default=True,
              help="mbmix | mbmix-mse | mbmix-model | mix | shac | bptt (docs/method.md) | ppo | sac "
                   "(Stable-Baselines3: pip install \"mbmix-taichi[rl]\"; learner/sb3_presets.py)")
@click.option("--iterations", type=int, default=None, help="Training iterations (default: the task preset).")
@click.option("--env-steps", type=int, default=None,
              help="ppo, sac: the budget in simulator steps (default: the task preset, rl-zoo3's).")
@click.option("--num-envs", type=int, default=None, help="Parallel environments (default: the task preset).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/TASK-ALGO-sSEED, or runs/TASK-ALGO-sSEED-2, -3, ... "
                   "when that one holds an earlier run).")
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="A JSON or TOML file of config keys (see mbmix_taichi/learner/config.py).")
@click.option("--resume", is_flag=True, help="Continue the run in --out (default: runs/TASK-ALGO-sSEED) "
              "from its checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out (its checkpoint, policy "
              "and metrics are deleted).")
@task_option()
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(task, algo, iterations, env_steps, num_envs, seed, out, config_file, resume, overwrite, task_options, quiet):
    """Train a policy on TASK; writes a run directory (config, metrics, checkpoints, policy)."""
    from ..registry import get_task_class
    from ..learner.config import resolve
    from ..learner.trainer import Run, describe, free_run_dir, make_env

    get_task_class(task)  # unknown task -> one-line error
    overrides = {"seed": seed}
    if iterations is not None:
        overrides["iterations"] = iterations
    if num_envs is not None:
        overrides["num_envs"] = num_envs
    if task_options:
        overrides["task_options"] = task_options
    if env_steps is not None:
        overrides["sb3"] = {"total_timesteps": env_steps}
    cfg = resolve(task, algo, config_file, overrides)
    if env_steps is not None and cfg.algo not in ("ppo", "sac"):
        raise OptionError(f"--env-steps is the budget of ppo and sac runs; {cfg.algo} counts --iterations")
    if resume and overwrite:
        raise OptionError("--resume continues a run and --overwrite replaces it; give one of them")
    if out is None:
        base = f"runs/{task}-{cfg.algo}-s{cfg.seed}"
        out = base if resume or overwrite else str(free_run_dir(base))
    if not resume:
        make_env(cfg, num_envs=1)  # validate task options before creating the run directory
    run = Run(cfg if not resume or iterations is not None else None, out, resume=resume, progress=not quiet,
              overwrite=overwrite)
    verb = "continuing" if resume else "replacing the run in" if overwrite else "writing"
    click.echo(f"{verb} {out}")
    rows = run.train()
    last = rows[-1] if rows else {}
    click.echo(f"run {out}: iteration {last.get('iteration', 0)}, env steps {last.get('env_steps', 0)}, "
               f"{describe(last)}, {last.get('wall_time', 0.0):.1f} s")


@click.command("eval")
@click.argument("run_dir", type=click.Path())
@click.option("--episodes", type=int, default=None, help="Episodes (default: the run's eval_episodes).")
@click.option("--seed", type=int, default=12345, show_default=True, help="Seed of the evaluation env.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@no_task_option("eval")
def eval_cmd(run_dir, episodes, seed, as_json):
    """Mean return and task score of a run's deterministic policy, and of its untrained one."""
    from ..learner.trainer import evaluate, load_policy, read_config, untrained_policy

    cfg = read_config(run_dir)
    k = episodes or cfg.eval_episodes
    if k < 1:
        raise OptionError("--episodes must be >= 1")
    task, opts, pol = load_policy(run_dir)
    _, _, pol0 = untrained_policy(run_dir)
    res = {"trained": evaluate(task, opts, pol, k, seed), "untrained": evaluate(task, opts, pol0, k, seed)}
    if as_json:
        click.echo(json.dumps(res))
        return
    for name, r in res.items():
        if not math.isfinite(r["return"]):
            click.echo(f"{name:9s} no finished episode ({k} episodes, {task}, {cfg.algo})")
            continue
        line = f"{name:9s} return {r['return']:.4g} +- {r['return_std']:.3g}"
        if "score" in r:
            line += f"   score {r['score']:.4g} +- {r['score_std']:.3g}"
        click.echo(line + f"   ({k} episodes, {task}, {cfg.algo})")

