"""Benchmark of the articulated simulator side by side with MuJoCo, in one process.

For each task, from a *landed* state (reset, then 40 random control steps: feet on the
ground) and a *free* state (the reset state, raised 1 m so nothing touches):

* forward control steps per second at 1 and 64 envs, and forward + VJP, with the recorded
  step keeping its intermediates (the default) and, side by side, with the VJP replaying the
  step (`tape_budget = 0`, what a long window beyond the budget gets);
* (fwd+VJP)/fwd, the cost of the VJP relative to the forward (the median of the rounds' own ratios);
* exact full one-step Jacobians per second (64 envs; `sim.jacobian`: substep Jacobians from adjoint
  sweeps on tau and a solve by M, chained; by rows of the whole step through the adjoint kernel; by columns through
  the tangent kernel) against MuJoCo's
  ``mjd_transitionFD`` (centred differences) chained over the substeps of a control step, all four
  in turns, and the ratio to MuJoCo as the median of the rounds' own ratios;
* MuJoCo's own forward (``mj_step`` x substeps) on the same model file and state;
* kernel launches per control step;
* with ``--cached``, the same simulator with the mass matrix cached for a whole control step
  (``mass_matrix_every = substeps``, DiffRL's configs' ``MM_caching_frequency``) as a second
  engine row: other dynamics, so only its cost compares.

Forward, forward + VJP and the replayed VJP are timed in turns, five rounds: each rate is its best
round, each ratio the median of the rounds' own ratios.
Rates are per CPU second (``time.process_time``) and per wall second, with Taichi's pool on one
thread (``--threads 1``, the default), as MuJoCo runs here: CPU time then compares one thread with
one (with every core, a batch's wall time falls 1.7-2.0x on 2 cores and its CPU time can rise by as
much as 20% under contention: tools/bench_per_env_tasks.py). ``--compile`` measures the cold
compile (fresh Taichi offline cache, all tasks in one process) and each task's warm start in
subprocesses, in CPU seconds.

    python tools/bench_articulated.py [--tasks cartpole-swingup,hopper,cheetah,ant,humanoid]
        [--envs 1,64] [--compile] [--cached] [--threads 1] [--out docs/benchmarks_articulated.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import mbmix_taichi  # noqa: F401  (before torch: it sets OMP_WAIT_POLICY, as the CLI gets it)
from mbmix_taichi import _ti
import torch


ROUNDS = 5  # forward, forward + VJP and the replayed VJP are timed in turns, ROUNDS rounds


def rate(fn, min_time=0.5, min_reps=3):
    """(calls per CPU second, calls per wall second) after one warm-up call."""
    fn()
    reps, c0, t0 = 0, time.process_time(), time.perf_counter()
    while True:
        fn()
        reps += 1
        el = time.perf_counter() - t0
        if el >= min_time and reps >= min_reps:
            return reps / max(time.process_time() - c0, 1e-9), reps / el


def mujoco_calls(path, qpos, qvel, substeps):
    """MuJoCo's forward control step and chained-FD Jacobian of one control step, from one state
    (1 thread): two functions to time."""
    import mujoco
    mm = mujoco.MjModel.from_xml_path(path)
    d = mujoco.MjData(mm)
    nv, nu = mm.nv, mm.nu
    A = np.zeros((2 * nv, 2 * nv))
    B = np.zeros((2 * nv, nu))

    def load():
        d.qpos[:] = qpos
        d.qvel[:] = qvel
        d.ctrl[:] = 0.1
        d.time = 0.0

    def fwd():
        load()
        mujoco.mj_step(mm, d, nstep=substeps)

    def jac():
        load()
        At = np.eye(2 * nv)
        Bt = np.zeros((2 * nv, nu))
        for _ in range(substeps):
            mujoco.mjd_transitionFD(mm, d, 1e-6, True, A, B, None, None)
            At = A @ At
            Bt = A @ Bt + B
            mujoco.mj_step(mm, d)

    return fwd, jac


def sim_rates(sim, s, c, min_time):
    cot = torch.randn_like(s)

    def fwd():
        sim.step(s, c)

    def fwd_vjp():
        _, tape = sim.step(s, c, record=True)
        sim.vjp_tape(tape, cot)

    l0 = sim.launches
    sim.step(s, c)
    lf = sim.launches - l0
    _, tape = sim.step(s, c, record=True)
    l0 = sim.launches
    sim.vjp_tape(tape, cot)
    lb = lf + sim.launches - l0
    n = s.shape[0]
    # the three take turns, ROUNDS times; each rate is its best round, and the ratios are the median
    # of the rounds' own ratios (measured back to back): on a shared machine one window can catch
    # another process's burst, and the ratio of two best rounds from different windows moved by up
    # to 50% between runs
    f = fv = fr = (0.0, 0.0)
    rv, rr = [], []
    for _ in range(ROUNDS):
        a = rate(fwd, min_time)
        b = rate(fwd_vjp, min_time)
        budget, sim.tape_budget = sim.tape_budget, 0  # the VJP replays the step
        try:
            d = rate(fwd_vjp, min_time)
        finally:
            sim.tape_budget = budget
        f, fv, fr = max(f, a), max(fv, b), max(fr, d)
        rv.append(a[0] / b[0])
        rr.append(a[0] / d[0])
    return {"fwd": f[0] * n, "fwd_wall": f[1] * n, "fv": fv[0] * n, "fv_wall": fv[1] * n, "fr": fr[0] * n,
            "ratio": statistics.median(rv), "ratio_r": statistics.median(rr), "lf": lf, "lb": lb}


def states(mt, task, seed=1):
    """(landed, free) states of one env: 40 random steps from reset, and the reset raised 1 m."""
    from mbmix_taichi.registry import get_task_class

    # the simulator alone: no previous action carried in the state (ant's and humanoid's default)
    opts = {"previous_action": False} if "previous_action" in get_task_class(task).default_options else {}
    env = mt.make(task, num_envs=1, seed=seed, dtype="float64", **opts)
    free = env.get_state().clone()
    if env.task.model.joints[0].type == "free":
        free[:, 2] += 1.0
    g = torch.Generator().manual_seed(seed)
    for _ in range(40):
        env.step(torch.rand(1, env.act_dim, generator=g, dtype=env.dtype) * 2 - 1)
    return env, env.get_state().clone(), free


def measure(args):
    import mbmix_taichi as mt
    from mbmix_taichi.physics.articulated import ArticulatedSim
    from mbmix_taichi.physics.base import Simulator

    rows = []
    for task in args.tasks.split(","):
        env1, landed, free = states(mt, task)
        m = env1.task.model
        sim_g = env1.sim
        sims = {"generic": sim_g}
        if args.cached:
            sims["cached"] = ArticulatedSim(m, dt=sim_g.dt, substeps=sim_g.substeps, dtype=sim_g.dtype,
                                            contact=sim_g.contact, implicit_damping=sim_g.implicit_damping,
                                            limit_ke=sim_g.limit_ke, limit_kd=sim_g.limit_kd,
                                            mass_matrix_every=sim_g.substeps)
        nq = m.nq
        mj_f, mj_j = {}, {}
        for name, st in (("landed", landed), ("free", free)):
            mj_f[name], mj_j[name] = mujoco_calls(m.source, st[0, :nq].numpy(), st[0, nq:].numpy(), sim_g.substeps)
        mj_f = {name: rate(fn, args.min_time)[0] for name, fn in mj_f.items()}
        c1 = env1.task.control(torch.full((1, env1.act_dim), 0.1, dtype=torch.float64))
        for engine, sim in sims.items():
            for n in [int(x) for x in args.envs.split(",")]:
                s = landed.repeat(n, 1)
                c = c1.repeat(n, 1)
                r = sim_rates(sim, s, c, args.min_time)
                row = dict(task=task, engine=engine, n=n, S=sim.substeps, **r, mj_fwd=mj_f["landed"])
                if n == max(int(x) for x in args.envs.split(",")):
                    for name, st in (("landed", landed), ("free", free)):
                        sj = st.repeat(n, 1)
                        # side by side, in turns, each its best round: `sim.jacobian`, the rows of the
                        # whole step (ds unit cotangents through the adjoint), the columns (ds + dc
                        # JVP probes, forward mode) and MuJoCo's FD (one env per call); the ratio to
                        # MuJoCo is also taken per round (back to back) and its median reported
                        fns = {"jac": (lambda: sim.jacobian(sj, c), n), "jacr": (lambda: sim._jacobian_by_rows(sj, c), n),
                               "jacf": (lambda: Simulator.jacobian(sim, sj, c), n), "mj_jac": (mj_j[name], 1)}
                        for k in fns:
                            row[f"{k}_{name}"] = 0.0
                        paired = []
                        for _ in range(ROUNDS):
                            got = {k: rate(fn, args.min_time)[0] * per for k, (fn, per) in fns.items()}
                            for k, v in got.items():
                                row[f"{k}_{name}"] = max(row[f"{k}_{name}"], v)
                            paired.append(got["jac"] / got["mj_jac"])
                        row[f"jac_paired_{name}"] = statistics.median(paired)
                rows.append(row)
                print(f"{task:17s} {engine:7s} N={n:3d} launches fwd/fwd+vjp {r['lf']}/{r['lb']}  steps per CPU-s: "
                      f"fwd {r['fwd']:9.0f} fwd+vjp {r['fv']:9.0f} (ratio {r['ratio']:.2f}; replayed {r['fr']:9.0f}, "
                      f"ratio {r['ratio_r']:.2f})  wall: fwd "
                      f"{r['fwd_wall']:9.0f} fwd+vjp {r['fv_wall']:9.0f}  MuJoCo fwd {mj_f['landed']:8.0f}"
                      + (f"  Jacobians/CPU-s landed {row['jac_landed']:8.0f} (by rows {row['jacr_landed']:8.0f}, by JVPs "
                         f"{row['jacf_landed']:8.0f}, MuJoCo FD {row['mj_jac_landed']:7.0f}; paired ratio "
                         f"{row['jac_paired_landed']:.2f}) free {row['jac_free']:8.0f} (by rows {row['jacr_free']:8.0f}, "
                         f"by JVPs {row['jacf_free']:8.0f}, MuJoCo FD {row['mj_jac_free']:7.0f}; paired ratio "
                         f"{row['jac_paired_free']:.2f})"
                         if "jac_landed" in row else ""),
                      flush=True)
    return rows


def compile_times(tasks):
    """Cold compile of every task's kernels in one fresh-cache process, then each task's warm start."""
    code = ("import sys, torch, mbmix_taichi as mt\n"
            "for t in sys.argv[1].split(','):\n"
            "    e = mt.make(t, num_envs=2, seed=0, dtype='float64'); s = e.get_state()\n"
            "    c = torch.zeros(2, e.sim.control_dim, dtype=torch.float64); e.sim.step(s, c)\n"
            "    _, tp = e.sim.step(s, c, record=True); e.sim.vjp_tape(tp, torch.ones_like(s)); e.sim.jacobian(s, c)\n")

    def run(task_list, cache):
        env = dict(os.environ, TI_OFFLINE_CACHE_FILE_PATH=cache)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", code, task_list], env=env, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

    with tempfile.TemporaryDirectory() as cache:
        cold = run(tasks, cache)
        warm = {t: run(t, cache) for t in tasks.split(",")}
    return cold, warm


WARM_BREAKDOWN = """
import sys, time
t0 = time.process_time()
import torch, mbmix_taichi as mt
t = {"import": time.process_time() - t0}
# each kernel's first call, split into Taichi's Python frontend (AST -> IR: Kernel.materialize) and
# its first launch (the offline cache's IR loaded and compiled to machine code by LLVM); Taichi 1.7's
# internals: left out where they differ
from taichi.lang import kernel_impl
split = {}
def timed(part, fn):
    def wrap(self, *a, **k):
        c = time.process_time()
        try:
            return fn(self, *a, **k)
        finally:
            split.setdefault((self.func.__name__, part), time.process_time() - c)
    return wrap
