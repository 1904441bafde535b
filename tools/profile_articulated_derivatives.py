"""Where the articulated kernels' time goes (adjoint, tangent, or the forward), stage by stage.

    python tools/profile_articulated_derivatives.py hopper --envs 64
    python tools/profile_articulated_derivatives.py ant --envs 64 --dtype float64 --stages down,up
    python tools/profile_articulated_derivatives.py hopper --kernel tangent --probes 8 --dtype float64
    python tools/profile_articulated_derivatives.py cheetah --kernel forward --dtype float64

Builds variants of the adjoint (tangent, forward) kernel of `physics/articulated_kernels.py` with one
stage's call in `substep_adjoint` (`substep_tangent`, `substep`) left out (a copy of the module's source with
that call behind `ti.static`, compiled in this process: nothing in the package changes), times each
against the plain forward step from one landed state (40 random steps after reset) in one process,
in turns, best of repeats, CPU time, and prints what leaving each stage out saves, in forward steps
(per probe for the tangent, which runs `--probes` probes per env as `jvp` and `Simulator.jacobian`
do). Stages interact (LLVM drops code a skipped stage made dead, and the arithmetic downstream sees
other values), so the savings are each stage's approximate cost and need not add up to the whole.
Each variant compiles its own kernel with the simulator's compile options (`COMPILE_OPTIONS` in
physics/articulated.py; a few seconds each) and is launched as the simulator launches it
(`FastKernel`).
"""
import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

import mbmix_taichi as mt
from mbmix_taichi.bench import _best_wall_cpu

STAGES = {  # kernel -> stage name -> the call in substep[_<kernel>] that the variant leaves out
    "forward": {
        "kinematics": 'kinematics(I, P, W, w)',
        "inertias": 'body_inertias(I, P, W, w)',
        "external": 'external_forces(I, P, W, w)',
        "bias": 'bias_forces(I, P, W, w)',
        "joint": 'joint_forces(I, P, W, w, U, e)',
        "mass": 'mass_matrix(I, P, W, w)',
        "factor": 'factor(I, W, w)',
        "solve": 'solve(I, W, w, oq, 1)',
        "integrate": 'integrate(I, P, W, w)',
    },
    "adjoint": {
        "zero": None,  # the zeroing loop of the accumulators
        "integrate": 'integrate_adjoint(I, P, W, w, wa)',
        "solve": 'solve(I, W, w, wa + I[h_["W_GTAU"]], 1)',
        "joint": 'joint_forces_adjoint(I, P, W, w, wa, U, ue, GU, ge, ov)',
        # the tree passes: RNEA's, CRBA's, the body inertias' and the kinematics' adjoints together
        "down": 'tree_adjoint_down(I, P, W, w, wa, ov, fb)',
        "external": 'external_forces_adjoint(I, P, W, w, wa, fb)',
        "up": 'tree_adjoint_up(I, P, W, w, wa, ov, fresh, fb)',
    },
    "tangent": {
        "kinematics": 'kinematics_tangent(I, P, W, w, wa)',
        "inertias": 'body_inertias_tangent(I, P, W, w, wa)',
        "external": 'external_forces_tangent(I, P, W, w, wa)',
        "bias": 'bias_forces_tangent(I, P, W, w, wa)',
        "joint": 'joint_forces_tangent(I, P, W, w, wa, U, ue, TU, eu)',
        "mass": 'mass_matrix_tangent(I, P, W, w, wa)',
        "solve": 'solve(I, W, w, wa + I[h_["W_GTAU"]], 1)',
        "integrate": 'integrate_tangent(I, P, W, w, wa)',
    },
}
ZERO = """        for k in range(I[h_["W_GZERO"]], I[h_["W_GZEND"]]):
            W[wa + k] = F(0.0)
        fb = -1"""


