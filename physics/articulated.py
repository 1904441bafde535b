"""Batched differentiable articulated rigid bodies in generalized coordinates.

State ``[qpos (nq), qvel (nv)]`` in MuJoCo's layout (see articulated_model.py); control
``[ctrl (nu)]``, one value per actuator (physical units before the gear). One control step is
``substeps`` substeps of length ``h = dt / substeps``; each substep is

    kinematics      body poses from qpos (hinge, slide, free joints), joint motion
                    subspaces S (world-frame twists about the world origin)
    M(q)            composite rigid-body algorithm, plus armature (and h * damping when
                    damping is implicit, as MuJoCo's Euler integrator does)
    c(q, qvel)      recursive Newton-Euler with qacc = 0: Coriolis, centrifugal, gravity,
                    and the ground-contact forces (and MuJoCo's inertia-box fluid forces, if
                    the model has a fluid) as external forces on the bodies
    tau             gear * ctrl - damping * qvel - stiffness * (q - springref)
                    (servos: gear * clip(gain * ctrl + b0 + b1 * length + b2 * velocity))
                    + J^T (fixed-tendon spring, damper and limit forces; J = the coefs)
                    (spatial tendons through sites: the same forces, applied as point
                    forces along each straight segment, among the external forces)
                    - frictionloss * qvel / sqrt(qvel^2 + v0^2)  (smoothed dry friction,
                    implicit in the velocity update like damping; v0 = model.friction_v0)
                    (gravity on each body scaled by 1 - gravcomp, MuJoCo's gravity compensation)
                    + joint-limit penalty ke * violation (- kd * qvel while violated)
    qacc            solves M qacc = tau - c   (L^T D L factorization, MuJoCo's tree order:
                    no fill-in)
    qvel'           qvel + h qacc
    qpos'           qpos + h qvel'; free joints: pos + h v', quat * exp(h w' / 2), normalized

which is MuJoCo's semi-implicit Euler (``integrator="Euler"``) for models without contact
and limits. Ground contact is DiffRL's (dflex ``eval_rigid_contacts_art``) penalty model:
contact points (sphere centre, capsule end points, box corners) shifted down by the
geom's radius, and each ellipsoid's lowest point, penetration c = z - ground < 0,

    f_normal  = -ke c - kd c min(v_n, 0)                 (pushes out, damps approach)
    f_fric    = -min(kf |v_t|, -mu ke c) v_t / |v_t|     (viscous up to a Coulomb cap)

The substep runs in the generic kernels of :mod:`articulated_kernels` (primal, tangent and
adjoint stage by stage): one set of kernels for every model, compiled once per float type,
reading the model from the tables :class:`ArticulatedTables` packs. Each call (a control
step, its VJP from the recorded tape, or a batch of JVP probes) is ONE kernel launch, a
parallel loop over envs with the substeps, bodies and dofs serial inside it.

Store or recompute: a recorded step (`step(..., record=True)`) keeps what its VJP reads of every
substep's intermediates in its tape, so its VJP is one adjoint launch; while the live tapes' stored
intermediates would pass `tape_budget` bytes (a long BPTT window of a big model), a recorded
step keeps only its input and its VJP first replays the step (bit-identical) to get them back
(two launches). A JVP batch replays the step, then runs the tangent kernel (two launches); a
full Jacobian replays the step, then runs the adjoint kernel once: every substep's Jacobian from
nv sweeps with unit cotangents on tau (each reaching only its dof's subtree and ancestors) and
one solve, chained with batched matmuls (two launches; a third, the chain kernel, where each of
the chain's products is small; with M cached across substeps, ds unit cotangents through the
whole step instead).
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import numpy as np
import taichi as ti
import torch
from taichi.lang import impl as ti_impl

from mbmix_taichi import _ti
from mbmix_taichi.errors import InputError

from . import articulated_kernels as ak
from ._launch import PER_ENV_TASKS, FastKernel
from .articulated_model import ArticulatedModel, quat_to_mat
from .base import Simulator

__all__ = ["ArticulatedSim", "ArticulatedTables", "ContactParams", "ArticulatedModel", "contact_points"]


@dataclass
class ContactParams:
    """DiffRL / dflex ground-contact material: normal stiffness ke [N/m], damping kd
    [N s/m^2] (scaled by the penetration depth, as in dflex), viscous friction kf [N s/m]
    and Coulomb coefficient mu."""
    ke: float = 1e4
    kd: float = 1e3
    kf: float = 1e3
    mu: float = 0.5


# --------------------------------------------------------------------------- contact points
def contact_points(model: ArticulatedModel):
    """(body, local point [3], distance) per ground-contact point, as dflex's collide()."""
    pts = []
    for g in model.geoms:
        if g.body == 0 or not g.contact or g.type == "plane":
            continue
        R = quat_to_mat(g.quat)
        if g.type == "sphere":
            pts.append((g.body, g.pos.copy(), float(g.size[0])))
        elif g.type in ("capsule", "cylinder"):
            r, hl = float(g.size[0]), float(g.size[1])
            for s in (-1.0, 1.0):
                pts.append((g.body, g.pos + R @ np.array([0.0, 0.0, s * hl]), r if g.type == "capsule" else 0.0))
        elif g.type == "box":
            for sx in (-1, 1):
                for sy in (-1, 1):
                    for sz in (-1, 1):
                        pts.append((g.body, g.pos + R @ (g.size[:3] * np.array([sx, sy, sz])), 0.0))
    return pts


