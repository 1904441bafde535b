"""Open-loop trajectory optimisation with the simulator's exact gradients (a reference, not a learner).

The actions of one episode from the task's reset state are free parameters u [T, N, act_dim];
the env acts tanh(u). Adam ascends the episode return, differentiated through every control
step with `env.transition` (the simulator's exact VJP). This is the upper reference row of the
cloth tables: what the exact gradient reaches when no policy has to generalise.
"""
from __future__ import annotations

import time

import torch


def rollout(env, u: torch.Tensor, state0: torch.Tensor):
    """(return [N], final state [N, ds]) of acting tanh(u[t]) from state0 (differentiable)."""
    s, ret = state0, torch.zeros(state0.shape[0], dtype=state0.dtype)
    for t in range(u.shape[0]):
        a = torch.tanh(u[t])
        s2 = env.transition(s, a)
        ret = ret + env.reward(s, a, s2)
        s = s2
    return ret, s


def optimise(env, iterations: int = 200, lr: float = 0.05, init=0.0, seed: int = 0,
             log=None) -> dict:
    """Optimise one open-loop action sequence per env (each env its own reset state).

    `init`: the initial pre-squash actions u, a number or a tensor broadcastable to [T, N, da].
    Returns {"actions": tanh(u) [T, N, da], "returns": [iterations + 1] mean returns (before each
    update and after the last), "return": final [N], "score": final [N] (if the task reports one),
    "wall_time", "cpu_time"}."""
    env.reset(seed)
    state0 = env.get_state()
    shape = (env.episode_length, env.num_envs, env.act_dim)
    u = (torch.as_tensor(init, dtype=env.dtype) + torch.zeros(shape, dtype=env.dtype)).clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    returns = []
    t0, c0 = time.perf_counter(), time.process_time()
    for it in range(iterations):
        ret, _ = rollout(env, u, state0)
        returns.append(float(ret.detach().mean()))
        opt.zero_grad()
        (-ret.sum()).backward()
        if not torch.isfinite(u.grad).all():
            raise FloatingPointError(f"non-finite trajectory gradient at iteration {it}")
        opt.step()
        if log is not None and (it % 20 == 0 or it == iterations - 1):
            log(f"trajopt iteration {it}: return {returns[-1]:.3f}")
    with torch.no_grad():
        ret, s = rollout(env, u, state0)
    returns.append(float(ret.mean()))
    out = {"actions": torch.tanh(u.detach()), "returns": returns, "return": ret,
           "wall_time": time.perf_counter() - t0, "cpu_time": time.process_time() - c0}
    m = env.metrics(s)
    if "score" in m:
        out["score"] = m["score"]
    return out
