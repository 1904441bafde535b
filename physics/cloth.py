"""Batched differentiable cloth: mass-spring, semi-implicit Euler, ground contact with
friction, and kinematic pickers. Exact VJP / JVP / Jacobian of one control step.

One control step = `substeps` substeps of length dt. Per substep and particle i (free):

    f_k   = -(ke (l - r) + kd n.(v_i - v_j)) n,   n = (x_i - x_j)/l          (spring k = (i, j))
    u_i   = v_i + dt (sum_k +-f_k / m_i + g - drag v_i)                       (pre-contact velocity)
    v'_i  = contact(x_i, u_i)   (if x_i.z + dt u_i.z < h: land exactly on h, Coulomb friction)
    x'_i  = x_i + dt v'_i

A particle held by picker p moves rigidly with it: x' = x + delta_p / S, v' = delta_p / (S dt);
the picker moves by delta_p per control step (the control). State layout, per env:
[x (n*3), v (n*3), picker positions (K*3)]; control: [delta (K*3)].

Pickers respect the ground: a picker's vertical displacement is raised to
    delta_p.z = max(delta_p.z, h - z_low),   z_low = min(picker z, z of the particles it holds)
so that neither the picker nor anything it holds ends a control step below the ground h
(a state that has them all above the ground never moves for a zero control). The kernels apply
the clamp themselves at the start of a control step (`_clamp`; z_low is the first of the lowest
of the picker's z, then its particles' z in index order) and record, per env and picker, the
state entry of z_low where it raised the control; the tangent and adjoint kernels read that
record (a raised entry has zero derivative w.r.t. the control's z and -1 w.r.t. z_low's state
entry), so forward, tangent and adjoint stay exactly consistent at no torch-side cost. Like
contact, the clamp is a kink: where it switches on, and where several of those heights tie
for the lowest (the derivative then follows the first of them), a central difference that
straddles it is not a derivative.

Derivatives are hand-written tangent and adjoint kernels (no Taichi autodiff, so none of
its pitfalls): the forward pass records x, v and u of every substep (a time-indexed tape),
the adjoint walks it backwards, and the tangent pass reads it forwards with a batch of
probes. Spring forces are gathered per particle through an incidence list (no atomics), so
results are deterministic and identical for any thread count.

Launch layout: Taichi's CPU backend spends ~50-130 us on every parallel loop it launches
(measured here), more than a whole substep of a small cloth. Each kernel therefore has a
single parallel loop (over envs, or envs x probes) and runs substeps, springs and particles
serially inside it: one kernel launch per control step. The "wide" layout (GPUs) has the same
three kernels with every phase of a substep a parallel loop over all envs' springs or particles
(x probes for the tangent), built from per-spring and per-particle functions that the fused
tangent shares (the fused forward and adjoint keep their own inline copies, see _adjoint), so the
two layouts agree to rounding (tests/test_cloth_clamp.py).
"""


import inspect
from typing import NamedTuple

import numpy as np
import taichi as ti
import torch

from .. import _ti
from ._launch import PER_ENV_TASKS, FastKernel
from .base import Simulator
from .cloth_model import ClothModel

_P_DT, _P_GX, _P_GY, _P_GZ, _P_DRAG, _P_MU, _P_H, _NPARAM = range(8)


# ----------------------------------------------------------------------------------- helpers
# Every array reaches the kernels as a flat 1-D ndarray indexed by hand: measured here, 4-D
# ndarray indexing cost twice as much per spring as flat indexing (which matches fields).
@ti.func
def _ld(a: ti.template(), o):
    return ti.Vector([a[o], a[o + 1], a[o + 2]])


@ti.func
def _st(a: ti.template(), o, v):
    a[o], a[o + 1], a[o + 2] = v[0], v[1], v[2]


# The fused forward masks each element offset to 30 bits (`_o`, a no-op below 2^30, which ClothSim.step
# checks): Taichi indexes arrays in i32 without overflow flags, so without the mask every element
# of a 3-vector costs its own add and sign extension; with it LLVM knows o + 1, o + 2 cannot
# overflow and folds them into the load's address (measured: one `and` per vector instead of 3 add + 3 movslq).
_IDX_MASK = (1 << 30) - 1


@ti.func
def _o(a):
    return a & _IDX_MASK


@ti.func
def _spring_geom(d, w, rest, ke, kd):
    """Length l, direction n and scalar tension c of a spring (force on i is -c n)."""
    l = ti.max(d.norm(), 1e-9)
    n = d * (1.0 / l)
    c = ke * (l - rest) + kd * n.dot(w)
    return l, n, c


@ti.func
def _spring_tangent(l, n, c, w, dd, dw, ke, kd):
    """Tangent of the spring force -c n on its first end along dd, dw (the tangents of
    d = x_i - x_j and w = v_i - v_j)."""
    nd = n.dot(dd)
    pd = dd - n * nd
    return -(ke * nd * n + (kd / l) * w.dot(pd) * n + (c / l) * pd + kd * n.dot(dw) * n)


@ti.func
def _spring_adjoint(l, n, c, w, fb, ke, kd):
    """Adjoints of d = x_i - x_j and of w = v_i - v_j given the adjoint fb of the spring force
    -c n on its first end."""
    ng = n.dot(fb)
    pw = w - n * n.dot(w)
    pg = fb - n * ng
    return -(ke * ng * n + (kd / l) * ng * pw + (c / l) * pg), -kd * ng * n


@ti.func
def _contact(x, u, dt, h, mu):
    """Velocity after ground contact (land exactly on h, Coulomb friction on the tangential part)."""
    v = u
    if x[2] + dt * u[2] < h:
        vz = (h - x[2]) / dt
        dn = vz - u[2]
        vt = ti.sqrt(u[0] * u[0] + u[1] * u[1])
        scale = u[0] * 0.0
        if vt > 1e-12:
            scale = ti.max(1.0 - mu * dn / vt, 0.0)
        v = ti.Vector([scale * u[0], scale * u[1], vz])
    return v


@ti.func
def _contact_tangent(x, u, dx, du, dt, h, mu):
    dv = du
    if x[2] + dt * u[2] < h:
        vz = (h - x[2]) / dt
        dn = vz - u[2]
        dvz = -dx[2] / dt
        dv = ti.Vector([du[0] * 0.0, du[1] * 0.0, dvz])
        vt = ti.sqrt(u[0] * u[0] + u[1] * u[1])
        if vt > 1e-12:
            scale = 1.0 - mu * dn / vt
            if scale > 0.0:
                ddn = dvz - du[2]
                dvt = (u[0] * du[0] + u[1] * du[1]) / vt
                dscale = -mu * (ddn * vt - dn * dvt) / (vt * vt)
                dv[0] = dscale * u[0] + scale * du[0]
                dv[1] = dscale * u[1] + scale * du[1]
    return dv


@ti.func
def _contact_adjoint(x, u, vb, dt, h, mu):
    """Given the adjoint of v' return (adjoint of u, adjoint of x.z)."""
    ub = vb
    xzb = vb[0] * 0.0
    if x[2] + dt * u[2] < h:
        vz = (h - x[2]) / dt
        dn = vz - u[2]
        ub = vb * 0.0
        xzb = -vb[2] / dt
        vt = ti.sqrt(u[0] * u[0] + u[1] * u[1])
        if vt > 1e-12:
            scale = 1.0 - mu * dn / vt
            if scale > 0.0:
                ub[0] += scale * vb[0]
                ub[1] += scale * vb[1]
                sb = vb[0] * u[0] + vb[1] * u[1]
                dnb = -mu / vt * sb
                vtb = mu * dn / (vt * vt) * sb
                ub[0] += vtb * u[0] / vt
                ub[1] += vtb * u[1] / vt
                ub[2] += -dnb
                xzb += -dnb / dt
    return ub, xzb


