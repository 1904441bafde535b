"""Our planar DiffRL tasks against DiffRL's own dflex environments, rollout by rollout.

    python tools/compare_dflex.py record --diffrl PATH --task hopper --mm 16 --out tests/data/dflex_hopper_mm16.npz
    python tools/compare_dflex.py compare tests/data/dflex_hopper_mm16.npz [--dtype float64]

``record`` runs DiffRL's environment (``envs/hopper.py`` / ``envs/cheetah.py`` of a NVlabs/DiffRL
checkout, its dflex on the CPU, float32) from a stochastic reset (torch seed 3) for ``--steps``
control steps of uniform random actions in [-1, 1] (numpy seed 0), with early termination off
and ``MM_caching_frequency = --mm``, and writes the states (dflex's ``joint_q, joint_qd``, the
layout of ours for these planar robots), actions and rewards to an npz file (plain arrays, read
back without pickle). DiffRL targets Python 3.8 with gym, urdfpy and NumPy < 1.24; this tool
stubs the two packages (only their import is needed for these tasks) and aliases ``np.Inf``.
On Python >= 3.9 dflex's kernel generator also needs ``node.slice.value`` read as
``node.slice`` in ``dflex/dflex/adjoint.py`` (``ast.Index`` is gone): docs/locomotion.md says
how the stored files were made.

``compare`` runs our task (``mt.make(task, mass_matrix_every=...)``) from the recorded initial
state with the same actions, and prints the largest state and reward differences over the first
T steps, for the recorded caching setting and, as the scale of a real dynamics difference, for
the other one (1 against the recorded k).
"""
from __future__ import annotations

import argparse
import os
import sys
import types

import numpy as np

TASKS = {"hopper": ("envs.hopper", "HopperEnv"), "cheetah": ("envs.cheetah", "CheetahEnv")}
WINDOWS = (1, 10, 50, 100, 200)


def record(diffrl: str, task: str, mm: int, steps: int, out: str) -> None:
    import importlib

    import torch
    sys.modules.setdefault("gym", types.ModuleType("gym"))
    spaces = types.ModuleType("gym.spaces")
    spaces.Box = lambda *a, **k: None
    sys.modules["gym"].spaces = spaces
    sys.modules["gym.spaces"] = spaces
    sys.modules.setdefault("urdfpy", types.ModuleType("urdfpy"))
    if not hasattr(np, "Inf"):
        np.Inf = np.inf
    root = os.path.abspath(diffrl)
    sys.path[:0] = [root, os.path.join(root, "dflex")]
    mod, cls = TASKS[task]
    Env = getattr(importlib.import_module(mod), cls)
    env = Env(render=False, device="cpu", num_envs=1, seed=0, episode_length=100000, no_grad=True,
              stochastic_init=True, MM_caching_frequency=mm, early_termination=False)
    torch.manual_seed(3)
    env.reset()
    acts = np.random.default_rng(0).uniform(-1, 1, size=(steps, env.num_actions)).astype(np.float32)

    def state():
        return torch.cat([env.state.joint_q.view(1, -1), env.state.joint_qd.view(1, -1)], -1)[0].detach().numpy().copy()

    qs, rews = [state()], []
    for t in range(steps):
        _obs, rew, _done, _extras = env.step(torch.tensor(acts[t:t + 1]))
        qs.append(state())
        rews.append(float(rew[0].detach()))
    np.savez(out, task=np.array(task), mm=np.array(mm), states=np.array(qs), actions=acts, rewards=np.array(rews))
    print(f"wrote {out}: {task}, MM_caching_frequency {mm}, {steps} steps, dflex return {sum(rews):.2f}")


def rollout(task: str, mm: int, x0: np.ndarray, actions: np.ndarray, dtype: str = "float64"):
    """Our task's states [T + 1, ds] and rewards [T] from x0 under the actions."""
    import torch

    import mbmix_taichi as mt
    opts = {"early_termination": False} if task == "hopper" else {}
    env = mt.make(task, num_envs=1, dtype=dtype, seed=0, stochastic_init=False, mass_matrix_every=mm, **opts)
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


def differences(rec: dict, mm: int, dtype: str = "float64") -> dict:
    """{T: (largest state difference, largest reward difference) over the first T steps}."""
    states, rewards = rollout(str(rec["task"]), mm, rec["states"][0], rec["actions"], dtype)
    ds = np.abs(states[1:] - rec["states"][1:]).max(axis=1)
    dr = np.abs(rewards - rec["rewards"])
    return {T: (float(ds[:T].max()), float(dr[:T].max())) for T in WINDOWS if T <= len(ds)}


def compare(path: str, dtype: str) -> None:
    rec = load(path)
    k = int(rec["mm"])
    for mm in (k, 1 if k > 1 else 16):
        d = differences(rec, mm, dtype)
        print(f"{rec['task']}: ours mass_matrix_every={mm} ({dtype}) against dflex MM_caching_frequency={k}, "
              "largest |state| and |reward| differences over the first T steps: "
              + "; ".join(f"T={T}: {a:.2g}, {b:.2g}" for T, (a, b) in d.items()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--diffrl", required=True, help="a NVlabs/DiffRL checkout")
    r.add_argument("--task", choices=sorted(TASKS), required=True)
    r.add_argument("--mm", type=int, default=16)
    r.add_argument("--steps", type=int, default=200)
    r.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("file")
    c.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    a = ap.parse_args(argv)
    if a.cmd == "record":
        record(a.diffrl, a.task, a.mm, a.steps, a.out)
    else:
        compare(a.file, a.dtype)


if __name__ == "__main__":
    main()