if hasattr(kernel_impl.Kernel, "materialize") and hasattr(kernel_impl.Kernel, "launch_kernel"):
    kernel_impl.Kernel.materialize = timed("frontend", kernel_impl.Kernel.materialize)
    kernel_impl.Kernel.launch_kernel = timed("JIT", kernel_impl.Kernel.launch_kernel)
def lap(name, fn):
    c = time.process_time(); fn(); t[name] = time.process_time() - c
e = None
def make():
    global e
    e = mt.make(sys.argv[1], num_envs=2, seed=0, dtype="float64")
lap("make", make)
s = e.get_state(); c = torch.zeros(2, e.sim.control_dim, dtype=torch.float64)
lap("first step", lambda: e.sim.step(s, c))
lap("first VJP", lambda: e.sim.vjp(s, c, torch.ones_like(s)))
lap("first Jacobian", lambda: e.sim.jacobian(s, c))
lap("second step", lambda: e.sim.step(s, c))
print(", ".join(f"{k} {v:.2f}" for k, v in t.items()), f"(total {sum(t.values()):.1f} CPU-s)")
names = [n for n, part in split if part == "frontend"]
print("of which Taichi, per kernel (frontend + first launch: cached IR to machine code): " + (", ".join(
    f"{n} {split[(n, 'frontend')]:.2f} + {split.get((n, 'JIT'), 0.0):.2f}" for n in names)
    or "not split (this Taichi's internals differ)"))