# The pickers' ground clamp: a forward that records its decision in the step's record (the tail of
# U, one entry per env and picker: the state entry of z_low if the control was raised, else -1; an
# integer held in the float tape, exact below 2^24), the effective control read through it, and
# its tangent and adjoint (a raised z is h - z_low: derivative -1 w.r.t. that entry, 0 w.r.t. the
# control's z).
@ti.func
def _held_at(held_by: ti.template(), b, n):
    """Offset of env b's row in held_by: one row [n] shared by every env, or one per env [N*n]."""
    return (b * n) % held_by.shape[0]


@ti.func
def _clamp(state: ti.template(), ctrl: ti.template(), U: ti.template(), held_by: ti.template(), prm: ti.template(),
           b, n, K, cr):
    ds = 6 * n + 3 * K
    r = cr + b * K
    for q in range(K):  # z_low: the first of the lowest of the picker's z, then its particles' in index order
        U[r + q] = 6 * n + 3 * q + 2
    for i in range(n):
        q = held_by[_held_at(held_by, b, n) + i]
        if q >= 0:
            if state[b * ds + 3 * i + 2] < state[b * ds + ti.cast(U[r + q], ti.i32)]:
                U[r + q] = 3 * i + 2
    for q in range(K):
        if not ctrl[b * 3 * K + 3 * q + 2] < prm[_P_H] - state[b * ds + ti.cast(U[r + q], ti.i32)]:
            U[r + q] = -1


@ti.func
def _clamped_ctrl(state: ti.template(), ctrl: ti.template(), U: ti.template(), prm: ti.template(), b, q, n, K, cr):
    """Displacement of picker q in env b with the ground clamp applied (after _clamp)."""
    d = _ld(ctrl, b * 3 * K + 3 * q)
    e = ti.cast(U[cr + b * K + q], ti.i32)
    if e >= 0:
        d[2] = prm[_P_H] - state[b * (6 * n + 3 * K) + e]
    return d


@ti.func
def _clamp_tangent(T: ti.template(), tc: ti.template(), U: ti.template(), t0, c0, b, K, cr):
    """Replace the control tangents tc[c0:] by those of the clamped displacements, given the state
    tangent T[t0:] at the step's start."""
    for q in range(K):
        e = ti.cast(U[cr + b * K + q], ti.i32)
        if e >= 0:
            tc[c0 + 3 * q + 2] = -T[t0 + e]


@ti.func
def _clamp_adjoint(gs: ti.template(), gc: ti.template(), U: ti.template(), b, n, K, cr):
    """Chain the adjoints w.r.t. the clamped displacements (in gc) back to the state and control."""
    ds, dc = 6 * n + 3 * K, 3 * K
    for q in range(K):
        e = ti.cast(U[cr + b * K + q], ti.i32)
        if e >= 0:
            gs[b * ds + e] -= gc[b * dc + 3 * q + 2]
            gc[b * dc + 3 * q + 2] = gc[b * dc + 3 * q + 2] * 0.0


# ------------------------------------------------------------------------------------ kernels
# Flat layouts (b env, s substep, i particle, k spring, p probe, q picker, n particles, M springs):
#   state/out/gs [b*ds + e]; ctrl/gc [b*dc + 3q]; X,V [((b*(S+1) + s)*n + i)*3]; U [((b*S + s)*n + i)*3],
#   then the clamp record U[N*S*n*3 + b*K + q] (cr: its start); DF [((b*P + p)*M + k)*3]
#   Fs [(b*M + k)*3]; Fb,Hb [(b*n + i)*3]; Db [((b*2 + 0|1)*M + k)*3]; T [(b*P + p)*ds + e]; DF [((b*P + p)*M + k)*3]
_nd = ti.types.ndarray(ndim=1)


@ti.func
def _fwd_spring(X: ti.template(), V: ti.template(), Fs: ti.template(), si: ti.template(), sj: ti.template(),
                rest: ti.template(), ke: ti.template(), kd: ti.template(), b, s, k, n, M, SX):
    xs = (b * SX + s % SX) * n * 3
    oi, oj = xs + 3 * si[k], xs + 3 * sj[k]
    l, nn, c = _spring_geom(_ld(X, oi) - _ld(X, oj), _ld(V, oi) - _ld(V, oj), rest[k], ke[k], kd[k])
    _st(Fs, (b * M + k) * 3, -c * nn)


@ti.func
def _gather(Fs: ti.template(), inc_ptr: ti.template(), inc_spr: ti.template(), inc_sgn: ti.template(), b, i, M, zero):
    F = zero
    for e in range(inc_ptr[i], inc_ptr[i + 1]):
        F += inc_sgn[e] * _ld(Fs, (b * M + inc_spr[e]) * 3)
    return F


@ti.func
def _fwd_particle(state: ti.template(), ctrl: ti.template(), X: ti.template(), V: ti.template(), U: ti.template(), F,
                  inv_m: ti.template(), held_by: ti.template(), prm: ti.template(), b, s, i, n, K, S, SX, SU, cr):
    dt, drag, mu, h = prm[_P_DT], prm[_P_DRAG], prm[_P_MU], prm[_P_H]
    xs = (b * SX + s % SX) * n * 3
    xs1 = (b * SX + (s + 1) % SX) * n * 3
    us = (b * SU + s % SU) * n * 3
    x = _ld(X, xs + 3 * i)
    v = _ld(V, xs + 3 * i)
    p = held_by[_held_at(held_by, b, n) + i]
    if p >= 0:
        dp = _clamped_ctrl(state, ctrl, U, prm, b, p, n, K, cr) / S
        _st(X, xs1 + 3 * i, x + dp)
        _st(V, xs1 + 3 * i, dp / dt)
        _st(U, us + 3 * i, dp / dt)
    else:
        g = ti.Vector([prm[_P_GX], prm[_P_GY], prm[_P_GZ]])
        u = v + dt * (F * inv_m[i] + g - drag * v)
        vn = _contact(x, u, dt, h, mu)
        _st(U, us + 3 * i, u)
        _st(V, xs1 + 3 * i, vn)
        _st(X, xs1 + 3 * i, x + dt * vn)


@ti.kernel
def _forward(state: _nd, ctrl: _nd, out: _nd, X: _nd, V: _nd, U: _nd, Fs: _nd,
             si: _nd, sj: _nd, rest: _nd, ke: _nd, kd: _nd, inc_ptr: _nd, inc_spr: _nd, inc_sgn: _nd,
             inv_m: _nd, held_by: _nd, prm: _nd, N: ti.i32, n: ti.i32, K: ti.i32, S: ti.i32, SX: ti.i32, SU: ti.i32,
             serial: ti.template()):
    """Fused layout: one thread per env runs all substeps (one parallel loop per launch; `serial`:
    run it on the calling thread, which saves the CPU thread pool's dispatch for a single env)."""
    M = si.shape[0]
    ds = 6 * n + 3 * K
    cr = N * SU * n * 3
    ti.loop_config(serialize=serial)
    for b in range(N):
        _clamp(state, ctrl, U, held_by, prm, b, n, K, cr)
        zero = _ld(state, b * ds) * 0.0
        x0 = b * SX * n * 3
        f0 = b * n * 3
        for i in range(n):
            _st(X, _o(x0 + 3 * i), _ld(state, b * ds + 3 * i))
            _st(V, _o(x0 + 3 * i), _ld(state, b * ds + 3 * n + 3 * i))
            _st(Fs, _o(f0 + 3 * i), zero)  # the particle pass re-zeroes each force after reading it
        hb = _held_at(held_by, b, n)
        for s in range(S):
            # serial within an env, so forces are scattered straight into particles (no atomics,
            # a fixed order); the wide layout gathers them through the incidence lists instead
            xs = (b * SX + s % SX) * n * 3
            for k in range(M):
                i, j = si[k], sj[k]
                oi, oj = _o(xs + 3 * i), _o(xs + 3 * j)
                l, nn, c = _spring_geom(_ld(X, oi) - _ld(X, oj), _ld(V, oi) - _ld(V, oj), rest[k], ke[k], kd[k])
                f = -c * nn
                fi, fj = _o(f0 + 3 * i), _o(f0 + 3 * j)
                Fi, Fj = _ld(Fs, fi), _ld(Fs, fj)
                _st(Fs, fi, Fi + f)
                _st(Fs, fj, Fj - f)
            _fwd_particles(state, ctrl, X, V, U, Fs, inv_m, held_by, prm, b, s, n, K, S, SX, SU, cr, hb, f0, zero)
        _fwd_out(state, ctrl, out, X, V, U, prm, b, n, K, S, SX, cr)


