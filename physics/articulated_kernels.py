"""Generic Taichi kernels for a control step of any articulated model: the substep pipeline
and its exact adjoint and tangent, stage by stage, reading the model as data.

One set of kernels serves every model (compiled once per float type and arch, then cached):
the topology (parent body, joint types, dof addresses, the dof tree) and every parameter are
read from two flat tables that :class:`~mbmix_taichi.physics.articulated.ArticulatedTables`
packs, and each env gets a flat workspace for the substep's intermediates. A launch runs a
whole control step (the substep loop is inside the kernel), one parallel loop over envs, with
bodies and dofs serial inside it.

The substep is a pipeline of stage functions in MJX's order, each followed by its tangent
(and its adjoint, except where noted below):

    kinematics        body frames R, p, twists V, dof motion subspaces S and their rates Sd
    body_inertias     world-frame spatial inertias (m, h = m c, Ibar) about the origin
    external_forces   gravity, ground contact (dflex's penalty model), MuJoCo's
                      inertia-box fluid forces and spatial tendons' segment forces, as
                      wrenches about the origin
    bias_forces       recursive Newton-Euler with qacc = 0; composite inertias
    joint_forces      tau = -S.F + damping, springs, limits, frictionloss, tendons, actuators
    mass_matrix       CRBA over the dof tree, plus armature and implicit damping/friction
    factor, solve     M = L^T D L in MuJoCo's tree order (no fill-in), qacc = M^-1 tau
    integrate         semi-implicit Euler; free joints by the quaternion exponential
                      (and integrate_jacobian: its local Jacobian applied to the rows of qacc's)

The forward kernel runs the substeps; with ``keep`` it leaves every substep's intermediates in
its own workspace block, and the adjoint kernel walks those blocks backwards (the tangent
kernel forwards, one probe after another). A kept block stores only the slots its derivative
reads (``keep`` entries: the block's slots are ordered by reader, so these come first); the
substep's other slots, its scratch, fall into the next substep's block, which overwrites them
(kept_block). For a VJP that is 70-78% of the block on the bundled robots, and a VJP's tape
is memory traffic: at 64 envs and more it no longer fits in the cache (touch streams each block
in). For full Jacobians the adjoint kernel can instead write each substep's own: one adjoint
sweep per dof with a unit cotangent on its tau at fixed qacc (a row of
K = d (tau - M qacc) / d (state, control); it reaches only the dof's subtree and its
ancestors, and skips the other bodies), one solve for d qacc / d (state, control) = M^-1 K, then
the integration's local share (integrate_jacobian); a control step's Jacobian then costs NV
sweeps per substep and a chain of small matrix products, where the rows of the whole step cost
NQ + NV full sweeps. The solve's adjoint reuses the factors:
tau_bar = M^-1 qacc_bar, M_bar = -tau_bar qacc^T. The adjoints of the tree stages (kinematics,
body_inertias, gravity, bias_forces, -S.F in joint_forces, mass_matrix) are two passes over the
bodies instead of one per stage: tree_adjoint_down (the spatial velocities alpha = J tau_bar and
beta = J qacc; each body's wrench adjoint is -alpha) and tree_adjoint_up (children first: every
adjoint of a body's inertia, twist and frame is whole when the body is reached, so they stay in
registers, and the kinematics' adjoint follows in the same iteration). A frame's adjoint is the
pair (n, f) of a world twist moving it with all attached to it (W_GT): a joint's coordinate takes
S . (n, f), and the pair passes to the parent unchanged (the tangent carries dR, W_GR, instead).
Derivatives of branches
(contact on/off, stick/slip, limits, clipped servos) are those of the active branch.

Twists are (w, v) and wrenches (n, f), world frame, about the world origin. All literals go
through ``F(...)``: Taichi rounds a bare float literal to float32 first.
"""

import functools

import taichi as ti

# ------------------------------------------------------------------ table layout (shared with ArticulatedTables)
#: integer header slots: sizes, flags, and the offsets of every table (ints in I, floats in P,
#: per-env workspace in W: primal slots first, then from W_GXN on the adjoint/tangent slots)
HEADER = [
    "NB", "NJ", "NQ", "NV", "NU", "NPT", "NX", "NT", "NST", "SUBSTEPS", "WS", "FLUID", "MMK",
    # int tables
    "B_PARENT", "B_JADR", "B_JNUM", "B_DADR", "B_DNUM", "J_TYPE", "J_QADR", "J_DADR", "J_LIMITED",
    "D_BODY", "D_PARENT", "PT_BODY", "PT_KIND", "T_ADR", "T_NUM", "T_LIMITED", "TJ_QADR", "TJ_DADR",
    "A_PADR", "A_PNUM", "A_SERVO", "A_CLIP", "AP_QADR", "AP_DADR", "ST_ADR", "ST_NUM", "ST_LIMITED", "SG_B1",
    "SG_B2", "B_REL",
    # float tables
    "B_POS", "B_ROT", "B_MASS", "B_IPOS", "B_INERTIA", "B_GSCALE", "J_AXIS", "J_POS", "J_REF",
    "J_STIFF", "J_SPRINGREF", "J_LO", "J_HI", "J_FRIC", "D_DAMP", "D_DIAG", "PT_POS", "PT_DIST", "PT_ROT",
    "PT_SIZE", "TJ_COEF", "T_STIFF", "T_SLO", "T_SHI", "T_DAMP", "T_RLO", "T_RHI", "AP_COEF", "A_GEAR",
    "A_GAIN", "A_BIAS", "A_FR", "ST_STIFF", "ST_SLO", "ST_SHI", "ST_DAMP", "ST_RLO", "ST_RHI", "SG_P1", "SG_P2",
    "FL_ROT", "FL_LIN", "FL_ANG", "SCAL",
    # workspace (primal)
    "W_X", "W_XN", "W_R", "W_P", "W_V", "W_S", "W_SD", "W_JR", "W_JP", "W_JV", "W_C", "W_H", "W_IB",
    "W_CH", "W_CIB", "W_FX", "W_A", "W_F", "W_TAU", "W_M", "W_QACC",
    # workspace (adjoint / tangent); the adjoint zeroes W_GZERO..W_GZEND (its accumulators) per substep
    # and stores the other slots before it reads them; the tangent zeroes W_GX + NX..W_TZEND per
    # substep; W_GMC (the cached mass matrix's cotangent or tangent) lives across substeps
    "W_GXN", "W_GZERO", "W_GX", "W_GT", "W_GR", "W_GV", "W_GA", "W_GMAB", "W_GZV", "W_GZEND", "W_GP",
    "W_GS", "W_GSD", "W_GH", "W_GIB", "W_GF", "W_GTAU", "W_MAB", "W_GCS", "W_GCI", "W_TZEND", "W_GMC",
    # the substep Jacobians' rows of d qacc / d (state, control), the contact points' world positions
    # (stored once per substep for all its cotangents); the sum of touch's loads
    "W_JA", "W_PTC", "W_TOUCH",
]
H = {name: i for i, name in enumerate(HEADER)}
#: scalar slots of P at P[I[SCAL] + k]
SCALARS = ["H", "GX", "GY", "GZ", "KE", "KD", "KF", "MU", "GROUND", "LKE", "LKD", "FRIC_V0", "WX", "WY", "WZ"]
S_ = {name: i for i, name in enumerate(SCALARS)}
HINGE, SLIDE, FREE = 0, 1, 2
POINT, ELLIPSOID = 0, 1  # contact point kinds: a fixed point of the body, an ellipsoid's lowest point

NB, NJ, NQ, NV, NU, NPT, NX = (H[k] for k in ("NB", "NJ", "NQ", "NV", "NU", "NPT", "NX"))


