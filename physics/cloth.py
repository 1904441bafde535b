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

Derivatives are hand-written tangent and adjoint kernels (no Taichi autodiff, so none of
its pitfalls): the forward pass records x, v and u of every substep (a time-indexed tape),
the adjoint walks it backwards, and the tangent pass reads it forwards with a batch of
probes. Spring forces are gathered per particle through an incidence list (no atomics), so
results are deterministic and identical for any thread count.

Launch layout: Taichi's CPU backend spends ~50-130 us on every parallel loop it launches
(measured here), more than a whole substep of a small cloth. Each kernel therefore has a
single parallel loop (over envs, or envs x probes) and runs substeps, springs and particles
serially inside it: one kernel launch per control step.
"""


import numpy as np
import taichi as ti
import torch

from .base import Simulator
from .cloth_model import ClothModel

_P_DT, _P_GX, _P_GY, _P_GZ, _P_DRAG, _P_MU, _P_H, _NPARAM = range(8)


# ----------------------------------------------------------------------------------- helpers
@ti.func
def _ld(a: ti.template(), b, off):
    return ti.Vector([a[b, off], a[b, off + 1], a[b, off + 2]])


@ti.func
def _st(a: ti.template(), b, off, v):
    a[b, off], a[b, off + 1], a[b, off + 2] = v[0], v[1], v[2]


@ti.func
def _ld4(a: ti.template(), b, s, i):
    return ti.Vector([a[b, s, i, 0], a[b, s, i, 1], a[b, s, i, 2]])


@ti.func
def _st4(a: ti.template(), b, s, i, v):
    a[b, s, i, 0], a[b, s, i, 1], a[b, s, i, 2] = v[0], v[1], v[2]


@ti.func
def _spring_geom(d, w, rest, ke, kd):
    """Length l, direction n and scalar tension c of a spring (force on i is -c n)."""
    l = ti.max(d.norm(), 1e-9)
    n = d / l
    c = ke * (l - rest) + kd * n.dot(w)
    return l, n, c


@ti.func
def _contact(x, u, dt, h, mu):
    """Velocity after ground contact; returns (v, active, scale)."""
    v = u
    active = 0
    scale = u[0] * 0.0 + 1.0
    if x[2] + dt * u[2] < h:
        active = 1
        vz = (h - x[2]) / dt
        dn = vz - u[2]
        vt = ti.sqrt(u[0] * u[0] + u[1] * u[1])
        scale = scale * 0.0
        if vt > 1e-12:
            scale = ti.max(1.0 - mu * dn / vt, 0.0)
        v = ti.Vector([scale * u[0], scale * u[1], vz])
    return v, active, scale


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


# ------------------------------------------------------------------------------------ kernels
@ti.kernel
def _forward(state: ti.types.ndarray(), ctrl: ti.types.ndarray(), out: ti.types.ndarray(),
             X: ti.types.ndarray(), V: ti.types.ndarray(), U: ti.types.ndarray(), Fs: ti.types.ndarray(),
             si: ti.types.ndarray(), sj: ti.types.ndarray(), rest: ti.types.ndarray(), ke: ti.types.ndarray(),
             kd: ti.types.ndarray(), inc_ptr: ti.types.ndarray(), inc_spr: ti.types.ndarray(),
             inc_sgn: ti.types.ndarray(), inv_m: ti.types.ndarray(), held: ti.types.ndarray(),
             prm: ti.types.ndarray(), S: ti.i32):
    N, n, M, K = X.shape[0], X.shape[2], si.shape[0], ctrl.shape[1] // 3
    for b in range(N):
        dt, drag, mu, h = prm[_P_DT], prm[_P_DRAG], prm[_P_MU], prm[_P_H]
        g = ti.Vector([prm[_P_GX], prm[_P_GY], prm[_P_GZ]])
        for i in range(n):
            _st4(X, b, 0, i, _ld(state, b, 3 * i))
            _st4(V, b, 0, i, _ld(state, b, 3 * n + 3 * i))
        for s in range(S):
            for k in range(M):
                d = _ld4(X, b, s, si[k]) - _ld4(X, b, s, sj[k])
                w = _ld4(V, b, s, si[k]) - _ld4(V, b, s, sj[k])
                l, nn, c = _spring_geom(d, w, rest[k], ke[k], kd[k])
                _st4(Fs, b, 0, k, -c * nn)
            for i in range(n):
                x = _ld4(X, b, s, i)
                v = _ld4(V, b, s, i)
                p = held[i]
                if p >= 0:
                    dp = _ld(ctrl, b, 3 * p) / S
                    _st4(X, b, s + 1, i, x + dp)
                    _st4(V, b, s + 1, i, dp / dt)
                    _st4(U, b, s, i, dp / dt)
                else:
                    F = v * 0.0
                    for e in range(inc_ptr[i], inc_ptr[i + 1]):
                        F += inc_sgn[e] * _ld4(Fs, b, 0, inc_spr[e])
                    u = v + dt * (F * inv_m[i] + g - drag * v)
                    vn, active, scale = _contact(x, u, dt, h, mu)
                    _st4(U, b, s, i, u)
                    _st4(V, b, s + 1, i, vn)
                    _st4(X, b, s + 1, i, x + dt * vn)
        for i in range(n):
            _st(out, b, 3 * i, _ld4(X, b, S, i))
            _st(out, b, 3 * n + 3 * i, _ld4(V, b, S, i))
        for q in range(K):
            _st(out, b, 6 * n + 3 * q, _ld(state, b, 6 * n + 3 * q) + _ld(ctrl, b, 3 * q))


@ti.kernel
def _adjoint(cot: ti.types.ndarray(), gs: ti.types.ndarray(), gc: ti.types.ndarray(),
             X: ti.types.ndarray(), V: ti.types.ndarray(), U: ti.types.ndarray(),
             Fb: ti.types.ndarray(), Db: ti.types.ndarray(), Hb: ti.types.ndarray(),
             si: ti.types.ndarray(), sj: ti.types.ndarray(), rest: ti.types.ndarray(), ke: ti.types.ndarray(),
             kd: ti.types.ndarray(), inc_ptr: ti.types.ndarray(), inc_spr: ti.types.ndarray(),
             inc_sgn: ti.types.ndarray(), inv_m: ti.types.ndarray(), held: ti.types.ndarray(),
             prm: ti.types.ndarray(), S: ti.i32):
    """gs <- cot^T d out / d state, gc <- cot^T d out / d ctrl. Scratch: Fb, Hb [N,1,n,3]
    (force / held adjoints), Db [N,2,M,3] (spring adjoints w.r.t. d and w)."""
    N, n, M, K = X.shape[0], X.shape[2], si.shape[0], gc.shape[1] // 3
    for b in range(N):
        dt, drag, mu, h = prm[_P_DT], prm[_P_DRAG], prm[_P_MU], prm[_P_H]
        # gs holds the running adjoints of (x_s, v_s); start from those of the output
        for e in range(6 * n):
            gs[b, e] = cot[b, e]
        for i in range(n):
            _st4(Hb, b, 0, i, _ld(cot, b, 3 * i) * 0.0)
        for q in range(K):
            _st(gs, b, 6 * n + 3 * q, _ld(cot, b, 6 * n + 3 * q))
            _st(gc, b, 3 * q, _ld(cot, b, 6 * n + 3 * q))
        for r in range(S):
            s = S - 1 - r
            # particle phase: adjoints of x_{s+1}, v_{s+1} -> direct adjoints of x_s, v_s and of forces
            for i in range(n):
                xb = _ld(gs, b, 3 * i)
                vb = _ld(gs, b, 3 * n + 3 * i)
                if held[i] >= 0:
                    _st4(Hb, b, 0, i, _ld4(Hb, b, 0, i) + xb / S + vb / (S * dt))
                    _st(gs, b, 3 * n + 3 * i, vb * 0.0)
                    _st4(Fb, b, 0, i, vb * 0.0)
                else:
                    x = _ld4(X, b, s, i)
                    u = _ld4(U, b, s, i)
                    ub, xzb = _contact_adjoint(x, u, vb + dt * xb, dt, h, mu)
                    xb[2] += xzb
                    ab = dt * ub
                    _st(gs, b, 3 * i, xb)
                    _st(gs, b, 3 * n + 3 * i, ub - drag * ab)
                    _st4(Fb, b, 0, i, inv_m[i] * ab)
            # spring phase: f_k enters F_i with + and F_j with -
            for k in range(M):
                d = _ld4(X, b, s, si[k]) - _ld4(X, b, s, sj[k])
                w = _ld4(V, b, s, si[k]) - _ld4(V, b, s, sj[k])
                l, nn, c = _spring_geom(d, w, rest[k], ke[k], kd[k])
                fb = _ld4(Fb, b, 0, si[k]) - _ld4(Fb, b, 0, sj[k])
                ng = nn.dot(fb)
                pw = w - nn * nn.dot(w)
                pg = fb - nn * ng
                _st4(Db, b, 0, k, -(ke[k] * ng * nn + (kd[k] / l) * ng * pw + (c / l) * pg))
                _st4(Db, b, 1, k, -kd[k] * ng * nn)
            # gather spring adjoints into particles
            for i in range(n):
                xb = _ld(gs, b, 3 * i)
                vb = _ld(gs, b, 3 * n + 3 * i)
                for e in range(inc_ptr[i], inc_ptr[i + 1]):
                    xb += inc_sgn[e] * _ld4(Db, b, 0, inc_spr[e])
                    vb += inc_sgn[e] * _ld4(Db, b, 1, inc_spr[e])
                _st(gs, b, 3 * i, xb)
                _st(gs, b, 3 * n + 3 * i, vb)
        for i in range(n):
            p = held[i]
            if p >= 0:
                _st(gc, b, 3 * p, _ld(gc, b, 3 * p) + _ld4(Hb, b, 0, i))


@ti.kernel
def _tangent(T: ti.types.ndarray(), tc: ti.types.ndarray(), X: ti.types.ndarray(), V: ti.types.ndarray(),
             U: ti.types.ndarray(), DF: ti.types.ndarray(),
             si: ti.types.ndarray(), sj: ti.types.ndarray(), rest: ti.types.ndarray(), ke: ti.types.ndarray(),
             kd: ti.types.ndarray(), inc_ptr: ti.types.ndarray(), inc_spr: ti.types.ndarray(),
             inc_sgn: ti.types.ndarray(), inv_m: ti.types.ndarray(), held: ti.types.ndarray(),
             prm: ti.types.ndarray(), S: ti.i32):
    """T [N, P, ds]: tangents of the state in, of the next state out (in place);
    tc [N, P, dc]: control tangents. Scratch DF [N, P, M, 3]. One thread per (env, probe)."""
    N, P, n, M, K = T.shape[0], T.shape[1], X.shape[2], si.shape[0], tc.shape[2] // 3
    for b, p in ti.ndrange(N, P):
        dt, drag, mu, h = prm[_P_DT], prm[_P_DRAG], prm[_P_MU], prm[_P_H]
        for s in range(S):
            for k in range(M):
                i, j = si[k], sj[k]
                d = _ld4(X, b, s, i) - _ld4(X, b, s, j)
                w = _ld4(V, b, s, i) - _ld4(V, b, s, j)
                l, nn, c = _spring_geom(d, w, rest[k], ke[k], kd[k])
                dd = ti.Vector([T[b, p, 3 * i] - T[b, p, 3 * j], T[b, p, 3 * i + 1] - T[b, p, 3 * j + 1],
                                T[b, p, 3 * i + 2] - T[b, p, 3 * j + 2]])
                o = 3 * n
                dw = ti.Vector([T[b, p, o + 3 * i] - T[b, p, o + 3 * j],
                                T[b, p, o + 3 * i + 1] - T[b, p, o + 3 * j + 1],
                                T[b, p, o + 3 * i + 2] - T[b, p, o + 3 * j + 2]])
                nd = nn.dot(dd)
                pd = dd - nn * nd
                df = -(ke[k] * nd * nn + (kd[k] / l) * w.dot(pd) * nn + (c / l) * pd + kd[k] * nn.dot(dw) * nn)
                _st4(DF, b, p, k, df)
            for i in range(n):
                dx = ti.Vector([T[b, p, 3 * i], T[b, p, 3 * i + 1], T[b, p, 3 * i + 2]])
                o = 3 * n + 3 * i
                dv = ti.Vector([T[b, p, o], T[b, p, o + 1], T[b, p, o + 2]])
                q = held[i]
                if q >= 0:
                    ddp = ti.Vector([tc[b, p, 3 * q], tc[b, p, 3 * q + 1], tc[b, p, 3 * q + 2]]) / S
                    dx = dx + ddp
                    dv = ddp / dt
                else:
                    dF = dv * 0.0
                    for e in range(inc_ptr[i], inc_ptr[i + 1]):
                        dF += inc_sgn[e] * _ld4(DF, b, p, inc_spr[e])
                    du = dv + dt * (dF * inv_m[i] - drag * dv)
                    dv = _contact_tangent(_ld4(X, b, s, i), _ld4(U, b, s, i), dx, du, dt, h, mu)
                    dx = dx + dt * dv
                for c3 in ti.static(range(3)):
                    T[b, p, 3 * i + c3] = dx[c3]
                    T[b, p, o + c3] = dv[c3]
        for q in range(K):
            for c3 in ti.static(range(3)):
                T[b, p, 6 * n + 3 * q + c3] += tc[b, p, 3 * q + c3]


# --------------------------------------------------------------------------------- simulator
class ClothSim(Simulator):
    """Batched cloth simulator over a `ClothModel` with K kinematic pickers.

    held: list (one per picker) of particle index lists the picker holds.
    """

    def __init__(self, model: ClothModel, held, dt: float = 1 / 60, substeps: int = 16,
                 gravity=(0.0, 0.0, -9.81), drag: float = 0.0, friction: float = 0.5,
                 ground=0.0, dtype=torch.float32, device="cpu"):
        self.model = model
        self.dtype, self.device = dtype, torch.device(device)
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
            if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
                raise ValueError(f"picker {p} holds particles {idx.tolist()} outside 0..{n - 1}")
            if (held_by[idx] >= 0).any():
                raise ValueError(f"picker {p} holds particles already held by another picker")
            held_by[idx] = p
        self.held = [np.asarray(h, dtype=np.int64) for h in held]
        self.held_by = torch.tensor(held_by, **i32)
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
        self._topo = (self.si, self.sj, self.rest, self.ke, self.kd, self.inc_ptr, self.inc_spr,
                      self.inc_sgn, self.inv_m, self.held_by, self.prm)
        self.jacobian_chunk = max(1, min(256, int(2e7 // max(1, model.num_springs * 3))))

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
            pickers = torch.stack([x[:, torch.as_tensor(h)].mean(1) for h in self.held], 1) if self.K else x[:, :0]
        return torch.cat([x.reshape(N, -1), v.reshape(N, -1), pickers.reshape(N, -1)], 1).contiguous()

    # Simulator contract ---------------------------------------------------------------------
    def _check(self, state, control):
        assert state.dtype == self.dtype and control.dtype == self.dtype, "simulator dtype mismatch"
        assert state.shape[1] == self.state_dim and control.shape[1] == self.control_dim
        return state.contiguous(), control.contiguous()

    def _tape(self, N):
        S, n, M = self.substeps, self.n, self.model.num_springs
        e = dict(dtype=self.dtype, device=self.device)
        return (torch.empty(N, S + 1, n, 3, **e), torch.empty(N, S + 1, n, 3, **e),
                torch.empty(N, S, n, 3, **e), torch.empty(N, 1, M, 3, **e))

    def step(self, state, control, record=False):
        state, control = self._check(state, control)
        N = state.shape[0]
        out = torch.empty_like(state)
        X, V, U, Fs = self._tape(N)
        _forward(state, control, out, X, V, U, Fs, *self._topo, self.substeps)
        self.launches += 1
        return out, ((X, V, U, N) if record else None)

    def vjp_tape(self, tape, cotangent):
        X, V, U, N = tape
        cot = cotangent.to(self.dtype).contiguous()
        e = dict(dtype=self.dtype, device=self.device)
        gs = torch.empty(N, self.state_dim, **e)
        gc = torch.empty(N, self.control_dim, **e)
        Fb = torch.empty(N, 1, self.n, 3, **e)
        Hb = torch.empty(N, 1, self.n, 3, **e)
        Db = torch.empty(N, 2, self.model.num_springs, 3, **e)
        _adjoint(cot, gs, gc, X, V, U, Fb, Db, Hb, *self._topo, self.substeps)
        self.launches += 1
        return gs, gc

    def jvp(self, state, control, t_state, t_control):
        state, control = self._check(state, control)
        single = t_state.dim() == 2
        ts = (t_state.unsqueeze(1) if single else t_state).to(self.dtype).contiguous().clone()
        tc = (t_control.unsqueeze(1) if single else t_control).to(self.dtype).contiguous()
        _, (X, V, U, N) = self.step(state, control, record=True)
        DF = torch.empty(N, ts.shape[1], self.model.num_springs, 3, dtype=self.dtype, device=self.device)
        _tangent(ts, tc, X, V, U, DF, *self._topo, self.substeps)
        self.launches += 1
        return ts[:, 0] if single else ts
