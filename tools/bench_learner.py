"""Learner speed on cloth-fold: iterations/s and simulator steps/s per algorithm, and where
the time goes. Writes docs/benchmarks_learner.md.

    python tools/bench_learner.py [--task cloth-fold] [--iterations 6] [--algos mbmix,mix,...]

Uses each algorithm's preset for the task (the defaults of `mbmix-taichi train`), skips the
first iteration (compilation, warm-up) and times the next ones.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from mbmix_taichi.learner import ALGOS, Run, resolve

ROOT = Path(__file__).resolve().parents[1]


def bench(task: str, algo: str, iterations: int, overrides: dict) -> dict:
    cfg = resolve(task, algo, overrides={"iterations": iterations + 1, "checkpoint_every": 0, **overrides})
    with tempfile.TemporaryDirectory() as d:
        run = Run(cfg, d, progress=False)
        agent = run.agent
        agent.iterate()  # warm-up: kernel compilation, first model fit
        for k in agent.timers:
            agent.timers[k] = 0.0
        steps0 = agent.env_steps
        launches0 = getattr(run.env.sim, "launches", 0)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(iterations):
            agent.iterate()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {"algo": algo, "it_per_s": iterations / dt, "steps_per_s": (agent.env_steps - steps0) / dt,
                "steps_per_it": (agent.env_steps - steps0) / iterations, "seconds": dt,
                "cpu_per_it": cpu / iterations,
                "timers": {k: v / dt for k, v in agent.timers.items()},
                "launches_per_it": (getattr(run.env.sim, "launches", 0) - launches0) / iterations,
                "state_dim": run.env.state_dim, "cfg": cfg}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="cloth-fold")
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--algos", default=",".join(ALGOS))
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_learner.md"))
    a = p.parse_args(argv)
    results = []
    for algo in a.algos.split(","):
        r = bench(a.task, algo, a.iterations, {})
        results.append(r)
        print(f"{algo:10s} {r['it_per_s']:.3f} it/s  {r['steps_per_s']:.0f} sim steps/s  "
              + "  ".join(f"{k} {100 * v:.0f}%" for k, v in r["timers"].items()), flush=True)
    cfg = results[0]["cfg"]
    lines = [
        f"# Learner benchmark: {a.task}",
        "",
        f"Measured with `python tools/bench_learner.py --task {a.task} --iterations {a.iterations}` on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"torch threads {cfg.torch_threads}, no GPU. Other jobs shared the two cores while this ran, so "
        "absolute numbers are noisy (perhaps +-30%); ratios between algorithms are more telling.",
        "",
        f"Task options (the `{a.task}` preset): `{cfg.task_options}`, state_dim {results[0]['state_dim']}, "
        f"{cfg.num_envs} envs. Each algorithm runs its preset for this task (the defaults of "
        "`mbmix-taichi train`); the first iteration (compilation, warm-up) is not timed.",
        "",
        "| algo | iterations/s | CPU s/iteration | sim steps/s | sim steps/iteration | rollout forward | backward | model | critic | jacobians/probes | other |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r["timers"]
        other = max(0.0, 1.0 - sum(t.values()))
        lines.append(f"| {r['algo']} | {r['it_per_s']:.3f} | {r['cpu_per_it']:.3f} | {r['steps_per_s']:.0f} | {r['steps_per_it']:.0f} | "
                     f"{100 * t['sim_forward']:.0f}% | {100 * t['backward']:.0f}% | {100 * t['model']:.0f}% | "
                     f"{100 * t['critic']:.0f}% | {100 * t['jacobian']:.0f}% | {100 * other:.0f}% |")
    lines += [
        "",
        "Columns (shares of wall time):",
        "- *rollout forward*: simulator steps with the actor and value forward passes (the differentiable "
        "window through the simulator; for mbmix-model: data collection without gradients);",
        "- *backward*: the actor's backward pass (for mix/shac/bptt this is dominated by the simulator's "
        "VJPs through the window; for mbmix it is back-propagation through the learned model);",
        "- *model*: fitting the ensemble with the Sobolev loss plus the branch rollouts' forward pass;",
        "- *critic*: critic regression and target computation;",
        "- *jacobians/probes*: the simulator JVPs (or full Jacobians) stored with each transition for eq. 4.",
        "",
        "CPU s/iteration is `time.process_time` (all threads of the process) per iteration.",
    ]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    sys.exit(main())
