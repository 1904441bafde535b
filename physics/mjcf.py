"""MJCF loader for the subset the articulated simulator supports.

Supported (everything else is an :class:`MJCFError` naming the element and its line):

* ``<mujoco>`` with ``<compiler angle= eulerseq="xyz" inertiafromgeom= autolimits=>``,
  ``<option timestep= gravity= integrator="Euler">``, ``<size>``, ``<visual>``,
  ``<asset>``, ``<statistic>``, ``<contact>`` (ignored: display and MuJoCo-only settings);
* ``<default>`` classes (nested, ``class=`` and ``childclass=``) for joint, geom, motor,
  general;
* ``<worldbody>`` with plane geoms (the ground; its z is the ground height), bodies, sites,
  cameras and lights (the last three ignored);
* ``<body name pos quat|euler|axisangle|zaxis childclass>`` with ``<joint type=hinge|slide|
  free>``, ``<freejoint>``, ``<geom type=sphere|capsule|box|cylinder size pos fromto quat
  euler axisangle zaxis density mass rgba contype conaffinity>`` and ``<inertial pos mass
  diaginertia|fullinertia quat>``;
* ``<actuator>`` with ``<motor joint gear ctrlrange ctrllimited>`` and ``<general>`` of the
  same meaning (fixed gain 1, no bias).

Body inertia follows MuJoCo: an explicit ``<inertial>`` wins, otherwise the geoms' mass
(``mass=`` or density * volume, default density 1000) and inertia are combined about the
body's centre of mass (sphere, capsule, box, cylinder formulas as MuJoCo's compiler).
"""
from __future__ import annotations

import math
import os
import xml.parsers.expat

import numpy as np

from mbmix_taichi.errors import MbmixError

from .articulated_model import ArticulatedModel, axis_angle_quat, quat_mul, quat_to_mat


class MJCFError(MbmixError, ValueError):
    """Unsupported or malformed MJCF: says which element, which line, and what is wrong."""


class _El:
    __slots__ = ("tag", "attrib", "children", "line", "parent")

    def __init__(self, tag, attrib, line, parent):
        self.tag, self.attrib, self.line, self.parent = tag, dict(attrib), line, parent
        self.children = []


def _parse_xml(text: str, where: str) -> _El:
    root = None
    stack = []
    p = xml.parsers.expat.ParserCreate()

    def start(tag, attrib):
        nonlocal root
        el = _El(tag, attrib, p.CurrentLineNumber, stack[-1] if stack else None)
        if stack:
            stack[-1].children.append(el)
        else:
            root = el
        stack.append(el)

    def end(tag):
        stack.pop()

    p.StartElementHandler = start
    p.EndElementHandler = end
    try:
        p.Parse(text, True)
    except xml.parsers.expat.ExpatError as exc:
        raise MJCFError(f"{where}: malformed XML at line {exc.lineno}: {xml.parsers.expat.ErrorString(exc.code)}") from None
    return root


_IGNORED_TOP = {"size", "visual", "asset", "statistic", "contact", "extension", "custom", "keyframe", "sensor",
                "tendon", "equality"}
_DEFAULTABLE = {"joint", "geom", "motor", "general", "site", "camera", "light", "mesh", "material", "inertial",
                "position", "velocity", "equality", "tendon", "pair"}


