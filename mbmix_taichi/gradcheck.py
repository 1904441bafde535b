"""Checks a task's exact derivatives: float64 central differences against the VJP, JVP and
Jacobian of one control step, at a state reached by random actions (`mbmix-taichi gradcheck`).

Contact, friction and the pickers' ground clamp make a control step piecewise smooth. A
central difference (f(x + eps t) - f(x - eps t)) / 2 eps that straddles a kink is not a
derivative (its error does not shrink with eps), and a small eps is swamped by rounding
(the error grows as 1/eps, worst for small entries such as velocity columns). So each
quantity, and each Jacobian column on its own, is compared at several steps and the best
agreement counts: the step that keeps the difference on one smooth piece and above rounding.
A Jacobian column's error is relative to its largest entry, floored at 1e-3 of the largest
entry of the whole Jacobian (an almost-zero column otherwise measures only rounding).
"""
from __future__ import annotations

import math

DEFAULT_EPS = (1e-5, 1e-6, 1e-7, 1e-8)
DEFAULT_TOL = 1e-5


def _best(errs, steps):
    """(smallest finite error, its step); (nan, None) when no error is finite."""
    pairs = [(e, h) for e, h in zip(errs, steps) if math.isfinite(e)]
    return min(pairs) if pairs else (float("nan"), None)


def check(task: str, num_envs: int = 2, seed: int = 0, warmup: int = 3, eps=DEFAULT_EPS,
          jacobian_columns: int = 8, **options) -> dict:
    """Relative max errors of a task's step derivatives against central differences.

    Returns {"state_dim", "act_dim", "eps": steps, "jvp"/"vjp": {"best", "eps", "all"},
    "jacobian": {"best" (worst column's best), "eps" (that column's step), "columns":
    [(label, best, step)]}, "dot": <u, J v> vs <J^T u, v>}.
    """
    import torch

    import mbmix_taichi as mt
    from .errors import OptionError

    steps = [float(e) for e in (eps if isinstance(eps, (list, tuple)) else [eps])]
    if not steps or not all(math.isfinite(e) and e > 0 for e in steps):
        raise OptionError(f"finite-difference steps must be positive numbers, got {steps}")
    env = mt.make(task, num_envs=num_envs, seed=seed, dtype="float64", **options)
    g = torch.Generator().manual_seed(seed)

    def draw(fn, shape):  # on the CPU (the seed gives the same numbers everywhere), used where the env is
        return fn(shape, generator=g, dtype=torch.float64).to(env.device)

    def rand_action():
        return draw(torch.rand, (num_envs, env.act_dim)) * 1.6 - 0.8

    for _ in range(warmup):
        env.step(rand_action())
    s, a = env.get_state(), rand_action()

    def fd(ts, ta, h):
        return (env.transition(s + h * ts, a + h * ta) - env.transition(s - h * ts, a - h * ta)) / (2 * h)

    def rel(x, y):
        return ((x - y).abs().max() / y.abs().max().clamp_min(1e-12)).item()

    ts, ta, u = draw(torch.randn, s.shape), draw(torch.randn, a.shape), draw(torch.randn, s.shape)
    jv = env.jvp(s, a, ts, ta)
    g_s, g_a = env.vjp(s, a, u)
    vjp_dir = (g_s * ts).sum(1) + (g_a * ta).sum(1)
    fds = [fd(ts, ta, h) for h in steps]
    jvp_errs = [rel(jv, f) for f in fds]
    vjp_errs = [rel(vjp_dir, (u * f).sum(1)) for f in fds]

    J_s, J_a = env.jacobian(s, a)
    # a column's error is relative to its largest entry, but to no less than 1e-3 of the
    # Jacobian's largest: a column that is almost zero (a particle in static friction, whose
    # velocity barely matters) would otherwise measure only the rounding of the differences
    floor = 1e-3 * max(J_s.abs().max().item(), J_a.abs().max().item())

    def rel_col(x, y):
        return ((x - y).abs().max() / y.abs().max().clamp_min(max(floor, 1e-12))).item()

    cols = torch.randperm(env.state_dim, generator=g)[:jacobian_columns].tolist()
    columns = []
    for c in cols:
        e = torch.zeros_like(s)
        e[:, c] = 1
        errs = [rel_col(J_s[:, :, c], fd(e, torch.zeros_like(a), h)) for h in steps]
        columns.append((f"state {c}", *_best(errs, steps)))
    for c in range(env.act_dim):
        e = torch.zeros_like(a)
        e[:, c] = 1
        errs = [rel_col(J_a[:, :, c], fd(torch.zeros_like(s), e, h)) for h in steps]
        columns.append((f"action {c}", *_best(errs, steps)))
    worst = max(columns, key=lambda col: col[1] if math.isfinite(col[1]) else math.inf)
    return {"state_dim": env.state_dim, "act_dim": env.act_dim, "eps": steps,
            "jvp": dict(zip(("best", "eps"), _best(jvp_errs, steps)), all=jvp_errs),
            "vjp": dict(zip(("best", "eps"), _best(vjp_errs, steps)), all=vjp_errs),
            "jacobian": {"best": worst[1], "eps": worst[2], "column": worst[0], "columns": columns},
            "dot": rel((u * jv).sum(1), vjp_dir)}