@ti.func
def _fwd_particles(state: ti.template(), ctrl: ti.template(), X: ti.template(), V: ti.template(), U: ti.template(),
                   Fs: ti.template(), inv_m: ti.template(), held_by: ti.template(), prm: ti.template(),
                   b, s, n, K, S, SX, SU, cr, hb, f0, zero):
    """The particle pass of substep s in the fused layout: `_fwd_particle` for every particle of env b
    (same arithmetic), with the slot offsets and parameters read once, the force read and re-zeroed,
    and the pre-contact velocity U written only where the step keeps it (SU == S: recorded)."""
    dt, drag, mu, h = prm[_P_DT], prm[_P_DRAG], prm[_P_MU], prm[_P_H]
    g = ti.Vector([prm[_P_GX], prm[_P_GY], prm[_P_GZ]])
    xs = (b * SX + s % SX) * n * 3
    xs1 = (b * SX + (s + 1) % SX) * n * 3
    us = (b * SU + s % SU) * n * 3
    keep_u = SU == S
    for i in range(n):
        fi, oi, oi1, ui = _o(f0 + 3 * i), _o(xs + 3 * i), _o(xs1 + 3 * i), _o(us + 3 * i)
        F = _ld(Fs, fi)
        _st(Fs, fi, zero)
        x = _ld(X, oi)
        v = _ld(V, oi)
        p = held_by[hb + i]
        if p >= 0:
            dp = _clamped_ctrl(state, ctrl, U, prm, b, p, n, K, cr) / S
            _st(X, oi1, x + dp)
            _st(V, oi1, dp / dt)
            if keep_u:
                _st(U, ui, dp / dt)
        else:
            u = v + dt * (F * inv_m[i] + g - drag * v)
            vn = _contact(x, u, dt, h, mu)
            if keep_u:
                _st(U, ui, u)
            _st(V, oi1, vn)
            _st(X, oi1, x + dt * vn)


@ti.func
def _fwd_out(state: ti.template(), ctrl: ti.template(), out: ti.template(), X: ti.template(), V: ti.template(),
             U: ti.template(), prm: ti.template(), b, n, K, S, SX, cr):
    ds = 6 * n + 3 * K
    xS = (b * SX + S % SX) * n * 3
    for i in range(n):
        _st(out, b * ds + 3 * i, _ld(X, xS + 3 * i))
        _st(out, b * ds + 3 * n + 3 * i, _ld(V, xS + 3 * i))
    for q in range(K):
        _st(out, b * ds + 6 * n + 3 * q, _ld(state, b * ds + 6 * n + 3 * q) + _clamped_ctrl(state, ctrl, U, prm, b, q, n, K, cr))


@ti.kernel
def _forward_wide(state: _nd, ctrl: _nd, out: _nd, X: _nd, V: _nd, U: _nd, Fs: _nd,
                  si: _nd, sj: _nd, rest: _nd, ke: _nd, kd: _nd, inc_ptr: _nd, inc_spr: _nd, inc_sgn: _nd,
                  inv_m: _nd, held_by: _nd, prm: _nd, N: ti.i32, n: ti.i32, K: ti.i32, S: ti.template(), SX: ti.i32,
                  SU: ti.i32):
    """Wide layout: every substep is two parallel loops (springs, then particles) over all envs;
    substeps unrolled at compile time so that one launch still serves a control step. For GPUs
    and for few large cloths on many cores. Same arithmetic as _forward, in the same order (results
    agree to rounding: with S a compile-time constant the compiler folds divisions differently)."""
    M = si.shape[0]
    ds = 6 * n + 3 * K
    cr = N * SU * n * 3
    for b in range(N):
        _clamp(state, ctrl, U, held_by, prm, b, n, K, cr)
    for b, i in ti.ndrange(N, n):
        x0 = b * SX * n * 3
        _st(X, x0 + 3 * i, _ld(state, b * ds + 3 * i))
        _st(V, x0 + 3 * i, _ld(state, b * ds + 3 * n + 3 * i))
    for s in ti.static(range(S)):
        for b, k in ti.ndrange(N, M):
            _fwd_spring(X, V, Fs, si, sj, rest, ke, kd, b, s, k, n, M, SX)
        for b, i in ti.ndrange(N, n):
            F = _gather(Fs, inc_ptr, inc_spr, inc_sgn, b, i, M, _ld(X, 0) * 0.0)
            _fwd_particle(state, ctrl, X, V, U, F, inv_m, held_by, prm, b, s, i, n, K, S, SX, SU, cr)
    for b, i in ti.ndrange(N, n):
        xS = (b * SX + S % SX) * n * 3
        _st(out, b * ds + 3 * i, _ld(X, xS + 3 * i))
        _st(out, b * ds + 3 * n + 3 * i, _ld(V, xS + 3 * i))
    for b, q in ti.ndrange(N, K):
        _st(out, b * ds + 6 * n + 3 * q, _ld(state, b * ds + 6 * n + 3 * q) + _clamped_ctrl(state, ctrl, U, prm, b, q, n, K, cr))


# Adjoint of one substep s, by phase (the fused kernel runs them serially per env, the wide one as
# parallel loops over particles and springs): particles (adjoints of x_{s+1}, v_{s+1} -> direct
# adjoints of x_s, v_s and of the forces), springs (force adjoints -> adjoints of d = x_i - x_j and
# w = v_i - v_j), gather (those back into the particles through the incidence lists).
@ti.func
def _adj_particle(gs: ti.template(), Fb: ti.template(), Hb: ti.template(), X: ti.template(), U: ti.template(),
                  inv_m: ti.template(), held_by: ti.template(), prm: ti.template(), b, s, i, n, K, S):
    dt, drag, mu, h = prm[_P_DT], prm[_P_DRAG], prm[_P_MU], prm[_P_H]
    ds = 6 * n + 3 * K
    xs = (b * (S + 1) + s) * n * 3
    us = (b * S + s) * n * 3
    xb = _ld(gs, b * ds + 3 * i)
    vb = _ld(gs, b * ds + 3 * n + 3 * i)
    if held_by[_held_at(held_by, b, n) + i] >= 0:
        _st(Hb, (b * n + i) * 3, _ld(Hb, (b * n + i) * 3) + xb / S + vb / (S * dt))
        _st(gs, b * ds + 3 * n + 3 * i, vb * 0.0)
        _st(Fb, (b * n + i) * 3, vb * 0.0)
    else:
        ub, xzb = _contact_adjoint(_ld(X, xs + 3 * i), _ld(U, us + 3 * i), vb + dt * xb, dt, h, mu)
        xb[2] += xzb
        ab = dt * ub
        _st(gs, b * ds + 3 * i, xb)
        _st(gs, b * ds + 3 * n + 3 * i, ub - drag * ab)
        _st(Fb, (b * n + i) * 3, inv_m[i] * ab)


