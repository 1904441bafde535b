"""The articulated kernels compiled with Taichi's defaults against PER_ENV_TASKS (one task per env),
side by side in one process: CPU and wall time per launch of the forward (keeping its
intermediates) and of the adjoint (a VJP from them), at a few batch sizes, float64.

    python tools/bench_per_env_tasks.py [--tasks cartpole-swingup,hopper,cheetah,ant,humanoid]
        [--envs 4,16,64,256] [--rounds 6]

Taichi 1.7's CPU backend gives each thread a block of at least 512 iterations of a parallel loop
whose bounds are kernel arguments, so with its defaults a batch of up to 512 envs runs on one
thread (tools/check_taichi_threads.py); PER_ENV_TASKS (physics/_launch.py) makes each env a task
of the pool. Both variants are separate kernel objects built from the same source and launched on
the same inputs, in turns (the order reversed every other round); each figure is the best round.
Outputs are checked equal to the bit.
"""
import argparse

import mbmix_taichi as mt  # noqa: F401  (before torch: it sets OMP_WAIT_POLICY)
import torch

from mbmix_taichi.bench import _best_wall_cpu
from mbmix_taichi.physics import articulated_kernels as ak
from mbmix_taichi.physics._launch import PER_ENV_TASKS, FastKernel
from mbmix_taichi.physics.articulated import COMPILE_OPTIONS


def in_turns(fns, rounds, reps):
    """{name: (best CPU us, best wall us) per call}: the calls in turns, the order reversed every other round."""
    best = {k: (float("inf"), float("inf")) for k in fns}
    for r in range(rounds):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            w, c = _best_wall_cpu(fns[k], repeats=1, inner=reps)
            best[k] = (min(best[k][0], c * 1e6), min(best[k][1], w * 1e6))
    return best


def landed(task, n, dtype):
    env = mt.make(task, num_envs=n, seed=0, dtype=dtype)
    env.reset(seed=0)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        env.step(torch.rand(n, env.act_dim, generator=g, dtype=env.dtype) * 2 - 1)
    return env, g


def articulated(task, n, rounds):
    env, g = landed(task, n, "float64")
    sim = getattr(env.sim, "sim", env.sim)
    s = env.get_state()[:, :sim.state_dim].contiguous()
    c = ((torch.rand(n, sim.control_dim, generator=g, dtype=sim.dtype) * 2 - 1) * 0.3).contiguous()
    ctrl, keep = sim._flat_ctrl(c), sim.tables.keep_adjoint
    W = sim._workspace(n, keep)
    cot = torch.randn(n * sim.state_dim, generator=g, dtype=sim.dtype)
    variants = {}
    for name, opts in (("defaults", None), ("per-env", PER_ENV_TASKS)):
        ks = ak.kernels.__wrapped__("f64")  # new kernel objects: each compiles under its own options
        def with_opts(k, base):
            o = {key: v for key, v in base.items() if key not in PER_ENV_TASKS}
            return FastKernel(ks[k], {**o, **(opts or {})})
        fwd, adj = with_opts("forward", COMPILE_OPTIONS["forward"]), with_opts("adjoint", COMPILE_OPTIONS["adjoint"])
        out, gs, gc = torch.empty(n * sim.state_dim, dtype=sim.dtype), cot.clone(), sim._buf(n * max(sim.nu, 1))

        def step(fwd=fwd, out=out):
            fwd(sim._I, sim._P, s.view(-1), ctrl, out, W, n, keep, False)

        def vjp(adj=adj, gs=gs, gc=gc):
            gs.copy_(cot)
            adj(sim._I, sim._P, ctrl, gs, gc, W, n, 1, 0, keep, False)
        step(), vjp()
        variants[name] = (step, vjp, out, gs)
    a, b = variants["defaults"], variants["per-env"]
    for f in (a[0], a[1], b[0], b[1]):
        f()
    assert torch.equal(a[2], b[2]) and torch.equal(a[3], b[3]), "the two variants' outputs differ"
    reps = max(3, int(20000 / (n * sim.nv * sim.substeps)))
    return in_turns({"step, defaults": a[0], "step, per-env": b[0], "VJP, defaults": a[1], "VJP, per-env": b[1]},
                    rounds, reps)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="cartpole-swingup,hopper,cheetah,ant,humanoid")
    ap.add_argument("--envs", default="4,16,64,256")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}; CPU / wall us per launch, best of {args.rounds} rounds in turns")
    for task in args.tasks.split(","):
        for n in (int(x) for x in args.envs.split(",")):
            r = articulated(task, n, args.rounds)
            print(f"{task:17s} N={n:4d}  " + "  ".join(f"{k}: {c:9.0f} / {w:9.0f}" for k, (c, w) in r.items())
                  + f"  | wall defaults/per-env: step {r['step, defaults'][1] / r['step, per-env'][1]:.2f}, "
                  f"VJP {r['VJP, defaults'][1] / r['VJP, per-env'][1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
