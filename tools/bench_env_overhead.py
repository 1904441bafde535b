"""Per-call cost of stepping ONE env through the public API (issue 12's fast path).

    python tools/bench_env_overhead.py [--task cloth-fold] [--calls 3000] [--out docs/benchmarks.md]

For each way of taking one control step it reports wall time and process CPU time
(time.process_time) per call, median of several blocks of calls:

- ``env.transition(s, a)``: the validated public op (inputs checked, output checked for blow-up);
- ``env.transition`` with ``a.requires_grad``: the autograd path (records the tape for the VJP);
- ``sim.step(s, c)``: the bare simulator (one Taichi kernel launch, no checks);
- ``mujoco.mj_step`` on the cart-pole MJCF model (``assets/cartpole.xml``) for scale.

Overhead = transition - sim.step: what validation and the torch wrapping add per call. The
cloth is tiny (resolution 4, 4 x 4 particles) so that the physics itself costs a few microseconds
and the figures are per-call overhead. Timings on a shared machine are noisy: take the
median of several runs.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch


def _per_call(fn, calls: int, blocks: int = 5):
    fn()
    fn()
    walls, cpus = [], []
    n = max(1, calls // blocks)
    for _ in range(blocks):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        walls.append((time.perf_counter() - w0) / n)
        cpus.append((time.process_time() - c0) / n)
    return statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="cloth-fold")
    p.add_argument("--options", default="resolution=4",
                   help="task options KEY=VALUE,... (default: a tiny cloth, so physics is negligible)")
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--out", default=None, help="append a markdown section to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import mbmix_taichi as mt
    from mbmix_taichi.cli.options import parse_task_options

    opts = parse_task_options([kv for kv in args.options.split(",") if kv])
    env = mt.make(args.task, num_envs=1, seed=0, **opts)
    s = env.get_state()
    a = torch.zeros(1, env.act_dim, dtype=env.dtype)
    ag = a.clone().requires_grad_(True)
    c = env.task.control(a).contiguous()
    rows = []

    def add(name, fn):
        w, cpu = _per_call(fn, args.calls)
        rows.append((name, w, cpu))
        print(f"{name:44s} wall {w:7.4f} ms/call   cpu {cpu:7.4f} ms/call", flush=True)

    add("sim.step (bare kernel launch)", lambda: env.sim.step(s, c))
    add("env.transition (no grad)", lambda: env.transition(s, a))
    add("env.transition (action requires grad)", lambda: env.transition(s, ag))
    add("env.step (auto-reset, reward, info)", lambda: env.step(a))
    try:
        import mujoco

        from mbmix_taichi import assets

        m = mujoco.MjModel.from_xml_path(str(assets.path("cartpole.xml")))
        d = mujoco.MjData(m)
        add("mujoco.mj_step (cartpole.xml)", lambda: mujoco.mj_step(m, d))
    except Exception as exc:  # mujoco is optional here
        print(f"(mujoco skipped: {exc})")
    base = rows[0][1]
    over = rows[1][1] - base
    print(f"overhead of env.transition over sim.step: {over * 1e3:.0f} us/call (wall)")
    if args.out:
        cmd = "python tools/bench_env_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
        lines = ["", f"## Per-call cost at 1 env ({args.task}, {args.options})", "",
                 f"Command: `{cmd.strip()}`.",
                 f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), taichi arch {env.arch}, "
                 f"torch {torch.__version__}, python {platform.python_version()}. Median of 5 blocks.", "",
                 "| call | wall ms/call | CPU ms/call |", "|---|---|---|"]
        lines += [f"| {n} | {w:.4f} | {cpu:.4f} |" for n, w, cpu in rows]
        lines += ["", f"Overhead of `env.transition` over the bare kernel launch: {over * 1e3:.0f} us per call."]
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