@functools.lru_cache(maxsize=None)
def kernels(fp: str):
    """The kernels for one float type ("f32" or "f64"): forward, adjoint, tangent, and chain (a
    Jacobian's substeps multiplied together, for small models). Each takes a last, compile-time
    argument `serial`: True runs the loop over envs on the launching thread instead of Taichi's
    thread pool (for a launch of one env, which the pool could give to one worker only, after
    waking it: 50-90 us of CPU per launch measured here, docs/benchmarks_articulated.md, session
    21), as the cloth's forward does; each value is its own instance, compiled on first use."""
    F = ti.f64 if fp == "f64" else ti.f32
    arr_f = ti.types.ndarray(dtype=F, ndim=1)
    arr_i = ti.types.ndarray(dtype=ti.i32, ndim=1)
    h_ = H
    sc = S_

    # ------------------------------------------------------------ small algebra over flat arrays
    @ti.func
    def ld3(A: ti.template(), o):
        return ti.Vector([A[o], A[o + 1], A[o + 2]], dt=F)

    @ti.func
    def st3(A: ti.template(), o, v):
        for k in ti.static(range(3)):
            A[o + k] = v[k]

    # Every accumulation into an array is written A[i] = A[i] + v, never A[i] += v: Taichi makes an
    # augmented assignment to an array element atomic, a compare-and-swap loop for floats on the
    # CPU (2-3x slower than a load and a store), and no slot here is shared between threads. (Not
    # through a helper function either: each call costs Taichi's frontend time at every warm start.)
    @ti.func
    def add3(A: ti.template(), o, v):
        for k in ti.static(range(3)):
            A[o + k] = A[o + k] + v[k]

    @ti.func
    def ld4(A: ti.template(), o):
        return ti.Vector([A[o], A[o + 1], A[o + 2], A[o + 3]], dt=F)

    @ti.func
    def ld33(A: ti.template(), o):
        return ti.Matrix([[A[o], A[o + 1], A[o + 2]], [A[o + 3], A[o + 4], A[o + 5]],
                          [A[o + 6], A[o + 7], A[o + 8]]], dt=F)

    @ti.func
    def st33(A: ti.template(), o, M):
        for i, k in ti.static(ti.ndrange(3, 3)):
            A[o + 3 * i + k] = M[i, k]

    @ti.func
    def add33(A: ti.template(), o, M):
        for i, k in ti.static(ti.ndrange(3, 3)):
            A[o + 3 * i + k] = A[o + 3 * i + k] + M[i, k]

    @ti.func
    def col(M, i):
        return ti.Vector([M[0, i], M[1, i], M[2, i]], dt=F)

    @ti.func
    def skew(a):
        return ti.Matrix([[F(0.0), -a[2], a[1]], [a[2], F(0.0), -a[0]], [-a[1], a[0], F(0.0)]], dt=F)

    @ti.func
    def quat_mat(w, x, y, z):
        return ti.Matrix([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                          [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                          [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]], dt=F)

    @ti.func
    def quat_mat_adjoint(u, G):
        """d<G, quat_mat(u)>/du, u = (w, x, y, z)."""
        w, x, y, z = u[0], u[1], u[2], u[3]
        return 2 * ti.Vector([
            -z * G[0, 1] + y * G[0, 2] + z * G[1, 0] - x * G[1, 2] - y * G[2, 0] + x * G[2, 1],
            y * G[0, 1] + z * G[0, 2] + y * G[1, 0] - 2 * x * G[1, 1] - w * G[1, 2] + z * G[2, 0] + w * G[2, 1]
            - 2 * x * G[2, 2],
            -2 * y * G[0, 0] + x * G[0, 1] + w * G[0, 2] + x * G[1, 0] + z * G[1, 2] - w * G[2, 0] + z * G[2, 1]
            - 2 * y * G[2, 2],
            -2 * z * G[0, 0] - w * G[0, 1] + x * G[0, 2] + w * G[1, 0] - 2 * z * G[1, 1] + y * G[1, 2] + x * G[2, 0]
            + y * G[2, 1]], dt=F)

    @ti.func
    def qmul(a, b):
        return ti.Vector([a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3],
                          a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
                          a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1],
                          a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0]], dt=F)

    @ti.func
    def qconj(a):
        return ti.Vector([a[0], -a[1], -a[2], -a[3]], dt=F)

    # spatial algebra: twists (w, v), wrenches (n, f), inertias (m, h, Ib)
    @ti.func
    def crm(w, v, sw, sv):
        return w.cross(sw), w.cross(sv) + v.cross(sw)

    @ti.func
    def crm_adjoint(w, v, sw, sv, gy1, gy2):
        """Adjoint of (y1, y2) = crm((w, v), (sw, sv)): (gw, gv, gsw, gsv)."""
        return (sw.cross(gy1) + sv.cross(gy2), sw.cross(gy2),
                gy1.cross(w) + gy2.cross(v), gy2.cross(w))

    @ti.func
    def crf(w, v, n, f):
        return w.cross(n) + v.cross(f), w.cross(f)

    @ti.func
    def crf_adjoint(w, v, n, f, gy1, gy2):
        """Adjoint of (y1, y2) = crf((w, v), (n, f)): (gw, gv, gn, gf)."""
        return n.cross(gy1) + f.cross(gy2), f.cross(gy1), gy1.cross(w), gy1.cross(v) + gy2.cross(w)

    @ti.func
    def iapply(m, hv, Ib, w, v):
        return Ib @ w + hv.cross(v), m * v - hv.cross(w)

    # ------------------------------------------------------------ addressing
    @ti.func
    def iget(I: ti.template(), slot, k):
        return I[I[slot] + k]

    @ti.func
    def pget(I: ti.template(), P: ti.template(), slot, k):
        return P[I[slot] + k]

    @ti.func
    def cmass(I: ti.template(), P: ti.template(), b):
        """Composite (subtree) mass of body b: stored after the body masses."""
        return P[I[h_["B_MASS"]] + I[NB] + b]

    @ti.func
    def scal(I: ti.template(), P: ti.template(), name_k):
        return P[I[h_["SCAL"]] + name_k]

    @ti.func
    def reached(I: ti.template(), fb, b):
        """How body b takes part in an adjoint sweep whose cotangent is a unit one on tau at a dof
        of body fb: 2 in fb's subtree (its wrench adjoint can be nonzero), 1 an ancestor of fb (it
        only passes on what its children send up), 0 neither (all its adjoints are zero, so the
        sweep skips it). fb < 0 (any other cotangent): 2 for every body. Models whose spatial
        tendons tie bodies across the tree read 2 for every pair (B_REL)."""
        r = 2
        if fb >= 0:
            r = I[I[h_["B_REL"]] + fb * I[NB] + b]
        return r

    # ================================================================== the stages
    # Each stage of the substep, then its adjoint (reverse mode: from the cotangents of its
    # outputs, accumulated in the W_G* slots of the adjoint block at `wa`) and its tangent
    # (forward mode, one probe at a time: the tangent of every intermediate goes in the slot
    # its adjoint uses, W_GR holds dR, W_GF dF, ...), after the helpers they share.

    @ti.func
    def kinematics(I: ti.template(), P: ti.template(), W: ti.template(), w):
        nb = I[NB]
        nq = I[NQ]
        x = w + I[h_["W_X"]]
        oR, op, oV = w + I[h_["W_R"]], w + I[h_["W_P"]], w + I[h_["W_V"]]
        oS, oSd = w + I[h_["W_S"]], w + I[h_["W_SD"]]
        st33(W, oR, ti.Matrix.identity(F, 3))
        st3(W, op, ti.Vector([0, 0, 0], dt=F))
        for k in range(6):
            W[oV + k] = F(0.0)
        for b in range(1, nb):
            par = iget(I, h_["B_PARENT"], b)
            Rp = ld33(W, oR + 9 * par)
            R = Rp @ ld33(P, I[h_["B_ROT"]] + 9 * b)
            p = ld3(W, op + 3 * par) + Rp @ ld3(P, I[h_["B_POS"]] + 3 * b)
            Vw = ld3(W, oV + 6 * par)
            Vv = ld3(W, oV + 6 * par + 3)
            ja = iget(I, h_["B_JADR"], b)
            for jj in range(iget(I, h_["B_JNUM"], b)):
                j = ja + jj
                st33(W, w + I[h_["W_JR"]] + 9 * j, R)
                st3(W, w + I[h_["W_JP"]] + 3 * j, p)
                st3(W, w + I[h_["W_JV"]] + 6 * j, Vw)
                st3(W, w + I[h_["W_JV"]] + 6 * j + 3, Vv)
                typ = iget(I, h_["J_TYPE"], j)
                qa = iget(I, h_["J_QADR"], j)
                d = iget(I, h_["J_DADR"], j)
                if typ == FREE:
                    p = ld3(W, x + qa)
                    qt = ld4(W, x + qa + 3)
                    inv = 1 / ti.sqrt(ti.max(qt.dot(qt), F(1e-30)))
                    u = qt * inv
                    R = quat_mat(u[0], u[1], u[2], u[3])
                    for i in ti.static(range(3)):
                        e = ti.Vector([0, 0, 0], dt=F)
                        e[i] = F(1.0)
                        st3(W, oS + 6 * (d + i), ti.Vector([0, 0, 0], dt=F))
                        st3(W, oS + 6 * (d + i) + 3, e)
                        for k in ti.static(range(6)):
                            W[oSd + 6 * (d + i) + k] = F(0.0)
                    Vv += ld3(W, x + nq + d)
                    for i in ti.static(range(3)):
                        a = col(R, i)
                        sv = p.cross(a)
                        st3(W, oS + 6 * (d + 3 + i), a)
                        st3(W, oS + 6 * (d + 3 + i) + 3, sv)
                        y1, y2 = crm(Vw, Vv, a, sv)
                        st3(W, oSd + 6 * (d + 3 + i), y1)
                        st3(W, oSd + 6 * (d + 3 + i) + 3, y2)
                    for i in ti.static(range(3)):
                        qd = W[x + nq + d + 3 + i]
                        Vw += col(R, i) * qd
                        Vv += p.cross(col(R, i)) * qd
                else:
                    axis = ld3(P, I[h_["J_AXIS"]] + 3 * j)
                    a = R @ axis
                    th = W[x + qa] - pget(I, P, h_["J_REF"], j)
                    sw = ti.Vector([0, 0, 0], dt=F)
                    sv = a
                    if typ == SLIDE:
                        p = p + a * th
                    else:
                        jp = ld3(P, I[h_["J_POS"]] + 3 * j)
                        anchor = p + R @ jp
                        K = skew(axis)
                        R = R @ (ti.Matrix.identity(F, 3) + ti.sin(th) * K + (1 - ti.cos(th)) * (K @ K))
                        p = anchor - R @ jp
                        sw = a
                        sv = anchor.cross(a)
                    st3(W, oS + 6 * d, sw)
                    st3(W, oS + 6 * d + 3, sv)
                    y1, y2 = crm(Vw, Vv, sw, sv)
                    st3(W, oSd + 6 * d, y1)
                    st3(W, oSd + 6 * d + 3, y2)
                    qd = W[x + nq + d]
                    Vw += sw * qd
                    Vv += sv * qd
            st33(W, oR + 9 * b, R)
            st3(W, op + 3 * b, p)
            st3(W, oV + 6 * b, Vw)
            st3(W, oV + 6 * b + 3, Vv)

    @ti.func
    def kinematics_adjoint(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, b, gn0, gf0, gVw0, gVv0):
        """Body b's share of the kinematics' adjoint, from the whole adjoint (gn0, gf0) of a world
        twist that moves its frame and all attached to it (its points, inertia, children: W_GT), of
        its twist (gVw0, gVv0) and of its dofs' S and Sd (W_GS, W_GSD): into the state's (W_GX) and
        the parent's frame and twist (W_GT, W_GV). Children before parents.

        A joint's coordinate moves what follows it by the twist S dq, so its adjoint is S . (gn, gf);
        S itself (and what precedes the joint) moves with the frame before it: a twist d moves S by
        d x S, whose adjoint adds (sw x gsw + sv x gsv, sw x gsv). A twist's only dependence on the
        frames is through the S of the joints above it, so it adds no frame term of its own."""
        nq = I[NQ]
        x, gx = w + I[h_["W_X"]], wa + I[h_["W_GX"]]
        oS, gS, gSd = w + I[h_["W_S"]], wa + I[h_["W_GS"]], wa + I[h_["W_GSD"]]
        gn = gn0
        gf = gf0
        gVw = gVw0
        gVv = gVv0
        ja = iget(I, h_["B_JADR"], b)
        nj = iget(I, h_["B_JNUM"], b)
        for jj in range(nj):
            j = ja + nj - 1 - jj
            Vw = ld3(W, w + I[h_["W_JV"]] + 6 * j)
            Vv = ld3(W, w + I[h_["W_JV"]] + 6 * j + 3)
            typ = iget(I, h_["J_TYPE"], j)
            qa = iget(I, h_["J_QADR"], j)
            d = iget(I, h_["J_DADR"], j)
            if typ == FREE:
                p = ld3(W, x + qa)
                qt = ld4(W, x + qa + 3)
                n2 = qt.dot(qt)
                inv = 1 / ti.sqrt(ti.max(n2, F(1e-30)))
                u = qt * inv
                R = quat_mat(u[0], u[1], u[2], u[3])
                Vmv = Vv + ld3(W, x + nq + d)  # twist after the linear dofs (w unchanged)
                # V_out = V_mid + sum_i S_{3+i} qd_{3+i}; Sd_{3+i} = crm(V_mid, S_{3+i})
                gVmw = gVw
                gVmv = gVv
                for i in ti.static(range(3)):
                    dd = d + 3 + i
                    a = col(R, i)
                    sv = p.cross(a)
                    qd = W[x + nq + dd]
                    W[gx + nq + dd] = W[gx + nq + dd] + (gVw.dot(a) + gVv.dot(sv))
                    gsw = ld3(W, gS + 6 * dd) + gVw * qd
                    gsv = ld3(W, gS + 6 * dd + 3) + gVv * qd
                    cw, cv, csw, csv = crm_adjoint(Vw, Vmv, a, sv, ld3(W, gSd + 6 * dd), ld3(W, gSd + 6 * dd + 3))
                    gVmw += cw
                    gVmv += cv
                    gsw += csw
                    gsv += csv
                    # S_{3+i} = (a, p x a) turns and moves with the frame the joint sets
                    gn += a.cross(gsw) + sv.cross(gsv)
                    gf += a.cross(gsv)
                # the frame (R(u), p) is the joint's own: p moves it by the twist (0, dp), the
                # quaternion turns it about p, (dw, p x dw), whose adjoint n + f x p is, as the
                # adjoint of R = quat_mat(u), [n + f x p] R / 2
                for i in ti.static(range(3)):
                    W[gx + nq + d + i] = W[gx + nq + d + i] + gVmv[i]
                    W[gx + qa + i] = W[gx + qa + i] + gf[i]
                gu = quat_mat_adjoint(u, F(0.5) * skew(gn + gf.cross(p)) @ R)
                gq = (gu - u * u.dot(gu)) * inv
                if n2 < F(1e-30):
                    gq = gu * inv
                for i in ti.static(range(4)):
                    W[gx + qa + 3 + i] = W[gx + qa + 3 + i] + gq[i]
                gn = ti.Vector([0, 0, 0], dt=F)
                gf = ti.Vector([0, 0, 0], dt=F)
                gVw, gVv = gVmw, gVmv
            else:
                sw = ld3(W, oS + 6 * d)
                sv = ld3(W, oS + 6 * d + 3)
                qd = W[x + nq + d]
                # V_out = V_in + S qd; Sd = crm(V_in, S); the frame after = exp(S dq) the frame before
                W[gx + nq + d] = W[gx + nq + d] + (gVw.dot(sw) + gVv.dot(sv))
                W[gx + qa] = W[gx + qa] + (sw.dot(gn) + sv.dot(gf))
                gsw = ld3(W, gS + 6 * d) + gVw * qd
                gsv = ld3(W, gS + 6 * d + 3) + gVv * qd
                cw, cv, csw, csv = crm_adjoint(Vw, Vv, sw, sv, ld3(W, gSd + 6 * d), ld3(W, gSd + 6 * d + 3))
                gVw += cw
                gVv += cv
                gsw += csw
                gsv += csv
                gn += sw.cross(gsw) + sv.cross(gsv)
                gf += sw.cross(gsv)
        # R_b0 = R_par Rq_b; p_b0 = p_par + R_par pos_b; V_b0 = V_par: b's frame moves with its parent's
        par = iget(I, h_["B_PARENT"], b)
        if par > 0:
            add3(W, wa + I[h_["W_GT"]] + 6 * par, gn)
            add3(W, wa + I[h_["W_GT"]] + 6 * par + 3, gf)
            add3(W, wa + I[h_["W_GV"]] + 6 * par, gVw)
            add3(W, wa + I[h_["W_GV"]] + 6 * par + 3, gVv)

    @ti.func
    def kinematics_tangent(I: ti.template(), P: ti.template(), W: ti.template(), w, wa):
        nb, nq = I[NB], I[NQ]
        x, tx = w + I[h_["W_X"]], wa + I[h_["W_GX"]]
        tR, tp, tV = wa + I[h_["W_GR"]], wa + I[h_["W_GP"]], wa + I[h_["W_GV"]]
        oS, tS, tSd = w + I[h_["W_S"]], wa + I[h_["W_GS"]], wa + I[h_["W_GSD"]]
        for b in range(1, nb):
            par = iget(I, h_["B_PARENT"], b)
            dRp = ld33(W, tR + 9 * par)
            dR = dRp @ ld33(P, I[h_["B_ROT"]] + 9 * b)
            dp = ld3(W, tp + 3 * par) + dRp @ ld3(P, I[h_["B_POS"]] + 3 * b)
            dVw = ld3(W, tV + 6 * par)
            dVv = ld3(W, tV + 6 * par + 3)
            ja = iget(I, h_["B_JADR"], b)
            for jj in range(iget(I, h_["B_JNUM"], b)):
                j = ja + jj
                R = ld33(W, w + I[h_["W_JR"]] + 9 * j)
                p = ld3(W, w + I[h_["W_JP"]] + 3 * j)
                Vw = ld3(W, w + I[h_["W_JV"]] + 6 * j)
                Vv = ld3(W, w + I[h_["W_JV"]] + 6 * j + 3)
                typ = iget(I, h_["J_TYPE"], j)
                qa = iget(I, h_["J_QADR"], j)
                d = iget(I, h_["J_DADR"], j)
                if typ == FREE:
                    p = ld3(W, x + qa)
                    dp = ld3(W, tx + qa)
                    qt = ld4(W, x + qa + 3)
                    dqt = ld4(W, tx + qa + 3)
                    n2 = qt.dot(qt)
                    inv = 1 / ti.sqrt(ti.max(n2, F(1e-30)))
                    u = qt * inv
                    du = (dqt - u * u.dot(dqt)) * inv
                    if n2 < F(1e-30):
                        du = dqt * inv
                    R = quat_mat(u[0], u[1], u[2], u[3])
                    dR = quat_mat_tangent(u, du)
                    for i in ti.static(range(6)):
                        for k in ti.static(range(6)):
                            W[tS + 6 * (d + i) + k] = F(0.0)
                            W[tSd + 6 * (d + i) + k] = F(0.0)
                    Vv += ld3(W, x + nq + d)
                    dVv += ld3(W, tx + nq + d)
                    for i in ti.static(range(3)):
                        a, da = col(R, i), col(dR, i)
                        sv = p.cross(a)
                        dsv = dp.cross(a) + p.cross(da)
                        st3(W, tS + 6 * (d + 3 + i), da)
                        st3(W, tS + 6 * (d + 3 + i) + 3, dsv)
                        y1, y2 = crm(dVw, dVv, a, sv)
                        z1, z2 = crm(Vw, Vv, da, dsv)
                        st3(W, tSd + 6 * (d + 3 + i), y1 + z1)
                        st3(W, tSd + 6 * (d + 3 + i) + 3, y2 + z2)
                    for i in ti.static(range(3)):
                        qd = W[x + nq + d + 3 + i]
                        dqd = W[tx + nq + d + 3 + i]
                        a, da = col(R, i), col(dR, i)
                        dVw += da * qd + a * dqd
                        dVv += (dp.cross(a) + p.cross(da)) * qd + p.cross(a) * dqd
                else:
                    axis = ld3(P, I[h_["J_AXIS"]] + 3 * j)
                    a, da = R @ axis, dR @ axis
                    th = W[x + qa] - pget(I, P, h_["J_REF"], j)
                    dth = W[tx + qa]
                    sw = ti.Vector([0.0, 0.0, 0.0], dt=F)
                    dsw = ti.Vector([0.0, 0.0, 0.0], dt=F)
                    sv, dsv = a, da
                    if typ == SLIDE:
                        dp = dp + da * th + a * dth
                    else:
                        jp = ld3(P, I[h_["J_POS"]] + 3 * j)
                        anchor = p + R @ jp
                        danchor = dp + dR @ jp
                        K = skew(axis)
                        s_, c_ = ti.sin(th), ti.cos(th)
                        Rot = ti.Matrix.identity(F, 3) + s_ * K + (1 - c_) * (K @ K)
                        dR = dR @ Rot + R @ ((c_ * K + s_ * (K @ K)) * dth)
                        dp = danchor - dR @ jp
                        sw, dsw = a, da
                        sv, dsv = anchor.cross(a), danchor.cross(a) + anchor.cross(da)
                    st3(W, tS + 6 * d, dsw)
                    st3(W, tS + 6 * d + 3, dsv)
                    y1, y2 = crm(dVw, dVv, sw, sv)
                    z1, z2 = crm(Vw, Vv, dsw, dsv)
                    st3(W, tSd + 6 * d, y1 + z1)
                    st3(W, tSd + 6 * d + 3, y2 + z2)
                    qd, dqd = W[x + nq + d], W[tx + nq + d]
                    dVw += dsw * qd + sw * dqd
                    dVv += dsv * qd + sv * dqd
            st33(W, tR + 9 * b, dR)
            st3(W, tp + 3 * b, dp)
            st3(W, tV + 6 * b, dVw)
            st3(W, tV + 6 * b + 3, dVv)

    @ti.func
    def body_inertias(I: ti.template(), P: ti.template(), W: ti.template(), w):
        for b in range(1, I[NB]):
            m = pget(I, P, h_["B_MASS"], b)
            R = ld33(W, w + I[h_["W_R"]] + 9 * b)
            c = ld3(W, w + I[h_["W_P"]] + 3 * b) + R @ ld3(P, I[h_["B_IPOS"]] + 3 * b)
            Ib = R @ ld33(P, I[h_["B_INERTIA"]] + 9 * b) @ R.transpose() + m * (
                c.dot(c) * ti.Matrix.identity(F, 3) - c.outer_product(c))
            st3(W, w + I[h_["W_C"]] + 3 * b, c)
            st3(W, w + I[h_["W_H"]] + 3 * b, m * c)
            st33(W, w + I[h_["W_IB"]] + 9 * b, Ib)

    @ti.func
    def body_inertias_tangent(I: ti.template(), P: ti.template(), W: ti.template(), w, wa):
        for b in range(1, I[NB]):
            m = pget(I, P, h_["B_MASS"], b)
            R = ld33(W, w + I[h_["W_R"]] + 9 * b)
            dR = ld33(W, wa + I[h_["W_GR"]] + 9 * b)
            c = ld3(W, w + I[h_["W_C"]] + 3 * b)
            dc = ld3(W, wa + I[h_["W_GP"]] + 3 * b) + dR @ ld3(P, I[h_["B_IPOS"]] + 3 * b)
            Il = ld33(P, I[h_["B_INERTIA"]] + 9 * b)
            X = dR @ Il @ R.transpose()
            dIb = X + X.transpose() + m * (2 * c.dot(dc) * ti.Matrix.identity(F, 3) - dc.outer_product(c)
                                           - c.outer_product(dc))
            st3(W, wa + I[h_["W_GH"]] + 3 * b, m * dc)
            st33(W, wa + I[h_["W_GIB"]] + 9 * b, dIb)

    @ti.func
    def ellipsoid_low(Rg, size):
        """The lowest point of an ellipsoid relative to its centre: -Rg D^2 n / |D n|, n = Rg^T z."""
        n = ti.Vector([Rg[2, 0], Rg[2, 1], Rg[2, 2]], dt=F)
        D2n = size * size * n
        s = D2n.dot(n)
        sn = ti.sqrt(ti.max(s, F(1e-30)))
        return -(Rg @ D2n) / sn, n, D2n, s, sn

    @ti.func
    def contact_point(I: ti.template(), P: ti.template(), W: ti.template(), w, k):
        """(body, world point) of contact point k: a point of the body shifted down by its radius
        (sphere centres, capsule ends, box corners), or an ellipsoid's lowest point."""
        b = iget(I, h_["PT_BODY"], k)
        R = ld33(W, w + I[h_["W_R"]] + 9 * b)
        pt = ld3(W, w + I[h_["W_P"]] + 3 * b) + R @ ld3(P, I[h_["PT_POS"]] + 3 * k)
        if iget(I, h_["PT_KIND"], k) == ELLIPSOID:
            low, _n, _d, _s, _sn = ellipsoid_low(R @ ld33(P, I[h_["PT_ROT"]] + 9 * k), ld3(P, I[h_["PT_SIZE"]] + 3 * k))
            pt += low
        pt[2] -= pget(I, P, h_["PT_DIST"], k)
        return b, pt

    @ti.func
    def contact_velocity(I: ti.template(), W: ti.template(), w, b, pt):
        """The world velocity of body b's material point at pt. Asked only for points below the
        ground: above it the contact force and its derivatives are zero."""
        Vw = ld3(W, w + I[h_["W_V"]] + 6 * b)
        return ld3(W, w + I[h_["W_V"]] + 6 * b + 3) + Vw.cross(pt)

    @ti.func
    def contact_point_adjoint(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, k, b, pt, gpt):
        """Adds contact point k's position adjoint gpt into its body's frame adjoint W_GT: the point
        before its shift down (a fixed point of the body, or an ellipsoid's centre) moves with the
        frame, (x x gpt, gpt); an ellipsoid's lowest point also slides as its frame Rg turns, adding
        sum_k Rg_k x gRg_k (the columns)."""
        x = pt + ti.Vector([F(0.0), F(0.0), pget(I, P, h_["PT_DIST"], k)], dt=F)
        gn = ti.Vector([0, 0, 0], dt=F)
        if iget(I, h_["PT_KIND"], k) == ELLIPSOID:
            Rl = ld33(P, I[h_["PT_ROT"]] + 9 * k)
            size = ld3(P, I[h_["PT_SIZE"]] + 3 * k)
            Rg = ld33(W, w + I[h_["W_R"]] + 9 * b) @ Rl
            low, n, D2n, s, sn = ellipsoid_low(Rg, size)
            x -= low
            g = -gpt / sn
            gRg = g.outer_product(D2n)
            gD2n = Rg.transpose() @ g
            gsn = gpt.dot(Rg @ D2n) / (sn * sn)
            gz = size * size * gD2n  # the adjoint of n = Rg^T z, Rg's last row
            if s > F(1e-30):
                gs = gsn / (2 * sn)
                gz = gs * D2n + size * size * (gD2n + gs * n)
            for c in ti.static(range(3)):
                gRg[2, c] += gz[c]
                gn += col(Rg, c).cross(col(gRg, c))
        o = wa + I[h_["W_GT"]] + 6 * b
        add3(W, o, gn + x.cross(gpt))
        add3(W, o + 3, gpt)

    @ti.func
    def contact_point_tangent(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, k, b):
        """The tangent of contact point k's world position (from W_GR, W_GP)."""
        dR = ld33(W, wa + I[h_["W_GR"]] + 9 * b)
        dpt = ld3(W, wa + I[h_["W_GP"]] + 3 * b) + dR @ ld3(P, I[h_["PT_POS"]] + 3 * k)
        if iget(I, h_["PT_KIND"], k) == ELLIPSOID:
            Rl = ld33(P, I[h_["PT_ROT"]] + 9 * k)
            size = ld3(P, I[h_["PT_SIZE"]] + 3 * k)
            Rg = ld33(W, w + I[h_["W_R"]] + 9 * b) @ Rl
            dRg = dR @ Rl
            _low, n, D2n, s, sn = ellipsoid_low(Rg, size)
            dn = ti.Vector([dRg[2, 0], dRg[2, 1], dRg[2, 2]], dt=F)
            dD2n = size * size * dn
            dsn = F(0.0)
            if s > F(1e-30):
                dsn = (dD2n.dot(n) + D2n.dot(dn)) / (2 * sn)
            dpt += -(dRg @ D2n + Rg @ dD2n) / sn + (Rg @ D2n) * (dsn / (sn * sn))
        return dpt

    @ti.func
    def contact_force(I: ti.template(), P: ti.template(), pt, dp):
        """dflex's penalty contact force at a point below the ground (zero above it)."""
        ke, kd, kf, mu = scal(I, P, sc["KE"]), scal(I, P, sc["KD"]), scal(I, P, sc["KF"]), scal(I, P, sc["MU"])
        c = pt[2] - scal(I, P, sc["GROUND"])
        f = ti.Vector([0, 0, 0], dt=F)
        if c < 0:
            vtn = ti.sqrt(ti.max(dp[0] * dp[0] + dp[1] * dp[1], F(1e-20)))
            lim = -mu * ke * c
            scale = kf
            if kf * vtn >= lim:  # sliding: Coulomb's cap
                scale = lim / vtn
            f = ti.Vector([-scale * dp[0], -scale * dp[1], -(ke * c + ti.min(dp[2], F(0.0)) * kd * (-c))], dt=F)
        return f

    @ti.func
    def tension(I: ti.template(), P: ti.template(), L, Ld, stiff, slo, shi, damp, limited, lo, hi):
        """(f, df/dL, df/dLdot) of a tendon of length L: spring outside its dead band, damper, limit."""
        f = -damp * Ld
        a = F(0.0)
        bb = -damp
        if shi < L:
            f += stiff * (shi - L)
            a -= stiff
        elif L < slo:
            f += stiff * (slo - L)
            a -= stiff
        if limited != 0:
            lke, lkd = scal(I, P, sc["LKE"]), scal(I, P, sc["LKD"])
            if L < lo:
                f += lke * (lo - L) - lkd * Ld
                a -= lke
                bb -= lkd
            elif hi < L:
                f += lke * (hi - L) - lkd * Ld
                a -= lke
                bb -= lkd
        return f, a, bb

    @ti.func
    def tendon_force(I: ti.template(), P: ti.template(), W: ti.template(), x, t):
        """(f, df/dL, df/dLdot) of fixed tendon t."""
        nq = I[NQ]
        L = F(0.0)
        Ld = F(0.0)
        for i in range(iget(I, h_["T_NUM"], t)):
            e = iget(I, h_["T_ADR"], t) + i
            cf = pget(I, P, h_["TJ_COEF"], e)
            L += cf * W[x + iget(I, h_["TJ_QADR"], e)]
            Ld += cf * W[x + nq + iget(I, h_["TJ_DADR"], e)]
        return tension(I, P, L, Ld, pget(I, P, h_["T_STIFF"], t), pget(I, P, h_["T_SLO"], t),
                       pget(I, P, h_["T_SHI"], t), pget(I, P, h_["T_DAMP"], t), iget(I, h_["T_LIMITED"], t),
                       pget(I, P, h_["T_RLO"], t), pget(I, P, h_["T_RHI"], t))

    @ti.func
    def site_point(I: ti.template(), P: ti.template(), W: ti.template(), w, b, lp):
        """(world point, its velocity) of the point lp of body b."""
        pt = ld3(W, w + I[h_["W_P"]] + 3 * b) + ld33(W, w + I[h_["W_R"]] + 9 * b) @ lp
        return pt, ld3(W, w + I[h_["W_V"]] + 6 * b + 3) + ld3(W, w + I[h_["W_V"]] + 6 * b).cross(pt)

    @ti.func
    def segment(I: ti.template(), P: ti.template(), W: ti.template(), w, e):
        """Segment e of a spatial tendon: bodies, local points, world points, velocities, length, direction."""
        b1, b2 = iget(I, h_["SG_B1"], e), iget(I, h_["SG_B2"], e)
        l1, l2 = ld3(P, I[h_["SG_P1"]] + 3 * e), ld3(P, I[h_["SG_P2"]] + 3 * e)
        p1, v1 = site_point(I, P, W, w, b1, l1)
        p2, v2 = site_point(I, P, W, w, b2, l2)
        d = p1 - p2
        ln = ti.sqrt(ti.max(d.dot(d), F(1e-30)))
        return b1, b2, l1, l2, p1, p2, v1, v2, ln, d / ln

    @ti.func
    def spatial_force(I: ti.template(), P: ti.template(), W: ti.template(), w, t):
        """(f, df/dL, df/dLdot) of spatial tendon t: L sums its segments, Ldot their stretch rates."""
        L = F(0.0)
        Ld = F(0.0)
        for i in range(iget(I, h_["ST_NUM"], t)):
            _b1, _b2, _l1, _l2, _p1, _p2, v1, v2, ln, u = segment(I, P, W, w, iget(I, h_["ST_ADR"], t) + i)
            L += ln
            Ld += u.dot(v1 - v2)
        return tension(I, P, L, Ld, pget(I, P, h_["ST_STIFF"], t), pget(I, P, h_["ST_SLO"], t),
                       pget(I, P, h_["ST_SHI"], t), pget(I, P, h_["ST_DAMP"], t), iget(I, h_["ST_LIMITED"], t),
                       pget(I, P, h_["ST_RLO"], t), pget(I, P, h_["ST_RHI"], t))

    @ti.func
    def add_point_force(W: ti.template(), o, b, pt, f):
        """The wrench (pt x f, f) about the origin onto body b's slot at o (the world takes none)."""
        if b != 0:
            add3(W, o + 6 * b, pt.cross(f))
            add3(W, o + 6 * b + 3, f)

    @ti.func
    def point_adjoint(I: ti.template(), W: ti.template(), w, wa, b, pt, gp, gv):
        """Adds the adjoints gp, gv of a body point's world position and velocity into its body's
        W_GT, W_GV (pt = p + R lp moves with the frame; v = Vv + Vw x pt)."""
        if b != 0:
            Vw = ld3(W, w + I[h_["W_V"]] + 6 * b)
            add3(W, wa + I[h_["W_GV"]] + 6 * b, pt.cross(gv))
            add3(W, wa + I[h_["W_GV"]] + 6 * b + 3, gv)
            g = gp + gv.cross(Vw)
            add3(W, wa + I[h_["W_GT"]] + 6 * b, pt.cross(g))
            add3(W, wa + I[h_["W_GT"]] + 6 * b + 3, g)

    @ti.func
    def point_tangent(I: ti.template(), W: ti.template(), w, wa, b, lp, pt):
        """Tangents of a body point's world position and velocity (from W_GR, W_GP, W_GV)."""
        dpt = ld3(W, wa + I[h_["W_GP"]] + 3 * b) + ld33(W, wa + I[h_["W_GR"]] + 9 * b) @ lp
        dv = ld3(W, wa + I[h_["W_GV"]] + 6 * b + 3) + ld3(W, wa + I[h_["W_GV"]] + 6 * b).cross(pt) \
            + ld3(W, w + I[h_["W_V"]] + 6 * b).cross(dpt)
        return dpt, dv

    @ti.func
    def spatial_forces(I: ti.template(), P: ti.template(), W: ti.template(), w):
        """Each spatial tendon's force f pulls its segments' end points along them: f u at the
        first end, -f u at the second (u from the second to the first), onto W_FX."""
        ofx = w + I[h_["W_FX"]]
        for t in range(I[h_["NST"]]):
            f, _a, _bb = spatial_force(I, P, W, w, t)
            for i in range(iget(I, h_["ST_NUM"], t)):
                b1, b2, _l1, _l2, p1, p2, _v1, _v2, _ln, u = segment(I, P, W, w, iget(I, h_["ST_ADR"], t) + i)
                add_point_force(W, ofx, b1, p1, f * u)
                add_point_force(W, ofx, b2, p2, -f * u)

    @ti.func
    def wrench_adjoint(I: ti.template(), W: ti.template(), wa, b, pt):
        """(adjoint of the force applied at pt on body b, its share of pt's adjoint per unit force):
        the external wrench enters with a minus sign (see external_forces_adjoint)."""
        gn = ti.Vector([0.0, 0.0, 0.0], dt=F)
        gf = ti.Vector([0.0, 0.0, 0.0], dt=F)
        if b != 0:
            gF = wa + I[h_["W_GF"]]
            gn = -ld3(W, gF + 6 * b)
            gf = -ld3(W, gF + 6 * b + 3) + gn.cross(pt)
        return gn, gf

    @ti.func
    def spatial_forces_adjoint(I: ti.template(), P: ti.template(), W: ti.template(), w, wa):
        for t in range(I[h_["NST"]]):
            f, a, bb = spatial_force(I, P, W, w, t)
            gT = F(0.0)
            for i in range(iget(I, h_["ST_NUM"], t)):
                b1, b2, _l1, _l2, p1, p2, _v1, _v2, _ln, u = segment(I, P, W, w, iget(I, h_["ST_ADR"], t) + i)
                _gn1, gf1 = wrench_adjoint(I, W, wa, b1, p1)
                _gn2, gf2 = wrench_adjoint(I, W, wa, b2, p2)
                gT += (gf1 - gf2).dot(u)
            gL = a * gT
            gLd = bb * gT
            for i in range(iget(I, h_["ST_NUM"], t)):
                b1, b2, l1, l2, p1, p2, v1, v2, ln, u = segment(I, P, W, w, iget(I, h_["ST_ADR"], t) + i)
                gn1, gf1 = wrench_adjoint(I, W, wa, b1, p1)
                gn2, gf2 = wrench_adjoint(I, W, wa, b2, p2)
                gu = f * (gf1 - gf2) + gLd * (v1 - v2)
                gd = (gu - u * u.dot(gu)) / ln + gL * u
                point_adjoint(I, W, w, wa, b1, p1, gd + (f * u).cross(gn1), gLd * u)
                point_adjoint(I, W, w, wa, b2, p2, -gd + (-f * u).cross(gn2), -gLd * u)

    @ti.func
    def spatial_forces_tangent(I: ti.template(), P: ti.template(), W: ti.template(), w, wa):
        tF = wa + I[h_["W_GF"]]
        for t in range(I[h_["NST"]]):
            f, a, bb = spatial_force(I, P, W, w, t)
            dL = F(0.0)
            dLd = F(0.0)
            for i in range(iget(I, h_["ST_NUM"], t)):
                b1, b2, l1, l2, p1, p2, v1, v2, ln, u = segment(I, P, W, w, iget(I, h_["ST_ADR"], t) + i)
                dp1, dv1 = point_tangent(I, W, w, wa, b1, l1, p1)
                dp2, dv2 = point_tangent(I, W, w, wa, b2, l2, p2)
                dd = dp1 - dp2
                du = (dd - u * u.dot(dd)) / ln
                dL += u.dot(dd)
                dLd += du.dot(v1 - v2) + u.dot(dv1 - dv2)
            dT = a * dL + bb * dLd
            for i in range(iget(I, h_["ST_NUM"], t)):
                b1, b2, l1, l2, p1, p2, _v1, _v2, ln, u = segment(I, P, W, w, iget(I, h_["ST_ADR"], t) + i)
                dp1, _dv1 = point_tangent(I, W, w, wa, b1, l1, p1)
                dp2, _dv2 = point_tangent(I, W, w, wa, b2, l2, p2)
                dd = dp1 - dp2
                du = (dd - u * u.dot(dd)) / ln
                df = dT * u + f * du
                if b1 != 0:
                    add3(W, tF + 6 * b1, dp1.cross(f * u) + p1.cross(df))
                    add3(W, tF + 6 * b1 + 3, df)
                if b2 != 0:
                    add3(W, tF + 6 * b2, -dp2.cross(f * u) - p2.cross(df))
                    add3(W, tF + 6 * b2 + 3, -df)

    @ti.func
    def actuator_force(I: ti.template(), P: ti.template(), W: ti.template(), x, U: ti.template(), ui, k):
        """(force along actuator k's transmission, d force/d ctrl, d force/d length, d force/d velocity):
        ctrl for a motor; a servo's gain * ctrl + b0 + b1 length + b2 velocity, clipped to forcerange."""
        force = U[ui + k]
        g = F(1.0)
        b1 = F(0.0)
        b2 = F(0.0)
        if iget(I, h_["A_SERVO"], k) != 0:
            gear = pget(I, P, h_["A_GEAR"], k)
            g = pget(I, P, h_["A_GAIN"], k)
            b1 = pget(I, P, h_["A_BIAS"], 3 * k + 1) * gear
            b2 = pget(I, P, h_["A_BIAS"], 3 * k + 2) * gear
            force = g * force + pget(I, P, h_["A_BIAS"], 3 * k)
            for i in range(iget(I, h_["A_PNUM"], k)):
                e = iget(I, h_["A_PADR"], k) + i
                cf = pget(I, P, h_["AP_COEF"], e)
                force += b1 * cf * W[x + iget(I, h_["AP_QADR"], e)] + b2 * cf * W[x + I[NQ] + iget(I, h_["AP_DADR"], e)]
            if iget(I, h_["A_CLIP"], k) != 0:
                lo, hi = pget(I, P, h_["A_FR"], 2 * k), pget(I, P, h_["A_FR"], 2 * k + 1)
                if force < lo:
                    force, g, b1, b2 = lo, F(0.0), F(0.0), F(0.0)
                elif hi < force:
                    force, g, b1, b2 = hi, F(0.0), F(0.0), F(0.0)
        return force, g, b1, b2

    @ti.func
    def friction(I: ti.template(), P: ti.template(), W: ti.template(), x, j):
        """(c, dc/dqvel) of joint j's smoothed dry friction -c qvel, c = fl / sqrt(qvel^2 + v0^2)."""
        qd = W[x + I[NQ] + iget(I, h_["J_DADR"], j)]
        den = qd * qd + scal(I, P, sc["FRIC_V0"]) ** 2
        c = pget(I, P, h_["J_FRIC"], j) / ti.sqrt(den)
        return c, -c * qd / den

    @ti.func
    def fluid(I: ti.template(), P: ti.template(), W: ti.template(), w, b):
        """MuJoCo's inertia-box fluid model on body b, in its principal frame Ri at its centre c:
        viscous and quadratic drag of the twist relative to the wind. Returns the pieces the
        tangent and adjoint reuse: (Ri, c, vc - wind, lw, lv, f, t, f', t') with f' = df/dlv."""
        Ri = ld33(W, w + I[h_["W_R"]] + 9 * b) @ ld33(P, I[h_["FL_ROT"]] + 9 * b)
        c = ld3(W, w + I[h_["W_C"]] + 3 * b)
        Vw = ld3(W, w + I[h_["W_V"]] + 6 * b)
        rel = ld3(W, w + I[h_["W_V"]] + 6 * b + 3) + Vw.cross(c) - ti.Vector(
            [scal(I, P, sc["WX"]), scal(I, P, sc["WY"]), scal(I, P, sc["WZ"])], dt=F)
        lw = Ri.transpose() @ Vw
        lv = Ri.transpose() @ rel
        cv, cl = pget(I, P, h_["FL_LIN"], 4 * b), ld3(P, I[h_["FL_LIN"]] + 4 * b + 1)
        ca, cq = pget(I, P, h_["FL_ANG"], 4 * b), ld3(P, I[h_["FL_ANG"]] + 4 * b + 1)
        f = -cv * lv - cl * ti.abs(lv) * lv
        t = -ca * lw - cq * ti.abs(lw) * lw
        return Ri, c, rel, lw, lv, f, t, -cv - 2 * cl * ti.abs(lv), -ca - 2 * cq * ti.abs(lw)

    @ti.func
    def external_forces(I: ti.template(), P: ti.template(), W: ti.template(), w):
        g = ti.Vector([scal(I, P, sc["GX"]), scal(I, P, sc["GY"]), scal(I, P, sc["GZ"])], dt=F)
        ofx = w + I[h_["W_FX"]]
        for b in range(1, I[NB]):
            gb = g * pget(I, P, h_["B_GSCALE"], b)
            st3(W, ofx + 6 * b, ld3(W, w + I[h_["W_H"]] + 3 * b).cross(gb))
            st3(W, ofx + 6 * b + 3, pget(I, P, h_["B_MASS"], b) * gb)
            if I[h_["FLUID"]] != 0:
                Ri, c, _rel, _lw, _lv, f, t, _df, _dt = fluid(I, P, W, w, b)
                fw = Ri @ f
                add3(W, ofx + 6 * b, Ri @ t + c.cross(fw))
                add3(W, ofx + 6 * b + 3, fw)
        for k in range(I[NPT]):
            b, pt = contact_point(I, P, W, w, k)
            if pt[2] < scal(I, P, sc["GROUND"]):  # (above the ground the force is zero)
                f = contact_force(I, P, pt, contact_velocity(I, W, w, b, pt))
                add3(W, ofx + 6 * b, pt.cross(f))
                add3(W, ofx + 6 * b + 3, f)
        spatial_forces(I, P, W, w)

    @ti.func
    def external_forces_adjoint(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, fb):
        """Fext enters F with a minus sign: its adjoint is -W_GF (the local wrench adjoint). Fluid,
        contact and spatial tendons; gravity's share (into h = m c) is tree_adjoint_up's. Bodies
        outside fb's subtree (see `reached`) have a zero wrench adjoint: skipped."""
        gF = wa + I[h_["W_GF"]]
        for b in range(1, I[NB]):
            if I[h_["FLUID"]] != 0 and reached(I, fb, b) == 2:
                Ri, c, rel, lw, lv, f, t, df, dt = fluid(I, P, W, w, b)
                gn = -ld3(W, gF + 6 * b)
                gfw = -ld3(W, gF + 6 * b + 3) + gn.cross(c)
                fw = Ri @ f
                gc = fw.cross(gn)
                gRi = gfw.outer_product(f) + gn.outer_product(t)
                glv = df * (Ri.transpose() @ gfw)
                glw = dt * (Ri.transpose() @ gn)
                gRi += rel.outer_product(glv) + ld3(W, w + I[h_["W_V"]] + 6 * b).outer_product(glw)
                grel = Ri @ glv
                Vw = ld3(W, w + I[h_["W_V"]] + 6 * b)
                add3(W, wa + I[h_["W_GV"]] + 6 * b, Ri @ glw + c.cross(grel))
                add3(W, wa + I[h_["W_GV"]] + 6 * b + 3, grel)
                gc += grel.cross(Vw)
                # c moves with the frame and Ri = R Rfl turns with it
                gnf = c.cross(gc)
                for k in ti.static(range(3)):
                    gnf += col(Ri, k).cross(col(gRi, k))
                add3(W, wa + I[h_["W_GT"]] + 6 * b, gnf)
                add3(W, wa + I[h_["W_GT"]] + 6 * b + 3, gc)
        ke, kd, kf, mu = scal(I, P, sc["KE"]), scal(I, P, sc["KD"]), scal(I, P, sc["KF"]), scal(I, P, sc["MU"])
        for k in range(I[NPT]):
            b = iget(I, h_["PT_BODY"], k)
            if reached(I, fb, b) != 2:
                continue
            pt = ld3(W, wa + I[h_["W_PTC"]] + 3 * k)  # adjoint_prologue's
            c = pt[2] - scal(I, P, sc["GROUND"])
            if c < 0:
                dp = contact_velocity(I, W, w, b, pt)
                f = contact_force(I, P, pt, dp)
                gn = -ld3(W, gF + 6 * b)
                gf = -ld3(W, gF + 6 * b + 3) + gn.cross(pt)
                gpt = f.cross(gn)
                # f = (-scale dp_x, -scale dp_y, -(ke c + min(dp_z, 0) kd (-c)))
                vt2 = dp[0] * dp[0] + dp[1] * dp[1]
                vtn = ti.sqrt(ti.max(vt2, F(1e-20)))
                lim = -mu * ke * c
                slip = kf * vtn >= lim
                scale = kf
                if slip:
                    scale = lim / vtn
                gdp = ti.Vector([-gf[0] * scale, -gf[1] * scale, F(0.0)], dt=F)
                gscale = -(gf[0] * dp[0] + gf[1] * dp[1])
                mz = ti.min(dp[2], F(0.0))
                gc = -gf[2] * ke + gf[2] * mz * kd
                if dp[2] < 0:
                    gdp[2] += gf[2] * kd * c
                if slip:
                    gc += -mu * ke * gscale / vtn
                    if vt2 > F(1e-20):
                        gvt2 = -gscale * lim / (vtn * vtn) / (2 * vtn)
                        gdp[0] += 2 * dp[0] * gvt2
                        gdp[1] += 2 * dp[1] * gvt2
                gpt[2] += gc
                # dp = v + w x pt
                Vw = ld3(W, w + I[h_["W_V"]] + 6 * b)
                add3(W, wa + I[h_["W_GV"]] + 6 * b, pt.cross(gdp))
                add3(W, wa + I[h_["W_GV"]] + 6 * b + 3, gdp)
                gpt += gdp.cross(Vw)
                contact_point_adjoint(I, P, W, w, wa, k, b, pt, gpt)
        spatial_forces_adjoint(I, P, W, w, wa)

    @ti.func
    def external_forces_tangent(I: ti.template(), P: ti.template(), W: ti.template(), w, wa):
        """The tangent of Fext, into W_GF."""
        g = ti.Vector([scal(I, P, sc["GX"]), scal(I, P, sc["GY"]), scal(I, P, sc["GZ"])], dt=F)
        tF = wa + I[h_["W_GF"]]
        for b in range(1, I[NB]):
            gb = g * pget(I, P, h_["B_GSCALE"], b)
            st3(W, tF + 6 * b, ld3(W, wa + I[h_["W_GH"]] + 3 * b).cross(gb))
            st3(W, tF + 6 * b + 3, ti.Vector([0.0, 0.0, 0.0], dt=F))
            if I[h_["FLUID"]] != 0:
                Ri, c, rel, lw, lv, f, t, df, dt = fluid(I, P, W, w, b)
                dR = ld33(W, wa + I[h_["W_GR"]] + 9 * b)
                dRi = dR @ ld33(P, I[h_["FL_ROT"]] + 9 * b)
                dc = ld3(W, wa + I[h_["W_GP"]] + 3 * b) + dR @ ld3(P, I[h_["B_IPOS"]] + 3 * b)
                Vw = ld3(W, w + I[h_["W_V"]] + 6 * b)
                dVw = ld3(W, wa + I[h_["W_GV"]] + 6 * b)
                drel = ld3(W, wa + I[h_["W_GV"]] + 6 * b + 3) + dVw.cross(c) + Vw.cross(dc)
                dlw = dRi.transpose() @ Vw + Ri.transpose() @ dVw
                dlv = dRi.transpose() @ rel + Ri.transpose() @ drel
                fw = Ri @ f
                dfw = dRi @ f + Ri @ (df * dlv)
                add3(W, tF + 6 * b, dRi @ t + Ri @ (dt * dlw) + dc.cross(fw) + c.cross(dfw))
                add3(W, tF + 6 * b + 3, dfw)
        ke, kd, kf, mu = scal(I, P, sc["KE"]), scal(I, P, sc["KD"]), scal(I, P, sc["KF"]), scal(I, P, sc["MU"])
        for k in range(I[NPT]):
            b, pt = contact_point(I, P, W, w, k)
            c = pt[2] - scal(I, P, sc["GROUND"])
            if c < 0:
                dp = contact_velocity(I, W, w, b, pt)
                f = contact_force(I, P, pt, dp)
                Vw = ld3(W, w + I[h_["W_V"]] + 6 * b)
                dpt = contact_point_tangent(I, P, W, w, wa, k, b)
                ddp = ld3(W, wa + I[h_["W_GV"]] + 6 * b + 3) + ld3(W, wa + I[h_["W_GV"]] + 6 * b).cross(pt) \
                    + Vw.cross(dpt)
                dc = dpt[2]
                vt2 = dp[0] * dp[0] + dp[1] * dp[1]
                vtn = ti.sqrt(ti.max(vt2, F(1e-20)))
                dvtn = F(0.0)
                if vt2 > F(1e-20):
                    dvtn = (dp[0] * ddp[0] + dp[1] * ddp[1]) / vtn
                lim = -mu * ke * c
                scale = kf
                dscale = F(0.0)
                if kf * vtn >= lim:
                    scale = lim / vtn
                    dscale = -mu * ke * dc / vtn - lim * dvtn / (vtn * vtn)
                mz = ti.min(dp[2], F(0.0))
                dmz = F(0.0)
                if dp[2] < 0:
                    dmz = ddp[2]
                df = ti.Vector([-dscale * dp[0] - scale * ddp[0], -dscale * dp[1] - scale * ddp[1],
                                -ke * dc + kd * (dmz * c + mz * dc)], dt=F)
                add3(W, tF + 6 * b, dpt.cross(f) + pt.cross(df))
                add3(W, tF + 6 * b + 3, df)
        spatial_forces_tangent(I, P, W, w, wa)

    @ti.func
    def bias_forces(I: ti.template(), P: ti.template(), W: ti.template(), w):
        """Recursive Newton-Euler with qacc = 0 (W_F: the accumulated body wrenches), and the
        composite inertias (W_CH, W_CIB; composite masses are constants in the model)."""
        nb, nq = I[NB], I[NQ]
        x = w + I[h_["W_X"]]
        oA, oF = w + I[h_["W_A"]], w + I[h_["W_F"]]
        for k in range(6):
            W[oA + k] = F(0.0)
        for b in range(1, nb):
            par = iget(I, h_["B_PARENT"], b)
            aw = ld3(W, oA + 6 * par)
            av = ld3(W, oA + 6 * par + 3)
            da = iget(I, h_["B_DADR"], b)
            for dd in range(iget(I, h_["B_DNUM"], b)):
                d = da + dd
                qd = W[x + nq + d]
                aw += ld3(W, w + I[h_["W_SD"]] + 6 * d) * qd
                av += ld3(W, w + I[h_["W_SD"]] + 6 * d + 3) * qd
            st3(W, oA + 6 * b, aw)
            st3(W, oA + 6 * b + 3, av)
            m = pget(I, P, h_["B_MASS"], b)
            hv = ld3(W, w + I[h_["W_H"]] + 3 * b)
            Ib = ld33(W, w + I[h_["W_IB"]] + 9 * b)
            Vw = ld3(W, w + I[h_["W_V"]] + 6 * b)
            Vv = ld3(W, w + I[h_["W_V"]] + 6 * b + 3)
            n1, f1 = iapply(m, hv, Ib, aw, av)
            gn, gf = iapply(m, hv, Ib, Vw, Vv)
            n2, f2 = crf(Vw, Vv, gn, gf)
            st3(W, oF + 6 * b, n1 + n2 - ld3(W, w + I[h_["W_FX"]] + 6 * b))
            st3(W, oF + 6 * b + 3, f1 + f2 - ld3(W, w + I[h_["W_FX"]] + 6 * b + 3))
            st3(W, w + I[h_["W_CH"]] + 3 * b, hv)
            st33(W, w + I[h_["W_CIB"]] + 9 * b, Ib)
        sum_subtrees(I, W, oF, w + I[h_["W_CH"]], w + I[h_["W_CIB"]])

    @ti.func
    def bias_forces_tangent(I: ti.template(), P: ti.template(), W: ti.template(), w, wa):
        nb, nq = I[NB], I[NQ]
        x, tx = w + I[h_["W_X"]], wa + I[h_["W_GX"]]
        tA, tF = wa + I[h_["W_GA"]], wa + I[h_["W_GF"]]
        for k in range(6):
            W[tA + k] = F(0.0)
        for b in range(1, nb):
            par = iget(I, h_["B_PARENT"], b)
            daw = ld3(W, tA + 6 * par)
            dav = ld3(W, tA + 6 * par + 3)
            da_ = iget(I, h_["B_DADR"], b)
            for dd in range(iget(I, h_["B_DNUM"], b)):
                d = da_ + dd
                qd, dqd = W[x + nq + d], W[tx + nq + d]
                daw += ld3(W, wa + I[h_["W_GSD"]] + 6 * d) * qd + ld3(W, w + I[h_["W_SD"]] + 6 * d) * dqd
                dav += ld3(W, wa + I[h_["W_GSD"]] + 6 * d + 3) * qd + ld3(W, w + I[h_["W_SD"]] + 6 * d + 3) * dqd
            st3(W, tA + 6 * b, daw)
            st3(W, tA + 6 * b + 3, dav)
            m = pget(I, P, h_["B_MASS"], b)
            hv = ld3(W, w + I[h_["W_H"]] + 3 * b)
            Ib = ld33(W, w + I[h_["W_IB"]] + 9 * b)
            dhv = ld3(W, wa + I[h_["W_GH"]] + 3 * b)
            dIb = ld33(W, wa + I[h_["W_GIB"]] + 9 * b)
            aw = ld3(W, w + I[h_["W_A"]] + 6 * b)
            av = ld3(W, w + I[h_["W_A"]] + 6 * b + 3)
            Vw = ld3(W, w + I[h_["W_V"]] + 6 * b)
            Vv = ld3(W, w + I[h_["W_V"]] + 6 * b + 3)
            dVw = ld3(W, wa + I[h_["W_GV"]] + 6 * b)
            dVv = ld3(W, wa + I[h_["W_GV"]] + 6 * b + 3)
            n1, f1 = iapply(F(0.0), dhv, dIb, aw, av)
            n2, f2 = iapply(m, hv, Ib, daw, dav)
            gn, gf = iapply(m, hv, Ib, Vw, Vv)
            dgn1, dgf1 = iapply(F(0.0), dhv, dIb, Vw, Vv)
            dgn2, dgf2 = iapply(m, hv, Ib, dVw, dVv)
            n3, f3 = crf(dVw, dVv, gn, gf)
            n4, f4 = crf(Vw, Vv, dgn1 + dgn2, dgf1 + dgf2)
            st3(W, tF + 6 * b, n1 + n2 + n3 + n4 - ld3(W, tF + 6 * b))
            st3(W, tF + 6 * b + 3, f1 + f2 + f3 + f4 - ld3(W, tF + 6 * b + 3))
        sum_wrenches(I, W, tF)

    @ti.func
    def sum_subtrees(I: ti.template(), W: ti.template(), oF, oH, oIb):
        """Wrenches (6 per body at oF) and inertias (h at oH, Ibar at oIb) summed over each
        body's subtree, children before parents (forward only: the composite inertias feed CRBA,
        whose adjoint and tangent work body by body; the wrenches' tangent is sum_wrenches, their
        adjoint tree_adjoint_down's -alpha)."""
        nb = I[NB]
        for bb in range(1, nb):
            b = nb - bb
            par = iget(I, h_["B_PARENT"], b)
            if par > 0:
                for k in range(6):
                    W[oF + 6 * par + k] = W[oF + 6 * par + k] + W[oF + 6 * b + k]
                for k in range(3):
                    W[oH + 3 * par + k] = W[oH + 3 * par + k] + W[oH + 3 * b + k]
                for k in range(9):
                    W[oIb + 9 * par + k] = W[oIb + 9 * par + k] + W[oIb + 9 * b + k]

    @ti.func
    def sum_wrenches(I: ti.template(), W: ti.template(), oF):
        """sum_subtrees for the wrenches alone (the tangent's: the composite inertias' tangents are
        not needed, mass_matrix_tangent works body by body)."""
        for bb in range(1, I[NB]):
            b = I[NB] - bb
            par = iget(I, h_["B_PARENT"], b)
            if par > 0:
                for k in range(6):
                    W[oF + 6 * par + k] = W[oF + 6 * par + k] + W[oF + 6 * b + k]

    @ti.func
    def joint_forces(I: ti.template(), P: ti.template(), W: ti.template(), w, U: ti.template(), e):
        """tau = -S.F - damping qvel - stiffness (q - springref) + limit penalty + gear ctrl."""
        nq, nv = I[NQ], I[NV]
        x = w + I[h_["W_X"]]
        ot = w + I[h_["W_TAU"]]
        for d in range(nv):
            b = iget(I, h_["D_BODY"], d)
            Sw = ld3(W, w + I[h_["W_S"]] + 6 * d)
            Sv = ld3(W, w + I[h_["W_S"]] + 6 * d + 3)
            W[ot + d] = -(Sw.dot(ld3(W, w + I[h_["W_F"]] + 6 * b)) + Sv.dot(ld3(W, w + I[h_["W_F"]] + 6 * b + 3))) \
                - pget(I, P, h_["D_DAMP"], d) * W[x + nq + d]
        lke, lkd = scal(I, P, sc["LKE"]), scal(I, P, sc["LKD"])
        for j in range(I[NJ]):
            if iget(I, h_["J_TYPE"], j) != FREE:
                d = iget(I, h_["J_DADR"], j)
                q = W[x + iget(I, h_["J_QADR"], j)]
                W[ot + d] = W[ot + d] - pget(I, P, h_["J_STIFF"], j) * (q - pget(I, P, h_["J_SPRINGREF"], j))
                if iget(I, h_["J_LIMITED"], j) != 0:
                    lo, hi = pget(I, P, h_["J_LO"], j), pget(I, P, h_["J_HI"], j)
                    if q < lo:
                        W[ot + d] = W[ot + d] + (lke * (lo - q) - lkd * W[x + nq + d])
                    elif hi < q:
                        W[ot + d] = W[ot + d] + (lke * (hi - q) - lkd * W[x + nq + d])
            if pget(I, P, h_["J_FRIC"], j) > 0:
                c, _dc = friction(I, P, W, x, j)
                at = ot + iget(I, h_["J_DADR"], j)
                W[at] = W[at] - c * W[x + nq + iget(I, h_["J_DADR"], j)]
        for t in range(I[h_["NT"]]):
            f, _a, _b = tendon_force(I, P, W, x, t)
            for i in range(iget(I, h_["T_NUM"], t)):
                ei = iget(I, h_["T_ADR"], t) + i
                at = ot + iget(I, h_["TJ_DADR"], ei)
                W[at] = W[at] + pget(I, P, h_["TJ_COEF"], ei) * f
        for k in range(I[NU]):
            force, _g, _b1, _b2 = actuator_force(I, P, W, x, U, e * I[NU], k)
            gear = pget(I, P, h_["A_GEAR"], k)
            for i in range(iget(I, h_["A_PNUM"], k)):
                ei = iget(I, h_["A_PADR"], k) + i
                at = ot + iget(I, h_["AP_DADR"], ei)
                W[at] = W[at] + gear * pget(I, P, h_["AP_COEF"], ei) * force

    @ti.func
    def joint_forces_adjoint(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, U: ti.template(), ue,
                             GU: ti.template(), ge, ov):
        """Control cotangents into GU[ge + k] (U[ue + k]: the control); qacc read at ov (zeros when M
        is cached from an earlier substep: then its friction term's adjoint is mass_matrix_adjoint's)."""
        nq = I[NQ]
        x = w + I[h_["W_X"]]
        gt, gx = wa + I[h_["W_GTAU"]], wa + I[h_["W_GX"]]
        # (-S.F's and the damping's shares are the tree passes', tree_adjoint_down and tree_adjoint_up)
        hh = scal(I, P, sc["H"])
        oq = ov
        lke, lkd = scal(I, P, sc["LKE"]), scal(I, P, sc["LKD"])
        # each term is skipped where its cotangent is zero (all but one dof's in a Jacobian's sweep)
        for j in range(I[NJ]):
            d = iget(I, h_["J_DADR"], j)
            g = W[gt + d]
            if g == 0:
                continue
            if iget(I, h_["J_TYPE"], j) != FREE:
                qa = iget(I, h_["J_QADR"], j)
                q = W[x + qa]
                W[gx + qa] = W[gx + qa] - pget(I, P, h_["J_STIFF"], j) * g
                if iget(I, h_["J_LIMITED"], j) != 0:
                    if q < pget(I, P, h_["J_LO"], j) or pget(I, P, h_["J_HI"], j) < q:
                        W[gx + qa] = W[gx + qa] - lke * g
                        W[gx + nq + d] = W[gx + nq + d] - lkd * g
            if pget(I, P, h_["J_FRIC"], j) > 0:
                # tau's -c qvel, and M's h c on the diagonal (implicit, like damping), whose adjoint
                # is M_bar[d, d] h dc = -tau_bar[d] qacc[d] h dc
                c, dc = friction(I, P, W, x, j)
                W[gx + nq + d] = W[gx + nq + d] - (c + dc * (W[x + nq + d] + hh * W[oq + d])) * g
        for t in range(I[h_["NT"]]):
            gf = F(0.0)
            for i in range(iget(I, h_["T_NUM"], t)):
                ei = iget(I, h_["T_ADR"], t) + i
                gf += pget(I, P, h_["TJ_COEF"], ei) * W[gt + iget(I, h_["TJ_DADR"], ei)]
            if gf != 0:
                _f, a, bb = tendon_force(I, P, W, x, t)
                for i in range(iget(I, h_["T_NUM"], t)):
                    ei = iget(I, h_["T_ADR"], t) + i
                    cf = pget(I, P, h_["TJ_COEF"], ei)
                    W[gx + iget(I, h_["TJ_QADR"], ei)] = W[gx + iget(I, h_["TJ_QADR"], ei)] + cf * a * gf
                    W[gx + nq + iget(I, h_["TJ_DADR"], ei)] = W[gx + nq + iget(I, h_["TJ_DADR"], ei)] + cf * bb * gf
        for k in range(I[NU]):
            gear = pget(I, P, h_["A_GEAR"], k)
            gf = F(0.0)
            for i in range(iget(I, h_["A_PNUM"], k)):
                ei = iget(I, h_["A_PADR"], k) + i
                gf += gear * pget(I, P, h_["AP_COEF"], ei) * W[gt + iget(I, h_["AP_DADR"], ei)]
            if gf != 0:
                _force, g, b1, b2 = actuator_force(I, P, W, x, U, ue, k)
                GU[ge + k] = GU[ge + k] + g * gf
                for i in range(iget(I, h_["A_PNUM"], k)):
                    ei = iget(I, h_["A_PADR"], k) + i
                    cf = pget(I, P, h_["AP_COEF"], ei)
                    W[gx + iget(I, h_["AP_QADR"], ei)] = W[gx + iget(I, h_["AP_QADR"], ei)] + b1 * cf * gf
                    W[gx + nq + iget(I, h_["AP_DADR"], ei)] = W[gx + nq + iget(I, h_["AP_DADR"], ei)] + b2 * cf * gf

    @ti.func
    def joint_forces_tangent(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, U: ti.template(), ue,
                             TU: ti.template(), eu):
        """d tau into W_GTAU (TU[eu + k]: the control tangent)."""
        nq, nv = I[NQ], I[NV]
        x, tx = w + I[h_["W_X"]], wa + I[h_["W_GX"]]
        tt = wa + I[h_["W_GTAU"]]
        for d in range(nv):
            b = iget(I, h_["D_BODY"], d)
            oF, tF = w + I[h_["W_F"]] + 6 * b, wa + I[h_["W_GF"]] + 6 * b
            oS, tS = w + I[h_["W_S"]] + 6 * d, wa + I[h_["W_GS"]] + 6 * d
            W[tt + d] = -(ld3(W, tS).dot(ld3(W, oF)) + ld3(W, tS + 3).dot(ld3(W, oF + 3))
                          + ld3(W, oS).dot(ld3(W, tF)) + ld3(W, oS + 3).dot(ld3(W, tF + 3))) \
                - pget(I, P, h_["D_DAMP"], d) * W[tx + nq + d]
        lke, lkd = scal(I, P, sc["LKE"]), scal(I, P, sc["LKD"])
        for j in range(I[NJ]):
            if iget(I, h_["J_TYPE"], j) != FREE:
                d = iget(I, h_["J_DADR"], j)
                qa = iget(I, h_["J_QADR"], j)
                q = W[x + qa]
                W[tt + d] = W[tt + d] - pget(I, P, h_["J_STIFF"], j) * W[tx + qa]
                if iget(I, h_["J_LIMITED"], j) != 0:
                    if q < pget(I, P, h_["J_LO"], j) or pget(I, P, h_["J_HI"], j) < q:
                        W[tt + d] = W[tt + d] - (lke * W[tx + qa] + lkd * W[tx + nq + d])
            if pget(I, P, h_["J_FRIC"], j) > 0:
                d = iget(I, h_["J_DADR"], j)
                c, dc = friction(I, P, W, x, j)
                W[tt + d] = W[tt + d] - (c + dc * W[x + nq + d]) * W[tx + nq + d]
        for t in range(I[h_["NT"]]):
            _f, a, bb = tendon_force(I, P, W, x, t)
            df = F(0.0)
            for i in range(iget(I, h_["T_NUM"], t)):
                ei = iget(I, h_["T_ADR"], t) + i
                cf = pget(I, P, h_["TJ_COEF"], ei)
                df += cf * (a * W[tx + iget(I, h_["TJ_QADR"], ei)] + bb * W[tx + nq + iget(I, h_["TJ_DADR"], ei)])
            for i in range(iget(I, h_["T_NUM"], t)):
                ei = iget(I, h_["T_ADR"], t) + i
                at = tt + iget(I, h_["TJ_DADR"], ei)
                W[at] = W[at] + pget(I, P, h_["TJ_COEF"], ei) * df
        for k in range(I[NU]):
            _force, g, b1, b2 = actuator_force(I, P, W, x, U, ue, k)
            gear = pget(I, P, h_["A_GEAR"], k)
            dforce = g * TU[eu + k]
            for i in range(iget(I, h_["A_PNUM"], k)):
                ei = iget(I, h_["A_PADR"], k) + i
                cf = pget(I, P, h_["AP_COEF"], ei)
                dforce += cf * (b1 * W[tx + iget(I, h_["AP_QADR"], ei)] + b2 * W[tx + nq + iget(I, h_["AP_DADR"], ei)])
            for i in range(iget(I, h_["A_PNUM"], k)):
                ei = iget(I, h_["A_PADR"], k) + i
                at = tt + iget(I, h_["AP_DADR"], ei)
                W[at] = W[at] + gear * pget(I, P, h_["AP_COEF"], ei) * dforce

    @ti.func
    def crba_column(I: ti.template(), P: ti.template(), W: ti.template(), w, j):
        """Dof j's body b, that body's composite inertia (m, h, Ibar), S_j and F_j = Ic_b S_j:
        column j of the mass matrix is S_i . F_j down the dof tree."""
        b = iget(I, h_["D_BODY"], j)
        m = cmass(I, P, b)
        hv = ld3(W, w + I[h_["W_CH"]] + 3 * b)
        Ib = ld33(W, w + I[h_["W_CIB"]] + 9 * b)
        sw, sv = ld3(W, w + I[h_["W_S"]] + 6 * j), ld3(W, w + I[h_["W_S"]] + 6 * j + 3)
        fn, ff = iapply(m, hv, Ib, sw, sv)
        return b, m, hv, Ib, sw, sv, fn, ff

    @ti.func
    def mass_matrix(I: ti.template(), P: ti.template(), W: ti.template(), w):
        nv = I[NV]
        oM = w + I[h_["W_M"]]
        oS = w + I[h_["W_S"]]
        for j in range(nv):
            _b, _m, _hv, _Ib, _sw, _sv, fn, ff = crba_column(I, P, W, w, j)
            i = j
            while i >= 0:
                W[oM + j * nv + i] = ld3(W, oS + 6 * i).dot(fn) + ld3(W, oS + 6 * i + 3).dot(ff)
                i = iget(I, h_["D_PARENT"], i)
            W[oM + j * nv + j] = W[oM + j * nv + j] + pget(I, P, h_["D_DIAG"], j)
        hh = scal(I, P, sc["H"])
        for j in range(I[NJ]):
            if pget(I, P, h_["J_FRIC"], j) > 0:  # smoothed dry friction is implicit, like damping
                c, _dc = friction(I, P, W, w + I[h_["W_X"]], j)
                d = iget(I, h_["J_DADR"], j)
                W[oM + d * nv + d] = W[oM + d * nv + d] + hh * c

    @ti.func
    def twist_pair(I: ti.template(), W: ti.template(), o, oS1, c1, oS2, c2, b):
        """Two spatial velocities of body b down the dof tree, from its parent's pair (12 entries
        per body at o; the world's zero): (x1, x2) = parent's + sum over b's dofs d of
        (S1_d c1[d], S2_d c2[d]), with S1, S2 motion subspaces (6 per dof at oS1, oS2) and c1, c2
        joint-space vectors. Stored at o + 12 b and returned as (x1 w, x1 v, x2 w, x2 v)."""
        p = o + 12 * iget(I, h_["B_PARENT"], b)
        aw, av, bw, bv = ld3(W, p), ld3(W, p + 3), ld3(W, p + 6), ld3(W, p + 9)
        da = iget(I, h_["B_DADR"], b)
        for dd in range(iget(I, h_["B_DNUM"], b)):
            d = da + dd
            aw += ld3(W, oS1 + 6 * d) * W[c1 + d]
            av += ld3(W, oS1 + 6 * d + 3) * W[c1 + d]
            bw += ld3(W, oS2 + 6 * d) * W[c2 + d]
            bv += ld3(W, oS2 + 6 * d + 3) * W[c2 + d]
        q = o + 12 * b
        st3(W, q, aw)
        st3(W, q + 3, av)
        st3(W, q + 6, bw)
        st3(W, q + 9, bv)
        return aw, av, bw, bv

    @ti.func
    def tree_adjoint_down(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, ov, fb, row):
        """The first half of the adjoint of tau = -S.F (RNEA) and of M (CRBA), a pass down the tree.
        With u = tau_bar and v = qacc, let alpha_b = J_b u and beta_b = J_b v be the spatial
        velocities body b would have at joint velocities u and v (into W_MAB, 12 per body). The
        solve's M_bar = -u v^T makes M contribute L = -u^T M v = -sum_b alpha_b . (I_b beta_b)
        (M = sum_b J_b^T I_b J_b), and tau = -S.F with F the subtree sums of the body wrenches
        makes each body's own wrench adjoint -alpha_b (into W_GF, which the external forces'
        adjoint reads). tree_adjoint_up does the rest: O(bodies + dofs), where CRBA's adjoint entry
        by entry is O(dofs x tree depth). v is read at ov: qacc, or zeros when M is cached from an
        earlier substep (then M's cotangent goes to that substep, mass_matrix_adjoint). In a
        Jacobian's sweep (fb >= 0: u the unit vector on dof `row` of body fb) alpha is S_row over
        fb's subtree and zero elsewhere, and beta is adjoint_prologue's, once for all the sweeps."""
        oS = w + I[h_["W_S"]]
        oq, gt = ov, wa + I[h_["W_GTAU"]]
        oAB, gF = wa + I[h_["W_MAB"]], wa + I[h_["W_GF"]]
        for k in range(12 if fb < 0 else 6):
            W[oAB + k] = F(0.0)  # the world: alpha = beta = 0 (a sweep's beta: adjoint_prologue's)
        for b in range(1, I[NB]):
            if reached(I, fb, b) == 0:
                for k in range(6):
                    W[gF + 6 * b + k] = F(0.0)
            else:
                aw, av = ti.Vector([F(0.0)] * 3), ti.Vector([F(0.0)] * 3)
                if fb < 0:
                    aw, av, _bw, _bv = twist_pair(I, W, oAB, oS, gt, oS, oq, b)
                elif b == fb:
                    # a Jacobian's sweep, u the unit vector on dof `row` of body fb: alpha is S_row
                    # over fb's subtree and zero elsewhere; beta is the same for every sweep
                    aw, av = ld3(W, oS + 6 * row), ld3(W, oS + 6 * row + 3)
                    st3(W, oAB + 12 * b, aw)
                    st3(W, oAB + 12 * b + 3, av)
                else:
                    p = oAB + 12 * iget(I, h_["B_PARENT"], b)
                    aw, av = ld3(W, p), ld3(W, p + 3)
                    st3(W, oAB + 12 * b, aw)
                    st3(W, oAB + 12 * b + 3, av)
                st3(W, gF + 6 * b, -aw)
                st3(W, gF + 6 * b + 3, -av)

    @ti.func
    def tree_adjoint_up_ancestor(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, ov, b):
        """tree_adjoint_up for a body b that is an ancestor of a Jacobian sweep's dof (`reached` 1):
        its alpha and its dofs' u are zero, so its own wrench, inertia and twist adjoints vanish and
        the CRBA's alpha_bar is dead; what is left passes on what its subtree sent up (the adjoints
        of a and beta) through its dofs' S, Sd and velocities, and its frame's and twist's
        adjoints go to the kinematics' unchanged. Sweeps run with M computed every substep, so
        the cached M's shares (tree_adjoint_up's `cached`) do not arise."""
        gAB, gA = wa + I[h_["W_GMAB"]], wa + I[h_["W_GA"]]
        z = ti.Vector([F(0.0), F(0.0), F(0.0)], dt=F)
        tree_adjoint_up_dofs(I, P, W, w, wa, ov, 0, b, 0, ld3(W, gA + 6 * b), ld3(W, gA + 6 * b + 3), z, z,
                             ld3(W, gAB + 12 * b + 6), ld3(W, gAB + 12 * b + 9), z, z)

    @ti.func
    def tree_adjoint_up_dofs(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, ov, cached, b,
                             own: ti.template(), aw_bar, av_bar, gaw, gav, gbw, gbv, Fn, Ff):
        """What body b's pass up sends through its dofs and to its parent: the adjoints of qvel (by
        a = a_parent + sum_d Sd_d qvel_d), of S_d and Sd_d, and of the parent's a and of its
        CRBA twists alpha, beta. With `own` (a compile-time 0 or 1) 0, b's dofs carry no cotangent
        u and its alpha_bar (gaw, gav) is dead: an ancestor of a Jacobian sweep's dof."""
        nq = I[NQ]
        x, gx, gt = w + I[h_["W_X"]], wa + I[h_["W_GX"]], wa + I[h_["W_GTAU"]]
        gAB, gA, gCS = wa + I[h_["W_GMAB"]], wa + I[h_["W_GA"]], wa + I[h_["W_GCS"]]
        gS, gSd = wa + I[h_["W_GS"]], wa + I[h_["W_GSD"]]
        da = iget(I, h_["B_DADR"], b)
        for dd in range(iget(I, h_["B_DNUM"], b)):
            d = da + dd
            v, qd = W[ov + d], W[x + nq + d]
            gq = aw_bar.dot(ld3(W, w + I[h_["W_SD"]] + 6 * d)) + av_bar.dot(ld3(W, w + I[h_["W_SD"]] + 6 * d + 3))
            cw, cv = gbw * v, gbv * v
            if ti.static(own):
                u = W[gt + d]
                gq -= pget(I, P, h_["D_DAMP"], d) * u
                cw, cv = (gaw - Fn) * u + gbw * v, (gav - Ff) * u + gbv * v
                if cached != 0:
                    cw += ld3(W, gCS + 6 * d)
                    cv += ld3(W, gCS + 6 * d + 3)
            W[gx + nq + d] = W[gx + nq + d] + gq
            st3(W, gS + 6 * d, cw)
            st3(W, gS + 6 * d + 3, cv)
            # a_b = a_parent + sum_d Sd_d qvel_d
            st3(W, gSd + 6 * d, aw_bar * qd)
            st3(W, gSd + 6 * d + 3, av_bar * qd)
        par = iget(I, h_["B_PARENT"], b)
        if par > 0:
            add3(W, gA + 6 * par, aw_bar)
            add3(W, gA + 6 * par + 3, av_bar)
            g = gAB + 12 * par
            if ti.static(own):
                add3(W, g, gaw)
                add3(W, g + 3, gav)
            add3(W, g + 6, gbw)
            add3(W, g + 9, gbv)

    @ti.func
    def tree_adjoint_up(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, ov, cached, fb):
        """The rest of the adjoints of RNEA, CRBA, the body inertias and the kinematics, one pass
        up the tree, body by body (children first, so each body's adjoints are whole when it is
        reached): with gF = -alpha its own wrench adjoint (tree_adjoint_down),
          RNEA   F = I a + V x* (I V) - Fext:  a_bar = I gF (the accelerations' adjoint, summed
                 up the tree in W_GA), V_bar, and the inertia's (h, Ibar) share;
          CRBA   L_b = -alpha . (I beta): beta_bar = -I alpha = I gF, alpha_bar = -I beta, summed
                 over the subtree (W_GMAB), into the dofs' S with u_d and v_d, and the inertia's;
          tau    = -S.F - damping qvel: S_d's share -u_d F_b, qvel_d's -damping_d u_d;
          gravity on h (its share of Fext), then h = m c, Ibar = R I R^T + m [c]x^T [c]x into
                 the body's frame, and the kinematics' adjoint for the body (W_GX, the parent's).
        Each body's inertia, twist and frame adjoints stay in registers. v is read at ov (see
        tree_adjoint_down); with `cached`, mass_matrix_adjoint's shares of S and the body inertias
        (W_GCS, W_GCI) are added. A body a Jacobian's sweep reaches only as an ancestor of its dof
        takes tree_adjoint_up_ancestor's shorter way; one call of kinematics_adjoint serves both (a
        Taichi function is inlined at every call: a second would grow the kernel LLVM compiles)."""
        nb = I[NB]
        grav = ti.Vector([scal(I, P, sc["GX"]), scal(I, P, sc["GY"]), scal(I, P, sc["GZ"])], dt=F)
        for bb in range(1, nb):
            b = nb - bb
            r = reached(I, fb, b)
            if r == 0:
                continue
            z = ti.Vector([F(0.0), F(0.0), F(0.0)], dt=F)
            kn, kf, kVw, kVv = z, z, z, z
            if r == 1:
                tree_adjoint_up_ancestor(I, P, W, w, wa, ov, b)
            else:
                kn, kf, kVw, kVv = tree_adjoint_up_body(I, P, W, w, wa, ov, cached, b, grav)
            # b's own shares, and what its children and points sent to its frame (a world twist) and twist
            o, oV = wa + I[h_["W_GT"]] + 6 * b, wa + I[h_["W_GV"]] + 6 * b
            kinematics_adjoint(I, P, W, w, wa, b, ld3(W, o) + kn, ld3(W, o + 3) + kf, ld3(W, oV) + kVw,
                               ld3(W, oV + 3) + kVv)

    @ti.func
    def tree_adjoint_up_body(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, ov, cached, b, grav):
        """tree_adjoint_up for body b in the subtree of a sweep's dof (or any body of a plain VJP):
        its own adjoints, into its dofs and parent (tree_adjoint_up_dofs), and (returned) its own
        share of its frame's and twist's adjoints."""
        gCI = wa + I[h_["W_GCI"]]
        oAB, gAB, gA = wa + I[h_["W_MAB"]], wa + I[h_["W_GMAB"]], wa + I[h_["W_GA"]]
        m = pget(I, P, h_["B_MASS"], b)
        hv = ld3(W, w + I[h_["W_H"]] + 3 * b)
        Ib = ld33(W, w + I[h_["W_IB"]] + 9 * b)
        Vw = ld3(W, w + I[h_["W_V"]] + 6 * b)
        Vv = ld3(W, w + I[h_["W_V"]] + 6 * b + 3)
        aw = ld3(W, w + I[h_["W_A"]] + 6 * b)
        av = ld3(W, w + I[h_["W_A"]] + 6 * b + 3)
        o = oAB + 12 * b
        g1, g2 = -ld3(W, o), -ld3(W, o + 3)  # gF = -alpha
        bw, bv = ld3(W, o + 6), ld3(W, o + 9)
        pw, pv = iapply(m, hv, Ib, g1, g2)  # I gF: a_bar (RNEA) and beta_bar (CRBA)
        gn, gf = iapply(m, hv, Ib, Vw, Vv)
        gVw, gVv, ggn, ggf = crf_adjoint(Vw, Vv, gn, gf, g1, g2)
        qw, qv = iapply(m, hv, Ib, ggn, ggf)
        iw, iv = iapply(m, hv, Ib, bw, bv)
        # the inertia's adjoint: I a and I beta (both with gF), I V (with ggn, ggf); gravity on h
        gh = (av + bv).cross(g1) - (aw + bw).cross(g2) + Vv.cross(ggn) - Vw.cross(ggf) \
            - (grav * pget(I, P, h_["B_GSCALE"], b)).cross(g1)
        gI = g1.outer_product(aw + bw) + ggn.outer_product(Vw)
        if cached != 0:
            gh += ld3(W, gCI + 12 * b)
            gI += ld33(W, gCI + 12 * b + 3)
        aw_bar = ld3(W, gA + 6 * b) + pw
        av_bar = ld3(W, gA + 6 * b + 3) + pv
        g = gAB + 12 * b  # what b's subtree sent up
        gaw, gav = ld3(W, g) - iw, ld3(W, g + 3) - iv
        gbw, gbv = ld3(W, g + 6) + pw, ld3(W, g + 9) + pv
        Fn, Ff = ld3(W, w + I[h_["W_F"]] + 6 * b), ld3(W, w + I[h_["W_F"]] + 6 * b + 3)
        tree_adjoint_up_dofs(I, P, W, w, wa, ov, cached, b, 1, aw_bar, av_bar, gaw, gav, gbw, gbv, Fn, Ff)
        # h = m c, Ibar = Ir + m (c.c 1 - c c^T): the centre c = p + R ipos moves with the frame
        # (adjoint (c x gc, gc)), and a twist's dw turns Ir = R Il R^T into Ir + [dw] Ir - Ir [dw],
        # whose adjoint is the antisymmetric part of Ir gs, gs = gI + gI^T
        c = ld3(W, w + I[h_["W_C"]] + 3 * b)
        gs = gI + gI.transpose()
        gc = m * gh + m * (2 * c * (gI[0, 0] + gI[1, 1] + gI[2, 2]) - gs @ c)
        Nr = (Ib - m * (c.dot(c) * ti.Matrix.identity(F, 3) - c.outer_product(c))) @ gs
        kn = ti.Vector([Nr[1, 2] - Nr[2, 1], Nr[2, 0] - Nr[0, 2], Nr[0, 1] - Nr[1, 0]], dt=F) + c.cross(gc)
        return kn, gc, gVw + qw, gVv + qv

    @ti.func
    def mass_matrix_tangent(I: ti.template(), P: ti.template(), W: ti.template(), w, wa):
        """W_GTAU <- d tau - dM qacc, body by body. With v = qacc, M v = sum_b J_b^T I_b beta_b and
        beta_b = J_b v (a pass down the tree), so for dof d of body b
        (dM v)_d = S_d . F_b + dS_d . G_b, where F_b and G_b sum dI_c beta_c + I_c dbeta_c and
        I_c beta_c over b's subtree (dbeta_c = dJ_c v): O(bodies + dofs) per probe, where the
        tangent of CRBA entry by entry is O(dofs x tree depth). W_MAB holds beta, dbeta and W_GMAB
        F, G per body."""
        nb = I[NB]
        oS, tS = w + I[h_["W_S"]], wa + I[h_["W_GS"]]
        oq, tt = w + I[h_["W_QACC"]], wa + I[h_["W_GTAU"]]
        oAB, oFG = wa + I[h_["W_MAB"]], wa + I[h_["W_GMAB"]]
        for k in range(12):
            W[oAB + k] = F(0.0)  # the world: beta = dbeta = 0
        for b in range(1, nb):
            bw, bv, dbw, dbv = twist_pair(I, W, oAB, oS, oq, tS, oq, b)
            m = pget(I, P, h_["B_MASS"], b)
            hv = ld3(W, w + I[h_["W_H"]] + 3 * b)
            Ib = ld33(W, w + I[h_["W_IB"]] + 9 * b)
            n1, f1 = iapply(F(0.0), ld3(W, wa + I[h_["W_GH"]] + 3 * b), ld33(W, wa + I[h_["W_GIB"]] + 9 * b), bw, bv)
            n2, f2 = iapply(m, hv, Ib, dbw, dbv)
            gn, gf = iapply(m, hv, Ib, bw, bv)
            o = oFG + 12 * b
            st3(W, o, n1 + n2)
            st3(W, o + 3, f1 + f2)
            st3(W, o + 6, gn)
            st3(W, o + 9, gf)
        for bb in range(1, nb):
            b = nb - bb  # children before parents: F_b, G_b are whole once b is reached
            o = oFG + 12 * b
            Fn, Ff, Gn, Gf = ld3(W, o), ld3(W, o + 3), ld3(W, o + 6), ld3(W, o + 9)
            da = iget(I, h_["B_DADR"], b)
            for dd in range(iget(I, h_["B_DNUM"], b)):
                d = da + dd
                dm = ld3(W, oS + 6 * d).dot(Fn) + ld3(W, oS + 6 * d + 3).dot(Ff) \
                    + ld3(W, tS + 6 * d).dot(Gn) + ld3(W, tS + 6 * d + 3).dot(Gf)
                W[tt + d] = W[tt + d] - dm
            par = iget(I, h_["B_PARENT"], b)
            if par > 0:
                o = oFG + 12 * par
                add3(W, o, Fn)
                add3(W, o + 3, Ff)
                add3(W, o + 6, Gn)
                add3(W, o + 9, Gf)
        hh = scal(I, P, sc["H"])
        for j in range(I[NJ]):
            if pget(I, P, h_["J_FRIC"], j) > 0:
                _c, dc = friction(I, P, W, w + I[h_["W_X"]], j)
                d = iget(I, h_["J_DADR"], j)
                W[tt + d] = W[tt + d] - hh * dc * W[wa + I[h_["W_GX"]] + I[NQ] + d] * W[oq + d]

    # ---- a mass matrix cached over MMK substeps (dflex's MM_caching_frequency): substep s0 computes
    # and factors M, the next MMK - 1 substeps reuse it. Its cotangent sums over the substeps that
    # used it (W_GMC, walking back), and goes into s0's state at s0; its tangent is formed at s0 and
    # applied at every substep that uses it. W_GMC holds the dof tree's entries (j, i), i = j or an
    # ancestor of j, each standing for M[j, i] and M[i, j].
    @ti.func
    def mass_matrix_cotangent_add(I: ti.template(), W: ti.template(), w, wa):
        """W_GMC += M_bar of this substep's solve, -u v^T (u = tau_bar, v = qacc)."""
        nv = I[NV]
        gm, gt, oq = wa + I[h_["W_GMC"]], wa + I[h_["W_GTAU"]], w + I[h_["W_QACC"]]
        for j in range(nv):
            uj, vj = W[gt + j], W[oq + j]
            W[gm + j * nv + j] = W[gm + j * nv + j] - uj * vj
            i = iget(I, h_["D_PARENT"], j)
            while i >= 0:
                W[gm + j * nv + i] = W[gm + j * nv + i] - (uj * W[oq + i] + W[gt + i] * vj)
                i = iget(I, h_["D_PARENT"], i)

    @ti.func
    def mass_matrix_adjoint(I: ti.template(), P: ti.template(), W: ti.template(), w, wa):
        """The adjoint of mass_matrix for the whole cotangent in W_GMC (CRBA entry by entry): S's
        share into W_GCS (6 per dof), each body's inertia share (h, Ibar: 12 per body) into W_GCI,
        summed from the composite inertias of its ancestors and itself, and the friction term's
        into W_GX's qvel. tree_adjoint_up adds W_GCS and W_GCI to its own."""
        nv, nb, nq = I[NV], I[NB], I[NQ]
        oS, gm = w + I[h_["W_S"]], wa + I[h_["W_GMC"]]
        gCS, gCI = wa + I[h_["W_GCS"]], wa + I[h_["W_GCI"]]
        for k in range(6 * nv):
            W[gCS + k] = F(0.0)
        for k in range(12 * nb):
            W[gCI + k] = F(0.0)
        for j in range(nv):
            b, m, hv, Ib, sw, sv, fn, ff = crba_column(I, P, W, w, j)
            gfn, gff = ti.Vector([F(0.0)] * 3, dt=F), ti.Vector([F(0.0)] * 3, dt=F)
            i = j
            while i >= 0:  # M[j, i] = S_i . F_j, F_j = Ic_b S_j
                g = W[gm + j * nv + i]
                add3(W, gCS + 6 * i, g * fn)
                add3(W, gCS + 6 * i + 3, g * ff)
                gfn += g * ld3(W, oS + 6 * i)
                gff += g * ld3(W, oS + 6 * i + 3)
                i = iget(I, h_["D_PARENT"], i)
            cw, cv = iapply(m, hv, Ib, gfn, gff)  # the spatial inertia is symmetric
            add3(W, gCS + 6 * j, cw)
            add3(W, gCS + 6 * j + 3, cv)
            add3(W, gCI + 12 * b, sv.cross(gfn) - sw.cross(gff))
            add33(W, gCI + 12 * b + 3, gfn.outer_product(sw))
        for b in range(1, nb):  # parents first: Ic_b sums the inertias of b's subtree
            par = iget(I, h_["B_PARENT"], b)
            if par > 0:
                add3(W, gCI + 12 * b, ld3(W, gCI + 12 * par))
                add33(W, gCI + 12 * b + 3, ld33(W, gCI + 12 * par + 3))
        hh = scal(I, P, sc["H"])
        for j in range(I[NJ]):
            if pget(I, P, h_["J_FRIC"], j) > 0:
                _c, dc = friction(I, P, W, w + I[h_["W_X"]], j)
                d = iget(I, h_["J_DADR"], j)
                W[wa + I[h_["W_GX"]] + nq + d] = W[wa + I[h_["W_GX"]] + nq + d] + W[gm + d * nv + d] * hh * dc

    @ti.func
    def mass_matrix_cached_tangent(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, fresh):
        """W_GTAU -= dM qacc with dM the tangent of the cached M: formed entry by entry into W_GMC at
        the substep that computes M (`fresh`; CRBA's tangent, with the composite inertias' tangents
        summed in W_GMAB), read at the substeps that reuse it."""
        nv, nb = I[NV], I[NB]
        oS, tS = w + I[h_["W_S"]], wa + I[h_["W_GS"]]
        tm, tt, oq = wa + I[h_["W_GMC"]], wa + I[h_["W_GTAU"]], w + I[h_["W_QACC"]]
        if fresh != 0:
            oC = wa + I[h_["W_GMAB"]]
            for b in range(1, nb):
                st3(W, oC + 12 * b, ld3(W, wa + I[h_["W_GH"]] + 3 * b))
                st33(W, oC + 12 * b + 3, ld33(W, wa + I[h_["W_GIB"]] + 9 * b))
            for bb in range(1, nb):
                b = nb - bb  # children before parents
                par = iget(I, h_["B_PARENT"], b)
                if par > 0:
                    add3(W, oC + 12 * par, ld3(W, oC + 12 * b))
                    add33(W, oC + 12 * par + 3, ld33(W, oC + 12 * b + 3))
            for j in range(nv):
                b, m, hv, Ib, sw, sv, fn, ff = crba_column(I, P, W, w, j)
                n1, f1 = iapply(F(0.0), ld3(W, oC + 12 * b), ld33(W, oC + 12 * b + 3), sw, sv)
                n2, f2 = iapply(m, hv, Ib, ld3(W, tS + 6 * j), ld3(W, tS + 6 * j + 3))
                dfn, dff = n1 + n2, f1 + f2
                i = j
                while i >= 0:
                    W[tm + j * nv + i] = ld3(W, tS + 6 * i).dot(fn) + ld3(W, tS + 6 * i + 3).dot(ff) \
                        + ld3(W, oS + 6 * i).dot(dfn) + ld3(W, oS + 6 * i + 3).dot(dff)
                    i = iget(I, h_["D_PARENT"], i)
            hh = scal(I, P, sc["H"])
            for j in range(I[NJ]):
                if pget(I, P, h_["J_FRIC"], j) > 0:
                    _c, dc = friction(I, P, W, w + I[h_["W_X"]], j)
                    d = iget(I, h_["J_DADR"], j)
                    W[tm + d * nv + d] = W[tm + d * nv + d] + hh * dc * W[wa + I[h_["W_GX"]] + I[NQ] + d]
        for j in range(nv):
            W[tt + j] = W[tt + j] - W[tm + j * nv + j] * W[oq + j]
            i = iget(I, h_["D_PARENT"], j)
            while i >= 0:
                W[tt + j] = W[tt + j] - W[tm + j * nv + i] * W[oq + i]
                W[tt + i] = W[tt + i] - W[tm + j * nv + i] * W[oq + j]
                i = iget(I, h_["D_PARENT"], i)

    @ti.func
    def factor(I: ti.template(), W: ti.template(), w):
        """M = L^T D L in place (MuJoCo's mj_factorM): D on the diagonal, L below it."""
        nv = I[NV]
        oM = w + I[h_["W_M"]]
        for kk in range(nv):
            k = nv - 1 - kk
            i = iget(I, h_["D_PARENT"], k)
            while i >= 0:
                tmp = W[oM + k * nv + i] / W[oM + k * nv + k]
                j = i
                while j >= 0:
                    W[oM + i * nv + j] = W[oM + i * nv + j] - W[oM + k * nv + j] * tmp
                    j = iget(I, h_["D_PARENT"], j)
                W[oM + k * nv + i] = tmp
                i = iget(I, h_["D_PARENT"], i)

    @ti.func
    def solve(I: ti.template(), W: ti.template(), w, ox, nc):
        """X <- M^-1 X with the factors in W_M, X [nv, nc] row-major at W[ox:] (a vector: nc = 1).
        The dof tree is walked once, the columns are the inner loop."""
        nv = I[NV]
        oM, dp = w + I[h_["W_M"]], I[h_["D_PARENT"]]
        for kk in range(nv):
            k = nv - 1 - kk
            i = I[dp + k]
            while i >= 0:
                lki = W[oM + k * nv + i]
                for c in range(nc):
                    W[ox + i * nc + c] = W[ox + i * nc + c] - lki * W[ox + k * nc + c]
                i = I[dp + i]
        for k in range(nv):
            dk = W[oM + k * nv + k]
            for c in range(nc):
                W[ox + k * nc + c] = W[ox + k * nc + c] / (dk)
        for k in range(nv):
            i = I[dp + k]
            while i >= 0:
                lki = W[oM + k * nv + i]
                for c in range(nc):
                    W[ox + k * nc + c] = W[ox + k * nc + c] - lki * W[ox + i * nc + c]
                i = I[dp + i]

    @ti.func
    def exp_coeffs(x2):
        """cos(x), sin(x)/x and their derivatives in x2 = x^2 (Taylor below x2 = 1e-6)."""
        cth, sinc, dcth, dsinc = F(0.0), F(0.0), F(0.0), F(0.0)
        if x2 < F(1e-6):
            cth = 1 - x2 * F(0.5) + x2 * x2 * F(1.0 / 24.0)
            sinc = 1 - x2 * F(1.0 / 6.0) + x2 * x2 * F(1.0 / 120.0)
            dcth = F(-0.5) + x2 * F(1.0 / 12.0)
            dsinc = F(-1.0 / 6.0) + x2 * F(1.0 / 60.0)
        else:
            xs = ti.sqrt(x2)
            cth = ti.cos(xs)
            sinc = ti.sin(xs) / xs
            dcth = -ti.sin(xs) / (2 * xs)
            dsinc = (xs * ti.cos(xs) - ti.sin(xs)) / (xs * xs) / (2 * xs)
        return cth, sinc, dcth, dsinc

    @ti.func
    def quat_step(q0, w1, hh):
        """q0 * exp(hh w1 / 2), normalised; returns (result, r, qn, inv) for the adjoint."""
        half = F(0.5) * hh
        cth, sinc, _dc, _ds = exp_coeffs(w1.dot(w1) * (half * half))
        r = ti.Vector([cth, w1[0] * half * sinc, w1[1] * half * sinc, w1[2] * half * sinc], dt=F)
        qn = qmul(q0, r)
        inv = 1 / ti.sqrt(ti.max(qn.dot(qn), F(1e-30)))
        return qn * inv, r, qn, inv

    @ti.func
    def quat_step_adjoint(q0, w1, hh, go):
        """(q0_bar, w1_bar) from the cotangent go of quat_step(q0, w1, hh)'s result."""
        qo, r, qn, inv = quat_step(q0, w1, hh)
        gqn = (go - qo * qo.dot(go)) * inv
        if qn.dot(qn) < F(1e-30):
            gqn = go * inv
        gq0 = qmul(gqn, qconj(r))
        gr = qmul(qconj(q0), gqn)
        half = F(0.5) * hh
        _cth, sinc, dcth, dsinc = exp_coeffs(w1.dot(w1) * (half * half))
        grv = ti.Vector([gr[1], gr[2], gr[3]], dt=F)
        gx2 = gr[0] * dcth + half * grv.dot(w1) * dsinc
        gw1 = grv * (half * sinc) + w1 * (2 * half * half * gx2)
        return gq0, gw1

    @ti.func
    def integrate(I: ti.template(), P: ti.template(), W: ti.template(), w):
        nq, nv = I[NQ], I[NV]
        x, xn = w + I[h_["W_X"]], w + I[h_["W_XN"]]
        hh = scal(I, P, sc["H"])
        for d in range(nv):
            W[xn + nq + d] = W[x + nq + d] + hh * W[w + I[h_["W_QACC"]] + d]
        for j in range(I[NJ]):
            qa, d = iget(I, h_["J_QADR"], j), iget(I, h_["J_DADR"], j)
            if iget(I, h_["J_TYPE"], j) == FREE:
                for i in ti.static(range(3)):
                    W[xn + qa + i] = W[x + qa + i] + hh * W[xn + nq + d + i]
                q0 = ld4(W, x + qa + 3)
                qo, _r, _qn, _inv = quat_step(q0, ld3(W, xn + nq + d + 3), hh)
                for i in ti.static(range(4)):
                    W[xn + qa + 3 + i] = qo[i]
            else:
                W[xn + qa] = W[x + qa] + hh * W[xn + nq + d]

    @ti.func
    def integrate_adjoint(I: ti.template(), P: ti.template(), W: ti.template(), w, wa):
        """From W_GXN (cotangent of the next state) to W_GX (its direct part) and W_GTAU
        (= qacc_bar, before the solve's adjoint)."""
        nq, nv = I[NQ], I[NV]
        x, xn = w + I[h_["W_X"]], w + I[h_["W_XN"]]
        gxn, gx, gt = wa + I[h_["W_GXN"]], wa + I[h_["W_GX"]], wa + I[h_["W_GTAU"]]
        hh = scal(I, P, sc["H"])
        for d in range(nv):
            W[gt + d] = W[gxn + nq + d]  # v1_bar (completed below by the positions' share)
        for j in range(I[NJ]):
            qa, d = iget(I, h_["J_QADR"], j), iget(I, h_["J_DADR"], j)
            if iget(I, h_["J_TYPE"], j) == FREE:
                for i in ti.static(range(3)):
                    W[gx + qa + i] = W[gx + qa + i] + W[gxn + qa + i]
                    W[gt + d + i] = W[gt + d + i] + hh * W[gxn + qa + i]
                gq0, gw1 = quat_step_adjoint(ld4(W, x + qa + 3), ld3(W, xn + nq + d + 3), hh,
                                             ld4(W, gxn + qa + 3))
                for i in ti.static(range(4)):
                    W[gx + qa + 3 + i] = W[gx + qa + 3 + i] + gq0[i]
                for i in ti.static(range(3)):
                    W[gt + d + 3 + i] = W[gt + d + 3 + i] + gw1[i]
            else:
                W[gx + qa] = W[gx + qa] + W[gxn + qa]
                W[gt + d] = W[gt + d] + hh * W[gxn + qa]
        for d in range(nv):
            W[gx + nq + d] = W[gx + nq + d] + W[gt + d]
            W[gt + d] = W[gt + d] * (hh)

    @ti.func
    def integrate_tangent(I: ti.template(), P: ti.template(), W: ti.template(), w, wa):
        """W_GXN <- the tangent of the next state (W_GTAU holds d qacc)."""
        nq, nv = I[NQ], I[NV]
        x, xn = w + I[h_["W_X"]], w + I[h_["W_XN"]]
        tx, txn, tq = wa + I[h_["W_GX"]], wa + I[h_["W_GXN"]], wa + I[h_["W_GTAU"]]
        hh = scal(I, P, sc["H"])
        for d in range(nv):
            W[txn + nq + d] = W[tx + nq + d] + hh * W[tq + d]
        for j in range(I[NJ]):
            qa, d = iget(I, h_["J_QADR"], j), iget(I, h_["J_DADR"], j)
            if iget(I, h_["J_TYPE"], j) == FREE:
                for i in ti.static(range(3)):
                    W[txn + qa + i] = W[tx + qa + i] + hh * W[txn + nq + d + i]
                q0 = ld4(W, x + qa + 3)
                dq0 = ld4(W, tx + qa + 3)
                w1 = ld3(W, xn + nq + d + 3)
                dw1 = ld3(W, txn + nq + d + 3)
                qo, r, qn, inv = quat_step(q0, w1, hh)
                half = F(0.5) * hh
                dx2 = 2 * half * half * w1.dot(dw1)
                _cth, sinc, dcth, dsinc = exp_coeffs(w1.dot(w1) * (half * half))
                drv = dw1 * (half * sinc) + w1 * (half * dsinc * dx2)
                dr = ti.Vector([dcth * dx2, drv[0], drv[1], drv[2]], dt=F)
                dqn = qmul(dq0, r) + qmul(q0, dr)
                do = (dqn - qo * qo.dot(dqn)) * inv
                if qn.dot(qn) < F(1e-30):
                    do = dqn * inv
                for i in ti.static(range(4)):
                    W[txn + qa + 3 + i] = do[i]
            else:
                W[txn + qa] = W[tx + qa] + hh * W[txn + nq + d]

    @ti.func
    def integrate_jacobian(I: ti.template(), P: ti.template(), W: ti.template(), w, ja, nc, JS: ti.template(), o):
        """The substep's Jacobian rows JS[o + r * nc + k] (r: next-state entry, k: state then control
        entry) from the rows of d qacc / d (state, control) at W[ja + d * nc + k]: qvel' = qvel + h qacc,
        q' = q + h qvel', and a free joint's quaternion step, whose local adjoint (once per output
        entry) weighs the quaternion's own entries and its three angular velocity rows."""
        nq, nv = I[NQ], I[NV]
        x, xn = w + I[h_["W_X"]], w + I[h_["W_XN"]]
        hh = scal(I, P, sc["H"])
        for d in range(nv):
            r = o + (nq + d) * nc
            for k in range(nc):
                JS[r + k] = hh * W[ja + d * nc + k]
            JS[r + nq + d] = JS[r + nq + d] + F(1.0)
        for j in range(I[NJ]):
            qa, d = iget(I, h_["J_QADR"], j), iget(I, h_["J_DADR"], j)
            rv = o + (nq + d) * nc
            if iget(I, h_["J_TYPE"], j) == FREE:
                for i in ti.static(range(3)):
                    r = o + (qa + i) * nc
                    for k in range(nc):
                        JS[r + k] = hh * JS[rv + i * nc + k]
                    JS[r + qa + i] = JS[r + qa + i] + F(1.0)
                q0, w1 = ld4(W, x + qa + 3), ld3(W, xn + nq + d + 3)
                for a in range(4):  # (a runtime loop: one inlined copy of the quaternion's adjoint)
                    go = ti.Vector([ti.cast(a == 0, F), ti.cast(a == 1, F), ti.cast(a == 2, F), ti.cast(a == 3, F)])
                    gq0, gw1 = quat_step_adjoint(q0, w1, hh, go)
                    r = o + (qa + 3 + a) * nc
                    for k in range(nc):
                        JS[r + k] = gw1[0] * JS[rv + 3 * nc + k] + gw1[1] * JS[rv + 4 * nc + k] \
                            + gw1[2] * JS[rv + 5 * nc + k]
                    for b in ti.static(range(4)):
                        JS[r + qa + 3 + b] = JS[r + qa + 3 + b] + gq0[b]
            else:
                r = o + qa * nc
                for k in range(nc):
                    JS[r + k] = hh * JS[rv + k]
                JS[r + qa] = JS[r + qa] + F(1.0)

    @ti.func
    def substep(I: ti.template(), P: ti.template(), W: ti.template(), w, U: ti.template(), e, s, wm):
        """Substep s of a control step in the block at w; with M cached (MMK > 1) only every MMK-th
        substep computes and factors it, the others copy its factors from the block at wm."""
        kinematics(I, P, W, w)
        body_inertias(I, P, W, w)
        external_forces(I, P, W, w)
        bias_forces(I, P, W, w)
        joint_forces(I, P, W, w, U, e)
        if s % I[h_["MMK"]] == 0:
            mass_matrix(I, P, W, w)
            factor(I, W, w)
        elif wm != w:
            for k in range(I[NV] * I[NV]):
                W[w + I[h_["W_M"]] + k] = W[wm + I[h_["W_M"]] + k]
        oq = w + I[h_["W_QACC"]]
        for d in range(I[NV]):
            W[oq + d] = W[w + I[h_["W_TAU"]] + d]
        solve(I, W, w, oq, 1)
        integrate(I, P, W, w)

    @ti.func
    def substep_adjoint(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, U: ti.template(), ue,
                        GU: ti.template(), ge, s, tau_row):
        """W_GXN (cotangent of substep s's output) -> W_GX; adds the control's share to GU[ge:].
        Needs the primal intermediates of the same substep in W. With M cached over MMK substeps,
        M's cotangent is summed in W_GMC from the group's last substep back to the one that
        computed M, and goes into that substep's state there.

        With tau_row >= 0 the cotangent is instead the unit one on tau[tau_row] with qacc held
        (GU[ge:] zeroed first): W_GX and GU[ge:] end up holding that row of
        K = d (tau - M qacc) / d (state, control) at fixed qacc, and d qacc / d (state, control)
        = M^-1 K. Such a sweep reaches only the subtree of tau_row's body and its ancestors: the
        other bodies' adjoints are all zero, and it skips them (`reached`)."""
        for k in range(I[h_["W_GZERO"]], I[h_["W_GZEND"]]):
            W[wa + k] = F(0.0)
        fb = -1
        if tau_row < 0:
            integrate_adjoint(I, P, W, w, wa)
            solve(I, W, w, wa + I[h_["W_GTAU"]], 1)
        else:
            for d in range(I[NV]):
                W[wa + I[h_["W_GTAU"]] + d] = F(0.0)
            W[wa + I[h_["W_GTAU"]] + tau_row] = F(1.0)
            for k in range(I[NU]):
                GU[ge + k] = F(0.0)
            fb = iget(I, h_["D_BODY"], tau_row)
        mk = I[h_["MMK"]]
        ov = w + I[h_["W_QACC"]]  # v = qacc: M's cotangent -u v^T in the tree passes
        fresh = 0
        if mk > 1:
            ov = wa + I[h_["W_GZV"]]  # v = 0: M's cotangent goes to W_GMC
            if (s + 1) % mk == 0 or s == I[h_["SUBSTEPS"]] - 1:
                for k in range(I[NV] * I[NV]):
                    W[wa + I[h_["W_GMC"]] + k] = F(0.0)
            mass_matrix_cotangent_add(I, W, w, wa)
            if s % mk == 0:
                fresh = 1
                mass_matrix_adjoint(I, P, W, w, wa)
        joint_forces_adjoint(I, P, W, w, wa, U, ue, GU, ge, ov)
        tree_adjoint_down(I, P, W, w, wa, ov, fb, tau_row)
        external_forces_adjoint(I, P, W, w, wa, fb)
        tree_adjoint_up(I, P, W, w, wa, ov, fresh, fb)

    @ti.func
    def adjoint_prologue(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, sweeps):
        """What the cotangents of a substep share, once for all of them: the contact points' world
        positions (W_PTC, which external_forces_adjoint reads) and, for a Jacobian's nv sweeps
        (`sweeps`), each body's beta = J_b qacc (W_MAB's second twist, which tree_adjoint_down
        then leaves)."""
        for k in range(I[NPT]):
            _b, pt = contact_point(I, P, W, w, k)
            st3(W, wa + I[h_["W_PTC"]] + 3 * k, pt)
        if sweeps != 0:
            oS, oq, oAB = w + I[h_["W_S"]], w + I[h_["W_QACC"]], wa + I[h_["W_MAB"]]
            for k in range(6, 12):
                W[oAB + k] = F(0.0)  # the world's beta
            for b in range(1, I[NB]):
                p = oAB + 12 * iget(I, h_["B_PARENT"], b) + 6
                bw, bv = ld3(W, p), ld3(W, p + 3)
                da = iget(I, h_["B_DADR"], b)
                for dd in range(iget(I, h_["B_DNUM"], b)):
                    d = da + dd
                    bw += ld3(W, oS + 6 * d) * W[oq + d]
                    bv += ld3(W, oS + 6 * d + 3) * W[oq + d]
                st3(W, oAB + 12 * b + 6, bw)
                st3(W, oAB + 12 * b + 9, bv)

    @ti.func
    def substep_tangent(I: ti.template(), P: ti.template(), W: ti.template(), w, wa, U: ti.template(), ue,
                        TU: ti.template(), eu, s):
        """W_GX (tangent of substep s's input) -> W_GXN; needs the primal intermediates in W."""
        for k in range(I[h_["W_GX"]] + I[NX], I[h_["W_TZEND"]]):
            W[wa + k] = F(0.0)
        kinematics_tangent(I, P, W, w, wa)
        body_inertias_tangent(I, P, W, w, wa)
        external_forces_tangent(I, P, W, w, wa)
        bias_forces_tangent(I, P, W, w, wa)
        joint_forces_tangent(I, P, W, w, wa, U, ue, TU, eu)
        mk = I[h_["MMK"]]
        if mk > 1:
            fresh = 0
            if s % mk == 0:
                fresh = 1
            mass_matrix_cached_tangent(I, P, W, w, wa, fresh)
        else:
            mass_matrix_tangent(I, P, W, w, wa)
        solve(I, W, w, wa + I[h_["W_GTAU"]], 1)
        integrate_tangent(I, P, W, w, wa)

    @ti.func
    def quat_mat_tangent(u, du):
        w, x, y, z = u[0], u[1], u[2], u[3]
        dw, dx, dy, dz = du[0], du[1], du[2], du[3]
        return 2 * ti.Matrix([
            [-2 * (y * dy + z * dz), x * dy + dx * y - w * dz - dw * z, x * dz + dx * z + w * dy + dw * y],
            [x * dy + dx * y + w * dz + dw * z, -2 * (x * dx + z * dz), y * dz + dy * z - w * dx - dw * x],
            [x * dz + dx * z - w * dy - dw * y, y * dz + dy * z + w * dx + dw * x, -2 * (x * dx + y * dy)]], dt=F)

    @ti.func
    def probe_order(I: ti.template(), npr):
        """How the derivative kernels loop over an env's npr probes or cotangents: (outer, inner)
        around the substep loop. Substep-major (1, npr): each substep's intermediates are read once
        for all of them; one at a time (npr, 1) when M is cached, whose tangent or summed cotangent
        lives across substeps in one slot."""
        npa, npb = 1, npr
        if I[h_["MMK"]] > 1:
            npa, npb = npr, 1
        return npa, npb

    @ti.func
    def kept_block(I: ti.template(), e, s, keep):
        """Where substep s of env e keeps its intermediates: keep entries per substep (the slots a
        derivative reads come first in the block), and each env's region ends with one block's
        remaining wp - keep entries, where its last substep's scratch falls."""
        wp = I[h_["W_GXN"]]
        return e * (I[h_["SUBSTEPS"]] * keep + wp - keep) + s * keep

    @ti.func
    def touch(I: ti.template(), W: ti.template(), w, keep, wa):
        """Reads one entry per cache line of the kept block at w, before the stages read it in
        their own order: these loads do not wait on each other, so the block streams in (from
        64 envs on a VJP's tape is out of the cache; its stages' scattered loads each waited on
        memory: 0.72-0.82 of the VJP's time with it, cheetah, ant and humanoid). Their sum goes
        to W_TOUCH, which nothing reads, so that the compiler keeps them."""
        t = F(0.0)
        for k in range((keep + 7) // 8):
            t += W[w + 8 * k]
        W[wa + I[h_["W_TOUCH"]]] = t

    # ================================================================== kernels
    # W holds the primal workspace blocks (W_X .. W_GXN: one per env, or when kept one per env and
    # substep at a stride of keep entries, see kept_block), then, for the adjoint and tangent, one
    # block of their slots per env.
    @ti.kernel
    def forward(I: arr_i, P: arr_f, X: arr_f, U: arr_f, OUT: arr_f, W: arr_f, n: ti.i32, keep: ti.i32,
                serial: ti.template()):
        """OUT[e] = step(X[e], U[e]). With keep > 0, every substep's intermediates that a derivative
        reads stay in W for the adjoint and tangent kernels: substep s's block starts keep entries
        after substep s - 1's (see kept_block), so that the slots at and after offset keep (the
        substep's own scratch) fall into the next substep's block, which overwrites them."""
        ti.loop_config(serialize=serial)
        for e in range(n):
            nx, S, wp = I[NX], I[h_["SUBSTEPS"]], I[h_["W_GXN"]]
            w = e * wp
            if keep != 0:
                w = kept_block(I, e, 0, keep)
            for k in range(nx):
                W[w + I[h_["W_X"]] + k] = X[e * nx + k]
            wm = w  # the block holding the factors of the cached M
            for s in range(S):
                if s % I[h_["MMK"]] == 0:
                    wm = w
                substep(I, P, W, w, U, e, s, wm)
                if s < S - 1:
                    nxt = w
                    if keep != 0:
                        nxt = w + keep
                    for k in range(nx):
                        W[nxt + I[h_["W_X"]] + k] = W[w + I[h_["W_XN"]] + k]
                    w = nxt
            for k in range(nx):
                OUT[e * nx + k] = W[w + I[h_["W_XN"]] + k]

    @ti.kernel
    def adjoint(I: arr_i, P: arr_f, U: arr_f, GX: arr_f, GU: arr_f, W: arr_f, n: ti.i32, npr: ti.i32,
                by_substep: ti.i32, keep: ti.i32, serial: ti.template()):
        """GX[e, k] <- GX[e, k]^T d step / d state, GU[e, k] = GX[e, k]^T d step / d control, for the
        npr cotangents k of env e (rows of the Jacobian when they are unit vectors), from the
        intermediates a forward launch with the same keep left in W. Substep-major like the tangent: each
        substep's intermediates are read once for all of an env's cotangents (cotangent-major when
        M is cached: its cotangent is summed across substeps, one cotangent at a time).

        With by_substep (M computed every substep, npr = NV): GX receives every substep's Jacobian
        instead, [n, S, NX, NX + NU] (d next state / d (state, control), row-major). The npr
        sweeps of a substep take unit cotangents on tau at fixed qacc; their rows of
        K = d (tau - M qacc) / d (state, control) go to W_JA (GU is their scratch), the solve
        turns them into those of d qacc / d (state, control) = M^-1 K, and integrate_jacobian adds
        the integration's local share: NV sweeps per substep where the rows of the whole step
        take NX, each reaching only its dof's subtree and that subtree's ancestors."""
        ti.loop_config(serialize=serial)
        for e in range(n):
            nx, nu, S, wp, ws = I[NX], I[NU], I[h_["SUBSTEPS"]], I[h_["W_GXN"]], I[h_["WS"]]
            nc = nx + nu
            wa = kept_block(I, n, 0, keep) + e * (ws - wp) - wp
            ja, gx = wa + I[h_["W_JA"]], wa + I[h_["W_GX"]]
            for k in range(npr * nu):
                GU[e * npr * nu + k] = F(0.0)
            npa, npb = probe_order(I, npr)
            for pa in range(npa):
                for ss in range(S):
                    s = S - 1 - ss
                    w = kept_block(I, e, s, keep)
                    touch(I, W, w, keep, wa)
                    adjoint_prologue(I, P, W, w, wa, by_substep)
                    for pb in range(npb):
                        pr = pa * npb + pb
                        o, ge = (e * npr + pr) * nx, (e * npr + pr) * nu
                        row = -1
                        if by_substep != 0:
                            row = pr
                        else:
                            for k in range(nx):
                                W[wa + I[h_["W_GXN"]] + k] = GX[o + k]
                        substep_adjoint(I, P, W, w, wa, U, e * nu, GU, ge, s, row)
                        if by_substep != 0:
                            for k in range(nx):
                                W[ja + pr * nc + k] = W[gx + k]
                            for k in range(nu):
                                W[ja + pr * nc + nx + k] = GU[ge + k]
                        else:
                            for k in range(nx):
                                GX[o + k] = W[gx + k]
                    if by_substep != 0:
                        solve(I, W, w, ja, nc)  # the rows of K -> those of d qacc / d (state, control)
                        integrate_jacobian(I, P, W, w, ja, nc, GX, (e * S + s) * nx * nc)

    @ti.kernel
    def tangent(I: arr_i, P: arr_f, U: arr_f, TX: arr_f, TU: arr_f, W: arr_f, n: ti.i32, npr: ti.i32,
                keep: ti.i32, serial: ti.template()):
        """TX[e, k] <- d step(X[e], U[e]) along (TX[e, k], TU[e, k]) for the npr probes k of env e,
        from the intermediates a forward launch with the same keep left in W (probe-major when M is cached:
        its tangent is formed once and used across substeps, one probe at a time)."""
        ti.loop_config(serialize=serial)
        for e in range(n):
            nx, nu, S, wp, ws = I[NX], I[NU], I[h_["SUBSTEPS"]], I[h_["W_GXN"]], I[h_["WS"]]
            wa = kept_block(I, n, 0, keep) + e * (ws - wp) - wp
            npa, npb = probe_order(I, npr)
            for pa in range(npa):
                for s in range(S):
                    touch(I, W, kept_block(I, e, s, keep), keep, wa)
                    for pb in range(npb):
                        pr = pa * npb + pb
                        o = (e * npr + pr) * nx
                        for k in range(nx):
                            W[wa + I[h_["W_GX"]] + k] = TX[o + k]
                        substep_tangent(I, P, W, kept_block(I, e, s, keep), wa, U, e * nu, TU,
                                        (e * npr + pr) * nu, s)
                        for k in range(nx):
                            TX[o + k] = W[wa + I[h_["W_GXN"]] + k]

    @ti.kernel
    def chain(I: arr_i, JS: arr_f, TX: arr_f, TU: arr_f, WK: arr_f, n: ti.i32, serial: ti.template()):
        """(TX[e], TU[e]) <- the control step's Jacobian (d x_S / d x_0 [NX, NX], d x_S / d u
        [NX, NU], row-major) from its substeps' JS[e, s] = [d x_s+1 / d x_s, d x_s+1 / d u] as the
        adjoint kernel's by_substep leaves them. Walking the substeps backwards, T = [TX | TU] takes
        T J_s for its state columns and adds it to its control columns, row by row (T and one row of
        scratch per env in WK). For small models, where each of these products is a few hundred
        multiply-adds and a torch call would cost more than the product."""
        ti.loop_config(serialize=serial)
        for e in range(n):
            nx, nu, S = I[NX], I[NU], I[h_["SUBSTEPS"]]
            nc = nx + nu
            o = e * (nx + 1) * nc
            row = o + nx * nc
            last = (e * S + S - 1) * nx * nc
            for k in range(nx * nc):
                WK[o + k] = JS[last + k]
            for ss in range(1, S):
                js = (e * S + S - 1 - ss) * nx * nc
                for r in range(nx):
                    # row r of T J_s as a sum of J_s's rows (independent multiply-adds across c,
                    # where a dot product per entry would wait on each of its own)
                    for c in range(nc):
                        WK[row + c] = F(0.0)
                    for k in range(nx):
                        t = WK[o + r * nc + k]
                        for c in range(nc):
                            WK[row + c] = WK[row + c] + t * JS[js + k * nc + c]
                    for c in range(nx):
                        WK[o + r * nc + c] = WK[row + c]
                    for c in range(nx, nc):
                        WK[o + r * nc + c] = WK[o + r * nc + c] + WK[row + c]
            for r in range(nx):
                for c in range(nx):
                    TX[(e * nx + r) * nx + c] = WK[o + r * nc + c]
                for c in range(nu):
                    TU[(e * nx + r) * nu + c] = WK[o + r * nc + nx + c]

    return {"forward": forward, "adjoint": adjoint, "tangent": tangent, "chain": chain}
