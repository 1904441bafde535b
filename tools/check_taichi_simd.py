"""Whether Taichi's CPU JIT turns several envs' identical arithmetic into SIMD lanes on this machine.

    python tools/check_taichi_simd.py [--envs 64] [--chain 200]

Issue 15 asked to consider an env-major layout that vectorises across envs. This measures what such
a layout could gain before any kernel is rewritten for it: the same arithmetic (a chain of spatial
inertia products and cross products per env, the pass up's kind of work) in two kernels,
- `per_env`: one env per loop iteration, its values in a row (the simulators' layout today);
- `lanes`: four envs per iteration, every quantity a 4-vector over envs, stored env-interleaved
  ([group][field][lane]), the code a vectoriser needs to emit one 4-wide instruction per operation,
and reports, for each, the SIMD widths in the LLVM IR that Taichi's JIT produced after its -O3
pipeline (`print_kernel_llvm_ir_optimized`, written to a scratch folder) and the CPU time per env
per product (one thread, the medians of 7 rounds in turns, each kernel also run with no products so
that the launch and the loads are taken out). The two must agree to rounding; it exits 1 if not.
"""
import argparse
import glob
import os
import re
import statistics
import tempfile
import time

import numpy as np

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--envs", type=int, default=64, help="envs (a multiple of 4)")
ap.add_argument("--chain", type=int, default=200, help="inertia products per env")
args = ap.parse_args()
if args.envs % 4:
    raise SystemExit("--envs must be a multiple of 4")

scratch = tempfile.mkdtemp(prefix="ti_simd_")
os.chdir(scratch)  # Taichi writes its optimized IR files into the working directory
import taichi as ti  # noqa: E402

ti.init(arch=ti.cpu, default_fp=ti.f64, cpu_max_num_threads=1, offline_cache=False,
        print_kernel_llvm_ir_optimized=True, log_level=ti.WARN)
NF = 16  # fields per env: m, h (3), the symmetric 3x3 inertia (6), w (3), v (3)


@ti.kernel
def per_env(A: ti.types.ndarray(), OUT: ti.types.ndarray(), n: ti.i32, k: ti.i32):
    ti.loop_config(serialize=True)
    for e in range(n):
        o = e * NF
        m = A[o]
        h = ti.Vector([A[o + 1], A[o + 2], A[o + 3]])
        Ib = ti.Matrix([[A[o + 4], A[o + 5], A[o + 6]], [A[o + 5], A[o + 7], A[o + 8]],
                        [A[o + 6], A[o + 8], A[o + 9]]])
        w = ti.Vector([A[o + 10], A[o + 11], A[o + 12]])
        v = ti.Vector([A[o + 13], A[o + 14], A[o + 15]])
        for _ in range(k):
            w2, v2 = Ib @ w + h.cross(v), m * v - h.cross(w)
            w, v = w2 * 0.1 + w.cross(v) * 0.01, v2 * 0.1 + w
        for i in ti.static(range(3)):
            OUT[e * 6 + i] = w[i]
            OUT[e * 6 + 3 + i] = v[i]


@ti.func
def lane_load(A: ti.template(), o, f):
    return ti.Vector([A[o + f * 4 + ln] for ln in ti.static(range(4))])