class _Loader:
    def __init__(self, path: str):
        self.path = path
        with open(path) as f:
            text = f.read()
        self.root = _parse_xml(text, path)
        self.model = ArticulatedModel(name=os.path.splitext(os.path.basename(path))[0], source=path)
        self.degree = True
        self.eulerseq = "xyz"
        self.autolimits = True
        self.inertiafromgeom = "auto"
        self.classes = {}   # class name -> {tag: attrib}

    # ---------------------------------------------------------------- errors and values
    def err(self, el: _El, msg: str):
        raise MJCFError(f"{self.path}:{el.line}: <{el.tag}>: {msg}")

    def vec(self, el, key, n=None, default=None, attrib=None):
        a = el.attrib if attrib is None else attrib
        if key not in a:
            return None if default is None else np.asarray(default, float)
        try:
            v = np.array([float(x) for x in a[key].split()])
        except ValueError:
            self.err(el, f"attribute {key}={a[key]!r} is not a list of numbers")
        if n is not None and (v.size not in (n if isinstance(n, tuple) else (n,))):
            self.err(el, f"attribute {key}={a[key]!r} needs {n} numbers, got {v.size}")
        if not np.all(np.isfinite(v)):
            self.err(el, f"attribute {key}={a[key]!r} is not finite")
        return v

    def num(self, el, key, default=None, attrib=None):
        v = self.vec(el, key, 1, attrib=attrib)
        return default if v is None else float(v[0])

    def boolean(self, el, key, default, attrib=None):
        a = el.attrib if attrib is None else attrib
        v = a.get(key)
        if v is None:
            return default
        if v not in ("true", "false", "auto"):
            self.err(el, f"attribute {key}={v!r} must be true, false or auto")
        return default if v == "auto" else v == "true"

    def angle(self, x):
        return x * math.pi / 180.0 if self.degree else x

    # ---------------------------------------------------------------- defaults
    def resolved(self, el, cls):
        """Attributes of el merged over its default class."""
        c = el.attrib.get("class", cls)
        if c not in self.classes:
            self.err(el, f"unknown default class {c!r}")
        tag = "motor" if el.tag == "general" and "general" not in self.classes[c] else el.tag
        base = dict(self.classes[c].get(tag, {}))
        base.update({k: v for k, v in el.attrib.items() if k != "class"})
        return base

    def parse_default(self, el, parent_cls):
        name = el.attrib.get("class", "main")
        if parent_cls is not None and name == "main":
            self.err(el, "a nested <default> needs a class name")
        inherited = {t: dict(a) for t, a in self.classes.get(parent_cls, {}).items()} if parent_cls else {}
        self.classes[name] = inherited
        for ch in el.children:
            if ch.tag == "default":
                continue
            if ch.tag not in _DEFAULTABLE:
                self.err(ch, "not supported inside <default>")
            self.classes[name].setdefault(ch.tag, {}).update(ch.attrib)
        for ch in el.children:
            if ch.tag == "default":
                self.parse_default(ch, name)

    # ---------------------------------------------------------------- orientation
    def orientation(self, el, a):
        keys = [k for k in ("quat", "euler", "axisangle", "zaxis", "xyaxes") if k in a]
        if len(keys) > 1:
            self.err(el, f"orientation given twice ({', '.join(keys)})")
        if not keys:
            return np.array([1.0, 0.0, 0.0, 0.0])
        k = keys[0]
        if k == "quat":
            q = self.vec(el, "quat", 4, attrib=a)
            n = np.linalg.norm(q)
            if n < 1e-12:
                self.err(el, "quat has zero norm")
            return q / n
        if k == "axisangle":
            v = self.vec(el, "axisangle", 4, attrib=a)
            if np.linalg.norm(v[:3]) < 1e-12:
                self.err(el, "axisangle has a zero axis")
            return axis_angle_quat(v[:3], self.angle(v[3]))
        if k == "zaxis":
            return _z2quat(self.vec(el, "zaxis", 3, attrib=a))
        if k == "xyaxes":
            v = self.vec(el, "xyaxes", 6, attrib=a)
            x = v[:3] / np.linalg.norm(v[:3])
            y = v[3:] - x * (x @ v[3:])
            y /= np.linalg.norm(y)
            z = np.cross(x, y)
            return _mat2quat(np.stack([x, y, z], 1))
        v = self.vec(el, "euler", 3, attrib=a)
        if self.eulerseq != "xyz":
            self.err(el, f"eulerseq={self.eulerseq!r} is not supported (only xyz)")
        q = np.array([1.0, 0.0, 0.0, 0.0])
        for i, ang in enumerate(v):
            axis = np.zeros(3)
            axis[i] = 1.0
            q = quat_mul(q, axis_angle_quat(axis, self.angle(ang)))
        return q

    # ---------------------------------------------------------------- top level
    def load(self) -> ArticulatedModel:
        r = self.root
        if r.tag != "mujoco":
            self.err(r, "the root element must be <mujoco>")
        self.classes["main"] = {}
        for ch in r.children:
            if ch.tag == "compiler":
                for k, v in ch.attrib.items():
                    if k == "angle":
                        if v not in ("degree", "radian"):
                            self.err(ch, f"angle={v!r} must be degree or radian")
                        self.degree = v == "degree"
                    elif k == "eulerseq":
                        self.eulerseq = v
                    elif k == "autolimits":
                        self.autolimits = v == "true"
                    elif k == "inertiafromgeom":
                        self.inertiafromgeom = v
                    elif k in ("coordinate",):
                        if v != "local":
                            self.err(ch, "only coordinate='local' is supported")
                    elif k in ("meshdir", "texturedir", "assetdir", "balanceinertia", "boundmass", "boundinertia",
                               "settotalmass", "strippath", "discardvisual", "fitaabb", "usethread", "exactmeshinertia"):
                        pass
                    else:
                        self.err(ch, f"attribute {k!r} is not supported")
            elif ch.tag == "option":
                self.model.timestep = self.num(ch, "timestep", self.model.timestep)
                gvec = self.vec(ch, "gravity", 3)
                if gvec is not None:
                    self.model.gravity = gvec
                integ = ch.attrib.get("integrator", "Euler")
                if integ != "Euler":
                    self.err(ch, f"integrator={integ!r}: only Euler (semi-implicit) is simulated")
            elif ch.tag == "default":
                self.parse_default(ch, None)
        self.model.timestep = float(self.model.timestep)
        for ch in r.children:
            if ch.tag in ("compiler", "option", "default") or ch.tag in _IGNORED_TOP:
                if ch.tag in ("tendon", "equality") and ch.children:
                    self.err(ch.children[0], f"<{ch.tag}> elements are not supported")
                continue
            if ch.tag == "worldbody":
                self.worldbody(ch)
            elif ch.tag == "actuator":
                pass
            else:
                self.err(ch, "element not supported by the mbmix-taichi MJCF subset")
        for ch in r.children:
            if ch.tag == "actuator":
                self.actuators(ch)
        self.model.finalize()
        self.check()
        return self.model

    def worldbody(self, el):
        for ch in el.children:
            if ch.tag == "geom":
                a = self.resolved(ch, "main")
                t = a.get("type", "sphere")
                if t != "plane":
                    self.err(ch, f"only plane geoms may be attached to the world (got type={t!r})")
                pos = self.vec(ch, "pos", 3, [0, 0, 0], attrib=a)
                q = self.orientation(ch, a)
                if abs(abs(quat_to_mat(q)[2, 2]) - 1.0) > 1e-9:
                    self.err(ch, "only horizontal ground planes are supported")
                if self.model.ground is not None:
                    self.err(ch, "only one ground plane is supported")
                self.model.ground = float(pos[2])
                size = self.vec(ch, "size", (1, 2, 3), [0, 0, 0], attrib=a)
                self.model.geoms.append(_geom(ch.attrib.get("name", "ground"), "plane", 0, np.resize(size, 3), pos, q,
                                              self.rgba(ch, a), True))
                self.model.bodies[0].geoms.append(len(self.model.geoms) - 1)
            elif ch.tag == "body":
                self.body(ch, 0, "main")
            elif ch.tag in ("site", "camera", "light"):
                continue
            else:
                self.err(ch, "not supported in <worldbody>")

    def rgba(self, el, a):
        return self.vec(el, "rgba", 4, [0.8, 0.6, 0.4, 1.0], attrib=a)

    def body(self, el, parent, cls):
        m = self.model
        cls = el.attrib.get("childclass", cls)
        if cls not in self.classes:
            self.err(el, f"unknown childclass {cls!r}")
        for k in el.attrib:
            if k not in ("name", "pos", "quat", "euler", "axisangle", "zaxis", "xyaxes", "childclass", "mocap", "gravcomp"):
                self.err(el, f"attribute {k!r} is not supported")
        if el.attrib.get("mocap", "false") == "true":
            self.err(el, "mocap bodies are not supported")
        pos = self.vec(el, "pos", 3, [0, 0, 0])
        quat = self.orientation(el, el.attrib)
        name = el.attrib.get("name", f"body{len(m.bodies)}")
        bi = m.add_body(name, parent, pos, quat)
        inertial = None
        geoms = []
        for ch in el.children:
            if ch.tag == "joint":
                self.joint(ch, bi, cls)
            elif ch.tag == "freejoint":
                if parent != 0:
                    self.err(ch, "a free joint is only allowed in a body attached to the world")
                m.add_joint(bi, "free", name=ch.attrib.get("name", f"{name}_free"))
            elif ch.tag == "geom":
                geoms.append(self.geom(ch, bi, cls))
            elif ch.tag == "inertial":
                if inertial is not None:
                    self.err(ch, "a body has at most one <inertial>")
                inertial = ch
            elif ch.tag in ("site", "camera", "light"):
                continue
            elif ch.tag == "body":
                continue
            else:
                self.err(ch, "not supported in <body>")
        jtypes = [m.joints[j].type for j in m.bodies[bi].joints]
        if "free" in jtypes and len(jtypes) > 1:
            self.err(el, "a body with a free joint cannot have other joints")
        if "free" in jtypes and parent != 0:
            self.err(el, "a free joint is only allowed in a body attached to the world")
        self.inertia(el, bi, inertial, geoms)
        for ch in el.children:
            if ch.tag == "body":
                self.body(ch, bi, cls)

    def joint(self, el, bi, cls):
        a = self.resolved(el, cls)
        for k in a:
            if k not in ("name", "type", "axis", "pos", "range", "limited", "damping", "stiffness", "springref",
                         "armature", "ref", "solreflimit", "solimplimit", "frictionloss", "margin", "user",
                         "group", "solref", "solimp"):
                self.err(el, f"attribute {k!r} is not supported")
        if float(a.get("frictionloss", "0") or 0) != 0.0:
            self.err(el, "frictionloss is not supported")
        t = a.get("type", "hinge")
        if t == "ball":
            self.err(el, "ball joints are not supported (use three hinges)")
        if t not in ("hinge", "slide", "free"):
            self.err(el, f"joint type {t!r} is not supported")
        name = a.get("name", f"joint{len(self.model.joints)}")
        if t == "free":
            if self.model.bodies[bi].parent != 0:
                self.err(el, "a free joint is only allowed in a body attached to the world")
            self.model.add_joint(bi, "free", name=name)
            return
        axis = self.vec(el, "axis", 3, [0, 0, 1], attrib=a)
        if np.linalg.norm(axis) < 1e-12:
            self.err(el, "axis has zero length")
        rng = self.vec(el, "range", 2, attrib=a)
        limited = self.boolean(el, "limited", None, attrib=a)
        if limited is None:
            limited = rng is not None and self.autolimits
        if limited:
            if rng is None:
                self.err(el, "limited='true' needs a range")
            if rng[0] >= rng[1]:
                self.err(el, f"range {rng.tolist()} is empty")
            if t == "hinge":
                rng = np.array([self.angle(rng[0]), self.angle(rng[1])])
        ang = self.angle if t == "hinge" else (lambda x: x)
        self.model.add_joint(bi, t, name=name, axis=axis, pos=self.vec(el, "pos", 3, [0, 0, 0], attrib=a),
                             range=(float(rng[0]), float(rng[1])) if limited else None,
                             damping=self.num(el, "damping", 0.0, attrib=a),
                             stiffness=self.num(el, "stiffness", 0.0, attrib=a),
                             springref=ang(self.num(el, "springref", 0.0, attrib=a)),
                             armature=self.num(el, "armature", 0.0, attrib=a),
                             ref=ang(self.num(el, "ref", 0.0, attrib=a)))
        for k in ("damping", "stiffness", "armature"):
            if getattr(self.model.joints[-1], k) < 0:
                self.err(el, f"{k} must be >= 0")

    def geom(self, el, bi, cls):
        a = self.resolved(el, cls)
        for k in a:
            if k not in ("name", "type", "size", "pos", "quat", "euler", "axisangle", "zaxis", "xyaxes", "fromto",
                         "density", "mass", "rgba", "contype", "conaffinity", "condim", "friction", "solref", "solimp",
                         "margin", "gap", "material", "group", "priority", "solmix", "user", "shellinertia"):
                self.err(el, f"attribute {k!r} is not supported")
        t = a.get("type", "sphere")
        if t not in ("sphere", "capsule", "box", "cylinder"):
            self.err(el, f"geom type {t!r} is not supported in bodies (sphere, capsule, box, cylinder)")
        size = self.vec(el, "size", (1, 2, 3), attrib=a)
        need = {"sphere": 1, "capsule": 1 if "fromto" in a else 2, "cylinder": 1 if "fromto" in a else 2, "box": 3}[t]
        if size is None or size.size < need:
            self.err(el, f"a {t} needs {need} size value(s)")
        if np.any(size[:need] <= 0):
            self.err(el, f"size {size.tolist()} must be positive")
        if "fromto" in a:
            if t not in ("capsule", "cylinder"):
                self.err(el, "fromto is only supported for capsules and cylinders")
            ft = self.vec(el, "fromto", 6, attrib=a)
            d = ft[3:] - ft[:3]
            L = np.linalg.norm(d)
            if L < 1e-12:
                self.err(el, "fromto has zero length")
            pos = 0.5 * (ft[:3] + ft[3:])
            quat = _z2quat(d)
            size = np.array([size[0], 0.5 * L, 0.0])
        else:
            pos = self.vec(el, "pos", 3, [0, 0, 0], attrib=a)
            quat = self.orientation(el, a)
            size = np.resize(np.concatenate([size, np.zeros(3)])[:3], 3)
        contact = not (a.get("contype", "1") == "0" and a.get("conaffinity", "1") == "0")
        gm = _geom(a.get("name", f"geom{len(self.model.geoms)}"), t, bi, size, pos, quat, self.rgba(el, a), contact)
        mass = self.num(el, "mass", None, attrib=a)
        density = self.num(el, "density", 1000.0, attrib=a)
        self.model.geoms.append(gm)
        self.model.bodies[bi].geoms.append(len(self.model.geoms) - 1)
        return gm, mass, density

    def inertia(self, el, bi, inertial, geoms):
        b = self.model.bodies[bi]
        use_inertial = inertial is not None and self.inertiafromgeom != "true"
        if use_inertial:
            ine = inertial
            for k in ine.attrib:
                if k not in ("pos", "mass", "diaginertia", "fullinertia", "quat", "euler", "axisangle", "zaxis", "xyaxes"):
                    self.err(ine, f"attribute {k!r} is not supported")
            mass = self.num(ine, "mass")
            pos = self.vec(ine, "pos", 3)
            if mass is None or pos is None:
                self.err(ine, "<inertial> needs pos and mass")
            if mass < 0:
                self.err(ine, "mass must be >= 0")
            if "fullinertia" in ine.attrib:
                f = self.vec(ine, "fullinertia", 6)
                I = np.array([[f[0], f[3], f[4]], [f[3], f[1], f[5]], [f[4], f[5], f[2]]])
            elif "diaginertia" in ine.attrib:
                R = quat_to_mat(self.orientation(ine, ine.attrib))
                I = R @ np.diag(self.vec(ine, "diaginertia", 3)) @ R.T
            else:
                self.err(ine, "<inertial> needs diaginertia or fullinertia")
            b.mass, b.ipos, b.inertia = float(mass), pos, I
            return
        if inertial is None and self.inertiafromgeom == "false":
            self.err(el, "inertiafromgeom='false' but the body has no <inertial>")
        tot = 0.0
        com = np.zeros(3)
        parts = []
        for gm, mass, density in geoms:
            m, Ig = _geom_inertia(gm, mass, density)
            R = quat_to_mat(gm.quat)
            parts.append((m, gm.pos, R @ Ig @ R.T))
            tot += m
            com += m * gm.pos
        if tot > 0:
            com /= tot
        I = np.zeros((3, 3))
        for m, p, Ig in parts:
            d = p - com
            I += Ig + m * (d @ d * np.eye(3) - np.outer(d, d))
        b.mass, b.ipos, b.inertia = tot, com, I

    def actuators(self, el):
        for ch in el.children:
            if ch.tag not in ("motor", "general"):
                self.err(ch, "only <motor> (and <general> motors) actuators are supported")
            a = self.resolved(ch, "main")
            for k in a:
                if k not in ("name", "joint", "gear", "ctrlrange", "ctrllimited", "forcelimited", "forcerange",
                             "gaintype", "gainprm", "biastype", "biasprm", "dyntype", "group", "user", "class"):
                    self.err(ch, f"attribute {k!r} is not supported")
            if a.get("gaintype", "fixed") != "fixed" or a.get("biastype", "none") != "none" or \
                    a.get("dyntype", "none") != "none":
                self.err(ch, "only gaintype='fixed', biastype='none', dyntype='none' are supported")
            gp = self.vec(ch, "gainprm", None, [1.0], attrib=a)
            if gp[0] != 1.0 or np.any(gp[1:] != 0):
                self.err(ch, "gainprm other than 1 is not supported")
            if self.boolean(ch, "forcelimited", False, attrib=a):
                self.err(ch, "forcelimited is not supported")
            jn = a.get("joint")
            if jn is None:
                self.err(ch, "needs a joint= transmission (site, tendon are not supported)")
            idx = [i for i, j in enumerate(self.model.joints) if j.name == jn]
            if not idx:
                self.err(ch, f"unknown joint {jn!r}")
            if self.model.joints[idx[0]].type == "free":
                self.err(ch, "actuating a free joint is not supported")
            gear = self.vec(ch, "gear", None, [1.0], attrib=a)
            if np.any(gear[1:] != 0):
                self.err(ch, "only the first gear component may be non-zero for a joint")
            cr = self.vec(ch, "ctrlrange", 2, attrib=a)
            lim = self.boolean(ch, "ctrllimited", None, attrib=a)
            if lim is None:
                lim = cr is not None and self.autolimits
            if lim and (cr is None or cr[0] >= cr[1]):
                self.err(ch, "ctrllimited needs a non-empty ctrlrange")
            self.model.add_actuator(idx[0], float(gear[0]), (float(cr[0]), float(cr[1])) if lim else None,
                                    name=a.get("name", f"act{len(self.model.actuators)}"))

    def check(self):
        m = self.model
        for bi, b in enumerate(m.bodies[1:], 1):
            # every dof needs inertia downstream
            sub = [bi] + [c for c in range(bi + 1, len(m.bodies)) if _is_desc(m, c, bi)]
            if b.joints and sum(m.bodies[c].mass for c in sub) <= 1e-12:
                raise MJCFError(f"{self.path}: body {b.name!r}: a moving body and its subtree need positive mass")


