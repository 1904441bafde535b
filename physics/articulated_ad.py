"""Trace-time source transformation: one scalar expression graph -> three Taichi kernels.

The articulated simulator writes one substep of its dynamics in plain Python over
:class:`Sym` scalars. Every operation appends a node to a :class:`Graph` (with constant
folding and common-subexpression elimination, so model constants such as zero axis
components vanish at build time). From the graph of one substep, :func:`generate` writes
the Python source of three kernels and imports it:

``forward``  one parallel loop over envs; the substeps run serially inside it and, when
             asked, record the state entering every substep (a time-indexed tape);
``tangent``  one parallel loop over (env, probe); primal + forward-mode tangent of every
             node, so a launch pushes P tangent directions through all substeps (JVP and
             full Jacobians);
``adjoint``  one parallel loop over envs; walks the substeps backwards, recomputes each
             substep's primal from the tape and accumulates the exact reverse-mode adjoint.

The derivative of every node is written out symbolically (no Taichi autodiff, so none of
its pitfalls: no global data access rules, no adstack, no FwdMode). Branches are
``select`` nodes whose condition is treated as locally constant, which is the exact
derivative everywhere except on the switching surface itself. Both branches of a select
are evaluated, so callers keep square roots and divisions finite in the unselected branch
too (otherwise 0 * inf = NaN would leak into adjoints).

Literals are emitted as ``F(value)`` with ``F`` the kernel's float type: Taichi rounds a
bare Python float literal (or ``ti.cast(0.1, ti.f64)``) to float32 first, ``ti.f64(0.1)``
keeps it exact.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import tempfile
from pathlib import Path

# --------------------------------------------------------------------------------- the graph
_FOLD = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "neg": lambda a: -a,
    "sin": math.sin,
    "cos": math.cos,
    "sqrt": math.sqrt,
}


class Graph:
    """Nodes are tuples (op, arg ids..., extra); node ids are topologically ordered."""

    def __init__(self):
        self.nodes: list[tuple] = []
        self.const: dict[int, float] = {}
        self._cse: dict = {}
        self.inputs: dict[tuple, int] = {}   # ("x", i) / ("u", i) -> node id

    def _add(self, key) -> int:
        nid = self._cse.get(key)
        if nid is None:
            nid = len(self.nodes)
            self.nodes.append(key)
            self._cse[key] = nid
        return nid

    def constant(self, value: float) -> "Sym":
        value = float(value)
        if value == 0.0:
            value = 0.0  # fold -0.0
        nid = self._add(("const", value))
        self.const[nid] = value
        return Sym(self, nid)

    def input(self, kind: str, index: int) -> "Sym":
        nid = self._add(("in", kind, index))
        self.inputs[(kind, index)] = nid
        return Sym(self, nid)

    def op(self, name: str, *args: "Sym") -> "Sym":
        vals = [self.const.get(a.id) for a in args]
        if all(v is not None for v in vals):
            return self.constant(_FOLD[name](*vals))
        ids = [a.id for a in args]
        if name == "add":
            if vals[0] == 0.0:
                return args[1]
            if vals[1] == 0.0:
                return args[0]
            ids = sorted(ids)
        elif name == "sub":
            if vals[1] == 0.0:
                return args[0]
            if vals[0] == 0.0:
                return self.op("neg", args[1])
            if ids[0] == ids[1]:
                return self.constant(0.0)
        elif name == "mul":
            for i in (0, 1):
                if vals[i] == 0.0:
                    return self.constant(0.0)
                if vals[i] == 1.0:
                    return args[1 - i]
                if vals[i] == -1.0:
                    return self.op("neg", args[1 - i])
            ids = sorted(ids)
        elif name == "div":
            if vals[0] == 0.0:
                return self.constant(0.0)
            if vals[1] is not None:
                return self.op("mul", args[0], self.constant(1.0 / vals[1]))
        elif name == "neg":
            node = self.nodes[ids[0]]
            if node[0] == "neg":
                return Sym(self, node[1])
        return Sym(self, self._add((name, *ids)))

    def less(self, a, b) -> "Cond":
        a, b = self.sym(a), self.sym(b)
        va, vb = self.const.get(a.id), self.const.get(b.id)
        if va is not None and vb is not None:
            return Cond(self, None, va < vb)
        return Cond(self, self._add(("lt", a.id, b.id)), None)

    def select(self, cond: "Cond", a, b) -> "Sym":
        a, b = self.sym(a), self.sym(b)
        if cond.value is not None:
            return a if cond.value else b
        if a.id == b.id:
            return a
        return Sym(self, self._add(("select", cond.id, a.id, b.id)))

    def sym(self, x) -> "Sym":
        return x if isinstance(x, Sym) else self.constant(x)


class Cond:
    def __init__(self, g, nid, value):
        self.g, self.id, self.value = g, nid, value


class Sym:
    """A scalar of the traced program. Arithmetic with Python numbers folds constants."""

    __slots__ = ("g", "id")

    def __init__(self, g: Graph, nid: int):
        self.g, self.id = g, nid

    def _s(self, o):
        return o if isinstance(o, Sym) else self.g.constant(o)

    def __add__(self, o):
        return self.g.op("add", self, self._s(o))

    __radd__ = __add__

    def __sub__(self, o):
        return self.g.op("sub", self, self._s(o))

    def __rsub__(self, o):
        return self.g.op("sub", self._s(o), self)

    def __mul__(self, o):
        return self.g.op("mul", self, self._s(o))

    __rmul__ = __mul__

    def __truediv__(self, o):
        return self.g.op("div", self, self._s(o))

    def __rtruediv__(self, o):
        return self.g.op("div", self._s(o), self)

    def __neg__(self):
        return self.g.op("neg", self)

    @property
    def const(self):
        return self.g.const.get(self.id)


def sin(x: Sym) -> Sym:
    return x.g.op("sin", x)


def cos(x: Sym) -> Sym:
    return x.g.op("cos", x)


def sqrt(x: Sym) -> Sym:
    return x.g.op("sqrt", x)


def less(a, b) -> Cond:
    g = a.g if isinstance(a, Sym) else b.g
    return g.less(a, b)


def select(cond: Cond, a, b) -> Sym:
    return cond.g.select(cond, a, b)


def smax(a, b) -> Sym:
    """max(a, b) (derivative of the larger one)."""
    return select(less(a, b), b, a)


def smin(a, b) -> Sym:
    return select(less(a, b), a, b)


# ----------------------------------------------------------------------------- code generation
#
# Taichi 1.7's frontend lowering calls replace_all_usages_with(ir_root) once per frontend
# statement, so compiling one kernel costs O(statements x IR size): a 7000-node substep took
# over a minute to compile. Substeps of up to CHUNK nodes therefore become single-launch
# kernels (substep loop inside), larger ones are split into chunks of at most CHUNK nodes,
# each its own stage kernel (compile cost quadratic only in the chunk size). Chunks pass the
# values live across their boundary through [N, size] buffers; the adjoint recomputes each
# chunk's primal from its saved live-in buffer (checkpointing). The price is K launches per
# substep for such models. (ti.experimental.real_func would keep one launch, but compiling
# them hung on our larger models in Taichi 1.7.4.)
CHUNK = int(os.environ.get("MBMIX_AD_CHUNK", "900"))


def _lit(v: float) -> str:
    return f"F({float(v)!r})"


class _Program:
    def __init__(self, g: Graph, outputs: list[int], nx: int, nu: int):
        self.g, self.outputs, self.nx, self.nu = g, outputs, nx, nu
        nodes = g.nodes
        n = len(nodes)
        needed = [False] * n
        for o in outputs:
            needed[o] = True
        for i in range(n - 1, -1, -1):
            if needed[i]:
                for a in self.uses(i):
                    needed[a] = True
        self.needed = needed
        active = [False] * n
        for i, node in enumerate(nodes):
            if node[0] == "in":
                active[i] = True
            elif node[0] == "select":
                active[i] = active[node[2]] or active[node[3]]
            elif node[0] not in ("const", "lt"):
                active[i] = any(active[a] for a in node[1:])
        self.active = active
        self.inputs = [g.inputs.get(("x", i)) for i in range(nx)] + [g.inputs.get(("u", i)) for i in range(nu)]
        body = [i for i in range(n) if needed[i] and nodes[i][0] not in ("const", "lt", "in")]
        self.chunks = [body[k:k + CHUNK] for k in range(0, len(body), CHUNK)] or [[]]
        K = len(self.chunks)
        where = {}
        for k, ch in enumerate(self.chunks):
            for i in ch:
                where[i] = k
        for i in self.inputs:
            if i is not None:
                where[i] = -1
        last = {}
        for k, ch in enumerate(self.chunks):
            for i in ch:
                for a in self.uses(i):
                    if a in where:
                        last[a] = max(last.get(a, -1), k)
        for o in outputs:
            if o in where:
                last[o] = K
        self.live = []   # live-in ids of chunk k (k = 0: the inputs, fixed layout)
        for k in range(K):
            if k == 0:
                self.live.append(None)
            else:
                self.live.append(sorted(i for i, w in where.items() if w < k and last.get(i, -2) >= k))
        self.K = K

    def uses(self, i):
        node = self.g.nodes[i]
        op = node[0]
        if op in ("const", "in"):
            return ()
        if op == "select":
            c = self.g.nodes[node[1]]
            return (c[1], c[2], node[2], node[3])
        return node[1:]

    def v(self, i):
        c = self.g.const.get(i)
        return _lit(c) if c is not None else f"v{i}"

    def cond(self, i):
        c = self.g.nodes[self.g.nodes[i][1]]
        return f"{self.v(c[1])} < {self.v(c[2])}"

    # -- straight-line pieces
    def primal(self, ids):
        out = []
        for i in ids:
            node = self.g.nodes[i]
            op = node[0]
            if op == "select":
                e = f"ti.select({self.cond(i)}, {self.v(node[2])}, {self.v(node[3])})"
            else:
                a = [self.v(j) for j in node[1:]]
                e = {"add": lambda: f"{a[0]} + {a[1]}", "sub": lambda: f"{a[0]} - {a[1]}",
                     "mul": lambda: f"{a[0]} * {a[1]}", "div": lambda: f"{a[0]} / {a[1]}",
                     "neg": lambda: f"-{a[0]}", "sin": lambda: f"ti.sin({a[0]})",
                     "cos": lambda: f"ti.cos({a[0]})", "sqrt": lambda: f"ti.sqrt({a[0]})"}[op]()
            out.append(f"v{i} = {e}")
        return out

    def tangent(self, ids):
        act = self.active
        out = []

        def t(j):
            return f"t{j}" if act[j] else None

        for i in ids:
            if not act[i]:
                continue
            node = self.g.nodes[i]
            op = node[0]
            if op == "select":
                e = f"ti.select({self.cond(i)}, {t(node[2]) or 'F(0.0)'}, {t(node[3]) or 'F(0.0)'})"
            else:
                a = node[1:]
                ta = [t(j) for j in a]
                va = [self.v(j) for j in a]
                if op in ("add", "sub"):
                    sign = "+" if op == "add" else "-"
                    if ta[0] and ta[1]:
                        e = f"{ta[0]} {sign} {ta[1]}"
                    elif ta[0]:
                        e = ta[0]
                    else:
                        e = ta[1] if op == "add" else f"-{ta[1]}"
                elif op == "mul":
                    terms = []
                    if ta[0]:
                        terms.append(f"{ta[0]} * {va[1]}")
                    if ta[1]:
                        terms.append(f"{va[0]} * {ta[1]}")
                    e = " + ".join(terms)
                elif op == "div":
                    if ta[0] and ta[1]:
                        e = f"({ta[0]} - v{i} * {ta[1]}) / {va[1]}"
                    elif ta[0]:
                        e = f"{ta[0]} / {va[1]}"
                    else:
                        e = f"-v{i} * {ta[1]} / {va[1]}"
                elif op == "neg":
                    e = f"-{ta[0]}"
                elif op == "sin":
                    e = f"ti.cos({va[0]}) * {ta[0]}"
                elif op == "cos":
                    e = f"-ti.sin({va[0]}) * {ta[0]}"
                elif op == "sqrt":
                    e = f"{ta[0]} / (v{i} + v{i})"
                else:  # pragma: no cover
                    raise AssertionError(op)
            out.append(f"t{i} = {e}")
        return out

    def adjoint(self, ids, contrib):
        """Reverse sweep over ids; contrib: node -> list of adjoint terms (updated in place)."""
        act = self.active
        out = []

        def push(j, expr):
            if act[j]:
                contrib.setdefault(j, []).append(expr)

        for i in reversed(ids):
            if not act[i] or i not in contrib:
                continue
            terms = contrib.pop(i)
            out.append(f"g{i} = {' + '.join(terms)}")
            gi = f"g{i}"
            node = self.g.nodes[i]
            op = node[0]
            if op == "select":
                a, b = node[2], node[3]
                cnd = self.cond(i)
                push(a, f"ti.select({cnd}, {gi}, F(0.0))")
                push(b, f"ti.select({cnd}, F(0.0), {gi})")
                continue
            a = node[1:]
            va = [self.v(j) for j in a]
            if op == "add":
                push(a[0], gi)
                push(a[1], gi)
            elif op == "sub":
                push(a[0], gi)
                push(a[1], f"-{gi}")
            elif op == "mul":
                if a[0] == a[1]:
                    push(a[0], f"{gi} * ({va[0]} + {va[0]})")
                else:
                    push(a[0], f"{gi} * {va[1]}")
                    push(a[1], f"{gi} * {va[0]}")
            elif op == "div":
                out.append(f"q{i} = {gi} / {va[1]}")
                push(a[0], f"q{i}")
                push(a[1], f"-q{i} * v{i}")
            elif op == "neg":
                push(a[0], f"-{gi}")
            elif op == "sin":
                push(a[0], f"{gi} * ti.cos({va[0]})")
            elif op == "cos":
                push(a[0], f"-{gi} * ti.sin({va[0]})")
            elif op == "sqrt":
                push(a[0], f"{gi} / (v{i} + v{i})")
            else:  # pragma: no cover
                raise AssertionError(op)
        return out

    # -- chunk interfaces
    def live_in(self, k):
        return self.inputs if k == 0 else self.live[k]

    def live_out(self, k):
        return self.outputs if k == self.K - 1 else self.live[k + 1]

    def unpack(self, ids, arr, off=0, tangent=False):
        out = []
        for j, i in enumerate(ids):
            if i is None:
                continue
            if tangent:
                if self.active[i]:
                    out.append(f"t{i} = {arr}[{off + j}]")
            else:
                out.append(f"v{i} = {arr}[{off + j}]")
        return out

    def pack(self, ids, tangent=False):
        if tangent:
            return [f"t{i}" if (i in self.g.const) is False and self.active[i] else "F(0.0)" for i in ids]
        return [self.v(i) for i in ids]


def generate(g: Graph, nx: int, nu: int, outputs: list, substeps: int, fp: str, tag: str = "art"):
    """Write and import the kernels of one substep graph (see the module doc).

    Returns a module with ``K`` (number of chunks) and, for K == 1, the single-launch kernels
    ``forward``, ``tangent``, ``adjoint`` (substep loop inside); for K > 1 the per-chunk
    stage kernels ``f{k}``, ``t{k}``, ``b{k}`` that the simulator drives substep by substep."""
    out_ids = [o.id if isinstance(o, Sym) else int(o) for o in outputs]
    nu_eff = max(nu, 1)
    pr = _Program(g, out_ids, nx, nu)
    K = pr.K
    S = int(substeps)
    src = ["# generated by mbmix_taichi.physics.articulated_ad; do not edit",
           "import taichi as ti", f"F = ti.{fp}", f"K = {K}", ""]
    nd2 = "ti.types.ndarray(dtype=F, ndim=2)"
    nd3 = "ti.types.ndarray(dtype=F, ndim=3)"
    in0 = list(pr.inputs) + [None] * (nu_eff - nu)
    sizes = [nx + nu_eff] + [len(pr.live[k]) for k in range(1, K)] + [nx]
    src.append(f"SIZES = {sizes!r}")
    ind = "        "
    if K == 1:
        ch = pr.chunks[0]
        outs = pr.pack(out_ids)
        load = [f"v{i} = s[e, {j}]" for j, i in enumerate(pr.inputs[:nx]) if i is not None]
        load += [f"v{i} = c[e, {j}]" for j, i in enumerate(pr.inputs[nx:]) if i is not None]
        src += ["@ti.kernel",
                f"def forward(s: {nd2}, c: {nd2}, out: {nd2}, tape: {nd3}, rec: ti.i32):",
                "    for e in range(s.shape[0]):"]
        src += [ind + ln for ln in [f"x{j} = s[e, {j}]" for j in range(nx)] + [f"u{j} = c[e, {j}]" for j in range(nu_eff)]]
        src += [f"{ind}for k in range({S}):", f"{ind}    if rec != 0:"]
        src += [f"{ind}        tape[e, k, {j}] = x{j}" for j in range(nx)]
        body = [f"v{i} = x{j}" for j, i in enumerate(pr.inputs[:nx]) if i is not None]
        body += [f"v{i} = u{j}" for j, i in enumerate(pr.inputs[nx:]) if i is not None]
        body += pr.primal(ch) + [f"n{j} = {o}" for j, o in enumerate(outs)] + [f"x{j} = n{j}" for j in range(nx)]
        src += [ind + "    " + ln for ln in body]
        src += [f"{ind}out[e, {j}] = x{j}" for j in range(nx)] + [""]
        # tangent
        src += ["@ti.kernel",
                f"def tangent(s: {nd2}, c: {nd2}, ts: {nd3}, tc: {nd3}, tout: {nd3}):",
                "    P = ts.shape[1]", "    for ep in range(s.shape[0] * P):", "        e = ep // P", "        p = ep % P"]
        src += [ind + ln for ln in [f"x{j} = s[e, {j}]" for j in range(nx)] + [f"u{j} = c[e, {j}]" for j in range(nu_eff)]
                + [f"tx{j} = ts[e, p, {j}]" for j in range(nx)] + [f"tu{j} = tc[e, p, {j}]" for j in range(nu_eff)]]
        src.append(f"{ind}for k in range({S}):")
        body = [f"v{i} = x{j}" for j, i in enumerate(pr.inputs[:nx]) if i is not None]
        body += [f"v{i} = u{j}" for j, i in enumerate(pr.inputs[nx:]) if i is not None]
        body += [f"t{i} = tx{j}" for j, i in enumerate(pr.inputs[:nx]) if i is not None]
        body += [f"t{i} = tu{j}" for j, i in enumerate(pr.inputs[nx:]) if i is not None]
        tout = pr.pack(out_ids, tangent=True)
        body += pr.primal(ch) + pr.tangent(ch)
        body += [f"n{j} = {o}" for j, o in enumerate(outs)] + [f"m{j} = {o}" for j, o in enumerate(tout)]
        body += [f"x{j} = n{j}" for j in range(nx)] + [f"tx{j} = m{j}" for j in range(nx)]
        src += [ind + "    " + ln for ln in body]
        src += [f"{ind}tout[e, p, {j}] = tx{j}" for j in range(nx)] + [""]
        # adjoint
        src += ["@ti.kernel",
                f"def adjoint(tape: {nd3}, c: {nd2}, gout: {nd2}, gs: {nd2}, gc: {nd2}):",
                "    for e in range(c.shape[0]):"]
        src += [ind + ln for ln in [f"u{j} = c[e, {j}]" for j in range(nu_eff)] + [f"gx{j} = gout[e, {j}]" for j in range(nx)]
                + [f"gu{j} = F(0.0)" for j in range(nu_eff)]]
        src += [f"{ind}for kk in range({S}):", f"{ind}    k = {S - 1} - kk"]
        body = [f"v{i} = tape[e, k, {j}]" for j, i in enumerate(pr.inputs[:nx]) if i is not None]
        body += [f"v{i} = u{j}" for j, i in enumerate(pr.inputs[nx:]) if i is not None]
        contrib = {}
        for j, o in enumerate(out_ids):
            if pr.active[o] and o not in g.const:
                contrib.setdefault(o, []).append(f"gx{j}")
        body += pr.primal(ch) + pr.adjoint(ch, contrib)
        res = [" + ".join(contrib[i]) if (i is not None and contrib.get(i)) else "F(0.0)" for i in in0]
        body += [f"h{j} = {res[j]}" for j in range(nx)] + [f"gx{j} = h{j}" for j in range(nx)]
        body += [f"gu{j} += {res[nx + j]}" for j in range(nu_eff) if res[nx + j] != "F(0.0)"]
        src += [ind + "    " + ln for ln in body]
        src += [f"{ind}gs[e, {j}] = gx{j}" for j in range(nx)] + [f"{ind}gc[e, {j}] = gu{j}" for j in range(nu_eff)]
        return _import("\n".join(src) + "\n", tag)

    # ---- K > 1: stage kernels. X [N, S+1, nx]: state entering every substep; c [N, nu];
    # W [N, ncross]: every value computed in one chunk and used in a later one (written once,
    # read only where used: no pass-through copies); GW / GI: adjoint accumulators of W and
    # of the inputs (x, u).
    where = {}
    for k, ch in enumerate(pr.chunks):
        for i in ch:
            where[i] = k
    inp_idx = {i: j for j, i in enumerate(pr.inputs) if i is not None}
    for i in inp_idx:
        where[i] = -1
    ext = []
    cross = set()
    for k, ch in enumerate(pr.chunks):
        e_k = set()
        for i in ch:
            for a in pr.uses(i):
                if a in where and where[a] < k:
                    e_k.add(a)
        if k == K - 1:
            for o in out_ids:
                if o in where and where[o] < k:
                    e_k.add(o)
        ext.append(sorted(e_k))
        cross |= {a for a in e_k if where[a] >= 0}
    cross = sorted(cross)
    col = {i: j for j, i in enumerate(cross)}
    nc = max(len(cross), 1)
    src.append(f"NCROSS = {nc}")
    src.append(f"OUT_SEED = {[(j, ('w', col[o]) if o in col else ('i', inp_idx[o])) for j, o in enumerate(out_ids) if o in where and pr.active[o] and where[o] < K - 1 or (o in inp_idx)]!r}")

    def load(k, tangent=False):
        lines = []
        for a in ext[k]:
            if a in inp_idx:
                j = inp_idx[a]
                if j < nx:
                    lines.append(f"v{a} = {'TX[q, ' if tangent else 'X[e, s, '}{j}]")
                    if tangent and pr.active[a]:
                        lines.append(f"t{a} = TX[q, {nx + j}]")
                else:
                    lines.append(f"v{a} = c[e, {j - nx}]")
                    if tangent and pr.active[a]:
                        lines.append(f"t{a} = tc[e, p, {j - nx}]")
            else:
                lines.append(f"v{a} = {'TW[q, ' if tangent else 'W[e, '}{col[a]}]")
                if tangent and pr.active[a]:
                    lines.append(f"t{a} = TW[q, {nc + col[a]}]")
        return lines

    for k in range(K):
        ch = pr.chunks[k]
        mine = [i for i in ch if i in col]
        # forward stage
        src += ["@ti.kernel",
                f"def f{k}(X: {nd3}, c: {nd2}, W: {nd2}, s: ti.i32):",
                "    for e in range(c.shape[0]):"]
        body = load(k) + pr.primal(ch) + [f"W[e, {col[i]}] = v{i}" for i in mine]
        if k == K - 1:
            body += [f"X[e, s + 1, {j}] = {v}" for j, v in enumerate(pr.pack(out_ids))]
        src += [ind + ln for ln in body] + [""]
        # tangent stage: rows q = e * P + p; TX [N*P, 2 nx] holds (x, tx) of the current substep
        src += ["@ti.kernel",
                f"def t{k}(c: {nd2}, tc: {nd3}, TX: {nd2}, TW: {nd2}, s: ti.i32):",
                "    P = tc.shape[1]", "    for q in range(c.shape[0] * P):", "        e = q // P", "        p = q % P"]
        body = load(k, tangent=True) + pr.primal(ch) + pr.tangent(ch)
        body += [f"TW[q, {col[i]}] = v{i}" for i in mine]
        body += [f"TW[q, {nc + col[i]}] = t{i}" for i in mine if pr.active[i]]
        if k == K - 1:
            vals = pr.pack(out_ids)
            tv = pr.pack(out_ids, tangent=True)
            body += [f"n{j} = {v}" for j, v in enumerate(vals)] + [f"m{j} = {v}" for j, v in enumerate(tv)]
            body += [f"TX[q, {j}] = n{j}" for j in range(nx)] + [f"TX[q, {nx + j}] = m{j}" for j in range(nx)]
        src += [ind + ln for ln in body] + [""]
        # adjoint stage
        src += ["@ti.kernel",
                f"def b{k}(X: {nd3}, c: {nd2}, W: {nd2}, GW: {nd2}, GI: {nd2}, GX: {nd2}, s: ti.i32):",
                "    for e in range(c.shape[0]):"]
        body = load(k) + pr.primal(ch)
        contrib = {}
        for i in mine:
            if pr.active[i]:
                body.append(f"w{i} = GW[e, {col[i]}]")
                contrib.setdefault(i, []).append(f"w{i}")
        if k == K - 1:
            for j, o in enumerate(out_ids):
                if where.get(o) == k and pr.active[o]:
                    contrib.setdefault(o, []).append(f"GX[e, {j}]")
        body += pr.adjoint(ch, contrib)
        for a in ext[k]:
            terms = contrib.get(a)
            if not terms:
                continue
            if a in inp_idx:
                body.append(f"GI[e, {inp_idx[a]}] += {' + '.join(terms)}")
            else:
                body.append(f"GW[e, {col[a]}] += {' + '.join(terms)}")
        src += [ind + ln for ln in body] + [""]
    return _import("\n".join(src) + "\n", tag)


def _cache_dir() -> Path:
    base = os.environ.get("MBMIX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mbmix_taichi")
    d = Path(base) / "articulated_kernels"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        d = Path(tempfile.gettempdir()) / "mbmix_taichi_articulated_kernels"
        d.mkdir(parents=True, exist_ok=True)
    return d


def _import(src: str, tag: str):
    h = hashlib.sha1(src.encode()).hexdigest()[:16]
    name = f"_mbmix_{tag}_{h}"
    if name in sys.modules:
        return sys.modules[name]
    path = _cache_dir() / f"{name}.py"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(src)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    mod.source_path = str(path)
    return mod
