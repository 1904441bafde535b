"""Simulator benchmarks (the `mbmix-taichi bench` command prints them).

Two modes:

- task mode (default): for a task and several env counts, control steps per second of the
  forward step, forward + VJP, JVP, and full Jacobians; the backward/forward time ratio;
  and kernel launches per control step (python -> taichi calls, counted by the simulator).
- peer mode (`--peer`): the public workload of Warp's cloth benchmark
  (warp/examples/benchmarks/benchmark_cloth.py): a d x d grid, spacing 0.1, flat, two corners
  pinned, particle mass 0.1, stretch springs to x-1 / y-1, bend springs to x-2 / y-2, shear on
  both diagonals, ke 1000, kd 10, semi-implicit Euler, gravity, no collision, a frame of 1/60 s
  in 16 substeps, timed including reading the positions back; million particle-substeps/s.

Timings are the best of several repeats (the machine may be shared); ratios are measured
side by side in one run.
"""
from __future__ import annotations

import platform
import time


def _best(fn, repeats: int = 5, inner: int = 3) -> float:
    fn()  # warm-up (compiles)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def bench_task(task: str, envs=(1, 16, 64), jacobian_envs=(1, 16), dtype="float32", repeats: int = 5,
               **options) -> list[dict]:
    import torch

    import mbmix_taichi as mt

    rows = []
    for n in envs:
        env = mt.make(task, num_envs=n, seed=0, dtype=dtype, **options)
        sim = env.sim
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            env.step(torch.rand(n, env.act_dim, generator=g, dtype=env.dtype) * 2 - 1)
        s = env.get_state()
        c = env.task.control(torch.rand(n, env.act_dim, generator=g, dtype=env.dtype) * 2 - 1).contiguous()
        cot = torch.randn(s.shape, generator=g, dtype=env.dtype)
        ts = torch.randn(s.shape, generator=g, dtype=env.dtype)
        tc = torch.randn(c.shape, generator=g, dtype=env.dtype)
        l0 = sim.launches
        sim.step(s, c)
        launches_fwd = sim.launches - l0
        t_fwd = _best(lambda: sim.step(s, c), repeats)
        _, tape = sim.step(s, c, record=True)
        t_bwd = _best(lambda: sim.vjp_tape(tape, cot), repeats)
        t_fwd_rec = _best(lambda: sim.step(s, c, record=True), repeats)
        l0 = sim.launches
        sim.vjp(s, c, cot)
        launches_vjp = sim.launches - l0
        t_jvp = _best(lambda: sim.jvp(s, c, ts, tc), repeats)
        row = {"task": task, "envs": n, "state_dim": env.state_dim, "fwd": n / t_fwd,
               "fwd_vjp": n / (t_fwd_rec + t_bwd), "jvp": n / t_jvp, "bwd_over_fwd": t_bwd / t_fwd_rec,
               "launches_fwd": launches_fwd, "launches_fwd_vjp": launches_vjp, "jac": None}
        if n in jacobian_envs:
            t_jac = _best(lambda: sim.jacobian(s, c), repeats=2, inner=1)
            row["jac"] = n / t_jac
        rows.append(row)
    return rows


def bench_peer(sizes=(32, 64, 128), frames: int = 10, repeats: int = 3, num_cloths: int = 1,
               layout: str = "auto") -> list[dict]:
    import torch

    from . import _ti
    from .physics.cloth import ClothSim
    from .physics.cloth_model import grid

    _ti.init("auto")
    rows = []
    for d in sizes:
        m = grid(d, d, 0.1, ke=(1000.0,) * 3, kd=(10.0,) * 3, mass=0.1)
        sim = ClothSim(m, held=[[0], [(d - 1) * d]], dt=1 / 60, substeps=16, gravity=(0.0, 0.0, -9.8),
                       drag=0.0, friction=0.0, ground=None, dtype=torch.float32, device=_ti.device(),
                       layout=layout)
        x = torch.tensor(m.positions, dtype=torch.float32).expand(num_cloths, -1, -1)
        s0 = sim.make_state(x)
        c = torch.zeros(num_cloths, 6, device=sim.device)
        state = [s0]

        def frame():
            state[0], _ = sim.step(state[0], c)
            return state[0].cpu().numpy()  # read the positions back, as Warp's benchmark does

        l0 = sim.launches
        frame()
        launches = sim.launches - l0
        t = _best(frame, repeats, inner=frames)
        used = "wide" if sim.uses_wide_layout(num_cloths) else "fused"
        rows.append({"d": d, "particles": d * d, "springs": m.num_springs, "cloths": num_cloths, "layout": used,
                     "frame_ms": t * 1e3, "mps": num_cloths * d * d * 16 / t / 1e6, "launches": launches})
    return rows


def task_table(rows) -> str:
    out = ["| task | envs | state dim | fwd steps/s | fwd+VJP steps/s | JVP steps/s | Jacobians/s | "
           "VJP time / fwd time | launches per step (fwd, fwd+VJP) |", "|" + "---|" * 9]
    for r in rows:
        jac = f"{r['jac']:.2f}" if r["jac"] else "-"
        out.append(f"| {r['task']} | {r['envs']} | {r['state_dim']} | {r['fwd']:.0f} | {r['fwd_vjp']:.0f} | "
                   f"{r['jvp']:.0f} | {jac} | {r['bwd_over_fwd']:.2f} | {r['launches_fwd']}, {r['launches_fwd_vjp']} |")
    return "\n".join(out)


def peer_table(rows) -> str:
    out = ["| d | particles | springs | cloths at once | kernel layout | frame ms | M particle-substeps/s | "
           "launches per frame |", "|" + "---|" * 8]
    for r in rows:
        out.append(f"| {r['d']} | {r['particles']} | {r['springs']} | {r['cloths']} | {r['layout']} | {r['frame_ms']:.2f} | "
                   f"{r['mps']:.1f} | {r['launches']} |")
    return "\n".join(out)


def machine() -> str:
    import os

    import torch

    import taichi as ti

    from . import _ti

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, taichi {'.'.join(map(str, ti.__version__))} "
            f"arch {_ti.current_arch()}, torch {torch.__version__}, python {platform.python_version()}")
