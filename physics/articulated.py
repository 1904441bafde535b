"""Batched differentiable articulated rigid bodies in generalized coordinates.

State ``[qpos (nq), qvel (nv)]`` in MuJoCo's layout (see articulated_model.py); control
``[ctrl (nu)]``, one value per motor (physical units before the gear). One control step is
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

The substep is written once over symbolic scalars and transformed into three Taichi
kernels (primal with tape, tangent, adjoint; see articulated_ad.py): exact VJP, JVP and
Jacobians of the whole control step, each one parallel loop over envs (or envs x probes)
with all bodies and substeps serial inside it. Small models (up to articulated_ad.CHUNK
graph nodes per substep: cart-pole, hopper, the MuJoCo test models) take ONE kernel launch
per call. Larger substeps are split into chunks, each its own kernel, because Taichi 1.7's
compile time grows quadratically with kernel size; they take substeps x chunks launches
(cheetah 3, ant 8, humanoid 17 chunks) - see ``launches_per_step``.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from . import articulated_ad as ad
from . import articulated_kernels as ak
from .articulated_model import ArticulatedModel, quat_to_mat
from ._launch import FastKernel
from .base import Simulator

__all__ = ["ArticulatedSim", "ContactParams", "ArticulatedModel"]


@dataclass
class ContactParams:
    """DiffRL / dflex ground-contact material: normal stiffness ke [N/m], damping kd
    [N s/m^2] (scaled by the penetration depth, as in dflex), viscous friction kf [N s/m]
    and Coulomb coefficient mu."""
    ke: float = 1e4
    kd: float = 1e3
    kf: float = 1e3
    mu: float = 0.5


# --------------------------------------------------------------------------- small algebra
def _v(a, b, f):
    return [f(x, y) for x, y in zip(a, b)]


def vadd(a, b):
    return [x + y for x, y in zip(a, b)]


def vsub(a, b):
    return [x - y for x, y in zip(a, b)]


def vscale(a, s):
    return [x * s for x in a]


def dot(a, b):
    out = a[0] * b[0]
    for x, y in zip(a[1:], b[1:]):
        out = out + x * y
    return out


def cross(a, b):
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def matvec(M, v):
    return [dot(row, v) for row in M]


def matmul(A, B):
    return [[dot(A[i], [B[0][j], B[1][j], B[2][j]]) for j in range(3)] for i in range(3)]


def transpose(A):
    return [[A[j][i] for j in range(3)] for i in range(3)]


def crm(V, S):
    """Spatial motion cross product V x S (twists (w, v))."""
    w, v = V[:3], V[3:]
    sw, sv = S[:3], S[3:]
    return cross(w, sw) + vadd(cross(w, sv), cross(v, sw))


def crf(V, F):
    """Spatial force cross product V x* F (wrenches (n, f))."""
    w, v = V[:3], V[3:]
    n, f = F[:3], F[3:]
    return vadd(cross(w, n), cross(v, f)) + cross(w, f)


def inertia_apply(I, V):
    """(m, h = m c, Ibar) applied to twist (w, v): (Ibar w + h x v, m v - h x w)."""
    m, h, Ib = I
    w, v = V[:3], V[3:]
    return vadd(matvec(Ib, w), cross(h, v)) + vsub(vscale(v, m), cross(h, w))


def quat_to_mat_sym(w, x, y, z):
    return [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]


def _skew(a):
    return np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])


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


def _absx(x):
    """|x| x, exact and differentiable."""
    return ad.select(ad.less(x, 0.0), -(x * x), x * x)


def _fluid_forces(model, R, P, V, Fext):
    """MuJoCo's inertia-box fluid model (mj_inertiaBoxFluidModel): viscous (Stokes) and
    quadratic drag on each body's equivalent inertia box, in its principal frame, at its
    centre of mass, relative to the wind. Added to Fext as world wrenches about the origin."""
    rho, mu, wind = float(model.fluid[0]), float(model.fluid[1]), [float(x) for x in model.fluid[2]]
    for b in range(1, len(model.bodies)):
        body = model.bodies[b]
        if body.mass < 1e-15:
            continue
        Rq, box = _fluid_box(body)
        Ri = matmul(R[b], [[float(x) for x in row] for row in Rq])
        RiT = transpose(Ri)
        c = vadd(P[b], matvec(R[b], [float(x) for x in body.ipos]))
        w = V[b][:3]
        vc = vadd(V[b][3:], cross(w, c))
        lw = matvec(RiT, w)
        lv = matvec(RiT, vsub(vc, wind))
        t = [0.0, 0.0, 0.0]
        f = [0.0, 0.0, 0.0]
        if mu > 0:
            diam = (box[0] + box[1] + box[2]) / 3.0
            t = vscale(lw, -math.pi * diam ** 3 * mu)
            f = vscale(lv, -3.0 * math.pi * diam * mu)
        if rho > 0:
            for k in range(3):
                i, j = (k + 1) % 3, (k + 2) % 3
                f[k] = f[k] - 0.5 * rho * box[i] * box[j] * _absx(lv[k])
                t[k] = t[k] - rho * box[k] * (box[i] ** 4 + box[j] ** 4) / 64.0 * _absx(lw[k])
        fw, tw = matvec(Ri, f), matvec(Ri, t)
        Fext[b] = vadd(Fext[b], vadd(tw, cross(c, fw)) + fw)


# --------------------------------------------------------------------------- one substep
def build_substep(model: ArticulatedModel, h: float, contact: ContactParams | None,
                  implicit_damping: bool, limit_ke: float, limit_kd: float):
    """Trace one substep; returns (graph, outputs [nq + nv] Syms)."""
    g = ad.Graph()
    nq, nv, nu = model.nq, model.nv, model.nu
    q = [g.input("x", i) for i in range(nq)]
    qd = [g.input("x", nq + i) for i in range(nv)]
    u = [g.input("u", i) for i in range(nu)]
    nb = len(model.bodies)
    grav = [float(x) for x in model.gravity]

    # ---- kinematics, motion subspaces, velocities, cdof_dot
    R = [None] * nb
    P = [None] * nb
    V = [None] * nb
    S = [None] * nv          # world twist of each dof
    Sd = [None] * nv         # its time derivative (MuJoCo's cdof_dot)
    dof_body = [0] * nv
    R[0] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    P[0] = [0.0, 0.0, 0.0]
    V[0] = [0.0] * 6
    zero = g.constant(0.0)
    for b in range(1, nb):
        body = model.bodies[b]
        par = body.parent
        Rq = quat_to_mat(body.quat)
        Rb = matmul(R[par], [[float(x) for x in row] for row in Rq])
        pb = vadd(P[par], matvec(R[par], [float(x) for x in body.pos]))
        Vb = list(V[par])
        for ji in body.joints:
            j = model.joints[ji]
            if j.type == "free":
                qa = j.qadr
                pb = q[qa:qa + 3]
                w_, x_, y_, z_ = q[qa + 3:qa + 7]
                n2 = w_ * w_ + x_ * x_ + y_ * y_ + z_ * z_
                inv = 1.0 / ad.sqrt(ad.smax(n2, 1e-30))
                Rb = quat_to_mat_sym(w_ * inv, x_ * inv, y_ * inv, z_ * inv)
                d0 = j.dadr
                for i in range(3):
                    e = [0.0, 0.0, 0.0]
                    e[i] = 1.0
                    S[d0 + i] = [0.0, 0.0, 0.0] + e
                    Sd[d0 + i] = [0.0] * 6
                    dof_body[d0 + i] = b
                for i in range(3):
                    Vb = vadd(Vb, vscale(S[d0 + i], qd[d0 + i]))
                for i in range(3):
                    a = [Rb[0][i], Rb[1][i], Rb[2][i]]
                    S[d0 + 3 + i] = a + cross(pb, a)
                    dof_body[d0 + 3 + i] = b
                for i in range(3):
                    Sd[d0 + 3 + i] = crm(Vb, S[d0 + 3 + i])
                for i in range(3):
                    Vb = vadd(Vb, vscale(S[d0 + 3 + i], qd[d0 + 3 + i]))
                continue
            d = j.dadr
            dof_body[d] = b
            axis = matvec(Rb, [float(x) for x in j.axis])
            ang = q[j.qadr] - float(j.ref)
            if j.type == "slide":
                pb = vadd(pb, vscale(axis, ang))
                S[d] = [0.0, 0.0, 0.0] + axis
            else:
                anchor = vadd(pb, matvec(Rb, [float(x) for x in j.pos]))
                K = _skew(j.axis)
                K2 = K @ K
                s_, c_ = ad.sin(ang), ad.cos(ang)
                one_c = 1.0 - c_
                Rot = [[float(i == k) + s_ * float(K[i, k]) + one_c * float(K2[i, k]) for k in range(3)] for i in range(3)]
                Rb = matmul(Rb, Rot)
                pb = vsub(anchor, matvec(Rb, [float(x) for x in j.pos]))
                S[d] = axis + cross(anchor, axis)
            Sd[d] = crm(Vb, S[d])
            Vb = vadd(Vb, vscale(S[d], qd[d]))
        R[b], P[b], V[b] = Rb, pb, Vb

    # ---- body inertias in world frame (m, h = m c, Ibar about the origin)
    Ibody = [None] * nb
    for b in range(1, nb):
        body = model.bodies[b]
        m = float(body.mass)
        c = vadd(P[b], matvec(R[b], [float(x) for x in body.ipos]))
        Il = [[float(x) for x in row] for row in body.inertia]
        Ic = matmul(matmul(R[b], Il), transpose(R[b]))
        cc = dot(c, c)
        Ib = [[Ic[i][k] + m * ((cc if i == k else 0.0) - c[i] * c[k]) for k in range(3)] for i in range(3)]
        Ibody[b] = (m, vscale(c, m), Ib)

    def iadd(A, B):
        return (A[0] + B[0], vadd(A[1], B[1]), [vadd(A[2][i], B[2][i]) for i in range(3)])

    # ---- external forces: gravity + ground contact (world wrenches about the origin)
    Fext = [None] * nb
    for b in range(1, nb):
        m, hv, _ = Ibody[b]
        gb = vscale(grav, 1.0 - float(model.bodies[b].gravcomp)) if model.bodies[b].gravcomp else grav
        Fext[b] = cross(hv, gb) + vscale(gb, m)
    if model.fluid is not None:
        _fluid_forces(model, R, P, V, Fext)
    if contact is not None and model.ground is not None:
        ke, kd, kf, mu = (float(contact.ke), float(contact.kd), float(contact.kf), float(contact.mu))
        pts = []
        for (b, lp, dist) in contact_points(model):
            if model.chain_dofs(b):  # a body welded to the world cannot be pushed
                p = vadd(P[b], matvec(R[b], [float(x) for x in lp]))
                pts.append((b, [p[0], p[1], p[2] - dist]))
        for gm in model.geoms:
            if gm.type == "ellipsoid" and gm.contact and gm.body and model.chain_dofs(gm.body):
                # the ellipsoid's lowest point: centre - Rg D^2 n / |D n|, n = Rg^T z (geom frame)
                b = gm.body
                Rg = matmul(R[b], [[float(x) for x in row] for row in quat_to_mat(gm.quat)])
                pc = vadd(P[b], matvec(R[b], [float(x) for x in gm.pos]))
                D2n = [float(gm.size[k]) ** 2 * Rg[2][k] for k in range(3)]
                sn = ad.sqrt(ad.smax(dot(D2n, Rg[2]), 1e-30))
                pts.append((b, vsub(pc, vscale(matvec(Rg, D2n), 1.0 / sn))))
        for (b, p) in pts:
            w, vo = V[b][:3], V[b][3:]
            dp = vadd(vo, cross(w, p))
            cpen = p[2] - float(model.ground)
            active = ad.less(cpen, 0.0)
            fn = cpen * ke
            fd = ad.smin(dp[2], 0.0) * kd * (0.0 - cpen)
            vt2 = dp[0] * dp[0] + dp[1] * dp[1]
            vtn = ad.sqrt(ad.smax(vt2, 1e-20))
            lim = (0.0 - mu * ke) * cpen
            stick = ad.less(kf * vtn, lim)
            scale = ad.select(stick, kf, lim / vtn)
            f = [ad.select(active, -(scale * dp[0]), zero), ad.select(active, -(scale * dp[1]), zero),
                 ad.select(active, -(fn + fd), zero)]
            Fext[b] = vadd(Fext[b], cross(p, f) + f)

    # ---- RNEA with qacc = 0
    A = [None] * nb
    A[0] = [0.0] * 6
    F = [None] * nb
    for b in range(1, nb):
        a = list(A[model.bodies[b].parent])
        for d in model.body_dofs(b):
            a = vadd(a, vscale(Sd[d], qd[d]))
        A[b] = a
        F[b] = vsub(vadd(inertia_apply(Ibody[b], a), crf(V[b], inertia_apply(Ibody[b], V[b]))), Fext[b])
    Icomp = list(Ibody)
    for b in range(nb - 1, 0, -1):
        par = model.bodies[b].parent
        if par > 0:
            F[par] = vadd(F[par], F[b])
            Icomp[par] = iadd(Icomp[par], Icomp[b])

    # ---- generalized forces
    tau = [None] * nv
    fric = {}
    for d in range(nv):
        tau[d] = 0.0 - dot(S[d], F[dof_body[d]])
    for j in model.joints:
        if j.type == "free":
            if j.damping:
                for d in range(j.dadr, j.dadr + 6):
                    tau[d] = tau[d] - float(j.damping) * qd[d]
            continue
        d, qi = j.dadr, q[j.qadr]
        if j.damping:
            tau[d] = tau[d] - float(j.damping) * qd[d]
        if j.frictionloss:
            # smoothed dry friction: a damper c(qd) = fl / sqrt(qd^2 + v0^2), implicit like damping
            c = float(j.frictionloss) / ad.sqrt(qd[d] * qd[d] + float(model.friction_v0) ** 2)
            fric[d] = c
            tau[d] = tau[d] - c * qd[d]
        if j.stiffness:
            tau[d] = tau[d] - float(j.stiffness) * (qi - float(j.springref))
        if j.range is not None and limit_ke > 0:
            lo, hi = float(j.range[0]), float(j.range[1])
            below, above = ad.less(qi, lo), ad.less(hi, qi)
            f = ad.select(below, limit_ke * (lo - qi), ad.select(above, limit_ke * (hi - qi), zero))
            if limit_kd:
                f = f - ad.select(below, limit_kd * qd[d], ad.select(above, limit_kd * qd[d], zero))
            tau[d] = tau[d] + f
    for t in model.tendons:
        L = sum_ = None
        for ji, coef in t.joints:
            j = model.joints[ji]
            a, b = float(coef) * q[j.qadr], float(coef) * qd[j.dadr]
            L, sum_ = (a, b) if L is None else (L + a, sum_ + b)
        f = zero
        if t.stiffness:
            lo, hi = float(t.lengthspring[0]), float(t.lengthspring[1])
            f = f + ad.select(ad.less(hi, L), float(t.stiffness) * (hi - L),
                              ad.select(ad.less(L, lo), float(t.stiffness) * (lo - L), zero))
        if t.damping:
            f = f - float(t.damping) * sum_
        if t.range is not None and limit_ke > 0:
            lo, hi = float(t.range[0]), float(t.range[1])
            below, above = ad.less(L, lo), ad.less(hi, L)
            f = f + ad.select(below, limit_ke * (lo - L), ad.select(above, limit_ke * (hi - L), zero))
            if limit_kd:
                f = f - ad.select(below, limit_kd * sum_, ad.select(above, limit_kd * sum_, zero))
        for ji, coef in t.joints:
            d = model.joints[ji].dadr
            tau[d] = tau[d] + float(coef) * f
    for k, act in enumerate(model.actuators):
        path = (model.tendons[act.tendon].joints if act.tendon is not None else [(act.joint, 1.0)])
        gear = float(act.gear)
        if act.bias is None and act.forcerange is None:
            force = u[k]
        else:
            force = float(act.gain) * u[k]
            if act.bias is not None:
                b0, b1, b2 = (float(x) for x in act.bias)
                for ji, coef in path:
                    j = model.joints[ji]
                    if b1:
                        force = force + b1 * gear * float(coef) * q[j.qadr]
                    if b2:
                        force = force + b2 * gear * float(coef) * qd[j.dadr]
                if b0:
                    force = force + b0
            if act.forcerange is not None:
                lo, hi = float(act.forcerange[0]), float(act.forcerange[1])
                force = ad.select(ad.less(force, lo), g.constant(lo),
                                  ad.select(ad.less(hi, force), g.constant(hi), force))
        for ji, coef in path:
            d = model.joints[ji].dadr
            tau[d] = tau[d] + gear * float(coef) * force

    # ---- mass matrix (CRBA)
    Mx = [[g.constant(0.0) for _ in range(nv)] for _ in range(nv)]
    for jd in range(nv):
        Fj = inertia_apply(Icomp[dof_body[jd]], S[jd])
        for i in model.chain_dofs(dof_body[jd]):
            if i > jd:
                continue
            val = dot(S[i], Fj)
            Mx[i][jd] = val
            Mx[jd][i] = val
    for j in model.joints:
        for d in range(j.dadr, j.dadr + j.nv):
            extra = float(j.armature) + (h * float(j.damping) if implicit_damping else 0.0)
            if extra:
                Mx[d][d] = Mx[d][d] + extra
            if d in fric:
                Mx[d][d] = Mx[d][d] + h * fric[d]

    # ---- solve: M = L^T D L, processed from the last dof (MuJoCo's order, no fill-in)
    anc = [set() for _ in range(nv)]
    for d in range(nv):
        anc[d] = set(i for i in model.chain_dofs(dof_body[d]) if i < d)
    L = [row[:] for row in Mx]
    for k in range(nv - 1, -1, -1):
        ak = sorted(anc[k], reverse=True)
        for i in ak:
            a = L[k][i] / L[k][k]
            for jj in sorted(anc[i] | {i}):
                L[i][jj] = L[i][jj] - L[k][jj] * a
            L[k][i] = a
    x = list(tau)
    for k in range(nv - 1, -1, -1):
        for i in anc[k]:
            x[i] = x[i] - L[k][i] * x[k]
    for k in range(nv):
        x[k] = x[k] / L[k][k]
    for k in range(nv):
        for i in sorted(anc[k]):
            x[k] = x[k] - L[k][i] * x[i]
    qacc = x

    # ---- semi-implicit Euler
    qd_new = [qd[d] + h * qacc[d] for d in range(nv)]
    q_new = list(q)
    for j in model.joints:
        qa, da = j.qadr, j.dadr
        if j.type != "free":
            q_new[qa] = q[qa] + h * qd_new[da]
            continue
        for i in range(3):
            q_new[qa + i] = q[qa + i] + h * qd_new[da + i]
        w = qd_new[da + 3:da + 6]
        half = 0.5 * h
        x2 = (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]) * (half * half)
        small = ad.less(x2, 1e-6)
        xs = ad.sqrt(ad.smax(x2, 1e-6))
        cth = ad.select(small, 1.0 - x2 * 0.5 + x2 * x2 * (1.0 / 24.0), ad.cos(xs))
        sinc = ad.select(small, 1.0 - x2 * (1.0 / 6.0) + x2 * x2 * (1.0 / 120.0), ad.sin(xs) / xs)
        r = [cth] + [wi * (half) * sinc for wi in w]
        q0 = q[qa + 3:qa + 7]
        pw, px, py, pz = q0
        rw, rx, ry, rz = r
        qn = [pw * rw - px * rx - py * ry - pz * rz,
              pw * rx + px * rw + py * rz - pz * ry,
              pw * ry - px * rz + py * rw + pz * rx,
              pw * rz + px * ry - py * rx + pz * rw]
        n2 = qn[0] * qn[0] + qn[1] * qn[1] + qn[2] * qn[2] + qn[3] * qn[3]
        inv = 1.0 / ad.sqrt(ad.smax(n2, 1e-30))
        for i in range(4):
            q_new[qa + 3 + i] = qn[i] * inv
    outs = [g.sym(v) for v in q_new + qd_new]
    return g, outs


@functools.lru_cache(maxsize=None)
def _fast_kernels(fp: str) -> dict:
    return {name: FastKernel(k) for name, k in ak.kernels(fp).items()}


# --------------------------------------------------------------------------- generic engine tables
def generic_refusal(model: ArticulatedModel) -> str | None:
    """Why the generic kernels cannot run this model yet (None: they can)."""
    return None


class Tables:
    """The model packed for :mod:`articulated_kernels`: int table I, float table P, and the
    per-env workspace size (see the kernels' HEADER for the slots)."""

    def __init__(self, model: ArticulatedModel, h: float, substeps: int, contact: ContactParams | None,
                 implicit_damping: bool, limit_ke: float, limit_kd: float):
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
                    SUBSTEPS=substeps, FLUID=int(model.fluid is not None))
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
        for b, bd in enumerate(bodies):
            if bd.joints != list(range(bd.joints[0], bd.joints[0] + len(bd.joints))) if bd.joints else False:
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

        def flat(rows, width):
            return [float(v) for r in rows for v in np.asarray(r, float).reshape(width)]

        sub = [[] for _ in range(nb)]
        for b in range(nb - 1, 0, -1):
            sub[b].append(b)
            sub[bodies[b].parent].extend(sub[b])
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
        table(floats, "T_STIFF", [float(t.stiffness) for t in ts])
        # no stiffness: an infinite dead band, so the spring never acts
        table(floats, "T_SLO", [float(t.lengthspring[0]) if t.stiffness else -np.inf for t in ts])
        table(floats, "T_SHI", [float(t.lengthspring[1]) if t.stiffness else np.inf for t in ts])
        table(floats, "T_DAMP", [float(t.damping) for t in ts])
        table(floats, "T_RLO", [float(t.range[0]) if t.range is not None else 0.0 for t in ts])
        table(floats, "T_RHI", [float(t.range[1]) if t.range is not None else 0.0 for t in ts])
        table(floats, "AP_COEF", [coef for _, coef in ap])
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
        # the per-env workspace: primal intermediates, then (from W_GZERO on) adjoint accumulators
        nx = nq + nv
        sizes = [("W_X", nx), ("W_XN", nx), ("W_R", 9 * nb), ("W_P", 3 * nb), ("W_V", 6 * nb), ("W_S", 6 * nv),
                 ("W_SD", 6 * nv), ("W_JR", 9 * nj), ("W_JP", 3 * nj), ("W_JV", 6 * nj), ("W_C", 3 * nb),
                 ("W_H", 3 * nb), ("W_IB", 9 * nb), ("W_CH", 3 * nb), ("W_CIB", 9 * nb), ("W_FX", 6 * nb),
                 ("W_A", 6 * nb), ("W_F", 6 * nb), ("W_TAU", nv), ("W_M", nv * nv), ("W_QACC", nv),
                 ("W_GXN", nx), ("W_GZERO", 0), ("W_GX", nx), ("W_GR", 9 * nb), ("W_GP", 3 * nb), ("W_GV", 6 * nb),
                 ("W_GS", 6 * nv), ("W_GSD", 6 * nv), ("W_GH", 3 * nb), ("W_GIB", 9 * nb), ("W_GCH", 3 * nb),
                 ("W_GCIB", 9 * nb), ("W_GA", 6 * nb), ("W_GF", 6 * nb), ("W_GTAU", nv)]
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


