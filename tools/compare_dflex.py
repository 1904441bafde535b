"""Our hopper, cheetah and ant against DiffRL's own dflex environments, rollout by rollout.

    python tools/compare_dflex.py record --diffrl PATH --task hopper --mm 16 --out tests/data/dflex_hopper_mm16.npz
    python tools/compare_dflex.py compare tests/data/dflex_hopper_mm16.npz [--dtype float64]

``record`` runs DiffRL's environment (``envs/hopper.py``, ``cheetah.py`` or ``ant.py`` of a
NVlabs/DiffRL checkout, its dflex on the CPU, float32) from a stochastic reset (torch seed 3) for
``--steps`` control steps of uniform random actions in [-1, 1] (numpy seed 0), with early
termination off and ``MM_caching_frequency = --mm``, and writes dflex's states (``joint_q,
joint_qd``), actions and rewards to an npz file (plain arrays, read back without pickle).
DiffRL targets Python 3.8 with gym, urdfpy and NumPy < 1.24; this tool stubs the two packages
(only their import is needed for these tasks) and aliases ``np.Inf``. On Python >= 3.9 dflex's
kernel generator also needs ``node.slice.value`` read as ``node.slice`` in
``dflex/dflex/adjoint.py`` (``ast.Index`` is gone): docs/locomotion.md says how the stored
files were made.

``compare`` runs our task (``mt.make(task, mass_matrix_every=...)``) from the recorded initial
state with the same actions, and prints the largest state and reward differences over the first
T steps, for the recorded caching setting and, as the scale of a real dynamics difference, for
the other one (1 against the recorded k). The planar robots' states have our layout; the ant's
free joint is converted (``to_ours``: dflex is y-up, its quaternion x y z w, its root velocity a
spatial twist), and the ant is compared with dflex's mass properties (``-o dflex_inertia=true``)
and with MuJoCo's.
"""
from __future__ import annotations

import argparse
import os
import sys
import types

import numpy as np

TASKS = {"hopper": ("envs.hopper", "HopperEnv"), "cheetah": ("envs.cheetah", "CheetahEnv"), "ant": ("envs.ant", "AntEnv"),
         "humanoid": ("envs.humanoid", "HumanoidEnv")}
#: the free-floating robots: their root is converted by to_ours, and they are also compared with
#: dflex's mass properties
FREE = {"ant": 15, "humanoid": 28}
WINDOWS = (1, 10, 50, 100, 200)
#: the VJP recorded: through VJP_STEPS control steps from the rollout's state VJP_START
VJP_START, VJP_STEPS = 20, 8


def diffrl_env_class(diffrl: str, task: str):
    """DiffRL's environment class for ``task`` from the checkout at ``diffrl``, with gym and urdfpy
    stubbed (only their import is needed) and ``np.Inf`` aliased."""
    import importlib

    sys.modules.setdefault("gym", types.ModuleType("gym"))
    spaces = types.ModuleType("gym.spaces")
    spaces.Box = lambda *a, **k: None
    sys.modules["gym"].spaces = spaces
    sys.modules["gym.spaces"] = spaces
    sys.modules.setdefault("urdfpy", types.ModuleType("urdfpy"))
    if not hasattr(np, "Inf"):
        np.Inf = np.inf
    root = os.path.abspath(diffrl)
    if not os.path.isdir(os.path.join(root, "dflex")):
        raise SystemExit(f"{diffrl!r} is not a DiffRL checkout (no dflex/ in it)")
    sys.path[:0] = [root, os.path.join(root, "dflex")]
    mod, cls = TASKS[task]
    return getattr(importlib.import_module(mod), cls)