# --------------------------------------------------------------------------- fluid forces
def _fluid_box(body):
    """(principal frame [3x3], equivalent inertia box [3]) of a body, as MuJoCo computes them."""
    Rq = quat_to_mat(body.iquat) if body.iquat is not None else np.linalg.eigh(body.inertia)[1]
    I = np.diag(Rq.T @ body.inertia @ Rq)
    box = [float(np.sqrt(max(1e-15, I[(k + 1) % 3] + I[(k + 2) % 3] - I[k]) / body.mass * 6.0)) for k in range(3)]
    return Rq, box


#: Taichi compile options per kernel. Taichi's "advanced" IR passes (CSE, store-to-load forwarding,
#: repeated full simplification) took ~80% of the adjoint's and the tangent's cold compile (hopper,
#: float64: 40 and 27 of 85 CPU-s for the three kernels; 5 and 7 without them) and bought no speed
#: that a side-by-side run could tell from its noise there (LLVM simplifies the same code after
#: them); the forward keeps them (up to 17% faster, and 18 CPU-s to compile).
#: docs/benchmarks_articulated.md, session 8.
#: Every kernel's loop over envs takes one task per env (PER_ENV_TASKS, physics/_launch.py).
COMPILE_OPTIONS = {"forward": {**PER_ENV_TASKS}, "adjoint": {"advanced_optimization": False, **PER_ENV_TASKS},
                   "tangent": {"advanced_optimization": False, **PER_ENV_TASKS}, "chain": {**PER_ENV_TASKS}}


class _ByBatch:
    """One kernel's launcher for a simulator, with its last, compile-time argument `serial` set to
    whether the launch has one env (`n_at`: the env count's index among the launch's arguments): one
    env runs on the calling thread, more take Taichi's pool, as the cloth's forward (`_fwd1`) does.
    On the CPU every launch runs on the calling thread where a pool could not help: for a kernel
    whose whole launch is less work than waking the pool (`small_launches`: the chain kernel, see
    kernel_chain_madds), and where Taichi's pool has one thread (TI_CPU_MAX_NUM_THREADS=1, a sweep's
    point), which would only take the loop over from the caller. The same code per env either way,
    so the same results to the bit."""

    def __init__(self, name: str, fp: str, fixed, n_at: int, small_launches: bool = False):
        fast = FastKernel(ak.kernels(fp)[name], COMPILE_OPTIONS[name])
        self.parallel, self.serial = (fast.bind((name, fp, one), fixed=fixed) for one in (False, True))
        self.n_at = n_at
        cfg = ti_impl.current_cfg()
        on_cpu = cfg.arch in (ti.x64, ti.arm64)  # (on a GPU a serial loop is one GPU thread)
        self.always_serial = on_cpu and (small_launches or cfg.cpu_max_num_threads == 1)

    def __call__(self, *args):
        one = self.always_serial or args[self.n_at] == 1
        return (self.serial if one else self.parallel)(*args, one)


# --------------------------------------------------------------------------- generic engine tables
#: multiply-adds below which one of the Jacobian chain's batched products runs faster on one torch
#: thread than on torch's pool: waking the pool costs ~0.1 ms per product with OMP_WAIT_POLICY=PASSIVE
#: (set on import), more than such a product (docs/benchmarks_articulated.md, session 17)
_SMALL_PRODUCT = 2_000_000