@ti.func
def _adj_spring(Fb: ti.template(), Db: ti.template(), X: ti.template(), V: ti.template(), si: ti.template(),
                sj: ti.template(), rest: ti.template(), ke: ti.template(), kd: ti.template(), b, s, k, n, M, S):
    """The spring force f_k enters F_i with + and F_j with -."""
    xs = (b * (S + 1) + s) * n * 3
    oi, oj = xs + 3 * si[k], xs + 3 * sj[k]
    d = _ld(X, oi) - _ld(X, oj)
    w = _ld(V, oi) - _ld(V, oj)
    l, nn, c = _spring_geom(d, w, rest[k], ke[k], kd[k])
    fb = _ld(Fb, (b * n + si[k]) * 3) - _ld(Fb, (b * n + sj[k]) * 3)
    db, wb = _spring_adjoint(l, nn, c, w, fb, ke[k], kd[k])
    _st(Db, (b * 2 * M + k) * 3, db)
    _st(Db, ((b * 2 + 1) * M + k) * 3, wb)


@ti.func
def _adj_gather(gs: ti.template(), Db: ti.template(), inc_ptr: ti.template(), inc_spr: ti.template(),
                inc_sgn: ti.template(), b, i, n, K, M):
    ds = 6 * n + 3 * K
    xb = _ld(gs, b * ds + 3 * i)
    vb = _ld(gs, b * ds + 3 * n + 3 * i)
    for e in range(inc_ptr[i], inc_ptr[i + 1]):
        xb += inc_sgn[e] * _ld(Db, (b * 2 * M + inc_spr[e]) * 3)
        vb += inc_sgn[e] * _ld(Db, ((b * 2 + 1) * M + inc_spr[e]) * 3)
    _st(gs, b * ds + 3 * i, xb)
    _st(gs, b * ds + 3 * n + 3 * i, vb)


@ti.func
def _adj_start(cot: ti.template(), gs: ti.template(), gc: ti.template(), Hb: ti.template(), b, n, K):
    ds, dc = 6 * n + 3 * K, 3 * K
    for e in range(ds):
        gs[b * ds + e] = cot[b * ds + e]
    for i in range(n):
        _st(Hb, (b * n + i) * 3, _ld(cot, b * ds) * 0.0)
    for q in range(K):
        _st(gc, b * dc + 3 * q, _ld(cot, b * ds + 6 * n + 3 * q))


@ti.func
def _adj_end(gs: ti.template(), gc: ti.template(), U: ti.template(), Hb: ti.template(), held_by: ti.template(),
             b, n, K, cr):
    """What the held particles collected goes to their pickers' controls (in particle order), then
    through the clamp."""
    for i in range(n):
        p = held_by[_held_at(held_by, b, n) + i]
        if p >= 0:
            _st(gc, b * 3 * K + 3 * p, _ld(gc, b * 3 * K + 3 * p) + _ld(Hb, (b * n + i) * 3))
    _clamp_adjoint(gs, gc, U, b, n, K, cr)


@ti.kernel
def _adjoint(cot: _nd, gs: _nd, gc: _nd, X: _nd, V: _nd, U: _nd, Fb: _nd, Db: _nd, Hb: _nd,
             si: _nd, sj: _nd, rest: _nd, ke: _nd, kd: _nd, inc_ptr: _nd, inc_spr: _nd, inc_sgn: _nd,
             inv_m: _nd, held_by: _nd, prm: _nd, N: ti.i32, n: ti.i32, K: ti.i32, S: ti.i32):
    """gs <- cot^T d out / d state, gc <- cot^T d out / d ctrl, walking the tape backwards.
    gs holds the running adjoints of (x_s, v_s); Fb the force adjoints, Hb the adjoints
    collected by held particles, Db the spring adjoints w.r.t. d = x_i - x_j and w = v_i - v_j.

    The same phases as _adj_particle, _adj_spring and _adj_gather (which _adjoint_wide runs),
    written inline: Taichi compiles with fast-math, and this kernel rebuilt from those functions
    rounds differently in the last bits (1e-6 relative in float32), which moves every trained
    cloth run the docs report; inline, its results are bit-identical to the runs' code. The two
    layouts agree to 1e-12 in float64 (tests/test_cloth_clamp.py)."""
    M = si.shape[0]
    ds, dc = 6 * n + 3 * K, 3 * K
    cr = N * S * n * 3
    for b in range(N):
        dt, drag, mu, h = prm[_P_DT], prm[_P_DRAG], prm[_P_MU], prm[_P_H]
        for e in range(ds):
            gs[b * ds + e] = cot[b * ds + e]
        for i in range(n):
            _st(Hb, (b * n + i) * 3, _ld(cot, b * ds) * 0.0)
        for q in range(K):
            _st(gc, b * dc + 3 * q, _ld(cot, b * ds + 6 * n + 3 * q))
        for r in range(S):
            s = S - 1 - r
            xs = (b * (S + 1) + s) * n * 3
            us = (b * S + s) * n * 3
            # particle phase: adjoints of x_{s+1}, v_{s+1} -> direct adjoints of x_s, v_s and of forces
            for i in range(n):
                xb = _ld(gs, b * ds + 3 * i)
                vb = _ld(gs, b * ds + 3 * n + 3 * i)
                if held_by[_held_at(held_by, b, n) + i] >= 0:
                    _st(Hb, (b * n + i) * 3, _ld(Hb, (b * n + i) * 3) + xb / S + vb / (S * dt))
                    _st(gs, b * ds + 3 * n + 3 * i, vb * 0.0)
                    _st(Fb, (b * n + i) * 3, vb * 0.0)
                else:
                    ub, xzb = _contact_adjoint(_ld(X, xs + 3 * i), _ld(U, us + 3 * i), vb + dt * xb, dt, h, mu)
                    xb[2] += xzb
                    ab = dt * ub
                    _st(gs, b * ds + 3 * i, xb)
                    _st(gs, b * ds + 3 * n + 3 * i, ub - drag * ab)
                    _st(Fb, (b * n + i) * 3, inv_m[i] * ab)
            # spring phase: f_k enters F_i with + and F_j with -
            for k in range(M):
                oi, oj = xs + 3 * si[k], xs + 3 * sj[k]
                d = _ld(X, oi) - _ld(X, oj)
                w = _ld(V, oi) - _ld(V, oj)
                l, nn, c = _spring_geom(d, w, rest[k], ke[k], kd[k])
                fb = _ld(Fb, (b * n + si[k]) * 3) - _ld(Fb, (b * n + sj[k]) * 3)
                db, wb = _spring_adjoint(l, nn, c, w, fb, ke[k], kd[k])
                _st(Db, (b * 2 * M + k) * 3, db)
                _st(Db, ((b * 2 + 1) * M + k) * 3, wb)
            # gather spring adjoints into particles
            for i in range(n):
                xb = _ld(gs, b * ds + 3 * i)
                vb = _ld(gs, b * ds + 3 * n + 3 * i)
                for e in range(inc_ptr[i], inc_ptr[i + 1]):
                    xb += inc_sgn[e] * _ld(Db, (b * 2 * M + inc_spr[e]) * 3)
                    vb += inc_sgn[e] * _ld(Db, ((b * 2 + 1) * M + inc_spr[e]) * 3)
                _st(gs, b * ds + 3 * i, xb)
                _st(gs, b * ds + 3 * n + 3 * i, vb)
        for i in range(n):
            p = held_by[_held_at(held_by, b, n) + i]
            if p >= 0:
                _st(gc, b * dc + 3 * p, _ld(gc, b * dc + 3 * p) + _ld(Hb, (b * n + i) * 3))
        _clamp_adjoint(gs, gc, U, b, n, K, cr)