def record(diffrl: str, task: str, mm: int, steps: int, out: str, action_scale: float = 1.0) -> None:
    import torch
    Env = diffrl_env_class(diffrl, task)
    import inspect
    kw = {"early_termination": False} if "early_termination" in inspect.signature(Env).parameters else {}
    env = Env(render=False, device="cpu", num_envs=1, seed=0, episode_length=100000, no_grad=False,
              stochastic_init=True, MM_caching_frequency=mm, **kw)
    torch.manual_seed(3)
    env.reset()
    acts = (action_scale * np.random.default_rng(0).uniform(-1, 1, size=(steps, env.num_actions))).astype(np.float32)

    def state():
        return torch.cat([env.state.joint_q.view(1, -1), env.state.joint_qd.view(1, -1)], -1)[0].detach().numpy().copy()

    qs, rews = [state()], []
    with torch.no_grad():
        for t in range(steps):
            _obs, rew, _done, _extras = env.step(torch.tensor(acts[t:t + 1]))
            qs.append(state())
            rews.append(float(rew[0].detach()))
    # dflex's VJP through VJP_STEPS control steps from the state after VJP_START steps (its tape
    # through torch autograd), for a fixed random cotangent of the last state
    x0 = torch.tensor(qs[VJP_START])
    nq = env.state.joint_q.numel()
    q0, qd0 = x0[:nq].clone().requires_grad_(True), x0[nq:].clone().requires_grad_(True)
    env.state = env.model.state()
    env.state.joint_q, env.state.joint_qd = q0, qd0
    vacts = torch.tensor(acts[VJP_START:VJP_START + VJP_STEPS], requires_grad=True)
    for t in range(VJP_STEPS):
        env.step(vacts[t:t + 1])
    cot = torch.tensor(np.random.default_rng(1).normal(size=len(qs[0])), dtype=torch.float32)
    (torch.cat([env.state.joint_q.view(-1), env.state.joint_qd.view(-1)]) * cot).sum().backward()
    vjp_state = torch.cat([q0.grad, qd0.grad]).numpy()
    np.savez(out, task=np.array(task), mm=np.array(mm), states=np.array(qs), actions=acts, rewards=np.array(rews),
             vjp_cotangent=cot.numpy(), vjp_state=vjp_state, vjp_actions=vacts.grad.numpy())
    print(f"wrote {out}: {task}, MM_caching_frequency {mm}, {steps} steps, dflex return {sum(rews):.2f}")


#: dflex's world is y-up: DiffRL rotates the z-up ant by -90 degrees about x (AntEnv.start_rot)
_RX90 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # dflex's frame -> ours


def _qmul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def _qmat(q):
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def to_ours(task: str, x: np.ndarray) -> np.ndarray:
    """A dflex state in our layout. Planar robots: the same. A free root (ant): dflex's
    (p, quat xyzw, joints | spatial twist (w, v at the world origin), joint rates), y-up, into
    MuJoCo's (p, quat wxyz, joints | body-origin velocity (world), angular velocity (body
    frame), joint rates), z-up."""
    if task not in FREE:
        return x
    nq = FREE[task]
    p, qd, joints = x[0:3], x[3:7], x[7:nq]
    w_s, v_s, rates = x[nq:nq + 3], x[nq + 3:nq + 6], x[nq + 6:]
    q = _qmul(np.array([np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0]), np.array([qd[3], qd[0], qd[1], qd[2]]))
    w = _RX90 @ w_s
    v = _RX90 @ (v_s + np.cross(w_s, p))
    return np.concatenate([_RX90 @ p, q, joints, v, _qmat(q).T @ w, rates])


def rollout(task: str, mm: int, x0: np.ndarray, actions: np.ndarray, dtype: str = "float64", **options):
    """Our task's states [T + 1, ds] and rewards [T] from x0 under the actions (`options`: more
    task options)."""
    import torch

    import mbmix_taichi as mt
    opts = {"early_termination": False} if task in ("hopper", "ant") else {}
    if task in FREE:
        opts["previous_action"] = False
    env = mt.make(task, num_envs=1, dtype=dtype, seed=0, stochastic_init=False, mass_matrix_every=mm, **opts, **options)
    sim, tk = env.sim, env.task
    s = torch.tensor(x0[None], dtype=sim.dtype)
    states, rewards = [s[0].numpy().copy()], []
    for t in range(len(actions)):
        a = torch.tensor(actions[t:t + 1], dtype=sim.dtype)
        s2, _ = sim.step(s, tk.control(a))
        rewards.append(float(tk.reward(s, a, s2)[0]))
        s = s2
        states.append(s[0].numpy().copy())
    return np.array(states), np.array(rewards)


