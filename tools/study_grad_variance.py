#!/usr/bin/env python
"""Gradient-variance study behind Theorem 1 of MB-MIX (docs/method.md): Var(MIX) <= Var(SHAC).

At a *fixed* policy, draw many independent gradient estimates (one per seed: random initial
states from ``env.reset(seed)`` plus fresh Gaussian policy noise) and measure their spread.

Estimators (all are path derivatives, back-propagated through ``env.transition``):

* SHAC(h):  J = mean_envs[ sum_{t<h} gamma^t r_t + gamma^h V(s_h) ]
* MIX(h, lambda):  J = mean_envs[ R_0 ],  R_t = r_t + gamma[(1-lambda) V(s_{t+1}) + lambda R_{t+1}],
  R_h = V(s_h)  (eq. 2/3 of the paper, docs/method.md with the finite-window tail weight lambda^{h-1} on J_h).
  SHAC(h) is exactly MIX(h, lambda=1), so both use :func:`mix_objective`.

The policy is a fixed random tanh-MLP giving the mean of a Gaussian with fixed std; actions are
``tanh(mu(obs) + std * eps)`` (reparameterised, in (-1, 1)). The value network is a fixed MLP,
either briefly fitted to truncated Monte-Carlo returns of that policy (default) or left at its
random init (``--value random``). All estimators at one seed share the same initial states and
the same noise sequence (common random numbers), so their differences are due to the objective.

Variance = trace of the covariance of the flattened policy gradient over seeds
(sum over parameters of the unbiased per-parameter variance), with a bootstrap standard error.

Runs on any task with the mbmix_taichi env API, or on a built-in pure-torch pendulum:

    python tools/study_grad_variance.py --task toy-pendulum
    python tools/study_grad_variance.py --task cloth-fold --task-option resolution=6 --num-envs 2

Each run (re)writes its task's section of docs/study_grad_variance.md (sections of other tasks
are kept; the measured numbers are stored in the section as JSON) and redraws
docs/study_grad_variance.png from all sections.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from mbmix_taichi.cli.options import parse_task_options
from mbmix_taichi.errors import MbmixError
from mbmix_taichi.learner import nets
from mbmix_taichi.learner.objectives import j_mix_direct, lambda_returns

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


# ---------------------------------------------------------------------------------------
# The MIX objective (eq. 2/3 of the paper, docs/method.md, finite window); shared with study_tabular.py
# ---------------------------------------------------------------------------------------
def mix_objective(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Lambda-returns of a window of h steps (the learner's `lambda_returns`, no episode ends).

    rewards: [h, ...]  r_0 .. r_{h-1}
    values:  [h + 1, ...]  V(s_0) .. V(s_h)  (values[0] is not used)
    Returns R: [h, ...] with R_t = r_t + gamma[(1 - lam) V(s_{t+1}) + lam R_{t+1}], R_h = V(s_h).
    R[0] is the MIX objective: (1 - lam) sum_{H<h} lam^{H-1} J_H + lam^{h-1} J_h, where
    J_H = sum_{t<H} gamma^t r_t + gamma^H V(s_H). lam = 1 gives SHAC(h) (sum + gamma^h V(s_h));
    lam = 0 gives r_0 + gamma V(s_1). R[t] are the critic targets of line 9.
    """
    h = rewards.shape[0]
    if values.shape[0] != h + 1:
        raise ValueError(f"values must have h + 1 = {h + 1} rows, got {values.shape[0]}")
    return lambda_returns(rewards, values[1:], torch.zeros_like(rewards, dtype=torch.bool), gamma, lam)


