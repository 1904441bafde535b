"""Where the articulated kernels' time goes (adjoint, Jacobian sweeps, tangent, or the forward),
stage by stage; or how another version of the kernels compares, paired in one process.

    python tools/profile_articulated_derivatives.py hopper --envs 64
    python tools/profile_articulated_derivatives.py ant --envs 64 --dtype float64 --stages down,up
    python tools/profile_articulated_derivatives.py cheetah --kernel jacobian --dtype float64
    python tools/profile_articulated_derivatives.py hopper --kernel tangent --probes 8 --dtype float64
    python tools/profile_articulated_derivatives.py cheetah --kernel forward --dtype float64
    git show HEAD~1:physics/articulated_kernels.py > /tmp/before.py
    python tools/profile_articulated_derivatives.py cheetah --kernel jacobian --dtype float64 --against /tmp/before.py

Builds variants of the adjoint (tangent, forward) kernel of `physics/articulated_kernels.py` with one
stage's call in `substep_adjoint` (`substep_tangent`, `substep`) left out (a copy of the module's source with
that call behind `ti.static`, compiled in this process: nothing in the package changes), times each
against the plain forward step from one landed state (40 random steps after reset) in one process,
and prints what leaving each stage out saves, in forward steps (per probe for the tangent, which
runs `--probes` probes per env as `jvp` and `Simulator.jacobian` do). `--kernel jacobian` is the
adjoint kernel as `sim.jacobian` runs it (M computed every substep): nv sweeps per substep with unit
cotangents on tau, the solve of their rows and `integrate_jacobian`; it also times `sim.jacobian`
as a whole and its two other parts (the replay of the step and the chain of the substeps'
Jacobians) in turns with the kernels. Stages interact (LLVM drops code
a skipped stage made dead, and the arithmetic downstream sees other values), so the savings are each
stage's approximate cost and need not add up to the whole.

`--against FILE` times the package's kernel against the same kernel from FILE (another version of
`physics/articulated_kernels.py`, taking the same kernel arguments) instead, and checks that both give
the same directions.

The variants are timed in rounds, in turns (the order reversed every other round), so that a noisy
machine slows them alike; each is reported as its best round and its median one, CPU time, and a
variant's ratio to the plain kernel as the median of the per-round ratios. Each variant compiles its
own kernel with the simulator's compile options (`COMPILE_OPTIONS` in physics/articulated.py; a few
seconds each) and is launched as the simulator launches it (`FastKernel`). With
`TI_CPU_MAX_NUM_THREADS=1` the kernels run on one thread, which makes CPU times steadier on a shared
machine (the second thread of a parallel loop waits, and its waiting is CPU time).
"""
import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import mbmix_taichi as mt

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
        "down": 'tree_adjoint_down(I, P, W, w, wa, ov, fb, tau_row)',
        "external": 'external_forces_adjoint(I, P, W, w, wa, fb)',
        "up": 'tree_adjoint_up(I, P, W, w, wa, ov, fresh, fb)',
    },
    "jacobian": {  # the adjoint kernel's sweeps on tau (by_substep): its stages, then the kernel's own calls
        "zero": None,
        "joint": 'joint_forces_adjoint(I, P, W, w, wa, U, ue, GU, ge, ov)',
        "down": 'tree_adjoint_down(I, P, W, w, wa, ov, fb, tau_row)',
        "external": 'external_forces_adjoint(I, P, W, w, wa, fb)',
        "up": 'tree_adjoint_up(I, P, W, w, wa, ov, fresh, fb)',
        "solve": 'solve(I, W, w, ja, nc)',
        "integrate": 'integrate_jacobian(I, P, W, w, ja, nc, GX, (e * S + s) * nx * nc)',
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


def variant_module(kernel: str, skip: str, source: str | None = None):
    """physics/articulated_kernels.py (or the kernels' `source`) with substep_<kernel>'s `skip` stage
    behind ti.static(False) (the Jacobian's: in substep_adjoint or the adjoint kernel)."""
    from mbmix_taichi.physics import articulated_kernels

    path = Path(articulated_kernels.__file__)  # wherever the package is installed (editable or not)
    src = path.read_text() if source is None else source
    if skip == "zero":
        assert ZERO in src, "the adjoint's zeroing loop moved: update this tool"
        src = src.replace(ZERO, "        if ti.static(False):\n            for k in range(I[h_[\"W_GZERO\"]], I[h_[\"W_GZEND\"]]):"
                                "\n                W[wa + k] = F(0.0)\n        fb = -1", 1)
    elif skip != "none":
        call = STAGES[kernel][skip]
        start = src.index("def substep(" if kernel == "forward"
                          else f"def substep_{'adjoint' if kernel == 'jacobian' else kernel}(")
        at = src.index(call, start)  # the first such call after substep_<kernel>'s definition
        line = src.rindex("\n", 0, at) + 1  # the call keeps its own indentation (it may sit in a branch)
        indent = src[line:at]
        assert not indent.strip(), f"{skip}: the call does not start its line: update this tool"
        src = src[:line] + indent + "if ti.static(False):\n" + indent + "    " + src[at:]  # (a comment moves along)
    # Taichi parses a kernel's source through inspect, i.e. from the file its code names: so the
    # variant is written to a file of its own and imported from there
    tag = "other" if source is not None else f"without_{skip}"
    out = Path(tempfile.mkdtemp(prefix=f"{kernel}-profile-")) / f"{kernel}_{tag}.py"
    out.write_text(src)
    spec = importlib.util.spec_from_file_location(out.stem, out)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[out.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def in_turns(calls: dict, reps=5, rounds=20):
    """{variant: [CPU s per call, one entry per round]}: the variants in turns within each round,
    the order reversed every other round."""
    names = list(calls)
    t = {v: [] for v in names}
    for r in range(rounds):
        for v in (names if r % 2 == 0 else names[::-1]):
            c = time.process_time()
            for _ in range(reps):
                calls[v]()
            t[v].append((time.process_time() - c) / reps)
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("task")
    ap.add_argument("--kernel", default="adjoint", choices=sorted(STAGES))
    ap.add_argument("--envs", type=int, default=64)
    ap.add_argument("--probes", type=int, default=8, help="tangent probes per env (--kernel tangent)")
    ap.add_argument("--stages", default=None, help="comma-separated; default: every stage of the kernel")
    ap.add_argument("--against", default=None, metavar="FILE",
                    help="time the kernel against FILE's (another articulated_kernels.py) instead of stages")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5, help="calls per variant per round")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    table = STAGES[args.kernel]
    if args.against:
        stages = ["none", "other"]
    else:
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
    if args.kernel == "jacobian" and sim.mass_matrix_every != 1:
        sys.exit(f"{args.task} caches M over {sim.mass_matrix_every} substeps: its Jacobian is taken by rows "
                 f"(profile --kernel adjoint)")
    s = env.get_state()[:, :sim.state_dim].contiguous()
    c = ((torch.rand(N, sim.control_dim, generator=g, dtype=sim.dtype) * 2 - 1) * 0.3).contiguous()
    ctrl = c.view(-1)
    # compiled as the simulator compiles the kernel (its Taichi options), launched by FastKernel
    from mbmix_taichi.physics._launch import FastKernel
    from mbmix_taichi.physics.articulated import COMPILE_OPTIONS
    fp = "f64" if sim.dtype == torch.float64 else "f32"
    name = "adjoint" if args.kernel == "jacobian" else args.kernel
    def module(v):  # the package's kernels with stage v left out, or FILE's ("other")
        if v == "other":
            return variant_module(args.kernel, "none", Path(args.against).read_text())
        return variant_module(args.kernel, v)
    kernels = {v: FastKernel(module(v).kernels(fp)[name], COMPILE_OPTIONS[name]) for v in stages}

    def flag(v):  # the kernels' last argument `serial` (parallel here), where that version has it
        primal = kernels[v].kernel._primal
        return (False,) if primal.arguments[-1].name == "serial" else ()
    if args.kernel == "forward":
        per = 1
        outs = {v: torch.empty(N * sim.state_dim, dtype=sim.dtype) for v in stages}
        W = sim._workspace(N)

        def launch(v):
            kernels[v](sim._I, sim._P, s.view(-1), ctrl, outs[v], W, N, 0, *flag(v))
    elif args.kernel == "jacobian":
        per = 1
        S, nc = sim.substeps, sim.state_dim + sim.nu
        keep = sim.tables.keep_adjoint
        W = sim._replay(s, ctrl, N, keep)  # the step's intermediates, as `sim.jacobian` keeps them
        outs = {v: torch.empty(N * S * sim.state_dim * nc, dtype=sim.dtype) for v in stages}
        extra = torch.empty(N * sim.nv * max(sim.nu, 1), dtype=sim.dtype)  # the sweeps' scratch

        def launch(v):
            kernels[v](sim._I, sim._P, ctrl, outs[v], extra, W, N, sim.nv, 1, keep, *flag(v))
    else:
        if args.kernel == "adjoint":
            per = 1
            seed = torch.randn(N, sim.state_dim, generator=g, dtype=sim.dtype)  # one cotangent per env
            _, tape = sim.step(s, c, record=True)
            W, keep = tape.W, sim.tables.keep_adjoint
            extra = torch.empty(N * max(sim.nu, 1), dtype=sim.dtype)  # the control's cotangents
        else:
            per = args.probes
            seed = torch.randn(N, per, sim.state_dim, generator=g, dtype=sim.dtype)
            keep = sim.tables.keep_tangent
            W = sim._replay(s, ctrl, N, keep)  # the step's intermediates, as `jvp` keeps them
            extra = torch.randn(N * per * max(sim.nu, 1), generator=g, dtype=sim.dtype)  # control tangents
        outs = {v: seed.clone().view(-1) for v in stages}  # the kernel's directions, in and out

        def launch(v):
            outs[v].copy_(seed.view(-1))
            by_substep = (0,) if args.kernel == "adjoint" else ()  # the adjoint's mode: one cotangent per env
            kernels[v](sim._I, sim._P, ctrl, outs[v], extra, W, N, per, *by_substep, keep, *flag(v))
    call = {v: (lambda v=v: launch(v)) for v in stages}
    for f in call.values():
        f()  # compile
    parts = {}
    if args.kernel == "jacobian":  # the rest of `sim.jacobian`, timed with the kernels in turns
        js = outs["none"].view(N, S, sim.state_dim, nc)
        parts = {"sim.jacobian": lambda: sim.jacobian(s, c), "its replay": lambda: sim._replay(s, ctrl, N, keep),
                 "its chain of the substeps": lambda: sim._chain_substeps(js)}
        for f in parts.values():
            f()
    if args.against:
        diff = (outs["none"] - outs["other"]).abs().max().item() / max(outs["none"].abs().max().item(), 1e-300)
        print(f"  the two kernels' outputs differ by {diff:.1e} (max, relative to the largest entry)")
    t = in_turns({"forward step": lambda: sim.step(s, c), **parts, **call}, args.reps, args.rounds)
    fwd = min(t["forward step"])
    what = {"jacobian": "Jacobian sweeps (sim.jacobian's kernel)", "tangent": f"tangent ({per} probes per env), "
            "per probe"}.get(args.kernel, args.kernel)
    print(f"{args.task}, {N} envs, {sim.substeps} substeps, {args.dtype}, CPU time per control step ({args.rounds} "
          f"rounds of {args.reps} in turns):")
    print(f"  forward {fwd * 1e3:.3f} ms; {what} {min(t['none']) / fwd / per:.2f} forward steps "
          f"(best round; median {statistics.median(t['none']) / statistics.median(t['forward step']) / per:.2f})")

    for p in parts:  # sim.jacobian as a whole, then its parts besides the kernel
        print(f"  {p}: {min(t[p]) / fwd:.2f} forward steps (best round; median "
              f"{statistics.median(t[p]) / statistics.median(t['forward step']):.2f})")

    def ratio(v):  # the median of the per-round ratios to the plain kernel
        return statistics.median(a / b for a, b in zip(t[v], t["none"]))
    if args.against:
        print(f"  {args.against}: {min(t['other']) / fwd / per:.2f} forward steps (best round); "
              f"its time over this kernel's, median of the rounds: {ratio('other'):.3f}")
        return
    print(f"  | {args.kernel} without | {args.kernel} (forward steps{', per probe' if per > 1 else ''}) | saves "
          "| time over the whole, median of the rounds |")
    print("  |---|---:|---:|---:|")
    for v in stages[1:]:
        print(f"  | {v} | {min(t[v]) / fwd / per:.2f} | {(min(t['none']) - min(t[v])) / fwd / per:.2f} "
              f"| {ratio(v):.3f} |")


if __name__ == "__main__":
    main()