"""


def warm_breakdown(task: str) -> str:
    """Where a warm start's CPU time goes, in a fresh process with the user's (warm) offline cache."""
    out = subprocess.run([sys.executable, "-c", WARM_BREAKDOWN, task], check=True, capture_output=True, text=True)
    laps, taichi = out.stdout.strip().splitlines()[-2:]
    return f"{laps}\n  {taichi}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="cartpole-swingup,hopper,cheetah,ant,humanoid")
    ap.add_argument("--envs", default="1,64")
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--compile", action="store_true", help="measure cold compile and warm start (subprocesses)")
    ap.add_argument("--cached", action="store_true",
                    help="also time the simulator with M cached for a whole control step (DiffRL's setting)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--warm-breakdown", metavar="TASK", default=None,
                    help="only: CPU time of each first call in a fresh process with a warm cache, then exit")
    ap.add_argument("--threads", type=int, default=1,
                    help="Taichi's CPU threads (TI_CPU_MAX_NUM_THREADS): 1, the default, as MuJoCo runs here, so "
                         "that CPU time compares one thread with one; 0 = Taichi's default (every core), whose "
                         "wall-time gain tools/bench_per_env_tasks.py measures")
    args = ap.parse_args(argv)
    if args.threads > 0:
        if _ti.started():
            sys.exit("--threads: Taichi already started in this process")
        os.environ["TI_CPU_MAX_NUM_THREADS"] = str(args.threads)
    if args.warm_breakdown:
        warm_breakdown(args.warm_breakdown)  # the first run fills the cache if it is cold
        print(f"{args.warm_breakdown} warm start, CPU-s:", warm_breakdown(args.warm_breakdown))
        return
    torch.set_num_threads(1)
    rows = measure(args)
    comp = compile_times(args.tasks) if args.compile else None
    if comp:
        print(f"cold compile, all tasks, fresh cache: {comp[0]:.1f} CPU s; warm start:",
              ", ".join(f"{t} {v:.1f}" for t, v in comp[1].items()))
    if not args.out:
        return
    cmd = "python tools/bench_articulated.py " + " ".join(argv if argv is not None else sys.argv[1:])
    L = ["# Articulated simulator benchmark", "", f"Command: `{cmd}`", "",
         f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared, noisy), Python "
         f"{platform.python_version()}, torch {torch.__version__}, Taichi CPU (x64), float64. MuJoCo "
         f"{__import__('mujoco').__version__}, one thread.", "",
         f"Rates are control steps (dt = 1/60 s, all substeps) per CPU second (process time, Taichi on "
         f"{args.threads or os.cpu_count()} thread{'s' if (args.threads or os.cpu_count()) > 1 else ''}), then per wall second; the state is a landed one (40 random steps after reset: feet on the "
         "ground). MuJoCo runs the same model file from the same qpos/qvel with its own contact model: this "
         "compares cost, not values.", "",
         "| task | engine | envs | substeps | launches/step fwd, fwd+VJP | fwd steps/CPU-s | fwd+VJP steps/CPU-s | "
         "(fwd+VJP)/fwd | fwd+VJP replayed steps/CPU-s | its ratio | fwd steps/wall-s | fwd+VJP steps/wall-s | MuJoCo fwd steps/CPU-s | ours/MuJoCo fwd |",
         "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        L.append(f"| {r['task']} | {r['engine']} | {r['n']} | {r['S']} | {r['lf']}, {r['lb']} | {r['fwd']:.0f} | "
                 f"{r['fv']:.0f} | {r['ratio']:.2f} | {r['fr']:.0f} | {r['ratio_r']:.2f} | {r['fwd_wall']:.0f} | {r['fv_wall']:.0f} | "
                 f"{r['mj_fwd']:.0f} | {r['fwd'] / r['mj_fwd']:.2f} |")
    L += ["", "Exact full one-step Jacobians ([ds, ds] and [ds, da]) per CPU second at the largest batch, three "
          "ways in turns: `sim.jacobian` (with M computed every substep: each substep's Jacobian from nv adjoint "
          "sweeps with unit cotangents on tau, each reaching only its dof's subtree and ancestors, and a solve by M, "
          "chained with batched matmuls; with M cached: the rows below), the "
          "rows of the whole step (ds unit cotangents through the adjoint kernel, `_jacobian_by_rows`) and the "
          "columns (ds + dc unit JVP probes through the tangent kernel, `Simulator.jacobian`); against MuJoCo's "
          "`mjd_transitionFD` (centred differences, eps 1e-6) once per substep, chained into a control-step "
          "Jacobian, from the landed state and from a free state (reset raised 1 m: no contact, no limit active). "
          "The four take turns, five rounds; each rate is its best round. Ratios are `sim.jacobian`'s over MuJoCo's: "
          "the median of the rounds' own ratios (paired: each round's two rates measured back to back), then the "
          "ratio of the best rounds (and the rows' and columns' best over MuJoCo's best).", "",
          "| task | engine | envs | Jacobians/CPU-s landed | by rows | by JVPs | MuJoCo FD landed | ratio paired | "
          "best/best (rows', JVPs') | Jacobians/CPU-s free | by rows | by JVPs | MuJoCo FD free | ratio paired | "
          "best/best (rows', JVPs') |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "jac_landed" in r:
            cells = []
            for name in ("landed", "free"):
                mj = r[f"mj_jac_{name}"]
                cells.append(f"{r[f'jac_{name}']:.0f} | {r[f'jacr_{name}']:.0f} | {r[f'jacf_{name}']:.0f} | {mj:.0f} | "
                             f"{r[f'jac_paired_{name}']:.2f} | "
                             f"{r[f'jac_{name}'] / mj:.2f} ({r[f'jacr_{name}'] / mj:.2f}, {r[f'jacf_{name}'] / mj:.2f})")
            L.append(f"| {r['task']} | {r['engine']} | {r['n']} | " + " | ".join(cells) + " |")
    if comp:
        L += ["", f"Compile (generic kernels: forward, adjoint, tangent, float64), CPU seconds in subprocesses: cold, "
              f"with a fresh Taichi offline cache, every task above in one process: **{comp[0]:.1f} s**. Warm start "
              "(make the env, one step, VJP and Jacobian, interpreter and imports included): "
              + ", ".join(f"{t} {v:.1f} s" for t, v in comp[1].items()) + "."]
    with open(args.out, "w") as fh:
        fh.write("\n".join(L) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