@ti.kernel
def _adjoint_wide(cot: _nd, gs: _nd, gc: _nd, X: _nd, V: _nd, U: _nd, Fb: _nd, Db: _nd, Hb: _nd,
                  si: _nd, sj: _nd, rest: _nd, ke: _nd, kd: _nd, inc_ptr: _nd, inc_spr: _nd, inc_sgn: _nd,
                  inv_m: _nd, held_by: _nd, prm: _nd, N: ti.i32, n: ti.i32, K: ti.i32, S: ti.template()):
    """_adjoint in the wide layout: every phase of every substep is a parallel loop over all envs'
    particles or springs (substeps unrolled at compile time: one launch per control step). Same
    arithmetic in the same order per entry; agrees with _adjoint to rounding (constant S folds)."""
    M = si.shape[0]
    for b in range(N):
        _adj_start(cot, gs, gc, Hb, b, n, K)
    for r in ti.static(range(S)):
        for b, i in ti.ndrange(N, n):
            _adj_particle(gs, Fb, Hb, X, U, inv_m, held_by, prm, b, S - 1 - r, i, n, K, S)
        for b, k in ti.ndrange(N, M):
            _adj_spring(Fb, Db, X, V, si, sj, rest, ke, kd, b, S - 1 - r, k, n, M, S)
        for b, i in ti.ndrange(N, n):
            _adj_gather(gs, Db, inc_ptr, inc_spr, inc_sgn, b, i, n, K, M)
    for b in range(N):
        _adj_end(gs, gc, U, Hb, held_by, b, n, K, N * S * n * 3)


# Tangent of one substep s for probe p of env b (row t0 of T, c0 of tc, f0 of DF), by phase:
# springs (force tangents into DF), then particles (gathered through the incidence lists).
@ti.func
def _tan_spring(T: ti.template(), DF: ti.template(), X: ti.template(), V: ti.template(), si: ti.template(),
                sj: ti.template(), rest: ti.template(), ke: ti.template(), kd: ti.template(), b, s, k, t0, f0, n, S):
    xs = (b * (S + 1) + s) * n * 3
    i, j = si[k], sj[k]
    d = _ld(X, xs + 3 * i) - _ld(X, xs + 3 * j)
    w = _ld(V, xs + 3 * i) - _ld(V, xs + 3 * j)
    l, nn, c = _spring_geom(d, w, rest[k], ke[k], kd[k])
    dd = _ld(T, t0 + 3 * i) - _ld(T, t0 + 3 * j)
    dw = _ld(T, t0 + 3 * n + 3 * i) - _ld(T, t0 + 3 * n + 3 * j)
    _st(DF, f0 + 3 * k, _spring_tangent(l, nn, c, w, dd, dw, ke[k], kd[k]))


@ti.func
def _tan_particle(T: ti.template(), tc: ti.template(), X: ti.template(), U: ti.template(), DF: ti.template(),
                  inc_ptr: ti.template(), inc_spr: ti.template(), inc_sgn: ti.template(), inv_m: ti.template(),
                  held_by: ti.template(), prm: ti.template(), b, s, i, t0, c0, f0, n, S):
    dt, drag, mu, h = prm[_P_DT], prm[_P_DRAG], prm[_P_MU], prm[_P_H]
    xs = (b * (S + 1) + s) * n * 3
    us = (b * S + s) * n * 3
    dx = _ld(T, t0 + 3 * i)
    dv = _ld(T, t0 + 3 * n + 3 * i)
    q = held_by[_held_at(held_by, b, n) + i]
    if q >= 0:
        ddp = _ld(tc, c0 + 3 * q) / S
        dx = dx + ddp
        dv = ddp / dt
    else:
        dF = dv * 0.0
        for e in range(inc_ptr[i], inc_ptr[i + 1]):
            dF += inc_sgn[e] * _ld(DF, f0 + 3 * inc_spr[e])
        du = dv + dt * (dF * inv_m[i] - drag * dv)
        dv = _contact_tangent(_ld(X, xs + 3 * i), _ld(U, us + 3 * i), dx, du, dt, h, mu)
        dx = dx + dt * dv
    _st(T, t0 + 3 * i, dx)
    _st(T, t0 + 3 * n + 3 * i, dv)


@ti.kernel
def _tangent(T: _nd, tc: _nd, X: _nd, V: _nd, U: _nd, DF: _nd,
             si: _nd, sj: _nd, rest: _nd, ke: _nd, kd: _nd, inc_ptr: _nd, inc_spr: _nd, inc_sgn: _nd,
             inv_m: _nd, held_by: _nd, prm: _nd, N: ti.i32, P: ti.i32, n: ti.i32, K: ti.i32, S: ti.i32):
    """T: tangents of the state in, of the next state out (in place), one row per (env, probe);
    tc: control tangents, replaced in place by those of the clamped control. Fused layout: one
    thread per (env, probe); reads the forward tape."""
    M = si.shape[0]
    ds, dc = 6 * n + 3 * K, 3 * K
    cr = N * S * n * 3
    for b, p in ti.ndrange(N, P):
        t0, c0, f0 = (b * P + p) * ds, (b * P + p) * dc, (b * P + p) * M * 3
        _clamp_tangent(T, tc, U, t0, c0, b, K, cr)
        for s in range(S):
            for k in range(M):
                _tan_spring(T, DF, X, V, si, sj, rest, ke, kd, b, s, k, t0, f0, n, S)
            for i in range(n):
                _tan_particle(T, tc, X, U, DF, inc_ptr, inc_spr, inc_sgn, inv_m, held_by, prm, b, s, i, t0, c0, f0,
                              n, S)
        for q in range(K):
            _st(T, t0 + 6 * n + 3 * q, _ld(T, t0 + 6 * n + 3 * q) + _ld(tc, c0 + 3 * q))


@ti.kernel
def _tangent_wide(T: _nd, tc: _nd, X: _nd, V: _nd, U: _nd, DF: _nd,
                  si: _nd, sj: _nd, rest: _nd, ke: _nd, kd: _nd, inc_ptr: _nd, inc_spr: _nd, inc_sgn: _nd,
                  inv_m: _nd, held_by: _nd, prm: _nd, N: ti.i32, P: ti.i32, n: ti.i32, K: ti.i32, S: ti.template()):
    """_tangent in the wide layout: each substep is a parallel loop over every (env, probe, spring),
    then one over every (env, probe, particle); substeps unrolled at compile time."""
    M = si.shape[0]
    ds, dc = 6 * n + 3 * K, 3 * K
    cr = N * S * n * 3
    for b, p in ti.ndrange(N, P):
        _clamp_tangent(T, tc, U, (b * P + p) * ds, (b * P + p) * dc, b, K, cr)
    for s in ti.static(range(S)):
        for b, p, k in ti.ndrange(N, P, M):
            _tan_spring(T, DF, X, V, si, sj, rest, ke, kd, b, s, k, (b * P + p) * ds, (b * P + p) * M * 3, n, S)
        for b, p, i in ti.ndrange(N, P, n):
            _tan_particle(T, tc, X, U, DF, inc_ptr, inc_spr, inc_sgn, inv_m, held_by, prm, b, s, i,
                          (b * P + p) * ds, (b * P + p) * dc, (b * P + p) * M * 3, n, S)
    for b, p, q in ti.ndrange(N, P, K):
        t0, c0 = (b * P + p) * ds, (b * P + p) * dc
        _st(T, t0 + 6 * n + 3 * q, _ld(T, t0 + 6 * n + 3 * q) + _ld(tc, c0 + 3 * q))


