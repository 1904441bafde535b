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
side by side in one run. On a GPU every timed call ends with a device synchronisation (Taichi's
and torch's launches are asynchronous): the figures are of work done, not of work queued.
"""
from __future__ import annotations

import platform
import time


def _synced(fn):
    """fn followed by a wait for the device when Taichi runs on CUDA (a no-op on the CPU)."""
    from . import _ti

    if _ti.current_arch() != "cuda":
        return fn
    import taichi as ti
    import torch

    def call():
        fn()
        ti.sync()
        torch.cuda.synchronize()

    return call


def _best(fn, repeats: int = 5, inner: int = 3) -> float:
    fn = _synced(fn)
    fn()  # warm-up (compiles)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def _best_wall_cpu(fn, repeats: int = 5, inner: int = 3) -> tuple[float, float]:
    """Like _best, with the best CPU time (time.process_time, all threads of the process) beside it."""
    fn = _synced(fn)
    fn()  # warm-up (compiles)
    wall = cpu = float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(inner):
            fn()
        wall = min(wall, (time.perf_counter() - t) / inner)
        cpu = min(cpu, (time.process_time() - c) / inner)
    return wall, cpu


def bench_task(task: str, envs=(1, 16, 64), jacobian_envs=(1, 16), dtype="float32", repeats: int = 5,
               **options) -> list[dict]:
    import torch

    import mbmix_taichi as mt

    rows = []
    for n in envs:
        env = mt.make(task, num_envs=n, seed=0, dtype=dtype, **options)
        sim = env.sim
        g = torch.Generator().manual_seed(0)

        def rand(*shape):  # from the CPU generator (a seed gives the same numbers on every device)
            return torch.rand(*shape, generator=g, dtype=env.dtype).to(env.device)

        def randn(*shape):
            return torch.randn(*shape, generator=g, dtype=env.dtype).to(env.device)

        for _ in range(3):
            env.step(rand(n, env.act_dim) * 2 - 1)
        s = env.get_state()
        c = env.task.control(rand(n, env.act_dim) * 2 - 1).contiguous()
        cot = randn(*s.shape)
        ts = randn(*s.shape)
        tc = randn(*c.shape)
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
        t, tc = _best_wall_cpu(frame, repeats, inner=frames)
        used = "wide" if sim.uses_wide_layout(num_cloths) else "fused"
        rows.append({"d": d, "particles": d * d, "springs": m.num_springs, "cloths": num_cloths, "layout": used,
                     "frame_ms": t * 1e3, "frame_cpu_ms": tc * 1e3, "mps": num_cloths * d * d * 16 / t / 1e6,
                     "mps_cpu": num_cloths * d * d * 16 / tc / 1e6, "launches": launches})
    return rows


# ------------------------------------------------------------------ the plain serial C reference
# The forward arithmetic of physics/cloth.py's fused `_forward` kernel (spring forces with damping
# as in `_spring_geom`, semi-implicit Euler with gravity and drag, ground contact with Coulomb
# friction as in `_contact`, held particles moving rigidly with their picker, the pickers' ground
# clamp), written the way a C programmer would: float[3] arrays, spring index arrays, forces zeroed
# and scattered per substep, positions and velocities updated in place. float32, no -ffast-math.
# Compiled at benchmark time only (never a dependency of the package); see bench_c_reference.
C_CLOTH = r"""
#include <math.h>
#include <string.h>

void cloth_frame(int n, int M, int K, int S,
                 const int *si, const int *sj, const float *rest, const float *ke, const float *kd,
                 const float *inv_m, const int *held_by, const float *prm /* dt gx gy gz drag mu h */,
                 const float *ctrl /* [K][3] picker displacement of the frame */,
                 float (*x)[3], float (*v)[3], float (*picker)[3], float (*f)[3])
{
    const float dt = prm[0], gx = prm[1], gy = prm[2], gz = prm[3], drag = prm[4], mu = prm[5], h = prm[6];
    float disp[K > 0 ? K : 1][3];
    for (int q = 0; q < K; q++) {          /* ground clamp: z_low = min(picker z, held particles' z) */
        float zlow = picker[q][2];
        for (int i = 0; i < n; i++)
            if (held_by[i] == q && x[i][2] < zlow) zlow = x[i][2];
        disp[q][0] = ctrl[3 * q]; disp[q][1] = ctrl[3 * q + 1]; disp[q][2] = ctrl[3 * q + 2];
        if (disp[q][2] < h - zlow) disp[q][2] = h - zlow;
    }
    for (int s = 0; s < S; s++) {
        memset(f, 0, sizeof(float[3]) * (size_t)n);
        for (int k = 0; k < M; k++) {
            const int i = si[k], j = sj[k];
            const float dx = x[i][0] - x[j][0], dy = x[i][1] - x[j][1], dz = x[i][2] - x[j][2];
            const float wx = v[i][0] - v[j][0], wy = v[i][1] - v[j][1], wz = v[i][2] - v[j][2];
            float l = sqrtf(dx * dx + dy * dy + dz * dz);
            if (l < 1e-9f) l = 1e-9f;
            const float il = 1.0f / l;
            const float nx = dx * il, ny = dy * il, nz = dz * il;
            const float c = ke[k] * (l - rest[k]) + kd[k] * (nx * wx + ny * wy + nz * wz);
            const float fx = -c * nx, fy = -c * ny, fz = -c * nz;
            f[i][0] += fx; f[i][1] += fy; f[i][2] += fz;
            f[j][0] -= fx; f[j][1] -= fy; f[j][2] -= fz;
        }
        for (int i = 0; i < n; i++) {
            const int p = held_by[i];
            if (p >= 0) {
                for (int a = 0; a < 3; a++) {
                    const float dp = disp[p][a] / (float)S;
                    x[i][a] += dp;
                    v[i][a] = dp / dt;
                }
            } else {
                const float g[3] = {gx, gy, gz};
                float u[3];
                for (int a = 0; a < 3; a++)
                    u[a] = v[i][a] + dt * (f[i][a] * inv_m[i] + g[a] - drag * v[i][a]);
                if (x[i][2] + dt * u[2] < h) {
                    const float vz = (h - x[i][2]) / dt, dn = vz - u[2];
                    const float vt = sqrtf(u[0] * u[0] + u[1] * u[1]);
                    float scale = 0.0f;
                    if (vt > 1e-12f) { scale = 1.0f - mu * dn / vt; if (scale < 0.0f) scale = 0.0f; }
                    u[0] *= scale; u[1] *= scale; u[2] = vz;
                }
                for (int a = 0; a < 3; a++) {
                    v[i][a] = u[a];
                    x[i][a] += dt * u[a];
                }
            }
        }
    }
    for (int q = 0; q < K; q++)
        for (int a = 0; a < 3; a++) picker[q][a] += disp[q][a];
}
"""

C_FLAGS = (("-O2",), ("-O3", "-march=native"))


def compile_c_reference(flags=("-O2",)):
    """Compile C_CLOTH with the system C compiler into a temporary directory and load it with
    ctypes; (library, None), or (None, why) when no compiler is found or the build fails."""
    import ctypes
    import os
    import shutil
    import subprocess
    import tempfile

    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None, "no C compiler found (set CC)"
    tmp = tempfile.mkdtemp(prefix="mbmix_cref_")
    src, lib = os.path.join(tmp, "cloth_ref.c"), os.path.join(tmp, "cloth_ref.so")
    with open(src, "w") as fh:
        fh.write(C_CLOTH)
    cmd = [cc, *flags, "-shared", "-fPIC", "-o", lib, src, "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"{' '.join(cmd)} failed: {r.stderr.strip()[:300]}"
    so = ctypes.CDLL(lib)
    shutil.rmtree(tmp, ignore_errors=True)  # loaded: the mapping outlives the file
    so.cloth_frame.restype = None
    return so, " ".join([os.path.basename(cc), *flags])


class _CCloth:
    """The C reference on one cloth: the ClothSim's own topology and parameters as numpy arrays."""

    def __init__(self, so, sim, state):
        import ctypes

        import numpy as np

        n, K = sim.n, sim.K
        arr = lambda t, dt: np.ascontiguousarray(t.detach().cpu().numpy().astype(dt))  # noqa: E731
        self.topo = [arr(getattr(sim, a), np.int32) for a in ("si", "sj")]
        self.topo += [arr(getattr(sim, a), np.float32) for a in ("rest", "ke", "kd", "inv_m")]
        self.topo += [arr(sim.held_by, np.int32), arr(sim.prm, np.float32)]
        s = arr(state[0], np.float32)
        self.x, self.v = s[:3 * n].reshape(n, 3).copy(), s[3 * n:6 * n].reshape(n, 3).copy()
        self.picker = s[6 * n:].reshape(max(K, 1), 3)[:K].copy()
        self.f = np.zeros((n, 3), np.float32)
        ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
        i = ctypes.c_int
        self._ctrl = np.zeros(3 * max(K, 1), np.float32)
        self._args = (i(n), i(int(sim.si.shape[0])), i(K), i(sim.substeps), *map(ptr, self.topo), ptr(self._ctrl),
                      ptr(self.x), ptr(self.v), ptr(self.picker), ptr(self.f))
        self._fn = so.cloth_frame

    def frame(self, ctrl):
        self._ctrl[:ctrl.size] = ctrl.reshape(-1)
        self._fn(*self._args)
        return self.x

    def state(self):
        import numpy as np

        return np.concatenate([self.x.ravel(), self.v.ravel(), self.picker.ravel()])


def _interleaved(fns, repeats: int, inner: int):
    """Best-of-`repeats` seconds per call of each function, wall and CPU (time.process_time),
    the functions taking turns within each repeat so that load changes hit them alike."""
    for fn in fns:
        fn()  # warm-up
    wall = [float("inf")] * len(fns)
    cpu = [float("inf")] * len(fns)
    for _ in range(repeats):
        for a, fn in enumerate(fns):
            t, c = time.perf_counter(), time.process_time()
            for _ in range(inner):
                fn()
            wall[a] = min(wall[a], (time.perf_counter() - t) / inner)
            cpu[a] = min(cpu[a], (time.process_time() - c) / inner)
    return wall, cpu


def bench_c_reference(sizes=(32, 64, 128), frames: int = 10, repeats: int = 7, flags=C_FLAGS,
                      verify_frames: int = 3) -> list[dict]:
    """Warp's workload (as bench_peer: one cloth, fused layout) against the plain serial C loop of
    the same arithmetic (C_CLOTH) compiled with each of `flags`, side by side and interleaved.
    Before timing, both run `verify_frames` frames from the same state and their states are
    compared (max abs difference; float32 rounding, the kernel's compiler contracting and reordering
    a little differently). Rows: one per size and reference; [] with `skipped` set if no compiler."""
    import numpy as np
    import torch

    from . import _ti
    from .physics.cloth import ClothSim
    from .physics.cloth_model import grid

    libs = []
    for fl in flags:
        so, what = compile_c_reference(fl)
        if so is None:
            return [{"skipped": what}]
        libs.append((so, what))
    _ti.init("auto")
    rows = []
    for d in sizes:
        m = grid(d, d, 0.1, ke=(1000.0,) * 3, kd=(10.0,) * 3, mass=0.1)
        sim = ClothSim(m, held=[[0], [(d - 1) * d]], dt=1 / 60, substeps=16, gravity=(0.0, 0.0, -9.8),
                       drag=0.0, friction=0.0, ground=None, dtype=torch.float32, device=_ti.device(), layout="fused")
        s0 = sim.make_state(torch.tensor(m.positions, dtype=torch.float32)[None])
        c = torch.zeros(1, 6, device=sim.device)
        cn = c[0].cpu().numpy()
        refs = [_CCloth(so, sim, s0) for so, _ in libs]
        s = s0
        for _ in range(verify_frames):  # the same work: same input, same result to rounding
            s, _ = sim.step(s, c)
            for r in refs:
                r.frame(cn)
        ours_state = s[0].cpu().numpy()
        scale = float(np.abs(ours_state).max())
        diffs = [float(np.abs(r.state() - ours_state).max()) for r in refs]
        state = [s]

        def ours():
            state[0], _ = sim.step(state[0], c)
            return state[0].cpu().numpy()  # read the positions back, as bench_peer does

        fns = [ours] + [(lambda r=r: r.frame(cn)) for r in refs]
        wall, cpu = _interleaved(fns, repeats, frames)
        for (so, what), r_wall, r_cpu, diff in zip(libs, wall[1:], cpu[1:], diffs):
            rows.append({"d": d, "particles": d * d, "springs": m.num_springs, "ref": what,
                         "ours_ms": wall[0] * 1e3, "ours_cpu_ms": cpu[0] * 1e3, "c_ms": r_wall * 1e3,
                         "c_cpu_ms": r_cpu * 1e3, "ours_mps": d * d * 16 / wall[0] / 1e6,
                         "c_mps": d * d * 16 / r_wall / 1e6, "ours_mps_cpu": d * d * 16 / cpu[0] / 1e6,
                         "c_mps_cpu": d * d * 16 / r_cpu / 1e6, "speed_wall": r_wall / wall[0],
                         "speed_cpu": r_cpu / cpu[0], "max_diff": diff, "scale": scale})
    return rows


def c_table(rows) -> str:
    if rows and "skipped" in rows[0]:
        return f"(C reference skipped: {rows[0]['skipped']})"
    out = ["| d | particles | springs | C reference | ours frame ms (CPU ms) | C frame ms (CPU ms) | "
           "ours M particle-substeps/s, wall (CPU) | C M particle-substeps/s, wall (CPU) | "
           "ours speed / C speed, CPU time | same, wall time | "
           "max abs diff of the states after 3 frames |", "|" + "---|" * 11]
    for r in rows:
        out.append(f"| {r['d']} | {r['particles']} | {r['springs']} | `{r['ref']}` | {r['ours_ms']:.2f} "
                   f"({r['ours_cpu_ms']:.2f}) | {r['c_ms']:.2f} ({r['c_cpu_ms']:.2f}) | {r['ours_mps']:.1f} "
                   f"({r['ours_mps_cpu']:.1f}) | {r['c_mps']:.1f} ({r['c_mps_cpu']:.1f}) | **{r['speed_cpu']:.2f}** | "
                   f"{r['speed_wall']:.2f} | "
                   f"{r['max_diff']:.1e} (of {r['scale']:.1f}) |")
    return "\n".join(out)


def task_table(rows) -> str:
    out = ["| task | envs | state dim | fwd steps/s | fwd+VJP steps/s | JVP steps/s | Jacobians/s | "
           "VJP time / fwd time | launches per step (fwd, fwd+VJP) |", "|" + "---|" * 9]
    for r in rows:
        jac = f"{r['jac']:.2f}" if r["jac"] else "-"
        out.append(f"| {r['task']} | {r['envs']} | {r['state_dim']} | {r['fwd']:.0f} | {r['fwd_vjp']:.0f} | "
                   f"{r['jvp']:.0f} | {jac} | {r['bwd_over_fwd']:.2f} | {r['launches_fwd']}, {r['launches_fwd_vjp']} |")
    return "\n".join(out)


def peer_table(rows) -> str:
    out = ["| d | particles | springs | cloths at once | kernel layout | frame ms (CPU ms) | "
           "M particle-substeps/s, wall (per CPU second) | launches per frame |", "|" + "---|" * 8]
    for r in rows:
        out.append(f"| {r['d']} | {r['particles']} | {r['springs']} | {r['cloths']} | {r['layout']} | {r['frame_ms']:.2f} "
                   f"({r['frame_cpu_ms']:.2f}) | {r['mps']:.1f} ({r['mps_cpu']:.1f}) | {r['launches']} |")
    return "\n".join(out)


def machine() -> str:
    import os

    import torch

    import taichi as ti

    from . import _ti

    gpu = ""
    if _ti.current_arch() == "cuda":
        props = torch.cuda.get_device_properties(0)
        gpu = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs), "
    return (f"{gpu}{platform.processor() or platform.machine()}, {os.cpu_count()} cores, taichi "
            f"{'.'.join(map(str, ti.__version__))} arch {_ti.current_arch()}, torch {torch.__version__}, "
            f"python {platform.python_version()}")
