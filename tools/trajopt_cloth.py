"""Open-loop trajectory optimisation on the cloth tasks with the simulator's exact gradients:
the reference row above every learner in the cloth tables. Writes docs/trajopt_cloth.md.

    python tools/trajopt_cloth.py [--tasks cloth-fold,cloth-unfold] [--seeds 0,1,2] [--iterations 150]

Per task and seed, 8 action sequences are optimised in parallel (one env each) from 8 starts:
all-zero (hold still), and 7 that add a lift of the pickers during the first 4 steps (tanh^-1 of
0.25 * k, k = 1..7), since the zero start sits in the basin of a drag solution (see the doc).
Adam (lr 0.05) ascends the dense return; the table reports the best and the median start.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

import mbmix_taichi as mt  # noqa: E402
from mbmix_taichi.cli.options import parse_task_options  # noqa: E402
from mbmix_taichi.learner import resolve  # noqa: E402
from mbmix_taichi.learner.trajopt import optimise  # noqa: E402


def starts(env, n=8):
    u = torch.zeros(env.episode_length, n, env.act_dim, dtype=env.dtype)
    for k in range(1, n):
        u[:4, k, 2::3] = torch.atanh(torch.tensor(min(0.25 * k, 0.99)))  # z of both pickers
    return u


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="cloth-fold,cloth-unfold")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--out", default=str(ROOT / "docs" / "trajopt_cloth.md"))
    p.add_argument("-o", "--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a task option over the training preset's (repeatable), e.g. -o chamfer_weight=1")
    a = p.parse_args()
    extra = parse_task_options(a.task_option)
    torch.set_num_threads(1)
    rows = []
    for task in a.tasks.split(","):
        opts = {**resolve(task, "mix").task_options, **extra}  # the task as `train` trains it
        for seed in [int(s) for s in a.seeds.split(",")]:
            env = mt.make(task, num_envs=8, seed=seed, **opts)
            hold_env = mt.make(task, num_envs=1, seed=seed, **opts)
            t0 = time.process_time()
            res = optimise(env, iterations=a.iterations, lr=0.05, init=starts(env), seed=seed)
            ret, score = res["return"], res["score"]
            best = int(torch.argmax(ret))
            # references: holding still from the same start
            s, hold_ret = hold_env.get_state(), 0.0
            zero = torch.zeros(1, hold_env.act_dim, dtype=hold_env.dtype)
            for _ in range(hold_env.episode_length):
                s2 = hold_env.transition(s, zero)
                hold_ret += float(hold_env.reward(s, zero, s2))
                s = s2
            hold_score = float(hold_env.metrics(s)["score"])
            rows.append((task, seed, float(ret[best]), float(score[best]), float(ret.median()), float(score.median()),
                         float(ret[0]), float(score[0]), hold_ret, hold_score, res["wall_time"], time.process_time() - t0))
            print(rows[-1], flush=True)
    lines = [
        "# Trajectory optimisation on the cloth tasks (the reference row)",
        "",
        f"Run: `python tools/trajopt_cloth.py --tasks {a.tasks} --seeds {a.seeds} --iterations {a.iterations}"
        + "".join(f" -o {kv}" for kv in a.task_option) + "`.",
        "",
        "Open-loop actions of one episode, optimised with the exact gradient of the dense return through",
        f"every control step (Adam, lr 0.05, {a.iterations} iterations, 8 starts in parallel: hold-still and",
        "seven initial lifts). Task options as `mbmix-taichi train` uses them. `seed` fixes the start",
        "state (the env's reset jitter). Score = exp(-10 chamfer), DaXBench's metric.",
        "",
        "| task | seed | best return | best score | median return | median score | zero-start return | zero-start score | hold-still return | hold-still score | wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | " + " | ".join(f"{x:.3f}" for x in r[2:10]) + f" | {r[10]:.0f} | {r[11]:.0f} |")
    lines += ["", "What the rows say: the exact gradient refines a fold once a start lies in its basin; from the",
              "hold-still start it usually converges to a drag of the edge along the ground (a local optimum:",
              "the first-order effect of lifting a particle at z = 0 on its distance to a goal at z = 0 is zero).",
              ""]
    Path(a.out).write_text("\n".join(lines))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