# The cloth's topology and constants, in the one order every kernel takes them (after its own
# leading arguments); ClothSim passes them as one tuple in this order.
TOPOLOGY = ("si", "sj", "rest", "ke", "kd", "inc_ptr", "inc_spr", "inc_sgn", "inv_m", "held_by", "prm")


def _topology_at(kernel) -> int:
    """Index of the first topology argument of `kernel`; TypeError if its signature does not
    take TOPOLOGY in that order."""
    names = list(inspect.signature(kernel).parameters)
    at = names.index(TOPOLOGY[0]) if TOPOLOGY[0] in names else -1
    if at < 0 or tuple(names[at:at + len(TOPOLOGY)]) != TOPOLOGY:
        raise TypeError(f"kernel {kernel.__name__} does not take the cloth topology {TOPOLOGY} in order: {names}")
    return at


_FWD_TOPO, _ADJ_TOPO, _TAN_TOPO = (_topology_at(k) for k in (_forward, _adjoint, _tangent))
for _wide in (_forward_wide, _adjoint_wide, _tangent_wide):
    _topology_at(_wide)

# launchers that skip Taichi's per-call argument inspection (physics/_launch.py)
# (the fused layout's loops run one env, or one env's probe, per iteration: one task each)
_forward_fast, _adjoint_fast, _tangent_fast = (FastKernel(k, PER_ENV_TASKS) for k in (_forward, _adjoint, _tangent))


# --------------------------------------------------------------------------------- simulator
class StepRecord(NamedTuple):
    """What a recorded cloth step decided (the last entry of its tape)."""
    clamped: torch.Tensor    # [N, K] bool: the ground clamp raised the picker's z displacement
    low_entry: torch.Tensor  # [N, K]: the state entry of its z_low where raised, else -1 (a view of U)
    held_by: torch.Tensor    # the held_by table of the step ([n] shared, or [N*n] per env)


