"""Microseconds per call of the articulated simulator's step, step + VJP and full Jacobian at a few
batch sizes (CPU and wall time, best of five 0.15 s windows), from a landed state (40 random steps).

    python tools/bench_small_batches.py [TASKS] [ENVS]
    python tools/bench_small_batches.py cartpole-swingup,hopper,cheetah,ant,humanoid 1,64

For fixed per-call costs (launches, Python) that tools/bench_articulated.py's rates fold in; run it
at two commits in turns to compare them.
"""
import sys
import time

import mbmix_taichi as mt  # noqa: F401  (before torch: it sets OMP_WAIT_POLICY)
import torch


def best_us(fn, windows=5, window=0.15):
    fn()
    cpu = wall = float("inf")
    for _ in range(windows):
        c0, w0, reps = time.process_time(), time.perf_counter(), 0
        while time.perf_counter() - w0 < window:
            fn()
            reps += 1
        cpu = min(cpu, (time.process_time() - c0) / reps)
        wall = min(wall, (time.perf_counter() - w0) / reps)
    return cpu * 1e6, wall * 1e6


def main():
    tasks = (sys.argv[1] if len(sys.argv) > 1 else "cartpole-swingup,hopper,cheetah,ant,humanoid").split(",")
    sizes = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1,64").split(",")]
    torch.set_num_threads(1)
    for task in tasks:
        for n in sizes:
            env = mt.make(task, num_envs=n, seed=0, dtype="float64")
            g = torch.Generator().manual_seed(1)
            for _ in range(40):
                env.step(torch.rand(n, env.act_dim, generator=g, dtype=env.dtype) * 2 - 1)
            s = env.get_state()
            c = env.task.control(torch.full((n, env.act_dim), 0.1, dtype=torch.float64))
            sim, cot = env.sim, torch.randn_like(s)

            def fwd_vjp():
                _, tape = sim.step(s, c, record=True)
                sim.vjp_tape(tape, cot)

            cells = [f"{k} {a:8.0f} / {b:8.0f}" for k, (a, b) in
                     (("step", best_us(lambda: sim.step(s, c))), ("fwd+VJP", best_us(fwd_vjp)),
                      ("Jacobian", best_us(lambda: sim.jacobian(s, c))))]
            print(f"{task:16s} envs {n:4d}  us per call, CPU / wall:  " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