def _is_desc(m, c, a):
    while c > 0:
        c = m.bodies[c].parent
        if c == a:
            return True
    return False


def _geom(name, t, body, size, pos, quat, rgba, contact):
    from .articulated_model import Geom
    return Geom(name, t, body, np.asarray(size, float), np.asarray(pos, float), np.asarray(quat, float),
                np.asarray(rgba, float), contact)


def _geom_inertia(g, mass, density):
    """(mass, inertia about the geom centre in the geom frame) as MuJoCo's compiler."""
    r = g.size[0]
    if g.type == "sphere":
        vol = 4.0 / 3.0 * math.pi * r ** 3
        m = mass if mass is not None else density * vol
        I = np.eye(3) * 0.4 * m * r * r
    elif g.type == "box":
        x, y, z = g.size
        vol = 8.0 * x * y * z
        m = mass if mass is not None else density * vol
        I = np.diag([m / 3.0 * (y * y + z * z), m / 3.0 * (x * x + z * z), m / 3.0 * (x * x + y * y)])
    elif g.type == "cylinder":
        hl = g.size[1]
        vol = math.pi * r * r * 2 * hl
        m = mass if mass is not None else density * vol
        ixx = m * (3 * r * r + 4 * hl * hl) / 12.0
        I = np.diag([ixx, ixx, 0.5 * m * r * r])
    else:  # capsule
        hl = g.size[1]
        height = 2 * hl
        vcyl = math.pi * r * r * height
        vsph = 4.0 / 3.0 * math.pi * r ** 3
        vol = vcyl + vsph
        m = mass if mass is not None else density * vol
        mc = m * vcyl / vol
        ms = m * vsph / vol
        ixx = mc * (3 * r * r + height * height) / 12.0 + ms * (0.4 * r * r + height * height / 4.0 + 3.0 * height * r / 8.0)
        I = np.diag([ixx, ixx, mc * r * r / 2.0 + ms * 0.4 * r * r])
    return float(m), I


def _z2quat(vec):
    v = np.asarray(vec, float)
    v = v / np.linalg.norm(v)
    z = np.array([0.0, 0.0, 1.0])
    ax = np.cross(z, v)
    s = np.linalg.norm(ax)
    if s < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0]) if v[2] > 0 else np.array([0.0, 1.0, 0.0, 0.0])
    ang = math.atan2(s, v[2])
    return axis_angle_quat(ax / s, ang)


def _mat2quat(R):
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


def load_mjcf(path) -> ArticulatedModel:
    """Parse an MJCF file into an ArticulatedModel (raises MJCFError)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MJCFError(f"MJCF file {path!r} does not exist")
    return _Loader(path).load()