@contextlib.contextmanager
def _one_torch_thread(on: bool):
    """Runs the block on one torch thread when `on`, then restores the count."""
    if not on:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ArticulatedTables:
    """The model packed for :mod:`articulated_kernels`: int table I, float table P, and the
    per-env workspace size (see the kernels' HEADER for the slots)."""

    def __init__(self, model: ArticulatedModel, h: float, substeps: int, contact: ContactParams | None,
                 implicit_damping: bool, limit_ke: float, limit_kd: float, mass_matrix_every: int = 1):
        K = ak
        nb, nj, nq, nv, nu = len(model.bodies), len(model.joints), model.nq, model.nv, model.nu
        eye = np.eye(3)
        pts = []  # (kind, body, local point, distance, geom rotation, ellipsoid size)
        if contact is not None and model.ground is not None:
            pts = [(K.POINT, b, lp, dist, eye, np.zeros(3)) for (b, lp, dist) in contact_points(model)
                   if model.chain_dofs(b)]
            pts += [(K.ELLIPSOID, g.body, g.pos, 0.0, quat_to_mat(g.quat), g.size[:3]) for g in model.geoms
                    if g.type == "ellipsoid" and g.contact and g.body and model.chain_dofs(g.body)]
        head = {k: 0 for k in K.HEADER}
        head.update(NB=nb, NJ=nj, NQ=nq, NV=nv, NU=nu, NPT=len(pts), NX=nq + nv, NT=len(model.tendons),
                    NST=len(model.spatial_tendons),
                    SUBSTEPS=substeps, FLUID=int(model.fluid is not None), MMK=mass_matrix_every)
        ints, floats = [], []

        def table(store, name, values):
            head[name] = len(store) + (len(K.HEADER) if store is ints else 0)
            store.extend(values)

        dof_body = [0] * nv
        dof_parent = [-1] * nv
        last = [-1] * nb
        for b in range(1, nb):
            prev = last[model.bodies[b].parent]
            for d in model.body_dofs(b):
                dof_body[d], dof_parent[d], prev = b, prev, d
            last[b] = prev
        bodies = model.bodies
        table(ints, "B_PARENT", [max(bd.parent, 0) for bd in bodies])
        table(ints, "B_JADR", [bd.joints[0] if bd.joints else 0 for bd in bodies])
        table(ints, "B_JNUM", [len(bd.joints) for bd in bodies])
        table(ints, "B_DADR", [model.body_dofs(b)[0] if model.body_dofs(b) else 0 for b in range(nb)])
        table(ints, "B_DNUM", [len(model.body_dofs(b)) for b in range(nb)])
        for bd in bodies:  # the kernels address a body's joints as one range (B_JADR, B_JNUM)
            if bd.joints and bd.joints != list(range(bd.joints[0], bd.joints[0] + len(bd.joints))):
                raise ValueError(f"body {bd.name!r}: its joints are not numbered consecutively")
        types = {"hinge": K.HINGE, "slide": K.SLIDE, "free": K.FREE}
        table(ints, "J_TYPE", [types[j.type] for j in model.joints])
        table(ints, "J_QADR", [j.qadr for j in model.joints])
        table(ints, "J_DADR", [j.dadr for j in model.joints])
        table(ints, "J_LIMITED", [int(j.range is not None and limit_ke > 0 and j.type != "free") for j in model.joints])
        table(ints, "D_BODY", dof_body)
        table(ints, "D_PARENT", dof_parent)
        table(ints, "PT_BODY", [p[1] for p in pts])
        table(ints, "PT_KIND", [p[0] for p in pts])
        tj = [(model.joints[ji], float(coef)) for t in model.tendons for ji, coef in t.joints]
        table(ints, "T_ADR", list(np.cumsum([0] + [len(t.joints) for t in model.tendons])[:-1]))
        table(ints, "T_NUM", [len(t.joints) for t in model.tendons])
        table(ints, "T_LIMITED", [int(t.range is not None and limit_ke > 0) for t in model.tendons])
        table(ints, "TJ_QADR", [j.qadr for j, _ in tj])
        table(ints, "TJ_DADR", [j.dadr for j, _ in tj])
        paths = [model.tendons[a.tendon].joints if a.tendon is not None else [(a.joint, 1.0)] for a in model.actuators]
        ap = [(model.joints[ji], float(coef)) for path in paths for ji, coef in path]
        table(ints, "A_PADR", list(np.cumsum([0] + [len(p) for p in paths])[:-1]))
        table(ints, "A_PNUM", [len(p) for p in paths])
        table(ints, "A_SERVO", [int(a.bias is not None or a.forcerange is not None) for a in model.actuators])
        table(ints, "A_CLIP", [int(a.forcerange is not None) for a in model.actuators])
        table(ints, "AP_QADR", [j.qadr for j, _ in ap])
        table(ints, "AP_DADR", [j.dadr for j, _ in ap])
        sts = model.spatial_tendons
        segs = [(a, b) for t in sts for a, b in zip(t.sites[:-1], t.sites[1:])]
        table(ints, "ST_ADR", list(np.cumsum([0] + [len(t.sites) - 1 for t in sts])[:-1]))
        table(ints, "ST_NUM", [len(t.sites) - 1 for t in sts])
        table(ints, "ST_LIMITED", [int(t.range is not None and limit_ke > 0) for t in sts])
        table(ints, "SG_B1", [a[0] for a, _ in segs])
        table(ints, "SG_B2", [b[0] for _, b in segs])

        def flat(rows, width):
            return [float(v) for r in rows for v in np.asarray(r, float).reshape(width)]

        sub = [[] for _ in range(nb)]
        for b in range(nb - 1, 0, -1):
            sub[b].append(b)
            sub[bodies[b].parent].extend(sub[b])
        # the bodies a unit cotangent on tau at a dof of body f reaches (kernels' `reached`): 2 in
        # f's subtree, 1 an ancestor of f, 0 neither; spatial tendons tie bodies across the tree
        rel = [[2] * nb for _ in range(nb)]
        if not model.spatial_tendons:
            for f in range(nb):
                below = set(sub[f])
                rel[f] = [2 if b in below else 0 for b in range(nb)]
                a = bodies[f].parent
                while a > 0:
                    rel[f][a] = 1
                    a = bodies[a].parent
        table(ints, "B_REL", [r for row in rel for r in row])
        masses = [float(bd.mass) for bd in bodies]
        table(floats, "B_POS", flat([bd.pos for bd in bodies], 3))
        table(floats, "B_ROT", flat([quat_to_mat(bd.quat) for bd in bodies], 9))
        table(floats, "B_MASS", masses + [sum(masses[c] for c in sub[b]) for b in range(nb)])
        table(floats, "B_IPOS", flat([bd.ipos for bd in bodies], 3))
        table(floats, "B_INERTIA", flat([bd.inertia for bd in bodies], 9))
        table(floats, "B_GSCALE", [1.0 - float(bd.gravcomp) for bd in bodies])
        js = model.joints
        table(floats, "J_AXIS", flat([j.axis for j in js], 3))
        table(floats, "J_POS", flat([j.pos for j in js], 3))
        table(floats, "J_REF", [float(j.ref) for j in js])
        table(floats, "J_STIFF", [float(j.stiffness) for j in js])
        table(floats, "J_SPRINGREF", [float(j.springref) for j in js])
        table(floats, "J_LO", [float(j.range[0]) if j.range is not None else 0.0 for j in js])
        table(floats, "J_HI", [float(j.range[1]) if j.range is not None else 0.0 for j in js])
        table(floats, "J_FRIC", [float(j.frictionloss) if j.type != "free" else 0.0 for j in js])
        damp = [0.0] * nv
        diag = [0.0] * nv
        for j in js:
            for d in range(j.dadr, j.dadr + j.nv):
                damp[d] = float(j.damping)
                diag[d] = float(j.armature) + (h * float(j.damping) if implicit_damping else 0.0)
        table(floats, "D_DAMP", damp)
        table(floats, "D_DIAG", diag)
        table(floats, "PT_POS", flat([p[2] for p in pts], 3))
        table(floats, "PT_DIST", [float(p[3]) for p in pts])
        table(floats, "PT_ROT", flat([p[4] for p in pts], 9))
        table(floats, "PT_SIZE", flat([p[5] for p in pts], 3))
        ts = model.tendons
        table(floats, "TJ_COEF", [coef for _, coef in tj])
        for prefix, tendons in (("T_", ts), ("ST_", sts)):  # fixed and spatial tendons: the same parameters
            table(floats, prefix + "STIFF", [float(t.stiffness) for t in tendons])
            # no stiffness: an infinite dead band, so the spring never acts
            table(floats, prefix + "SLO", [float(t.lengthspring[0]) if t.stiffness else -np.inf for t in tendons])
            table(floats, prefix + "SHI", [float(t.lengthspring[1]) if t.stiffness else np.inf for t in tendons])
            table(floats, prefix + "DAMP", [float(t.damping) for t in tendons])
            table(floats, prefix + "RLO", [float(t.range[0]) if t.range is not None else 0.0 for t in tendons])
            table(floats, prefix + "RHI", [float(t.range[1]) if t.range is not None else 0.0 for t in tendons])
        table(floats, "AP_COEF", [coef for _, coef in ap])
        table(floats, "SG_P1", flat([a[1] for a, _ in segs], 3))
        table(floats, "SG_P2", flat([b[1] for _, b in segs], 3))
        acts = model.actuators
        table(floats, "A_GEAR", [float(a.gear) for a in acts])
        table(floats, "A_GAIN", [float(a.gain) for a in acts])
        table(floats, "A_BIAS", flat([a.bias if a.bias is not None else (0.0, 0.0, 0.0) for a in acts], 3))
        table(floats, "A_FR", flat([a.forcerange if a.forcerange is not None else (0.0, 0.0) for a in acts], 2))
        rot, lin, ang = [], [], []
        rho, visc = (float(model.fluid[0]), float(model.fluid[1])) if model.fluid is not None else (0.0, 0.0)
        for bd in bodies:
            if model.fluid is None or bd.parent < 0 or bd.mass < 1e-15:
                rot.append(eye)
                lin.append([0.0] * 4)
                ang.append([0.0] * 4)
                continue
            Rq, box = _fluid_box(bd)
            diam = sum(box) / 3.0
            rot.append(Rq)
            lin.append([3.0 * math.pi * diam * visc]
                       + [0.5 * rho * box[(k + 1) % 3] * box[(k + 2) % 3] for k in range(3)])
            ang.append([math.pi * diam ** 3 * visc]
                       + [rho * box[k] * (box[(k + 1) % 3] ** 4 + box[(k + 2) % 3] ** 4) / 64.0 for k in range(3)])
        table(floats, "FL_ROT", flat(rot, 9))
        table(floats, "FL_LIN", flat(lin, 4))
        table(floats, "FL_ANG", flat(ang, 4))
        c = contact or ContactParams()
        wind = model.fluid[2] if model.fluid is not None else (0.0, 0.0, 0.0)
        scal = dict(H=h, GX=model.gravity[0], GY=model.gravity[1], GZ=model.gravity[2], KE=c.ke, KD=c.kd,
                    KF=c.kf, MU=c.mu, GROUND=model.ground if model.ground is not None else 0.0, LKE=limit_ke,
                    LKD=limit_kd, FRIC_V0=model.friction_v0, WX=wind[0], WY=wind[1], WZ=wind[2])
        table(floats, "SCAL", [float(scal[k]) for k in K.SCALARS])
        # the per-env workspace: primal intermediates, then (from W_GZERO on) adjoint accumulators.
        # The primal slots are ordered by who reads them after the substep: the adjoint first, then
        # the cached mass matrix's adjoint (W_CH, W_CIB), then the tangent (W_JR, W_JP), then none
        # (W_FX, W_TAU), so that a kept substep stores only a prefix of its block (keep_adjoint,
        # keep_tangent): the rest is its scratch and falls into the next substep's block
        nx = nq + nv
        sizes = [("W_X", nx), ("W_XN", nx), ("W_R", 9 * nb), ("W_P", 3 * nb), ("W_V", 6 * nb), ("W_S", 6 * nv),
                 ("W_SD", 6 * nv), ("W_JV", 6 * nj), ("W_C", 3 * nb), ("W_H", 3 * nb), ("W_IB", 9 * nb),
                 ("W_A", 6 * nb), ("W_F", 6 * nb), ("W_M", nv * nv), ("W_QACC", nv),
                 ("W_CH", 3 * nb), ("W_CIB", 9 * nb), ("W_JR", 9 * nj), ("W_JP", 3 * nj),
                 ("W_FX", 6 * nb), ("W_TAU", nv),
                 # the adjoint zeroes W_GZERO..W_GZEND per substep (its accumulators); the rest of
                 # its slots it stores before it reads them (the tangent zeroes them all). W_GT, the
                 # adjoint's twist adjoint of each body frame (6 per body), shares W_GR's slots, the
                 # tangent's dR: no kernel uses both, and a larger stride slowed the forward 4-15%
                 ("W_GXN", nx), ("W_GZERO", 0), ("W_GX", nx), ("W_GT", 0), ("W_GR", 9 * nb),
                 ("W_GV", 6 * nb), ("W_GA", 6 * nb), ("W_GMAB", 12 * nb), ("W_GZV", nv), ("W_GZEND", 0),
                 ("W_GP", 3 * nb),
                 ("W_GS", 6 * nv), ("W_GSD", 6 * nv), ("W_GH", 3 * nb), ("W_GIB", 9 * nb),
                 ("W_GF", 6 * nb), ("W_GTAU", nv), ("W_MAB", 12 * nb),
                 # the cached mass matrix's: shares of S and the body inertias (adjoint), and
                 # (kept across substeps) its cotangent or tangent
                 ("W_GCS", 6 * nv), ("W_GCI", 12 * nb), ("W_TZEND", 0), ("W_GMC", nv * nv),
                 # the substep Jacobians' rows of d qacc / d (state, control)
                 ("W_JA", nv * (nx + model.nu)),
                 # the world positions of the contact points, once per substep for all its cotangents
                 ("W_PTC", 3 * len(pts)),
                 # where the derivative kernels leave the sum of the loads that stream a kept block in
                 ("W_TOUCH", 1)]
        off = 0
        for name, size in sizes:
            head[name] = off
            off += size
        head["WS"] = off
        self.head = head
        self.ints = [head[k] for k in K.HEADER] + ints
        self.floats = floats
        self.ws = off
        self.num_points = len(pts)
        #: entries each kept substep stores for the adjoint (a VJP, a Jacobian) and for the tangent
        self.keep_adjoint = head["W_CH"] if mass_matrix_every == 1 else head["W_JR"]
        self.keep_tangent = head["W_FX"]


