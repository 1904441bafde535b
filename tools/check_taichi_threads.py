"""How many of Taichi's CPU worker threads share a parallel loop on this machine.

    python tools/check_taichi_threads.py [--threads N]

Runs one parallel loop of 64 independent, equally heavy items (a chain of sines each: like a
batch of envs) and one of 65,536 light ones (like a cloth's particles), and reads each thread's
CPU time from /proc (Linux): a loop that Taichi's thread pool spreads over k workers shows k
threads with CPU time and a wall time ~1/k of the CPU time. The heavy loop runs twice: compiled
with Taichi's defaults, whose CPU backend gives each thread a block of at least 512 iterations
of a loop with runtime bounds (so 64 items run on one thread), and with the package's
PER_ENV_TASKS options (physics/_launch.py: one task per item), as the simulators' kernels are
compiled. Then torch's matrix products on one and on all cores, as a control that the machine
runs threads in parallel. Prints wall and CPU seconds and the per-thread split.
"""
import argparse
import glob
import os
import time

import numpy as np
import taichi as ti
import torch

from mbmix_taichi.physics._launch import PER_ENV_TASKS, FastKernel

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--threads", type=int, default=0, help="cpu_max_num_threads for ti.init (0: Taichi's default)")
args = ap.parse_args()
ti.init(arch=ti.cpu, **({"cpu_max_num_threads": args.threads} if args.threads else {}))


def make_sines():
    """A kernel of n independent items of `inner` chained sines each (one parallel loop); a new
    kernel object per call, so that each compiles under the options in force at its first call."""
    @ti.kernel
    def sines(x: ti.types.ndarray(ndim=1), n: ti.i32, inner: ti.i32):
        for e in range(n):
            s = 0.0
            for k in range(inner):
                s += ti.sin(s + k * 1e-6)
            x[e % x.shape[0]] = s
    return sines


def thread_ticks():
    out = {}
    for d in glob.glob(f"/proc/{os.getpid()}/task/*"):
        f = open(d + "/stat").read().rsplit(")", 1)[1].split()
        out[d.rsplit("/", 1)[1]] = int(f[11]) + int(f[12])  # utime + stime
    return out


def measure(fn):
    a, c0, w0 = thread_ticks(), time.process_time(), time.perf_counter()
    fn()
    wall, cpu, b = time.perf_counter() - w0, time.process_time() - c0, thread_ticks()
    busy = sorted((v - a.get(k, 0) for k, v in b.items() if v - a.get(k, 0) > 0), reverse=True)
    return wall, cpu, busy


x = np.zeros(64)
sines = make_sines()
sines(x, 2, 1)  # compile, with Taichi's defaults
per_env = FastKernel(make_sines(), PER_ENV_TASKS)
per_env(x, 2, 1)  # compile, one task per item
cfg = ti.lang.impl.current_cfg()
print(f"taichi {'.'.join(map(str, ti.__version__))}, cpu_max_num_threads {cfg.cpu_max_num_threads}, os.cpu_count "
      f"{os.cpu_count()}")
for what, fn in (("64 heavy items (a batch of envs), Taichi's defaults", lambda: sines(x, 64, 1_000_000)),
                 ("64 heavy items, PER_ENV_TASKS", lambda: per_env(x, 64, 1_000_000)),
                 ("65,536 light items (a cloth's particles)", lambda: sines(x, 65536, 1_000))):
    wall, cpu, busy = measure(fn)
    print(f"one parallel loop of {what}: wall {wall:.2f} s, CPU {cpu:.2f} s (CPU/wall {cpu / wall:.2f}); "
          f"threads with CPU time (clock ticks): {busy}")
a = torch.randn(1500, 1500, dtype=torch.float64)
for k in (1, os.cpu_count()):
    torch.set_num_threads(k)
    wall, cpu, busy = measure(lambda: [a @ a for _ in range(4)])
    print(f"control, torch matmuls on {k} thread(s): wall {wall:.2f} s, CPU {cpu:.2f} s (CPU/wall {cpu / wall:.2f})")