def variant_module(kernel: str, skip: str):
    """physics/articulated_kernels.py with substep_<kernel>'s `skip` stage behind ti.static(False)."""
    from mbmix_taichi.physics import articulated_kernels

    path = Path(articulated_kernels.__file__)  # wherever the package is installed (editable or not)
    src = path.read_text()
    if skip == "zero":
        assert ZERO in src, "the adjoint's zeroing loop moved: update this tool"
        src = src.replace(ZERO, "        if ti.static(False):\n            for k in range(I[h_[\"W_GZERO\"]], I[h_[\"W_GZEND\"]]):"
                                "\n                W[wa + k] = F(0.0)\n        fb = -1", 1)
    elif skip != "none":
        call = STAGES[kernel][skip] + "\n"
        start = src.index("def substep(" if kernel == "forward" else f"def substep_{kernel}(")
        at = src.index(call, start)  # the first such call after substep_<kernel>'s definition
        line = src.rindex("\n", 0, at) + 1  # the call keeps its own indentation (it may sit in a branch)
        indent = src[line:at]
        assert not indent.strip(), f"{skip}: the call does not start its line: update this tool"
        src = src[:line] + indent + "if ti.static(False):\n" + indent + "    " + call + src[at + len(call):]
    # Taichi parses a kernel's source through inspect, i.e. from the file its code names: so the
    # variant is written to a file of its own and imported from there
    out = Path(tempfile.mkdtemp(prefix=f"{kernel}-profile-")) / f"{kernel}_without_{skip}.py"
    out.write_text(src)
    spec = importlib.util.spec_from_file_location(out.stem, out)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[out.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def best(fn, reps=20, rounds=5):
    """Best CPU time per call over `rounds` rounds of `reps` calls (the package's benchmark timer)."""
    return _best_wall_cpu(fn, repeats=rounds, inner=reps)[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("task")
    ap.add_argument("--kernel", default="adjoint", choices=sorted(STAGES))
    ap.add_argument("--envs", type=int, default=64)
    ap.add_argument("--probes", type=int, default=8, help="tangent probes per env (--kernel tangent)")
    ap.add_argument("--stages", default=None, help="comma-separated; default: every stage of the kernel")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    table = STAGES[args.kernel]
    stages = ["none"] + [s for s in (args.stages or ",".join(table)).split(",") if s]
    for s in stages:
        if s != "none" and s not in table:
            sys.exit(f"unknown {args.kernel} stage {s!r}; stages: {', '.join(table)}")
    N = args.envs
    env = mt.make(args.task, num_envs=N, seed=0, dtype=args.dtype)
    env.reset(seed=0)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        env.step(torch.rand(N, env.act_dim, generator=g, dtype=env.dtype) * 2 - 1)
    sim = getattr(env.sim, "sim", env.sim)  # the articulated simulator itself (tasks may wrap it)
    s = env.get_state()[:, :sim.state_dim].contiguous()
    c = ((torch.rand(N, sim.control_dim, generator=g, dtype=sim.dtype) * 2 - 1) * 0.3).contiguous()
    ctrl = c.view(-1)
    # compiled as the simulator compiles the kernel (its Taichi options), launched by FastKernel
    from mbmix_taichi.physics._launch import FastKernel
    from mbmix_taichi.physics.articulated import COMPILE_OPTIONS
    fp = "f64" if sim.dtype == torch.float64 else "f32"
    kernels = {v: FastKernel(variant_module(args.kernel, v).kernels(fp)[args.kernel], COMPILE_OPTIONS[args.kernel])
               for v in stages}
    if args.kernel == "forward":
        per = 1
        out = torch.empty(N * sim.state_dim, dtype=sim.dtype)
        W = sim._workspace(N)

        def launch(k):
            k(sim._I, sim._P, s.view(-1), ctrl, out, W, N, 0)
        call = {v: (lambda k=k: launch(k)) for v, k in kernels.items()}
    elif args.kernel == "adjoint":
        per = 1
        seed = torch.randn(N, sim.state_dim, generator=g, dtype=sim.dtype)  # one cotangent per env
        _, tape = sim.step(s, c, record=True)
        W = tape.W
        extra = torch.empty(N * max(sim.nu, 1), dtype=sim.dtype)  # the control's cotangents
    else:
        per = args.probes
        seed = torch.randn(N, per, sim.state_dim, generator=g, dtype=sim.dtype)
        W = sim._replay(s, ctrl, N)  # the step's intermediates, as `jvp` keeps them
        extra = torch.randn(N * per * max(sim.nu, 1), generator=g, dtype=sim.dtype)  # control tangents
    if args.kernel != "forward":
        work = seed.clone().view(-1)  # the kernel's directions, in and out

        def launch(k):
            work.copy_(seed.view(-1))
            k(sim._I, sim._P, ctrl, work, extra, W, N, per, *((0,) if args.kernel == "adjoint" else ()))
        call = {v: (lambda k=k: launch(k)) for v, k in kernels.items()}
    for f in call.values():
        f()  # compile
    fwd = best(lambda: sim.step(s, c))
    keep = best(lambda: sim.step(s, c, record=True))
    t = {v: best(f) for v, f in call.items()}
    what = args.kernel if per == 1 else f"tangent ({per} probes per env), per probe"
    print(f"{args.task}, {N} envs, {sim.substeps} substeps, {args.dtype}, CPU time per control step (best of 5 x 20):")
    print(f"  forward {fwd * 1e3:.3f} ms; forward keeping the tape {keep / fwd:.2f} fwd; "
          f"{what} {t['none'] / fwd / per:.2f} fwd")
    print(f"  | {args.kernel} without | {args.kernel} (forward steps{', per probe' if per > 1 else ''}) | saves |")
    print("  |---|---:|---:|")
    for v in stages[1:]:
        print(f"  | {v} | {t[v] / fwd / per:.2f} | {(t['none'] - t[v]) / fwd / per:.2f} |")


if __name__ == "__main__":
    main()