# --------------------------------------------------------------------------- the simulator
def _ensure_taichi():
    """Initialise taichi the package's way if nobody has (direct use without mt.make)."""
    import taichi as ti
    if ti.lang.impl.get_runtime().prog is None:
        from mbmix_taichi import _ti
        _ti.init("auto")


class ArticulatedSim(Simulator):
    """One control step of an :class:`ArticulatedModel`, batched over envs (see module doc).

    Parameters: dt (control step [s]), substeps, dtype, device; contact (ContactParams or
    None: no ground contact), implicit_damping (MuJoCo Euler's (M + h D) qacc = f; False:
    explicit damping as dflex), limit_ke / limit_kd (joint-limit penalty; 0 disables
    limits).
    """

    jacobian_chunk = 512

    def __init__(self, model: ArticulatedModel, dt: float, substeps: int = 1, dtype=torch.float64,
                 device="cpu", contact: ContactParams | None = None, implicit_damping: bool = True,
                 limit_ke: float = 0.0, limit_kd: float = 0.0):
        _ensure_taichi()
        model.finalize()
        self.model = model
        self.dt = float(dt)
        self.substeps = int(substeps)
        self.h = self.dt / self.substeps
        self.dtype = dtype
        self.device = torch.device(device)
        self.contact = contact
        self._implicit, self._lke, self._lkd = bool(implicit_damping), float(limit_ke), float(limit_kd)
        self.nq, self.nv, self.nu = model.nq, model.nv, model.nu
        self.state_dim = self.nq + self.nv
        self.control_dim = self.nu
        self.launches = 0
        fp = "f64" if dtype == torch.float64 else "f32"
        #: why this model runs on the traced per-model kernels (None: the generic kernels run it)
        self.traced_because = generic_refusal(model)
        if os.environ.get("MBMIX_ARTICULATED_ENGINE", "") == "traced" and self.traced_because is None:
            self.traced_because = "MBMIX_ARTICULATED_ENGINE=traced"
        self._dummy1 = torch.zeros(1, dtype=dtype, device=self.device)
        if self.traced_because is None:
            self.tables = Tables(model, self.h, self.substeps, contact, implicit_damping, float(limit_ke),
                                 float(limit_kd))
            self._I = torch.tensor(self.tables.ints, dtype=torch.int32, device=self.device)
            self._P = torch.tensor(self.tables.floats, dtype=dtype, device=self.device)
            fast = _fast_kernels(fp)
            self._fwd = fast["forward"].bind(("forward", fp), fixed=(0, 1))
            self._adj = fast["adjoint"].bind(("adjoint", fp), fixed=(0, 1))
            self._tan = fast["tangent"].bind(("tangent", fp), fixed=(0, 1))
            self._work = {}
            self._k = None
            return
        g, outs = build_substep(model, self.h, contact, implicit_damping, float(limit_ke), float(limit_kd))
        self.graph_nodes = len(g.nodes)
        self._k = ad.generate(g, self.state_dim, max(self.nu, 0), outs, self.substeps, fp,
                              tag=f"{model.name}".replace("-", "_").replace(" ", "_")[:24])
        self._empty_tape = torch.zeros((1, 1, 1), dtype=dtype, device=self.device)

    # -- helpers
    def _c(self, control, n):
        if self.nu == 0:
            return torch.zeros((n, 1), dtype=self.dtype, device=self.device)
        return control.contiguous()

    def _buf(self, *shape):
        return torch.empty(shape, dtype=self.dtype, device=self.device)

    @property
    def launches_per_step(self) -> int:
        """Kernel launches of one forward control step (1, or substeps x chunks on the traced kernels)."""
        return 1 if self._k is None or self._k.K == 1 else self.substeps * self._k.K

    # -- the generic kernels (one launch per control step, VJP and JVP)
    def _workspace(self, n):
        W = self._work.get(n)
        if W is None:
            if len(self._work) > 4:
                self._work.clear()
            W = self._work[n] = torch.empty(n * self.tables.ws, dtype=self.dtype, device=self.device)
        return W

    def _flat_ctrl(self, control):
        return control.reshape(-1).contiguous() if self.nu else self._dummy1

    def _step_generic(self, state, control, record):
        n = state.shape[0]
        out = torch.empty_like(state)
        ctrl = self._flat_ctrl(control)
        tape = self._buf(n * self.substeps * self.state_dim) if record else self._dummy1
        self._fwd(self._I, self._P, state.reshape(-1), ctrl, out.view(-1), tape, self._workspace(n), n, int(record))
        self.launches += 1
        return out, ((tape, ctrl, n) if record else None)

    def _vjp_generic(self, tape, cotangent):
        tp, ctrl, n = tape
        gs = self._buf(n, self.state_dim)
        gc = self._buf(n * max(self.nu, 1))
        self._adj(self._I, self._P, tp, ctrl, cotangent.contiguous().view(-1), gs.view(-1), gc,
                  self._workspace(n), n)
        self.launches += 1
        return gs, gc.view(n, -1)[:, :self.nu]

    def _jvp_generic(self, state, control, t_state, t_control):
        n, p = t_state.shape[0], t_state.shape[1]
        out = t_state.contiguous().clone()
        tc = t_control.reshape(-1).contiguous() if self.nu else self._dummy1
        self._tan(self._I, self._P, state.contiguous().view(-1), self._flat_ctrl(control), out.view(-1), tc,
                  self._workspace(n), n, p)
        self.launches += 1
        return out

    def step(self, state, control, record=False):
        state = state.contiguous()
        if self._k is None:
            return self._step_generic(state, control.contiguous(), record)
        n = state.shape[0]
        ctrl = self._c(control, n)
        k = self._k
        if k.K == 1:
            out = torch.empty_like(state)
            if record:
                tape = self._buf(n, self.substeps, self.state_dim)
                k.forward(state, ctrl, out, tape, 1)
            else:
                k.forward(state, ctrl, out, self._empty_tape, 0)
            self.launches += 1
            return out, ((tape, ctrl) if record else None)
        X = self._buf(n, self.substeps + 1, self.state_dim)
        X[:, 0] = state
        W = self._buf(n, k.NCROSS)
        for s in range(self.substeps):
            for j in range(k.K):
                getattr(k, f"f{j}")(X, ctrl, W, s)
        self.launches += self.substeps * k.K
        out = X[:, self.substeps].contiguous()
        return out, ((X, ctrl) if record else None)

    def vjp_tape(self, tape, cotangent):
        if self._k is None:
            return self._vjp_generic(tape, cotangent)
        tp, ctrl = tape
        n = tp.shape[0]
        k = self._k
        if k.K == 1:
            gs = self._buf(n, self.state_dim)
            gc = self._buf(n, max(self.nu, 1))
            k.adjoint(tp, ctrl, cotangent.contiguous(), gs, gc)
            self.launches += 1
            return gs, gc[:, :self.nu]
        nx = self.state_dim
        gx = cotangent.contiguous().clone()
        gc = torch.zeros((n, max(self.nu, 1)), dtype=self.dtype, device=self.device)
        W = self._buf(n, k.NCROSS)
        GW = self._buf(n, k.NCROSS)
        GI = self._buf(n, nx + max(self.nu, 1))
        for s in range(self.substeps - 1, -1, -1):
            for j in range(k.K - 1):
                getattr(k, f"f{j}")(tp, ctrl, W, s)
            GW.zero_()
            GI.zero_()
            for j, (kind, idx) in k.OUT_SEED:
                (GW if kind == "w" else GI)[:, idx] += gx[:, j]
            for j in range(k.K - 1, -1, -1):
                getattr(k, f"b{j}")(tp, ctrl, W, GW, GI, gx, s)
            gx = GI[:, :nx].clone()
            gc += GI[:, nx:]
        self.launches += self.substeps * (2 * k.K - 1)
        return gx, gc[:, :self.nu]

    def jvp(self, state, control, t_state, t_control):
        if self.nu:
            self.check_tangents(state, control, t_state, t_control)
        single = t_state.dim() == 2
        if single:
            t_state, t_control = t_state[:, None], t_control[:, None]
        n, p = t_state.shape[0], t_state.shape[1]
        if self._k is None:
            out = self._jvp_generic(state, control, t_state, t_control)
            return out[:, 0] if single else out
        ctrl = self._c(control, n)
        if self.nu == 0:
            t_control = torch.zeros((n, p, 1), dtype=self.dtype, device=self.device)
        k = self._k
        if k.K == 1:
            out = self._buf(n, p, self.state_dim)
            k.tangent(state.contiguous(), ctrl, t_state.contiguous(), t_control.contiguous(), out)
            self.launches += 1
        else:
            nx = self.state_dim
            TX = self._buf(n * p, 2 * nx)
            TX[:, :nx] = state.repeat_interleave(p, dim=0)
            TX[:, nx:] = t_state.reshape(n * p, nx)
            tc = t_control.contiguous()
            TW = self._buf(n * p, 2 * k.NCROSS)
            for s in range(self.substeps):
                for j in range(k.K):
                    getattr(k, f"t{j}")(ctrl, tc, TX, TW, s)
            self.launches += self.substeps * k.K
            out = TX[:, nx:].reshape(n, p, nx)
        return out[:, 0] if single else out