def mix_objective_eq2(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Reference form of R_0 by eq. 2 (explicit mixture of the H-step objectives J_H)."""
    return j_mix_direct(rewards, values[1:], gamma, lam)


# ---------------------------------------------------------------------------------------
# Variance estimator
# ---------------------------------------------------------------------------------------
def grad_variance(G, n_boot: int = 200, seed: int = 0) -> dict:
    """Spread of gradient estimates G [n_samples, n_params].

    trace_cov: sum over parameters of the unbiased sample variance (= mean squared deviation
    from the mean times n/(n-1)); se: its bootstrap standard error; mean_sq: ||mean||^2;
    rel: trace_cov / ||mean||^2; signal: ||mean||^2 - trace_cov / n, the unbiased estimate of
    ||E g||^2 (<= 0 when the mean is not resolved at this n); median_sq_dev: the median
    over samples of ||g_i - coordinatewise median||^2 (a heavy-tail-robust spread); top_share: the
    largest single sample's share of the summed squared deviations (1/n for no outliers).
    """
    G = torch.as_tensor(G, dtype=torch.float64)
    n = G.shape[0]
    if n < 2:
        raise ValueError("need at least two samples")
    mean = G.mean(0)
    tr = float(((G - mean) ** 2).sum() / (n - 1))
    gen = torch.Generator().manual_seed(seed)
    Gc = G - mean
    idx = torch.randint(0, n, (n_boot, n), generator=gen)
    if n <= 4096:                                       # resamples via the Gram matrix (cheap for many params)
        K = Gc @ Gc.T
        W = torch.zeros(n_boot, n, dtype=G.dtype).scatter_add_(1, idx, torch.ones(n_boot, n, dtype=G.dtype))
        boots = ((W * K.diagonal()).sum(1) - torch.einsum("bi,ij,bj->b", W, K, W) / n) / (n - 1)
    else:
        boots = torch.tensor([float(((G[i] - G[i].mean(0)) ** 2).sum() / (n - 1)) for i in idx])
    msq = float((mean ** 2).sum())
    dev = ((G - mean) ** 2).sum(1)
    robust = float(((G - G.median(0).values) ** 2).sum(1).median())
    return {"trace_cov": tr, "se": float(boots.std(unbiased=False)), "mean_sq": msq, "rel": tr / max(msq, 1e-300),
            "signal": msq - tr / n,
            "median_sq_dev": robust, "top_share": float(dev.max() / dev.sum().clamp_min(1e-300))}


# ---------------------------------------------------------------------------------------
# A tiny differentiable system with the env API (the `toy-pendulum` task)
# ---------------------------------------------------------------------------------------
class ToyPendulum:
    """Gym-style pendulum (theta = 0 upright), pure torch, batched, with the mbmix_taichi env API.

    state [N, 2] = (theta, omega); action [N, 1] in [-1, 1] scaled to +-2 N m;
    omega' = (1 - c dt) omega + dt (3 g / (2 l) sin(theta) + 3 u / (m l^2)); theta' = theta + dt omega'.
    reward = -(wrap(theta)^2 + 0.1 omega^2 + 0.001 u^2); observation (cos, sin, omega).
    """

    name = "toy-pendulum"

    def __init__(self, num_envs: int = 1, seed: int = 0, dtype="float64", dt: float = 0.05, damping: float = 0.1):
        self.num_envs = int(num_envs)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype, dtype)
        self.state_dim, self.obs_dim, self.act_dim = 2, 3, 1
        self.episode_length = 200
        self.dt, self.damping, self.g, self.m, self.l, self.max_torque = dt, damping, 10.0, 1.0, 1.0, 2.0
        self._gen = torch.Generator().manual_seed(int(seed))
        self.reset()

    def reset(self, seed=None):
        if seed is not None:
            self._gen.manual_seed(int(seed))
        u = torch.rand(self.num_envs, 2, generator=self._gen, dtype=torch.float64)
        self._state = torch.stack([(2 * u[:, 0] - 1) * math.pi, 2 * u[:, 1] - 1], 1).to(self.dtype)
        return self.observe(self._state)

    def get_state(self):
        return self._state.clone()

    def set_state(self, state):
        self._state = state.detach().clone()

    def transition(self, state, action):
        th, om = state[:, 0], state[:, 1]
        u = action[:, 0].clamp(-1.0, 1.0) * self.max_torque
        acc = 3 * self.g / (2 * self.l) * torch.sin(th) + 3.0 / (self.m * self.l ** 2) * u
        om2 = (1 - self.damping * self.dt) * om + self.dt * acc
        return torch.stack([th + self.dt * om2, om2], 1)

    def reward(self, state, action, next_state):
        th, om = state[:, 0], state[:, 1]
        wrapped = torch.atan2(torch.sin(th), torch.cos(th))
        u = action[:, 0].clamp(-1.0, 1.0) * self.max_torque
        return -(wrapped ** 2 + 0.1 * om ** 2 + 0.001 * u ** 2)

    def observe(self, state):
        return torch.stack([torch.cos(state[:, 0]), torch.sin(state[:, 0]), state[:, 1]], 1)


def make_task(name: str, num_envs: int, seed: int, dtype: str, options: dict):
    if name == "toy-pendulum":
        return ToyPendulum(num_envs=num_envs, seed=seed, dtype=dtype, **options)
    import mbmix_taichi as mt
    return mt.make(name, num_envs=num_envs, seed=seed, dtype=dtype, **options)


# ---------------------------------------------------------------------------------------
# Fixed networks
# ---------------------------------------------------------------------------------------
def mlp(i: int, o: int, hidden=(64, 64)) -> nn.Sequential:
    """Linear -> tanh layers and a linear head (the learner's mlp without its LayerNorms)."""
    return nets.mlp(i, list(hidden), o, activation=nn.Tanh, layer_norm=False)


class ScaledValue(nn.Module):
    """V(obs) = mean + scale * mlp(obs); mean and scale are set from the fit targets."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.net = mlp(obs_dim, 1)
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, obs):
        return self.mean + self.scale * self.net(obs)


class GaussianPolicy(nn.Module):
    """a = tanh(mu(obs) + std * eps): reparameterised Gaussian, squashed into (-1, 1)."""

    def __init__(self, obs_dim: int, act_dim: int, std: float = 0.5):
        super().__init__()
        self.mu = mlp(obs_dim, act_dim)
        self.std = std

    def forward(self, obs, eps):
        return torch.tanh(self.mu(obs) + self.std * eps)


def rollout_returns(env, policy, value, start_state, eps, gamma: float, horizon: int):
    """Roll `horizon` steps from start_state with noise eps [horizon, N, act_dim].

    Returns rewards [h, N] and values [h + 1, N] (V of observed states), both differentiable
    with respect to the policy parameters through env.transition.
    """
    s = start_state
    rewards, values = [], [value(env.observe(s)).squeeze(-1)]
    for t in range(horizon):
        a = policy(env.observe(s), eps[t])
        s2 = env.transition(s, a)
        rewards.append(env.reward(s, a, s2))
        values.append(value(env.observe(s2)).squeeze(-1))
        s = s2
    return torch.stack(rewards), torch.stack(values)


def fit_value(env, policy, value, gamma: float, length: int, n_rollouts: int, steps: int, seed: int = 12345,
              log=print) -> dict:
    """Fit V to truncated Monte-Carlo discounted returns of the fixed policy (first half of each rollout)."""
    obs_l, tgt_l = [], []
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k in range(n_rollouts):
            env.reset(seed=seed + k)
            s = env.get_state()
            obs, rews = [], []
            for t in range(length):
                eps = torch.randn(env.num_envs, env.act_dim, generator=gen, dtype=torch.float64).to(env.dtype)
                o = env.observe(s)
                a = policy(o, eps)
                s2 = env.transition(s, a)
                obs.append(o)
                rews.append(env.reward(s, a, s2))
                s = s2
            R = torch.zeros_like(rews[0])
            rets = []
            for r in reversed(rews):
                R = r + gamma * R
                rets.append(R)
            rets = rets[::-1]
            half = length // 2
            obs_l.append(torch.cat(obs[:half]))
            tgt_l.append(torch.cat(rets[:half]))
    X, y = torch.cat(obs_l), torch.cat(tgt_l)
    var0 = float(y.var())
    if isinstance(value, ScaledValue):
        value.mean.fill_(float(y.mean()))
        value.scale.fill_(max(math.sqrt(var0), 1e-8))
    opt = torch.optim.Adam(value.parameters(), lr=3e-3)
    for i in range(steps):
        loss = ((value(X).squeeze(-1) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        loss = float(((value(X).squeeze(-1) - y) ** 2).mean())
    log(f"  value fit: {len(y)} targets, target mean {float(y.mean()):.3g} var {var0:.3g}, final MSE {loss:.3g}")
    for p in value.parameters():
        p.requires_grad_(False)
    return {"n_targets": len(y), "target_mean": float(y.mean()), "target_var": var0, "mse": loss}


def gradient_samples(env, policy, value, horizons, lambdas, n_seeds: int, gamma: float, seed0: int = 0,
                     log=print) -> dict:
    """Per-seed gradient estimates. Returns {(method, h): tensor [n_seeds, n_params]}.

    method is "SHAC" (= lambda 1) or "MIX-<lambda>". For each (seed, h) there is one forward rollout
    and one backward pass: the env batch holds one copy of the seed's initial states and noise per
    method, and each copy is driven by its own leaf copy of the policy parameters, so the gradient
    of sum_m J_m with respect to copy m is method m's estimate (env backward passes free their tapes,
    so a graph cannot be back-propagated twice).
    """
    from torch.func import functional_call

    methods = [("SHAC", 1.0)] + [(f"MIX-{lam:g}", lam) for lam in lambdas]
    M = len(methods)
    names = [n for n, p in policy.named_parameters() if p.requires_grad]
    out = {(m, h): [] for m, _ in methods for h in horizons}
    H = max(horizons)
    t0 = time.time()
    for i in range(n_seeds):
        env.reset(seed=seed0 + 1000 + i)
        s0 = env.get_state().detach()
        N = s0.shape[0]
        gen = torch.Generator().manual_seed(seed0 + i)
        eps = torch.randn(H, N, env.act_dim, generator=gen, dtype=torch.float64).to(env.dtype)
        for h in horizons:
            copies = [{n: p.detach().clone().requires_grad_(True) for n, p in policy.named_parameters()}
                      for _ in range(M)]
            s = s0.repeat(M, 1)
            vals = [value(env.observe(s)).squeeze(-1)]
            rews = []
            for t in range(h):
                obs = env.observe(s).reshape(M, N, -1)
                a = torch.cat([functional_call(policy, copies[m], (obs[m], eps[t])) for m in range(M)])
                s2 = env.transition(s, a)
                rews.append(env.reward(s, a, s2))
                vals.append(value(env.observe(s2)).squeeze(-1))
                s = s2
            R = torch.stack(rews).reshape(h, M, N)
            V = torch.stack(vals).reshape(h + 1, M, N)
            J = sum(mix_objective(R[:, m], V[:, m], gamma, lam)[0].mean() for m, (_, lam) in enumerate(methods))
            grads = torch.autograd.grad(J, [c[n] for c in copies for n in names])
            k = len(names)
            for m, (name, _) in enumerate(methods):
                out[(name, h)].append(torch.cat([g.reshape(-1) for g in grads[m * k:(m + 1) * k]]).detach().double())
        if i == 0 or (i + 1) % max(1, n_seeds // 5) == 0:
            log(f"  seed {i + 1}/{n_seeds}  ({time.time() - t0:.1f} s)")
    return {k: torch.stack(v) for k, v in out.items()}


def run_study(env, horizons, lambdas, n_seeds, gamma=0.99, value_mode="fit", policy_seed=0, std=0.5,
              fit_len=64, fit_rollouts=4, fit_steps=300, log=print) -> dict:
    """The whole study on one env: fixed networks, gradient samples, variance table."""
    torch.manual_seed(policy_seed)
    policy = GaussianPolicy(env.obs_dim, env.act_dim, std=std).to(env.dtype)
    value = ScaledValue(env.obs_dim).to(env.dtype)
    fit_info = None
    if value_mode == "fit":
        fit_info = fit_value(env, policy, value, gamma, fit_len, fit_rollouts, fit_steps, log=log)
    else:
        for p in value.parameters():
            p.requires_grad_(False)
    samples = gradient_samples(env, policy, value, horizons, lambdas, n_seeds, gamma, log=log)
    ref = samples[("SHAC", max(horizons))].mean(0)
    table = {}
    for (m, h), G in samples.items():
        st = grad_variance(G)
        mean = G.mean(0)
        st["cos_to_ref"] = float(mean @ ref / (mean.norm() * ref.norm() + 1e-300))
        table.setdefault(m, {})[str(h)] = st
    n_params = sum(p.numel() for p in policy.parameters())
    return {"table": table, "horizons": list(horizons), "lambdas": list(lambdas), "n_seeds": n_seeds,
            "gamma": gamma, "value_mode": value_mode, "value_fit": fit_info, "n_params": n_params,
            "num_envs": env.num_envs, "state_dim": getattr(env, "state_dim", None), "std": std}


# ---------------------------------------------------------------------------------------
# Report: the md holds one section per task (with its data as JSON); the png shows all of them
# ---------------------------------------------------------------------------------------
SECTION_RE = re.compile(r"<!-- task:(?P<task>[^ ]+) begin -->\n(?P<body>.*?)<!-- task:(?P=task) end -->\n", re.S)
DATA_RE = re.compile(r"<!-- data: (?P<json>\{.*?\}) -->", re.S)

HEADER = """# Gradient variance of MIX vs SHAC (Theorem 1)

Produced by `tools/study_grad_variance.py` (each task's section states the exact command).
At a fixed policy, each seed gives one policy-gradient estimate (path derivative through
`env.transition`, averaged over the env batch, random initial states from `env.reset(seed)` and
fresh reparameterised Gaussian action noise). Reported: **trace of the covariance** of the
flattened gradient over seeds (± bootstrap standard error), the squared norm of the mean
gradient, and the cosine between each estimator's mean gradient and SHAC's at the longest
horizon. SHAC(h) = sum_{t<h} gamma^t r_t + gamma^h V(s_h); MIX(h, lambda) = the lambda-return R_0
of the same window (eq. 2/3 of the paper, docs/method.md; SHAC is MIX with lambda = 1). All estimators at one
seed share initial states and noise. Policy: a fixed random tanh-MLP (64, 64) giving the mean,
action = tanh(mean + std * eps). Value: a fixed MLP (64, 64), briefly fitted to truncated
Monte-Carlo returns of that policy unless stated otherwise.

"""


def section_markdown(task: str, res: dict, command: str, elapsed: float) -> str:
    hs = res["horizons"]
    methods = list(res["table"])
    lines = [f"<!-- task:{task} begin -->", f"## {task}", "", f"Command: `{command}`", ""]
    vf = res["value_fit"]
    vdesc = (f"fitted for its MSE to {vf['n_targets']} truncated MC returns (target var {vf['target_var']:.3g}, "
             f"final MSE {vf['mse']:.3g})" if vf else "random init (not fitted)")
    lines += [f"num_envs {res['num_envs']}, state_dim {res['state_dim']}, {res['n_seeds']} seeds, gamma {res['gamma']}, "
              f"policy std {res['std']}, {res['n_params']} policy parameters; value {vdesc}; run time {elapsed:.0f} s.", ""]
    lines += ["Trace of gradient covariance (± bootstrap s.e.):", ""]
    lines.append("| h | " + " | ".join(methods) + " |")
    lines.append("|---" * (len(methods) + 1) + "|")
    for h in hs:
        row = [f"{res['table'][m][str(h)]['trace_cov']:.4g} ± {res['table'][m][str(h)]['se']:.2g}" for m in methods]
        lines.append(f"| {h} | " + " | ".join(row) + " |")
    lines += ["", "Variance ratio MIX / SHAC at the same h:", ""]
    mix = [m for m in methods if m != "SHAC"]
    lines.append("| h | " + " | ".join(mix) + " |")
    lines.append("|---" * (len(mix) + 1) + "|")
    for h in hs:
        shac = res["table"]["SHAC"][str(h)]["trace_cov"]
        lines.append(f"| {h} | " + " | ".join(f"{res['table'][m][str(h)]['trace_cov'] / shac:.3g}" for m in mix) + " |")
    lines += ["", "Heavy tails: median over seeds of ||g - median g||^2 (robust spread) and, in brackets, the "
              "largest single seed's share of the summed squared deviations:", ""]
    lines.append("| h | " + " | ".join(methods) + " |")
    lines.append("|---" * (len(methods) + 1) + "|")
    for h in hs:
        row = [f"{res['table'][m][str(h)]['median_sq_dev']:.4g} ({res['table'][m][str(h)]['top_share']:.2f})"
               for m in methods]
        lines.append(f"| {h} | " + " | ".join(row) + " |")
    lines += ["", "Signal and noise-to-signal: S = ||mean g||^2 - trCov / n (unbiased estimate of ||E g||^2) and, in "
              "brackets, trCov / S, the noise-to-signal ratio of one estimate; 'n.r.' = the mean gradient is not "
              "resolved at this number of seeds (S <= trCov / (4 n)):", ""]
    lines.append("| h | " + " | ".join(methods) + " |")
    lines.append("|---" * (len(methods) + 1) + "|")
    n = res["n_seeds"]
    for h in hs:
        row = []
        for m in methods:
            st = res["table"][m][str(h)]
            sig = st["mean_sq"] - st["trace_cov"] / n
            row.append(f"{sig:.3g} ({st['trace_cov'] / sig:.3g})" if sig > st["trace_cov"] / (4 * n) else "n.r.")
        lines.append(f"| {h} | " + " | ".join(row) + " |")
    lines += ["", f"<!-- data: {json.dumps(res)} -->", f"<!-- task:{task} end -->", ""]
    return "\n".join(lines)


def write_report(task: str, res: dict, command: str, elapsed: float, md_path: Path, png_path: Path,
                 notes_marker="<!-- notes -->"):
    old = md_path.read_text() if md_path.exists() else ""
    sections = {m.group("task"): m.group(0) for m in SECTION_RE.finditer(old)}
    notes = old.split(notes_marker, 1)[1] if notes_marker in old else "\n"
    sections[task] = section_markdown(task, res, command, elapsed)
    order = sorted(sections, key=lambda t: (t != "toy-pendulum", t))
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(HEADER + "![gradient variance](study_grad_variance.png)\n\n" + "\n".join(sections[t] for t in order)
                       + "\n" + notes_marker + notes)
    data = {}
    for t in order:
        m = DATA_RE.search(sections[t])
        if m:
            data[t] = json.loads(m.group("json"))
    plot(data, png_path)


def plot(data: dict, png_path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(data)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.0), squeeze=False)
    for ax, (task, res) in zip(axes[0], data.items()):
        hs = res["horizons"]
        for m, rows in res["table"].items():
            y = np.array([rows[str(h)]["trace_cov"] for h in hs])
            se = np.array([rows[str(h)]["se"] for h in hs])
            style = dict(color="k", lw=2.2, marker="s") if m == "SHAC" else dict(marker="o")
            ax.errorbar(hs, y, yerr=se, label=m.replace("MIX-", "MIX λ="), capsize=3, **style)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("horizon h")
        ax.set_ylabel("tr Cov[∇J]  over seeds")
        ax.set_title(f"{task} ({res['n_seeds']} seeds, {res['num_envs']} envs)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="toy-pendulum", help="toy-pendulum or any mbmix_taichi task")
    ap.add_argument("--task-option", action="append", default=[], help="key=value option for mt.make (repeatable)")
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=None, help="gradient samples (default 128, quick 16)")
    ap.add_argument("--horizons", default="4,8,16,32,64")
    ap.add_argument("--lambdas", default="0.9,0.95,0.98")
    ap.add_argument("--gamma", type=float, default=0.99)
    ap.add_argument("--std", type=float, default=0.5, help="policy noise std (pre-tanh)")
    ap.add_argument("--value", choices=["fit", "random"], default="fit")
    ap.add_argument("--fit-len", type=int, default=64, help="rollout length for the value fit")
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (small tensors: 1 is fastest)")
    ap.add_argument("--quick", action="store_true", help="few seeds and short horizons (smoke test)")
    ap.add_argument("--md", default=str(DOCS / "study_grad_variance.md"))
    ap.add_argument("--png", default=str(DOCS / "study_grad_variance.png"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    horizons = [int(x) for x in args.horizons.split(",")]
    if args.quick:
        horizons = [h for h in horizons if h <= 16] or horizons[:2]
    n_seeds = args.seeds or (16 if args.quick else 128)
    lambdas = [float(x) for x in args.lambdas.split(",")]
    try:
        options = parse_task_options(args.task_option)
    except MbmixError as exc:
        raise SystemExit(f"error: {exc}") from None
    t0 = time.time()
    env = make_task(args.task, args.num_envs, 0, args.dtype, options)
    print(f"task {args.task} {options}: obs_dim {env.obs_dim}, act_dim {env.act_dim}, num_envs {env.num_envs}")
    res = run_study(env, horizons, lambdas, n_seeds, gamma=args.gamma, value_mode=args.value, std=args.std,
                    fit_len=args.fit_len)
    res["options"] = options
    elapsed = time.time() - t0
    methods = list(res["table"])
    print(f"\ntrace of gradient covariance over {n_seeds} seeds (task {args.task}):")
    print("h".rjust(4) + "".join(m.rjust(14) for m in methods))
    for h in horizons:
        print(str(h).rjust(4) + "".join(f"{res['table'][m][str(h)]['trace_cov']:14.4g}" for m in methods))
    command = "python tools/study_grad_variance.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report(args.task, res, command.strip(), elapsed, Path(args.md), Path(args.png))
    print(f"wrote {args.md} and {args.png} ({elapsed:.0f} s)")
    return res


if __name__ == "__main__":
    main()