#: the kernels index their flat arrays (the workspace above all) with 32-bit integers
INDEX_LIMIT = 2 ** 31 - 1


class _Tape:
    """A recorded step: its control and env count, and either its input state (the VJP replays the
    step) or the buffer W of what its VJP reads of every substep, whose bytes count against the
    simulator's `tape_budget` while the tape lives; when the tape dies, W goes back to the
    simulator's pool for the next recorded step (fresh pages cost page faults on every write)."""
    __slots__ = ("state", "ctrl", "n", "W", "_pool")

    def __init__(self, state, ctrl, n, W=None, pool=None):
        self.state, self.ctrl, self.n, self.W, self._pool = state, ctrl, n, W, pool
        if W is not None:
            pool.live += W.numel()

    def __del__(self):
        # (a __del__ rather than weakref.finalize, whose registry costs ~1-2 us more per recorded step)
        if self.W is not None:
            self._pool.put(self.W)


class _TapePool:
    """Tape buffers: the entries live tapes hold, and free buffers kept for reuse (by size; their
    entries and the live ones together stay within the budget)."""

    def __init__(self):
        self.live = 0  # entries held by live tapes
        self.free: dict[int, list] = {}
        self.free_entries = 0
        self.budget_entries = 0  # the simulator's tape_budget in entries, set at each recorded step

    def get(self, size, make):
        bufs = self.free.get(size)
        if bufs:
            self.free_entries -= size
            return bufs.pop()
        return make(size)

    def put(self, W):
        size = W.numel()
        self.live -= size
        if self.free_entries + self.live + size <= self.budget_entries:
            self.free.setdefault(size, []).append(W)
            self.free_entries += size


