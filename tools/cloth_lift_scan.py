"""Why gradients alone do not fold the cloth: the return of a scripted lift-carry-lower fold as a
function of how high the edge is lifted. Writes docs/cloth_lift_scan.md.

    python tools/cloth_lift_scan.py [--task cloth-fold] [--seed 0]

Plan (30 control steps, both pickers alike): lift at z-action f for 4 steps, carry at x-action -1
for 10 steps, lower at -f for 4 steps, hold. f = 0 is a pure drag of the edge along the ground.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import mbmix_taichi as mt
from mbmix_taichi.learner import resolve

ROOT = Path(__file__).resolve().parents[1]


def scan(task: str, seed: int, fractions, **extra):
    opts = {**resolve(task, "mbmix").task_options, **extra}
    env = mt.make(task, num_envs=len(fractions), seed=seed, **opts)
    f = torch.tensor(fractions, dtype=env.dtype)
    s, ret = env.get_state(), torch.zeros(len(fractions), dtype=env.dtype)
    with torch.no_grad():
        for t in range(env.episode_length):
            a = torch.zeros(len(fractions), env.act_dim, dtype=env.dtype)
            if t < 4:
                a[:, 2::3] = f[:, None]
            elif t < 14:
                a[:, 0::3] = -1.0
            elif t < 18:
                a[:, 2::3] = -f[:, None]
            s2 = env.transition(s, a)
            ret += env.reward(s, a, s2)
            s = s2
        return ret, env.metrics(s)["score"], opts


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cloth-fold")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "docs" / "cloth_lift_scan.md"))
    a = p.parse_args()
    fr = [round(0.05 * i, 2) for i in range(21)]
    lines = ["# The lift cliff of cloth-fold", "",
             f"Run: `python tools/cloth_lift_scan.py --task {a.task} --seed {a.seed}`.", "",
             "A scripted fold (lift 4 steps at z-action f, carry 10 steps at x-action -1, lower 4 steps, hold)",
             "for f from 0 (drag along the ground) to 1 (lift 8 cm). Return = sum of the dense reward",
             "over the episode, score = exp(-10 chamfer) at its end.", ""]
    for friction in (1.0, 0.3):
        ret, score, opts = scan(a.task, a.seed, fr, friction=friction)
        lines += [f"Task options {opts}:", "", "| f | " + " | ".join(f"{x:.2f}" for x in fr) + " |",
                  "|---" * (len(fr) + 1) + "|",
                  "| return | " + " | ".join(f"{x:.2f}" for x in ret.tolist()) + " |",
                  "| score | " + " | ".join(f"{x:.3f}" for x in score.tolist()) + " |", ""]
    lines += ["The return is flat in f up to a threshold and then jumps: below it the edge's neighbours stay on",
              "the ground and the carried half is dragged and compressed; above it the half rolls over. At",
              "f = 0 the first-order effect of lifting is zero (a particle at z = 0 whose goal is at z = 0),",
              "so an exact gradient from the hold-still or drag policies does not point across the cliff.",
              "What crosses it is exploration: actions whose noise lifts the edge far enough, and a critic",
              "that learns the value of the states beyond.", ""]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
