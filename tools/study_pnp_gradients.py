"""Why the first-order learners do not learn the pick-and-place cloth tasks: the exact (path)
gradient of one macro step's reward against a zeroth-order (score-function) estimate of the
same smoothed gradient.

Objective: F(mu) = E_{s0, eps}[ r(s0, mu + sigma eps) ], one macro step from the task's reset
states (one per sample: the cloth tasks give each env's start its own wrinkles), with a Gaussian
over the 4-D action (pick x, y, place x, y) at mean mu. Two unbiased estimators of
dF/dmu from the same N samples (Suh et al. 2022, "Do differentiable simulators give better policy
gradients?"):

* path (first order, what MIX / SHAC / BPTT use):  g_i = dr/da (s0, a_i), exact, through
  `env.transition` (the pick point's derivative is zero: it only chooses particles);
* score function (zeroth order, what PPO's estimator is):  g_i = (r_i - mean r) eps_i / sigma.

Reported per estimator: the mean over the N samples, the per-sample spread (trace of the
covariance), the median, 99th percentile and largest per-sample norm (place components), and the cosine of the means of two disjoint halves of the samples (near 1: the
estimate is consistent at this N; near 0: noise); and the cosine between the two estimators'
means. Only the place point's two components are compared for the path estimator's direction
(its pick components are zero by construction).

    python tools/study_pnp_gradients.py [--tasks cloth-fold-pnp,cloth-unfold-pnp] [--samples 512]
        [--sigma 0.37] [--mu 0,0,0,0] [--seeds 0,1,2] [-o KEY=VALUE ...]

On the cloth the learners train on (the task options of the task's learner preset, a 6 x 6 cloth;
-o changes them).

The untrained policies act near mu = 0 with sigma = e^-1 = 0.37 (the learner's init_log_std -1).
"""
from __future__ import annotations

import argparse
import time

import torch

import mbmix_taichi as mt
from mbmix_taichi.cli.options import parse_task_options
from mbmix_taichi.learner import resolve


def estimates(task, mu, sigma, samples, seed, options=None, dtype="float64"):
    env = mt.make(task, num_envs=samples, seed=seed, dtype=dtype, **(options or {}))
    env.reset(seed)
    s0 = env.get_state().detach()
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(samples, 4, generator=g, dtype=torch.float64)
    a = (mu + sigma * eps).clamp(-1.0, 1.0).to(env.dtype).requires_grad_(True)
    r = env.reward(s0, a, env.transition(s0, a))
    (path,) = torch.autograd.grad(r.sum(), a)
    r, path = r.detach().double(), path.double()
    score = (r - r.mean())[:, None] * eps / sigma
    return r, path, score


def stats(g):
    half = g.shape[0] // 2
    m1, m2 = g[:half].mean(0), g[half:].mean(0)
    return {"mean": g.mean(0), "halves_cos": float(torch.nn.functional.cosine_similarity(m1, m2, dim=0))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="cloth-fold-pnp,cloth-unfold-pnp")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--sigma", type=float, default=0.37)
    p.add_argument("--mu", default="0,0,0,0")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("-o", "--task-option", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    mu = torch.tensor([float(v) for v in a.mu.split(",")], dtype=torch.float64)
    print("| task | seed | mean reward | estimator | mean gradient (pick x, y, place x, y) | per-sample trace of covariance | "
          "per-sample norm: median / 99% / max | cosine of the two halves' means (place x, y) | "
          "cosine path vs score (place x, y) | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task in a.tasks.split(","):
        options = {**resolve(task, "mix").task_options, **parse_task_options(a.task_option)}
        print(f"| {task} | task options: {options} | | | | | | | | |")
        for seed in [int(s) for s in a.seeds.split(",")]:
            c0 = time.process_time()
            r, path, score = estimates(task, mu, a.sigma, a.samples, seed, options)
            cpu = time.process_time() - c0
            sp, ss = stats(path[:, 2:]), stats(score[:, 2:])
            cos = float(torch.nn.functional.cosine_similarity(sp["mean"], ss["mean"], dim=0))
            for name, g, st in (("path (exact)", path, sp), ("score function", score, ss)):
                mean = ", ".join(f"{float(v):+.3g}" for v in g.mean(0))
                n = g[:, 2:].norm(dim=1)
                q = n.quantile(torch.tensor([0.5, 0.99], dtype=n.dtype))
                print(f"| {task} | {seed} | {float(r.mean()):.4f} | {name} | {mean} | {float(g.var(0).sum()):.3g} | "
                      f"{float(q[0]):.3g} / {float(q[1]):.3g} / {float(n.max()):.3g} | "
                      f"{st['halves_cos']:+.2f} | {cos:+.2f} | {cpu:.0f} |", flush=True)


if __name__ == "__main__":
    main()