def _check_index(size: int, what: str) -> None:
    if size > INDEX_LIMIT:
        raise InputError(f"{what} need {size} scratch entries in one launch, more than the kernels' 32-bit "
                         f"indexing allows ({INDEX_LIMIT}): use fewer envs (or probes) per call")


# --------------------------------------------------------------------------- the simulator
class ArticulatedSim(Simulator):
    """One control step of an :class:`ArticulatedModel`, batched over envs (see module doc).

    Parameters: dt (control step [s]), substeps, dtype, device; contact (ContactParams or
    None: no ground contact), implicit_damping (MuJoCo Euler's (M + h D) qacc = f; False:
    explicit damping as dflex), limit_ke / limit_kd (joint-limit penalty; 0 disables
    limits), mass_matrix_every (1: M is computed every substep; k > 1: at substeps 0, k, 2k, ...
    of each control step and reused by the substeps between, as dflex's MM_caching_frequency,
    which DiffRL's configs set to a whole control step; the derivatives are exact for either).
    """

    jacobian_chunk = 512
    #: a Jacobian's chain of substep products runs in a kernel of its own while each of its S - 1
    #: batched products takes at most this many multiply-adds (N ds^2 (ds + dc)), and in torch's
    #: batched matmuls beyond: two torch calls per product cost ~10-30 us each, which only large
    #: products amortise (measured side by side: docs/benchmarks_articulated.md, sessions 19 and 22).
    #: On the CPU the chain kernel runs on the calling thread: its products are the size at which
    #: torch's own stay on one thread (_SMALL_PRODUCT), and waking Taichi's pool for them costs more
    #: than it returns (session 22: cartpole, 64 envs, 87 -> 31 us CPU and 76 -> 31 us wall a launch)
    kernel_chain_madds = 30_000
    #: kernel launches of one control step (its VJP takes one more from a stored tape, two when
    #: replayed; a batch of JVP probes two: the forward again keeping every substep's
    #: intermediates, then the tangent)
    launches_per_step = 1
    #: bytes of substep intermediates that live recorded tapes may hold together; beyond it a
    #: recorded step keeps only its input and its VJP replays the step (see the module docstring)
    tape_budget = 2 * 2**30

    def __init__(self, model: ArticulatedModel, dt: float, substeps: int = 1, dtype=torch.float64,
                 device="cpu", contact: ContactParams | None = None, implicit_damping: bool = True,
                 limit_ke: float = 0.0, limit_kd: float = 0.0, mass_matrix_every: int = 1):
        if isinstance(mass_matrix_every, bool) or not isinstance(mass_matrix_every, (int, np.integer)) \
                or mass_matrix_every < 1:
            raise InputError(f"mass_matrix_every must be an int >= 1, got {mass_matrix_every!r}")
        _ti.ensure()
        model.finalize()
        self.model = model
        self.dt = float(dt)
        self.substeps = int(substeps)
        self.h = self.dt / self.substeps
        self.dtype = dtype
        self.device = _ti.torch_device(device)
        self.contact = contact
        self.implicit_damping, self.limit_ke, self.limit_kd = bool(implicit_damping), float(limit_ke), float(limit_kd)
        self.mass_matrix_every = int(mass_matrix_every)
        self.nq, self.nv, self.nu = model.nq, model.nv, model.nu
        self.state_dim = self.nq + self.nv
        self.control_dim = self.nu
        self.launches = 0
        self.tables = ArticulatedTables(model, self.h, self.substeps, contact, implicit_damping, self.limit_ke,
                                        self.limit_kd, self.mass_matrix_every)
        self._I = torch.tensor(self.tables.ints, dtype=torch.int32, device=self.device)
        self._P = torch.tensor(self.tables.floats, dtype=dtype, device=self.device)
        fp = "f64" if dtype == torch.float64 else "f32"
        # the tables are bound once per simulator; later launches set only the per-call arguments
        self._fwd = _ByBatch("forward", fp, fixed=(0, 1), n_at=6)
        self._adj = _ByBatch("adjoint", fp, fixed=(0, 1), n_at=6)
        self._tan = _ByBatch("tangent", fp, fixed=(0, 1), n_at=6)
        self._chain = _ByBatch("chain", fp, fixed=(0,), n_at=5, small_launches=True)
        self._work = None
        self._sizes: dict = {}  # (envs, keep) -> workspace entries
        self._dummy1 = torch.zeros(1, dtype=dtype, device=self.device)
        self._item = torch.empty((), dtype=dtype).element_size()  # bytes per entry
        self._tapes = _TapePool()

    def bytes_per_env(self, record: bool = False) -> int:
        """A step's scratch; with `record`, the VJP's too: what it reads of every substep (transient)."""
        keep = self.tables.keep_adjoint if record else 0
        return self._item * (self._workspace_size(1, keep) + 4 * self.state_dim)

    # -- helpers
    def _buf(self, *shape):
        return torch.empty(shape, dtype=self.dtype, device=self.device)

    def _primal_size(self, n, keep=0):
        """Entries of n envs' primal intermediates: one block per env, or with keep > 0 (entries
        kept per substep: tables.keep_adjoint or keep_tangent) S blocks of keep entries per env and
        the rest of one block (the last substep's scratch); the adjoint/tangent blocks follow."""
        wp = self.tables.head["W_GXN"]
        return n * (self.substeps * keep + wp - keep) if keep else n * wp

    def _workspace_size(self, n, keep=0):
        """Scratch for n envs: their primal intermediates (see _primal_size), then with keep the
        adjoint/tangent blocks (remembered per (n, keep): every step asks)."""
        size = self._sizes.get((n, keep))
        if size is None:
            wp, ws = self.tables.head["W_GXN"], self.tables.ws
            size = self._primal_size(n, keep) + (n * (ws - wp) if keep else 0)
            _check_index(size, f"{n} envs of this model ({self.nv} dofs, {len(self.model.bodies)} bodies)"
                         + (f" with {self.substeps} substeps kept for a derivative" if keep else ""))
            self._sizes[(n, keep)] = size
        return size

    def _workspace(self, n, keep=0):
        """The simulator's own scratch (kept between calls, grown when needed)."""
        size = self._workspace_size(n, keep)
        if self._work is None or self._work.numel() < size:
            self._work = self._buf(size)
        return self._work

    def _replay(self, state, ctrl, n, keep):
        """The forward again, keeping every substep's intermediates for an adjoint or tangent launch
        (keep: tables.keep_adjoint or keep_tangent)."""
        W = self._workspace(n, keep)
        self._fwd(self._I, self._P, state.contiguous().view(-1), ctrl, self._buf(n * self.state_dim), W, n, keep)
        return W

    def _flat_ctrl(self, control):
        return control.contiguous().view(-1) if self.nu else self._dummy1

    # -- the Simulator contract
    def step(self, state, control, record=False):
        state, control = self.check_inputs(state, control)
        n = state.shape[0]
        out = torch.empty_like(state)
        ctrl = self._flat_ctrl(control)
        self.launches += 1
        if record:
            keep = self.tables.keep_adjoint
            size = self._workspace_size(n, keep)
            self._tapes.budget_entries = self.tape_budget // self._item  # (tape_budget may be set any time)
            if self._tapes.live + size <= self._tapes.budget_entries:
                # store: this launch keeps what the VJP reads of every substep in the tape's own buffer
                W = self._tapes.get(size, self._buf)
                self._fwd(self._I, self._P, state.view(-1), ctrl, out.view(-1), W, n, keep)
                return out, _Tape(None, ctrl.clone(), n, W, self._tapes)
        self._fwd(self._I, self._P, state.view(-1), ctrl, out.view(-1), self._workspace(n), n, 0)
        # recompute: the tape is the step's input; the VJP replays the step (bit-identical)
        return out, (_Tape(state.clone(), ctrl.clone(), n) if record else None)

    def tape_bytes(self) -> tuple[int, int]:
        """(bytes held by live recorded tapes, bytes of free tape buffers kept for reuse)."""
        return self._tapes.live * self._item, self._tapes.free_entries * self._item

    def vjp_tape(self, tape, cotangent):
        n = tape.n
        cotangent = self.check_cotangent(cotangent, n)
        gs = cotangent.clone()
        gc = self._buf(n * max(self.nu, 1))
        W, keep = tape.W, self.tables.keep_adjoint
        if W is None:
            W = self._replay(tape.state, tape.ctrl, n, keep)
            self.launches += 1
        self._adj(self._I, self._P, tape.ctrl, gs.view(-1), gc, W, n, 1, 0, keep)
        self.launches += 1
        # (a plain view: view(n, -1)[:, :nu] costs ~1.4 us more per VJP; the buffer holds one entry
        # per env when there are no controls)
        return gs, (gc.view(n, self.nu) if self.nu else gc.view(n, 1)[:, :0])

    def jvp(self, state, control, t_state, t_control):
        state, control = self.check_inputs(state, control)
        if self.nu:
            self.check_tangents(state, control, t_state, t_control)
        single = t_state.dim() == 2
        if single:
            t_state, t_control = t_state[:, None], t_control[:, None]
        n, p = t_state.shape[0], t_state.shape[1]
        _check_index(n * p * max(self.state_dim, self.nu), f"{n} envs x {p} tangent probes")
        out = t_state.contiguous().clone()
        tc = t_control.contiguous().view(-1) if self.nu else self._dummy1
        ctrl = self._flat_ctrl(control)
        keep = self.tables.keep_tangent
        W = self._replay(state, ctrl, n, keep)
        self._tan(self._I, self._P, ctrl, out.view(-1), tc, W, n, p, keep)
        self.launches += 2
        return out[:, 0] if single else out

    def jacobian(self, state, control):
        """Full Jacobians ([N, ds, ds], [N, ds, dc]) of the control step, exact.

        With M computed every substep, by substeps: one replay, then one adjoint launch that forms
        every substep's Jacobian from nv sweeps (unit cotangents on tau at fixed qacc, each reaching
        only its dof's subtree and ancestors; one solve by M; the integration's share is local),
        chained here with batched matmuls: nv sweeps per substep where the rows of the whole step
        take ds = nq + nv full ones (1.3-2.3x faster at 64 envs, docs/benchmarks_articulated.md,
        sessions 15-16). With
        M cached across substeps they are not separable (M's dependence on the group's first state
        runs through the group), so the whole step's rows are taken instead."""
        state, control = self.check_inputs(state, control)
        if self.mass_matrix_every > 1:
            return self._jacobian_by_rows(state, control)
        return self._jacobian_by_substeps(state, control)

    def _jacobian_by_rows(self, state, control):
        """One replay, then the adjoint kernel with the ds unit cotangents of each env (reverse mode
        costs ds sweeps where the probes of :meth:`Simulator.jacobian` cost ds + dc)."""
        n, ds = state.shape
        _check_index(n * ds * max(ds, self.nu, 1), f"{n} envs x {ds} Jacobian rows")
        ctrl = self._flat_ctrl(control)
        rows = torch.eye(ds, dtype=self.dtype, device=self.device).expand(n, ds, ds).contiguous()
        gc = self._buf(n * ds * max(self.nu, 1))
        keep = self.tables.keep_adjoint
        W = self._replay(state, ctrl, n, keep)
        self._adj(self._I, self._P, ctrl, rows.view(-1), gc, W, n, ds, 0, keep)
        self.launches += 2
        return rows, gc.view(n, ds, -1)[:, :, :self.nu].contiguous()

    def _jacobian_by_substeps(self, state, control):
        """One replay, one adjoint launch writing every substep's Jacobian, then their product
        (_chain_substeps)."""
        n, ds = state.shape
        S, nc = self.substeps, ds + self.nu
        _check_index(n * S * ds * nc, f"{n} envs x {S} substep Jacobians")
        ctrl = self._flat_ctrl(control)
        keep = self.tables.keep_adjoint
        W = self._replay(state, ctrl, n, keep)
        js = self._buf(n, S, ds, nc)
        scratch = self._buf(n * self.nv * max(self.nu, 1))
        self._adj(self._I, self._P, ctrl, js.view(-1), scratch, W, n, self.nv, 1, keep)
        self.launches += 2
        return self._chain_substeps(js)

    def _chain_substeps(self, js):
        """The control step's Jacobian from its substeps' ([n, S, ds, ds + nu], as the adjoint kernel
        leaves them): the chain kernel while each product is small (kernel_chain_madds), else torch's
        batched matmuls."""
        n, S, ds, nc = js.shape
        madds = n * ds * ds * nc  # per product of the chain
        if madds <= self.kernel_chain_madds:
            TX, TU = self._buf(n, ds, ds), self._buf(n, ds, max(self.nu, 1))
            self._chain(self._I, js.view(-1), TX.view(-1), TU.view(-1), self._buf(n * (ds + 1) * nc), n)
            self.launches += 1
            return TX, TU[:, :, :self.nu]
        # the control step's: T <- J_s T, the control columns also collecting J_s's own
        with _one_torch_thread(self.device.type == "cpu" and madds <= _SMALL_PRODUCT):
            T = js[:, 0]
            for s in range(1, S):
                T = torch.bmm(js[:, s, :, :ds], T)
                T[:, :, ds:] += js[:, s, :, ds:]
        return T[:, :, :ds].contiguous(), T[:, :, ds:].contiguous()
