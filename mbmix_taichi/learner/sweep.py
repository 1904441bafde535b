"""Sweeps: a grid of task x algorithm x seed x config overrides, one run directory per point,
run in parallel processes (or on a Ray cluster), and one summary table.

    from mbmix_taichi.learner.sweep import grid, run_sweep
    points = grid(["cartpole-swingup"], ["shac", "mix"], seeds=[0, 1, 2],
                  overrides=[{"horizon": 8}, {"horizon": 32}])
    rows = run_sweep(points, "runs/sweep", workers=2)          # or backend="ray"

Each point trains with `Run` and evaluates its deterministic policy; a finished point (its
result.json exists) is not run again, so an interrupted sweep continues where it stopped.
Workers are started with the 'spawn' method: a process forked after Taichi initialised hangs.
"""
from __future__ import annotations

import csv
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import _ti


@dataclass(frozen=True)
class Point:
    task: str
    algo: str
    seed: int
    overrides: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        tag = "-".join(f"{k}={_short(v)}" for k, v in sorted(self.overrides.items()))
        return f"{self.task}-{self.algo}" + (f"-{tag}" if tag else "") + f"-s{self.seed}"


def _short(v) -> str:
    if isinstance(v, dict):
        return ",".join(f"{k}={_short(x)}" for k, x in sorted(v.items()))
    if isinstance(v, (list, tuple)):
        return "x".join(_short(x) for x in v)
    return str(v).replace("/", "_")


def grid(tasks, algos, seeds, overrides=None) -> list[Point]:
    """Every combination; `overrides` is a list of config dicts (default: one empty dict)."""
    overrides = overrides or [{}]
    return [Point(t, a, int(s), dict(o)) for t, a, o, s in itertools.product(tasks, algos, overrides, seeds)]


def run_point(point: Point, root: str, eval_episodes: int = 8, tasks_dir: str | None = None) -> dict:
    """Train and evaluate one point in `root/<point.name>`; returns its result row."""
    import torch

    from ..registry import load_tasks_dir
    from .config import resolve
    from .trainer import Run, evaluate, load_policy

    if tasks_dir:
        load_tasks_dir(tasks_dir)
    out = Path(root) / point.name
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    # a point is one core: torch on one thread, and so is Taichi's pool where this process has not
    # started Taichi yet (a sweep's worker process; the user's TI_CPU_MAX_NUM_THREADS wins)
    torch.set_num_threads(1)
    if not _ti.started():
        os.environ.setdefault("TI_CPU_MAX_NUM_THREADS", "1")
    cfg = resolve(point.task, point.algo, overrides={"seed": point.seed, **point.overrides})
    t0, c0 = time.time(), time.process_time()
    # an interrupted point continues; a partial one restarts (ppo/sac always restart: sb3.RESUME_REFUSED)
    resume = (out / "checkpoint.pt").is_file() and point.algo not in ("ppo", "sac")
    run = Run(cfg, out, resume=resume, overwrite=not resume, progress=False)
    rows = run.train()
    wall, cpu = time.time() - t0, time.process_time() - c0
    ev = evaluate(*load_policy(out), episodes=eval_episodes, seed=777)
    last = rows[-1] if rows else {}
    res = {"name": point.name, "task": point.task, "algo": point.algo, "seed": point.seed,
           "overrides": point.overrides, "iterations": cfg.iterations, "env_steps": last.get("env_steps", 0),
           "wall_time": last.get("wall_time", wall), "cpu_time": cpu, "return": ev["return"],
           "score": ev.get("score", math.nan)}
    done.write_text(json.dumps(res))
    return res


def run_sweep(points, root, workers: int = 1, backend: str = "local", eval_episodes: int = 8,
              tasks_dir: str | None = None, log=print) -> list[dict]:
    """Run every point (in `workers` spawned processes, or as Ray tasks) and write
    root/summary.csv and root/summary.md (mean +- std over seeds per task/algo/overrides)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    results = []
    if backend == "ray":
        try:
            import ray
        except ImportError as exc:
            from ..errors import OptionError

            raise OptionError("backend 'ray' needs Ray: pip install \"mbmix-taichi[ray]\"") from exc
        if not ray.is_initialized():
            ray.init()
        remote = ray.remote(num_cpus=1)(run_point)
        results = ray.get([remote.remote(p, str(root), eval_episodes, tasks_dir) for p in points])
    elif workers <= 1:
        for p in points:
            results.append(run_point(p, str(root), eval_episodes, tasks_dir))
            log(f"{p.name}: return {results[-1]['return']:.4g}, score {results[-1]['score']:.4g}")
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            futures = [ex.submit(run_point, p, str(root), eval_episodes, tasks_dir) for p in points]
            for p, f in zip(points, futures):
                results.append(f.result())
                log(f"{p.name}: return {results[-1]['return']:.4g}, score {results[-1]['score']:.4g}")
    write_summary(results, root)
    return results


def mean_std(xs):
    """(mean, sample std) of the finite entries of xs; NaN, NaN when there are none."""
    xs = [x for x in xs if x == x]
    if not xs:
        return math.nan, math.nan
    m = sum(xs) / len(xs)
    return m, (sum((x - m) ** 2 for x in xs) / max(1, len(xs) - 1)) ** 0.5


def write_summary(results: list[dict], root) -> None:
    root = Path(root)
    keys = ["name", "task", "algo", "seed", "overrides", "iterations", "env_steps", "wall_time", "cpu_time",
            "return", "score"]
    with open(root / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in results:
            w.writerow([json.dumps(r[k], sort_keys=True) if k == "overrides" else r[k] for k in keys])
    groups: dict = {}
    for r in results:
        groups.setdefault((r["task"], r["algo"], json.dumps(r["overrides"], sort_keys=True)), []).append(r)
    lines = ["| task | algo | overrides | seeds | return | score | env steps | wall s | CPU s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (task, algo, ov), rs in groups.items():
        ret, sc = mean_std([r["return"] for r in rs]), mean_std([r["score"] for r in rs])
        lines.append(f"| {task} | {algo} | `{ov}` | {','.join(str(r['seed']) for r in rs)} | "
                     f"{ret[0]:.4g} +- {ret[1]:.3g} | {sc[0]:.4g} +- {sc[1]:.3g} | {rs[0]['env_steps']} | "
                     f"{mean_std([r['wall_time'] for r in rs])[0]:.0f} | {mean_std([r['cpu_time'] for r in rs])[0]:.0f} |")
    (root / "summary.md").write_text("\n".join(lines) + "\n")