class ClothSim(Simulator):
    """Batched cloth simulator over a `ClothModel` with K kinematic pickers.

    held: list (one per picker) of particle index lists the picker holds (a picker holding
    nothing moves alone). `step`/`jvp` take `held=` a per-env override [N, n] (int32: the picker
    holding each particle, or -1), e.g. for pick-and-place, where each env grabs its own set.
    """

    def __init__(self, model: ClothModel, held, dt: float = 1 / 60, substeps: int = 16,
                 gravity=(0.0, 0.0, -9.81), drag: float = 0.0, friction: float = 0.5,
                 ground=0.0, dtype=torch.float32, device="cpu", layout: str = "auto"):
        if layout not in ("auto", "fused", "wide"):
            raise ValueError(f"layout must be 'auto', 'fused' or 'wide', got {layout!r}")
        _ti.ensure()  # the package's Taichi initialisation, unless the caller has initialised it
        self.layout = layout
        self.model = model
        self.dtype, self.device = dtype, _ti.torch_device(device)
        self.n = n = model.num_particles
        self.K = K = len(held)
        self.substeps = int(substeps)
        self.dt = float(dt)
        self.state_dim = 6 * n + 3 * K
        self.control_dim = 3 * K
        self.launches = 0
        f = dict(dtype=dtype, device=self.device)
        i32 = dict(dtype=torch.int32, device=self.device)
        held_by = np.full(n, -1, dtype=np.int32)
        for p, idx in enumerate(held):
            idx = np.asarray(idx, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"picker {p} holds particles {idx.tolist()} outside 0..{n - 1}")
            if (held_by[idx] >= 0).any():
                raise ValueError(f"picker {p} holds particles already held by another picker")
            held_by[idx] = p
        self.held = [np.asarray(h, dtype=np.int64) for h in held]
        self.held_by = torch.tensor(held_by, **i32)  # per particle: the picker holding it, or -1
        sp = model.springs
        self.si = torch.tensor(sp[:, 0], **i32)
        self.sj = torch.tensor(sp[:, 1], **i32)
        self.rest = torch.tensor(model.rest, **f)
        self.ke = torch.tensor(model.ke, **f)
        self.kd = torch.tensor(model.kd, **f)
        self.inv_m = torch.tensor(1.0 / model.mass, **f)
        # incidence lists (CSR): springs touching each particle, +1 where it is the first end
        ends = np.concatenate([sp[:, 0], sp[:, 1]])
        spr = np.concatenate([np.arange(len(sp)), np.arange(len(sp))])
        sgn = np.concatenate([np.ones(len(sp)), -np.ones(len(sp))])
        order = np.argsort(ends, kind="stable")
        self.inc_ptr = torch.tensor(np.concatenate([[0], np.cumsum(np.bincount(ends, minlength=n))]), **i32)
        self.inc_spr = torch.tensor(spr[order], **i32)
        self.inc_sgn = torch.tensor(sgn[order], **f)
        prm = np.zeros(_NPARAM)
        prm[_P_DT] = self.dt / self.substeps
        prm[_P_GX:_P_GZ + 1] = gravity
        prm[_P_DRAG], prm[_P_MU] = drag, friction
        prm[_P_H] = -1e30 if ground is None else ground
        self.prm = torch.tensor(prm, **f)
        self.ground = None if ground is None else float(ground)
        if self.dtype == torch.float32 and self.state_dim >= 2 ** 24:
            raise ValueError(f"a float32 ClothSim records state entries in its float tape, exact below 2^24; "
                             f"state_dim {self.state_dim} is too large (use float64)")
        self._topo = tuple(getattr(self, name) for name in TOPOLOGY)
        self._key = (self.dtype, self.device.type)  # the argument kinds of every launch of this sim
        self._scratch = None  # (N, buffers) of the unrecorded step
        # launchers with the topology set once
        nt = len(TOPOLOGY)
        self._fwd = _forward_fast.bind(self._key + (False,), range(_FWD_TOPO, _FWD_TOPO + nt))
        self._fwd1 = _forward_fast.bind(self._key + (True,), range(_FWD_TOPO, _FWD_TOPO + nt))
        self._adj = _adjoint_fast.bind(self._key, range(_ADJ_TOPO, _ADJ_TOPO + nt))
        self._tan = _tangent_fast.bind(self._key, range(_TAN_TOPO, _TAN_TOPO + nt))
        self.jacobian_chunk = max(1, min(256, int(2e7 // max(1, model.num_springs * 3))))

    def uses_wide_layout(self, N: int) -> bool:
        """Kernel layout of the step, its VJP and its JVP. "fused" runs one thread per env through all substeps
        (one parallel task per launch); "wide" spreads every substep over particles and springs.
        auto: wide on GPUs only. On this 2-core CPU the wide layout lost at every size of the
        peer benchmark (d = 32..128, one cloth), its two parallel tasks per substep costing more
        than the second core gives (docs/benchmarks.md)."""
        if self.layout != "auto":
            return self.layout == "wide"
        return self.device.type == "cuda"

    # state helpers ----------------------------------------------------------------------------
    def positions(self, state):
        return state[..., : 3 * self.n].reshape(*state.shape[:-1], self.n, 3)

    def velocities(self, state):
        return state[..., 3 * self.n: 6 * self.n].reshape(*state.shape[:-1], self.n, 3)

    def pickers(self, state):
        return state[..., 6 * self.n:].reshape(*state.shape[:-1], self.K, 3)

    def make_state(self, x, v=None, pickers=None):
        """Pack positions [N,n,3] (+ velocities, picker positions; default zero / held centroids)."""
        x = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        N = x.shape[0]
        v = torch.zeros_like(x) if v is None else torch.as_tensor(v, dtype=self.dtype, device=self.device)
        if pickers is None:
            if any(len(h) == 0 for h in self.held):
                raise ValueError("make_state: a picker holds no particles, so its position must be given (pickers=)")
            pickers = torch.stack([x[:, torch.as_tensor(h)].mean(1) for h in self.held], 1) if self.K else x[:, :0]
        return torch.cat([x.reshape(N, -1), v.reshape(N, -1), pickers.reshape(N, -1)], 1).contiguous()

    # Simulator contract ---------------------------------------------------------------------
    def _check(self, state, control):
        return self.check_inputs(state, control)

    def _tape(self, N, SX, SU):
        n, M = self.n, self.model.num_springs
        e = dict(dtype=self.dtype, device=self.device)
        # U: pre-contact velocities, then the clamp record (one entry per env and picker)
        return (torch.empty(N * SX * n * 3, **e), torch.empty(N * SX * n * 3, **e),
                torch.empty(N * (SU * n * 3 + self.K), **e), torch.empty(N * max(M, n) * 3, **e))

    def _held(self, held, N):
        """The held_by table for a step: the sim's own (shared by every env) or a checked per-env one."""
        if held is None:
            return self.held_by
        if (type(held) is not torch.Tensor or held.dtype != torch.int32 or held.device != self.device
                or tuple(held.shape) != (N, self.n)):
            raise ValueError(f"ClothSim: held must be an int32 tensor [{N}, {self.n}] on {self.device} (the picker "
                             f"holding each particle, or -1), got {getattr(held, 'dtype', type(held))} "
                             f"{list(getattr(held, 'shape', []))}")
        if N and (int(held.min()) < -1 or int(held.max()) >= self.K):
            raise ValueError(f"ClothSim: held names pickers outside -1..{self.K - 1}")
        return held.contiguous().view(-1)

    def step(self, state, control, record=False, held=None):
        state, control = self._check(state, control)
        N = state.shape[0]
        held_by = self._held(held, N)
        out = torch.empty_like(state)
        # recording keeps every substep (the adjoint walks them back); otherwise two slots suffice
        wide = self.uses_wide_layout(N)
        SX, SU = (self.substeps + 1, self.substeps) if record else (2, 1)
        if record:
            X, V, U, Fs = self._tape(N, SX, SU)
        else:  # scratch only: reused between calls (a ClothSim is not for concurrent use from threads)
            if self._scratch is None or self._scratch[0] != N:
                self._scratch = (N, self._tape(N, SX, SU))
            X, V, U, Fs = self._scratch[1]
        if not wide and max(X.numel(), U.numel()) > _IDX_MASK + 1:  # the fused kernel's 30-bit offsets (_o)
            raise ValueError(f"ClothSim: a step of {N} envs needs a tape of {max(X.numel(), U.numel())} entries, over "
                             f"the fused kernel's 2^30; step fewer envs at once")
        topo = self._topo if held is None else self._topo_with(held_by)
        args = (state.view(-1), control.view(-1), out.view(-1), X, V, U, Fs, *topo,
                N, self.n, self.K, self.substeps, SX, SU)
        if wide:
            _forward_wide(*args)
        elif held is None:  # state, control: checked by _check; the rest made here (see physics/_launch.py)
            (self._fwd1 if N == 1 else self._fwd)(*args, N == 1)
        else:  # a per-env held table: not one of the bound topology arrays
            _forward_fast(*args, N == 1)
        self.launches += 1
        return out, ((X, V, U, N, self._record(U, N, held_by)) if record else None)

    def _topo_with(self, held_by):
        return tuple(held_by if name == "held_by" else t for name, t in zip(TOPOLOGY, self._topo))

    def _record(self, U, N, held_by):
        """What a recorded step decided: which pickers' z displacement the ground clamp raised
        ([N, K] mask), the state entry of their z_low (-1 where not raised; views of the record the
        kernels keep at the end of U), and the held_by table it used."""
        src = U[N * self.substeps * self.n * 3:].view(N, self.K)
        return StepRecord(src >= 0, src, held_by)

    def vjp_tape(self, tape, cotangent):
        X, V, U, N, rec = tape
        cot = cotangent.to(self.dtype).contiguous()
        if cot.shape != (N, self.state_dim):
            raise ValueError(f"ClothSim: cotangent {list(cot.shape)} does not match [{N}, {self.state_dim}]")
        e = dict(dtype=self.dtype, device=self.device)
        gs = torch.empty(N, self.state_dim, **e)
        gc = torch.empty(N, self.control_dim, **e)
        Fb = torch.empty(N * self.n * 3, **e)
        Hb = torch.empty(N * self.n * 3, **e)
        Db = torch.empty(N * 2 * self.model.num_springs * 3, **e)
        args = (cot.view(-1), gs.view(-1), gc.view(-1), X, V, U, Fb, Db, Hb)
        ints = (N, self.n, self.K, self.substeps)
        if self.uses_wide_layout(N):
            _adjoint_wide(*args, *self._topo_with(rec.held_by), *ints)
        elif rec.held_by is self.held_by:
            self._adj(*args, *self._topo, *ints)
        else:
            _adjoint_fast(*args, *self._topo_with(rec.held_by), *ints)
        self.launches += 1
        return gs, gc

    def bytes_per_env(self, record: bool = False) -> int:
        item = torch.empty((), dtype=self.dtype).element_size()
        n, M, S = self.n, self.model.num_springs, self.substeps
        SX, SU = (S + 1, S) if record else (2, 1)
        tape = (2 * SX + SU) * n * 3 + self.K + max(M, n) * 3
        vjp = (2 * n * 3 + 2 * M * 3 + 2 * self.state_dim) if record else 0
        return item * (8 * self.state_dim + tape + vjp)

    def jvp(self, state, control, t_state, t_control, held=None):
        state, control = self._check(state, control)
        self.check_tangents(state, control, t_state, t_control)
        _, tape = self.step(state, control, record=True, held=held)
        return self.jvp_tape(tape, t_state, t_control)

    def jvp_tape(self, tape, t_state, t_control):
        """d next_state along (t_state, t_control) ([N, ds], [N, dc] or [N, P, .]) of a recorded step."""
        X, V, U, N, rec = tape
        single = t_state.dim() == 2
        ts = (t_state.unsqueeze(1) if single else t_state).to(self.dtype).contiguous().clone()
        # (the kernel writes the clamped control's tangents into tc: a copy, never the caller's)
        tc = (t_control.unsqueeze(1) if single else t_control).to(self.dtype).contiguous().clone()
        P = ts.shape[1]
        if tuple(ts.shape) != (N, P, self.state_dim) or tuple(tc.shape) != (N, P, self.control_dim):
            raise ValueError(f"ClothSim: tangents {list(t_state.shape)}, {list(t_control.shape)} do not match the "
                             f"tape's {N} envs, [.., {self.state_dim}] and [.., {self.control_dim}]")
        DF = torch.empty(N * P * self.model.num_springs * 3, dtype=self.dtype, device=self.device)
        args = (ts.view(-1), tc.view(-1), X, V, U, DF)
        ints = (N, P, self.n, self.K, self.substeps)
        if self.uses_wide_layout(N):
            _tangent_wide(*args, *self._topo_with(rec.held_by), *ints)
        elif rec.held_by is self.held_by:
            self._tan(*args, *self._topo, *ints)
        else:
            _tangent_fast(*args, *self._topo_with(rec.held_by), *ints)
        self.launches += 1
        return ts[:, 0] if single else ts


class PickPlaceSim(Simulator):
    """One control step = one pick-and-place of a cloth with a single picker (DaXBench's macro
    action), composed of inner `ClothSim` steps; exact VJP / JVP by chaining their tapes.

    control [N, 4] = (pick x, y, place x, y) in metres. The picker grabs the top layer of the
    cloth under the pick point (`_pick`: a discrete choice per env from the current state, so
    zero derivative w.r.t. the pick point), jumps to the picked particle, lifts by
    `lift` over `lift_steps` inner steps, moves in x-y to the place point over `move_steps`,
    lowers by `lift` over `lower_steps` (the ground clamp stops it and what it holds at the
    ground), releases, and the cloth settles for `settle_steps`. The state is the inner
    cloth's ([x, v, picker position]); the place point acts through the move steps' picker
    displacements, (place - picked particle's x-y) / move_steps, so its derivative is exact.
    `relative_carry`: carry by (place - pick) / move_steps instead, as DaXBench does (its picker
    does not snap to a particle): what it holds then moves by place - pick, and the pick point
    has a derivative, minus the place point's.
    """

    def __init__(self, cloth: ClothSim, radius: float, lift: float, depth: float = 0.005, lift_steps: int = 4,
                 move_steps: int = 12, lower_steps: int = 4, settle_steps: int = 6, relative_carry: bool = False):
        if cloth.K != 1:
            raise ValueError(f"PickPlaceSim drives a cloth with one picker, got {cloth.K}")
        steps = (lift_steps, move_steps, lower_steps, settle_steps)
        if any(not isinstance(k, int) or k < 0 for k in steps) or move_steps < 1:
            raise ValueError(f"PickPlaceSim: inner step counts must be integers >= 0 (move_steps >= 1), got {steps}")
        if not radius >= 0 or not lift >= 0 or not depth >= 0:
            raise ValueError(f"PickPlaceSim: radius, lift and depth must be >= 0, got {radius}, {lift}, {depth}")
        self.cloth = cloth
        self.n, self.K = cloth.n, 1
        self.dtype, self.device = cloth.dtype, cloth.device
        self.state_dim, self.control_dim = cloth.state_dim, 4
        self.radius, self.lift, self.depth = float(radius), float(lift), float(depth)
        self.steps = steps
        self.relative_carry = bool(relative_carry)
        self.launches = 0
        self.jacobian_chunk = cloth.jacobian_chunk
        # the inner steps: (phase, picker displacement or None for the move, holding?)
        up = torch.tensor([0.0, 0.0, self.lift / max(lift_steps, 1)], dtype=self.dtype, device=self.device)
        self._plan = ([("lift", up, True)] * lift_steps + [("move", None, True)] * move_steps
                      + [("lower", -up, True)] * lower_steps + [("settle", up * 0, False)] * settle_steps)

    # state helpers (the inner cloth's)
    def positions(self, state):
        return self.cloth.positions(state)

    def velocities(self, state):
        return self.cloth.velocities(state)

    def pickers(self, state):
        return self.cloth.pickers(state)

    def make_state(self, x, v=None):
        """Pack positions [N, n, 3] (+ velocities); the picker starts above the cloth's centroid."""
        x = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        picker = x.mean(1, keepdim=True) + torch.tensor([0.0, 0.0, self.lift], dtype=self.dtype, device=self.device)
        return self.cloth.make_state(x, v, picker)

    def bytes_per_env(self, record: bool = False) -> int:
        return self.cloth.bytes_per_env(record) * (len(self._plan) if record else 1)

    # the macro step ---------------------------------------------------------------------------
    def _pick(self, state, control):
        """(index of the picked particle [N], held table [N, n]: 0 where grabbed, else -1). The
        picker comes down on the particle nearest the pick point in x-y and grabs the top of what
        lies there: the highest particle within `radius` (x-y) of it, and the particles within
        `radius` (x-y) of that one and no more than `depth` below it."""
        x = self.positions(state)
        rows = torch.arange(x.shape[0], device=self.device)
        j = (x[..., :2] - control[:, None, :2]).square().sum(-1).argmin(1)
        under = (x[..., :2] - x[rows, j, None, :2]).norm(dim=-1) <= self.radius
        k = torch.where(under, x[..., 2], torch.full_like(x[..., 2], -torch.inf)).argmax(1)
        xk = x[rows, k]
        near = ((x[..., :2] - xk[:, None, :2]).norm(dim=-1) <= self.radius) & (x[..., 2] >= xk[:, None, 2] - self.depth)
        near[rows, k] = True
        return k, torch.where(near, 0, -1).to(torch.int32)

    def _entries(self, k):
        """State entries [N, 3] of the picked particles' positions."""
        return 3 * k[:, None] + torch.arange(3, device=self.device)

    def step(self, state, control, record=False):
        state, control = self.check_inputs(state, control)
        N, n = state.shape[0], self.n
        k, held = self._pick(state, control)
        free = torch.full_like(held, -1)
        s = state.clone()
        s[:, 6 * n:6 * n + 3] = torch.gather(state, 1, self._entries(k))  # the picker jumps to the picked particle
        start = control[:, :2] if self.relative_carry else s[:, 6 * n:6 * n + 2]
        move = torch.cat([(control[:, 2:] - start) / self.steps[1], state[:, :1] * 0], 1)
        tapes = []
        for phase, delta, holding in self._plan:
            c = move if delta is None else delta.expand(N, 3).contiguous()
            s, tape = self.cloth.step(s, c, record=record, held=held if holding else free)
            tapes.append(tape)
        self.launches += len(self._plan)
        return s, ((k, tapes) if record else None)

    def vjp_tape(self, tape, cotangent):
        k, tapes = tape
        g = self.check_cotangent(cotangent.to(self.dtype), tapes[0][3] if tapes else 0)
        N, n = g.shape[0], self.n
        g_move = torch.zeros(N, 3, dtype=self.dtype, device=self.device)
        for (phase, _, _), t in zip(reversed(self._plan), reversed(tapes)):
            g, gc = self.cloth.vjp_tape(t, g)
            if phase == "move":
                g_move += gc
        g_move = g_move / self.steps[1]
        # s0 = state with the picker replaced by particle k's position; move = (place - start) / steps,
        # start = the pick point (relative_carry) or s0's picker x-y
        g_pick = g[:, 6 * n:6 * n + 3].clone()
        if not self.relative_carry:
            g_pick[:, :2] -= g_move[:, :2]
        g_state = g.clone()
        g_state[:, 6 * n:6 * n + 3] = 0
        g_state.scatter_add_(1, self._entries(k), g_pick)
        g_start = -g_move[:, :2] if self.relative_carry else torch.zeros_like(g_move[:, :2])
        g_control = torch.cat([g_start, g_move[:, :2]], 1)
        self.launches += len(tapes)
        return g_state, g_control

    def jvp(self, state, control, t_state, t_control):
        state, control = self.check_inputs(state, control)
        self.check_tangents(state, control, t_state, t_control)
        single = t_state.dim() == 2
        ts = (t_state.unsqueeze(1) if single else t_state).to(self.dtype)
        tc = (t_control.unsqueeze(1) if single else t_control).to(self.dtype)
        N, P, n = ts.shape[0], ts.shape[1], self.n
        _, (k, tapes) = self.step(state, control, record=True)
        t_pick = torch.gather(ts, 2, self._entries(k)[:, None, :].expand(N, P, 3))
        t = ts.clone()
        t[..., 6 * n:6 * n + 3] = t_pick
        t_start = tc[..., :2] if self.relative_carry else t_pick[..., :2]
        t_move = torch.cat([(tc[..., 2:] - t_start) / self.steps[1], t_pick[..., :1] * 0], -1)
        t_fixed = torch.zeros_like(t_move)
        for (phase, _, _), tape in zip(self._plan, tapes):
            t = self.cloth.jvp_tape(tape, t, t_move if phase == "move" else t_fixed)
        self.launches += len(tapes)
        return t[:, 0] if single else t
