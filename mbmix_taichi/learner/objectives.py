"""The policy objective of trajectory-length mixing and the critic targets.

All functions take time-major tensors: ``rewards[t]`` is r_t, ``next_values[t]`` is
V(s_{t+1}) (0 where the episode terminated, V of the pre-reset state where it was cut by a
time limit), ``dones[t]`` says the episode ended at step t (no bootstrap through it).
"""
from __future__ import annotations

import torch


def step_lambdas(h: int, lam: float, mix_interval: int = 1) -> list[float]:
    """lambda_t used at the boundary after step t (t = 0..h-2).

    With mix interval k only horizons H in {k, 2k, ...} are mixed (docs/method.md, "Objectives");
    renormalising the weights (1 - lam) lam^(H-1) over that set gives (1 - lam^k) lam^(k(j-1))
    for H = jk, i.e. the ordinary lambda-return over blocks of k steps with lambda lam^k.
    Inside a block the recursion passes the return through unchanged (lambda_t = 1).
    """
    k = int(mix_interval)
    return [lam ** k if (t + 1) % k == 0 else 1.0 for t in range(h - 1)]


def lambda_returns(rewards, next_values, dones, gamma: float, lam: float, mix_interval: int = 1):
    """R_t = r_t + gamma [ (1 - lam_t) V(s_{t+1}) + lam_t R_{t+1} ],   R_h = V(s_h).

    This is eq. 3 (docs/method.md) over a finite window with the tail weight on J_h, i.e. the
    weighted sum of eq. 2 (see `j_mix_direct`), and Algorithm 1 line 9's target V_hat(s_t)
    when mix_interval = 1. Returns R [h, B] (R_t for every t; differentiable).
    """
    h = rewards.shape[0]
    lams = step_lambdas(h, lam, mix_interval)
    out = [None] * h
    nxt = next_values[h - 1]  # R_h = V(s_h)
    for t in range(h - 1, -1, -1):
        if t == h - 1:
            cont = next_values[t]
        else:
            cont = (1.0 - lams[t]) * next_values[t] + lams[t] * nxt
        cont = torch.where(dones[t], next_values[t], cont)  # episode ended: bootstrap only
        nxt = rewards[t] + gamma * cont
        out[t] = nxt
    return torch.stack(out)


def j_mix(rewards, next_values, dones, gamma: float, lam: float, mix_interval: int = 1):
    """Policy objective (to maximise): eq. 3 (docs/method.md) for the window's first state, plus the
    same for every episode that starts inside the window, averaged over envs and steps.

    With lam = 1 it is SHAC's h-step return with terminal value (SVG(inf) when V = 0);
    with lam = 0 it is SVG(1), r_0 + gamma V(s_1).
    """
    h, b = rewards.shape
    ret = lambda_returns(rewards, next_values, dones, gamma, lam, mix_interval)
    starts = torch.ones_like(dones)
    starts[1:] = dones[:-1]
    return (ret * starts).sum() / (b * h)


def j_h_direct(rewards, next_values, gamma: float, H: int):
    """J_H = sum_{t<H} gamma^t r_t + gamma^H V(s_H)  (eq. 1), no episode ends in the window."""
    disc = gamma ** torch.arange(H, dtype=rewards.dtype)
    return (disc[:, None] * rewards[:H]).sum(0) + gamma ** H * next_values[H - 1]


def j_mix_direct(rewards, next_values, gamma: float, lam: float, mix_interval: int = 1):
    """The paper's weighted sum of J_H (eq. 2) over H in {k, 2k, ...} inside a window of h
    steps, weights (1 - lam^k) lam^(k(j-1)) and the remaining tail weight on J_h. For tests."""
    h = rewards.shape[0]
    k = mix_interval
    total, remaining = 0.0, 1.0
    hs = [H for H in range(k, h, k)]
    for j, H in enumerate(hs, start=1):
        w = (1 - lam ** k) * lam ** (k * (j - 1))
        total = total + w * j_h_direct(rewards, next_values, gamma, H)
        remaining -= w
    return total + remaining * j_h_direct(rewards, next_values, gamma, h)
