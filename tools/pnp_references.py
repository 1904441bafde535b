"""Reference rows for the pick-and-place cloth tasks (cloth-fold-pnp, cloth-unfold-pnp): holding
still, a scripted plan, and open-loop plans optimised by the cross-entropy method (CEM, zeroth
order: it uses returns only, no gradients). Every plan is a fixed sequence of macro actions
(pick x, y, place x, y per step), evaluated as `mbmix-taichi eval` and the sweep evaluate a policy
(`learner.trainer.evaluate`: 8 episodes, one per env, eval seed 777 by default), on the cloth the
learners train on: the task options of the task's learner preset (`learner/config.py`: a 6 x 6
cloth), changed with -o KEY=VALUE.

    python tools/pnp_references.py [--tasks cloth-fold-pnp,cloth-unfold-pnp] [--seeds 0,1,2]
        [--population 64] [--iterations 12] [--eval-seed 777] [-o KEY=VALUE ...]

CEM per seed: a Gaussian over the 4 x episode_length plan, mean 0 (pick and place the centre:
holding still) and std 0.5 at the start; each iteration draws `population` plans, runs each from
a start of its own (one reset per iteration; the cloth tasks randomise the start's wrinkles), keeps the
best eighth, and refits mean and std (std floored at 0.05). The plan kept is the last mean. Its
cost in macro steps is population x iterations x episode_length.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

import mbmix_taichi as mt
from mbmix_taichi.cli.options import parse_task_options
from mbmix_taichi.learner import resolve
from mbmix_taichi.learner.trainer import evaluate

SCRIPTED = {
    # pick the +x edge's middle and place it on the -x edge's middle (the fold over x = x_mid), then
    # pick and place the centre (hold still)
    "cloth-fold-pnp": [[0.9, 0.0, -0.9, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
    # cloth-unfold starts folded onto the -x half: pick the top layer's free edge (at x = 0, the
    # fold line's side opposite the crease is at -x) and carry it out to +x, then hold still
    "cloth-unfold-pnp": [[-0.8, 0.0, 0.8, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
}


def plan_policy(plan: torch.Tensor):
    """A policy that plays `plan` [T, 4] step by step, whatever it observes (one call per step)."""
    t = [0]

    def act(obs):
        a = plan[min(t[0], plan.shape[0] - 1)].expand(obs.shape[0], -1)
        t[0] += 1
        return a
    return act


def task_options(task: str, overrides=()) -> dict:
    """The task options the learners use on `task` (its preset's), with KEY=VALUE overrides."""
    return {**resolve(task, "mix").task_options, **parse_task_options(overrides)}


def returns(task: str, options: dict, plans: torch.Tensor, seed: int) -> torch.Tensor:
    """Return of each plan [P, T, 4], one env per plan, from one reset (each env's start has its own
    random wrinkles, so CEM ranks plans by their return on a random start: the expected return)."""
    env = mt.make(task, num_envs=plans.shape[0], seed=seed, **options)
    env.reset(seed)
    total = torch.zeros(plans.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for t in range(env.episode_length):
            _, reward, _, _, _ = env.step(plans[:, t].to(env.dtype))
            total += reward.double().cpu()
    return total


def cem(task: str, options: dict, seed: int, population: int, iterations: int) -> tuple[torch.Tensor, int]:
    T = mt.make(task, num_envs=1, **options).episode_length
    g = torch.Generator().manual_seed(seed)
    mean, std = torch.zeros(T, 4, dtype=torch.float64), torch.full((T, 4), 0.5, dtype=torch.float64)
    elite = max(2, population // 8)
    for it in range(iterations):
        plans = (mean + std * torch.randn(population, T, 4, generator=g, dtype=torch.float64)).clamp(-1, 1)
        r = returns(task, options, plans, seed * 1000 + it)
        best = plans[r.argsort(descending=True)[:elite]]
        mean, std = best.mean(0), best.std(0).clamp_min(0.05)
    return mean, population * iterations * T


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="cloth-fold-pnp,cloth-unfold-pnp")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--population", type=int, default=64)
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--eval-seed", type=int, default=777)
    p.add_argument("-o", "--task-option", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    print("| task | plan | return | final score | macro steps to find it | CPU s |")
    print("|---|---|---|---|---|---|")
    for task in a.tasks.split(","):
        options = task_options(task, a.task_option)
        print(f"| {task} | task options: {options} | | | | |")
        T = mt.make(task, num_envs=1, **options).episode_length

        def row(name, plan, steps="", cpu=""):
            r = evaluate(task, options, plan_policy(plan), episodes=8, seed=a.eval_seed)
            print(f"| {task} | {name} | {r['return']:.3f} +- {r['return_std']:.3f} | {r['score']:.3f} +- "
                  f"{r['score_std']:.3f} | {steps} | {cpu} |", flush=True)
            return r

        row("hold still (pick and place the centre)", torch.zeros(T, 4))
        if task in SCRIPTED:
            row("scripted (see SCRIPTED)", torch.tensor(SCRIPTED[task], dtype=torch.float64)[:T])
        found = []
        for seed in seeds:
            c0 = time.process_time()
            plan, steps = cem(task, options, seed, a.population, a.iterations)
            cpu = time.process_time() - c0
            r = row(f"CEM open-loop plan, seed {seed}: {[[round(float(v), 2) for v in s] for s in plan]}", plan,
                    f"{steps:,}", f"{cpu:.0f}")
            found.append((r["return"], r["score"]))
        rs, ss = torch.tensor([f[0] for f in found]), torch.tensor([f[1] for f in found])
        sd = (lambda x: float(x.std())) if len(found) > 1 else (lambda x: math.nan)
        print(f"| {task} | CEM, mean +- std over seeds {a.seeds} | {float(rs.mean()):.3f} +- {sd(rs):.3f} | "
              f"{float(ss.mean()):.3f} +- {sd(ss):.3f} | | |", flush=True)


if __name__ == "__main__":
    main()
