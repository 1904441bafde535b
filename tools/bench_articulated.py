"""Benchmark of the articulated simulator: control steps/s per task at 1, 16 and 64 envs
(forward only, and forward with the VJP), exact full one-step Jacobians/s, and MuJoCo's
mjd_transitionFD Jacobians/s for the same model and control step side by side (one FD
Jacobian per substep, chained: A = A_S ... A_1, B = sum_k A_S ... A_{k+1} B_k).

    python tools/bench_articulated.py [--tasks cartpole-swingup,hopper,cheetah,ant]
                                      [--envs 1,16,64] [--out docs/benchmarks_articulated.md]

Compile time is excluded (one warm-up call per kernel); the Taichi offline cache makes later
runs start fast. Float64 unless --dtype float32.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch


NOTES = """
Notes:

- Launches per control step: models whose substep graph fits one kernel (cart-pole, hopper)
  run a whole control step in ONE kernel launch; larger ones are split into chunks (cheetah 2,
  ant 8, humanoid 17 per substep) because Taichi 1.7's compile time grows quadratically with
  kernel size, so they pay substeps x chunks launches (~100-200 us each on this CPU). That
  launch overhead, not arithmetic, dominates cheetah/ant/humanoid at 1 env.
- Jacobians use one (env, probe) thread per column (ds + da probes, all substeps); forward+VJP
  recomputes each chunk's primal from the tape.
- First-use compile times (cold Taichi offline cache, 2 cores, forward + VJP + Jacobian
  kernels): cart-pole/hopper a few seconds, cheetah ~15 s, ant ~80 s, humanoid ~4-5 min;
  cached runs start in under a second per kernel.
"""


def _rate(fn, min_time=1.0, min_reps=3):
    fn()
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        el = time.perf_counter() - t0
        if el >= min_time and reps >= min_reps:
            return reps / el


def mujoco_fd_rate(xml_path, substeps, min_time=1.0):
    import mujoco
    mm = mujoco.MjModel.from_xml_path(xml_path)
    d = mujoco.MjData(mm)
    nv, nu = mm.nv, mm.nu
    rng = np.random.default_rng(0)
    d.ctrl[:] = rng.uniform(-0.5, 0.5, nu)
    mujoco.mj_forward(mm, d)
    A = np.zeros((2 * nv, 2 * nv))
    B = np.zeros((2 * nv, nu))

    def one():
        At = np.eye(2 * nv)
        Bt = np.zeros((2 * nv, nu))
        d2 = mujoco.MjData(mm)
        d2.qpos[:] = d.qpos
        d2.qvel[:] = d.qvel
        d2.ctrl[:] = d.ctrl
        for _ in range(substeps):
            mujoco.mjd_transitionFD(mm, d2, 1e-6, True, A, B, None, None)
            At = A @ At
            Bt = A @ Bt + B
            mujoco.mj_step(mm, d2)
        return At, Bt

    return _rate(one, min_time), mm.opt.timestep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="cartpole-swingup,hopper,cheetah,ant")
    ap.add_argument("--envs", default="1,16,64")
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import mbmix_taichi as mt
    from mbmix_taichi.tasks._rigid import asset

    envs = [int(x) for x in args.envs.split(",")]
    rows = []
    for task in args.tasks.split(","):
        for n in envs:
            env = mt.make(task, num_envs=n, seed=0, dtype=args.dtype)
            sim = env.sim
            s = env.get_state()
            a = torch.rand(n, env.act_dim, dtype=env.dtype) * 2 - 1
            c = env.task.control(a).contiguous()
            cot = torch.randn_like(s)

            def fwd():
                sim.step(s, c)

            def fwd_vjp():
                _, tape = sim.step(s, c, record=True)
                sim.vjp_tape(tape, cot)

            def jac():
                sim.jacobian(s, c)

            l0 = sim.launches
            sim.step(s, c)
            lps = sim.launches - l0
            f = _rate(fwd, args.min_time)
            fv = _rate(fwd_vjp, args.min_time)
            j = _rate(jac, args.min_time) * n
            rows.append((task, n, sim.substeps, lps, f * n, fv * n, j))
            print(f"{task:18s} N={n:3d} launches/step={lps:4d} steps/s fwd={f * n:10.1f} fwd+vjp={fv * n:10.1f} "
                  f"jacobians/s={j:9.1f}", flush=True)
    mj = []
    for task in args.tasks.split(","):
        env = mt.make(task, num_envs=1, seed=0, dtype=args.dtype)
        path = getattr(env.task.model, "source", "")
        r, h = mujoco_fd_rate(path, env.sim.substeps, args.min_time)
        mj.append((task, env.sim.substeps, r))
        print(f"{task:18s} mujoco mjd_transitionFD chained over {env.sim.substeps} substeps: {r:9.1f} jacobians/s",
              flush=True)
    if args.out:
        cmd = "python tools/bench_articulated.py " + " ".join(argv if argv is not None else sys.argv[1:])
        lines = ["# Articulated simulator benchmark", "",
                 f"Command: `{cmd}`", "",
                 f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
                 f"Python {platform.python_version()}, torch {torch.__version__}, dtype {args.dtype}, Taichi CPU (x64).",
                 "Rates are control steps (dt = 1/60 s, all substeps) per second summed over the batch; "
                 "Jacobians are exact full one-step Jacobians ([ds, ds] and [ds, da]) per second. "
                 "Compile time excluded.", "",
                 "| task | envs | substeps | launches/step | steps/s forward | steps/s forward+VJP | Jacobians/s |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for t, n, S, lps, f, fv, j in rows:
            lines.append(f"| {t} | {n} | {S} | {lps} | {f:.1f} | {fv:.1f} | {j:.1f} |")
        lines += ["", "MuJoCo (single thread) for the same model file and control step: `mjd_transitionFD` "
                  "(centred finite differences, eps 1e-6) once per substep, chained into one control-step Jacobian. "
                  "MuJoCo's dynamics differ (its own contact model), so this compares cost, not values.", "",
                  "| task | substeps | MuJoCo FD Jacobians/s |", "|---|---:|---:|"]
        for t, S, r in mj:
            lines.append(f"| {t} | {S} | {r:.1f} |")
        lines.append(NOTES)
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        print("wrote", args.out)


if __name__ == "__main__":
    main()