@ti.kernel
def lanes(A: ti.types.ndarray(), OUT: ti.types.ndarray(), n: ti.i32, k: ti.i32):
    ti.loop_config(serialize=True)
    for g in range(n // 4):
        o = g * NF * 4
        m = lane_load(A, o, 0)
        hx, hy, hz = lane_load(A, o, 1), lane_load(A, o, 2), lane_load(A, o, 3)
        i00, i01, i02 = lane_load(A, o, 4), lane_load(A, o, 5), lane_load(A, o, 6)
        i11, i12, i22 = lane_load(A, o, 7), lane_load(A, o, 8), lane_load(A, o, 9)
        wx, wy, wz = lane_load(A, o, 10), lane_load(A, o, 11), lane_load(A, o, 12)
        vx, vy, vz = lane_load(A, o, 13), lane_load(A, o, 14), lane_load(A, o, 15)
        for _ in range(k):
            a0 = i00 * wx + i01 * wy + i02 * wz + (hy * vz - hz * vy)
            a1 = i01 * wx + i11 * wy + i12 * wz + (hz * vx - hx * vz)
            a2 = i02 * wx + i12 * wy + i22 * wz + (hx * vy - hy * vx)
            b0, b1, b2 = m * vx - (hy * wz - hz * wy), m * vy - (hz * wx - hx * wz), m * vz - (hx * wy - hy * wx)
            c0, c1, c2 = wy * vz - wz * vy, wz * vx - wx * vz, wx * vy - wy * vx
            nwx, nwy, nwz = a0 * 0.1 + c0 * 0.01, a1 * 0.1 + c1 * 0.01, a2 * 0.1 + c2 * 0.01
            vx, vy, vz = b0 * 0.1 + wx, b1 * 0.1 + wy, b2 * 0.1 + wz
            wx, wy, wz = nwx, nwy, nwz
        for ln in ti.static(range(4)):
            e = g * 4 + ln
            OUT[e * 6 + 0], OUT[e * 6 + 1], OUT[e * 6 + 2] = wx[ln], wy[ln], wz[ln]
            OUT[e * 6 + 3], OUT[e * 6 + 4], OUT[e * 6 + 5] = vx[ln], vy[ln], vz[ln]


n, K = args.envs, args.chain
rng = np.random.default_rng(0)
a = rng.standard_normal((n, NF)) * 0.3
a[:, 0] = 1.0 + np.abs(a[:, 0])  # a mass
A1, A4 = ti.ndarray(ti.f64, n * NF), ti.ndarray(ti.f64, n * NF)
A1.from_numpy(a.reshape(-1))
A4.from_numpy(a.reshape(n // 4, 4, NF).transpose(0, 2, 1).reshape(-1))  # [group][field][lane]
O1, O4 = ti.ndarray(ti.f64, n * 6), ti.ndarray(ti.f64, n * 6)


def widths_since(seen):
    """SIMD widths (lanes x element) in the optimized IR files Taichi wrote since `seen`."""
    new = sorted(set(glob.glob("taichi_kernel_cpu_llvm_ir_optimized_*.ll")) - seen)
    found = {}
    for f in new:
        for lanes_, ty in re.findall(r"<(\d+) x (double|float|i64|i32)>", open(f).read()):
            found[f"{lanes_} x {ty}"] = found.get(f"{lanes_} x {ty}", 0) + 1
    return found, seen | set(new)


seen = set(glob.glob("*.ll"))
per_env(A1, O1, n, K)
ti.sync()
w1, seen = widths_since(seen)
lanes(A4, O4, n, K)
ti.sync()
w4, seen = widths_since(seen)
r1, r4 = O1.to_numpy(), O4.to_numpy()
agree = np.allclose(r1, r4, rtol=1e-12, atol=1e-300)


def cpu_us_per_env(fn, A, O, k, reps=50):
    c0 = time.process_time()
    for _ in range(reps):
        fn(A, O, n, k)
    ti.sync()
    return (time.process_time() - c0) / reps / n * 1e6


# each kernel at K products and at none (the launch, loads and stores), in turns; the slope between
# the two is the arithmetic's own cost per product and env
runs = {(name, k): [] for name in ("per_env", "lanes") for k in (K, 0)}
kernels = {"per_env": (per_env, A1, O1), "lanes": (lanes, A4, O4)}
for r in range(7):
    order = list(runs)
    for name, k in (order if r % 2 == 0 else order[::-1]):
        fn, A, O = kernels[name]
        runs[name, k].append(cpu_us_per_env(fn, A, O, k))
med = {key: statistics.median(v) for key, v in runs.items()}
slope = {name: (med[name, K] - med[name, 0]) / K * 1e3 for name in kernels}
print(f"Taichi {'.'.join(map(str, ti.__version__))}, {n} envs, {K} inertia products each, one thread, CPU time")
for name, w in (("per_env", w1), ("lanes", w4)):
    print(f"{name:8s} IR vector types {w or 'none'}; {med[name, K]:.3f} us per env "
          f"({med[name, 0]:.3f} with no products): {slope[name]:.2f} ns per product")
print(f"lanes / per_env per product: {slope['lanes'] / slope['per_env']:.2f} (per_env's products form one "
      f"dependent chain per env, lanes' four: the ratio holds SIMD and instruction-level parallelism "
      f"together); results agree: {agree}")
raise SystemExit(0 if agree else 1)