def load(path: str) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def differences(rec: dict, mm: int, dtype: str = "float64", **options) -> dict:
    """{T: (largest state difference, largest reward difference) over the first T steps}."""
    task = str(rec["task"])
    ref = np.array([to_ours(task, x) for x in rec["states"]])
    states, rewards = rollout(task, mm, ref[0], rec["actions"], dtype, **options)
    ds = np.abs(states[1:] - ref[1:]).max(axis=1)
    dr = np.abs(rewards - rec["rewards"])
    return {T: (float(ds[:T].max()), float(dr[:T].max())) for T in WINDOWS if T <= len(ds)}


def vjp_difference(rec: dict, mm: int) -> tuple[float, float]:
    """Our VJP (float64, exact) against dflex's recorded one, through the same steps from the same
    state (planar robots): the largest differences relative to the largest entries, for the state
    and the actions."""
    import torch

    import mbmix_taichi as mt
    task = str(rec["task"])
    opts = {"early_termination": False} if task == "hopper" else {}
    env = mt.make(task, num_envs=1, dtype="float64", seed=0, mass_matrix_every=mm, **opts)
    s = torch.tensor(rec["states"][VJP_START][None], dtype=torch.float64, requires_grad=True)
    acts = torch.tensor(rec["actions"][VJP_START:VJP_START + VJP_STEPS], dtype=torch.float64, requires_grad=True)
    x = s
    for t in range(VJP_STEPS):
        x = env.transition(x, acts[t:t + 1])
    (x[0] * torch.tensor(rec["vjp_cotangent"], dtype=torch.float64)).sum().backward()
    gs, ga = s.grad[0].numpy(), acts.grad.numpy()
    return (float(np.abs(gs - rec["vjp_state"]).max() / np.abs(rec["vjp_state"]).max()),
            float(np.abs(ga - rec["vjp_actions"]).max() / np.abs(rec["vjp_actions"]).max()))


def compare(path: str, dtype: str) -> None:
    rec = load(path)
    k = int(rec["mm"])
    other = 1 if k > 1 else 16
    # the ant also with MuJoCo's mass properties (our default) against dflex's (dflex_inertia)
    settings = [(k, {}), (other, {})] if str(rec["task"]) not in FREE else \
        [(k, {"dflex_inertia": True}), (k, {"dflex_inertia": False}), (other, {"dflex_inertia": True})]
    for mm, options in settings:
        d = differences(rec, mm, dtype, **options)
        print(f"{rec['task']}: ours mass_matrix_every={mm} {options or ''} ({dtype}) against dflex "
              f"MM_caching_frequency={k}, largest |state| and |reward| differences over the first T steps: "
              + "; ".join(f"T={T}: {a:.2g}, {b:.2g}" for T, (a, b) in d.items()))
    if "vjp_state" in rec and str(rec["task"]) not in FREE:
        es, ea = vjp_difference(rec, k)
        print(f"{rec['task']}: VJP through {VJP_STEPS} control steps from step {VJP_START}, ours against dflex's, "
              f"largest difference / largest entry: state {es:.2g}, actions {ea:.2g}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--diffrl", required=True, help="a NVlabs/DiffRL checkout")
    r.add_argument("--task", choices=sorted(TASKS), required=True)
    r.add_argument("--mm", type=int, default=16)
    r.add_argument("--steps", type=int, default=200)
    r.add_argument("--out", required=True)
    r.add_argument("--action-scale", type=float, default=1.0, help="actions scale * U(-1, 1) (0: passive)")
    c = sub.add_parser("compare")
    c.add_argument("file")
    c.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    a = ap.parse_args(argv)
    if a.cmd == "record":
        record(a.diffrl, a.task, a.mm, a.steps, a.out, a.action_scale)
    else:
        compare(a.file, a.dtype)


if __name__ == "__main__":
    main()
