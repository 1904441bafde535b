"""MJCF front end: MuJoCo's compiler reads the file, we read the compiled model.

``load_mjcf(path)`` compiles the file with ``mujoco`` (so defaults, ``<include>``,
``<frame>``, autolimits, fromto, every orientation form, ``settotalmass``, ``boundmass``,
``inertiafromgeom``, ``shellinertia`` ... mean exactly what they mean in MuJoCo) and copies
the compiled bodies, joints, geoms and motors into an :class:`ArticulatedModel`.

Every feature whose dynamics the articulated simulator does not reproduce is refused with an
:class:`MJCFError`, one line naming the file, the element (by name, and by line where the
light XML pre-pass can place it) and the feature. Refused: ball joints, free joints below
the top level or with stiffness or frictionloss, spatial tendons that wrap around geoms or
split at pulleys, actuators on spatial tendons, tendon frictionloss or armature, active
equality constraints, mocap bodies, flexes, plugins, the ellipsoid fluid model
(``geom fluidshape="ellipsoid"``), ``jnt actuatorgravcomp``, actuators other than a fixed-gain joint motor
(transmission joint or fixed tendon, ``dyntype="none"``, ``gaintype="fixed"``, ``biastype``
none or affine), ``eulerdamp`` disabled with damping present,
contact-enabled geoms our ground contact cannot model (mesh, sdf, hfield in a
moving body) when the model has a ground plane.

Simulated from MuJoCo's compiled values: masses, inertias (after every compiler option),
joint damping, stiffness, springref, armature (free joints included), ranges, ``ref``,
fixed tendons (stiffness with its dead band, damping, limits, tendon motors), spatial
tendons through sites (the same spring, damper and limit; the force pulls each straight
segment's end points),
motor gain, affine bias (position/velocity servos) and ``forcerange`` clipping,
``body gravcomp``, MuJoCo's inertia-box fluid forces
(``<option density viscosity wind>``), gravity and the ``<option><flag>``
switches gravity, contact, limit, constraint, spring, damper, actuation.

Warned (a :class:`MJCFWarning`, not refused), because they matter only elsewhere:
another integrator (RK4, implicit, implicitfast are simulated as semi-implicit Euler),
joint frictionloss (simulated smoothed, see ``ArticulatedModel.friction_v0``),
static world geometry other than one horizontal ground plane (our contact model collides
moving geoms with the ground plane only), inactive equality constraints.

Limits (documented, checked before MuJoCo compiles the file or the model is read). Nothing
is generated per model (one compiled kernel set reads every model as tables), so these bound
memory and run time, not compile time: files up to ``MAX_FILE_BYTES`` (read whole into
memory before parsing); XML nesting up to ``MAX_XML_DEPTH`` (refused here with a line
number; MuJoCo's XML reader stops at 500 with a less specific error); ``<body>`` nesting up to
``MAX_BODY_DEPTH``, at most ``MAX_BODIES`` bodies and ``MAX_DOFS`` degrees of freedom: each
env runs its bodies and dofs serially, keeps a dense nv x nv mass matrix in its workspace
(one per substep while a VJP or JVP replays the step), the mass matrix and its factor walk
every dof's ancestors (nv x depth work per substep), and a Jacobian takes nq + nv + nu probes.
The workspace's hard bound, 2**31 entries per launch (the kernels index it with 32-bit
integers), is checked per call by the simulator.
A model with no degree of freedom is refused (nothing to simulate).

The file is read as bytes and parsed by expat in the encoding it declares (UTF-8, UTF-16
with or without BOM, Latin-1, ...); files not in UTF-8 are transcoded before MuJoCo sees
them. Every walk over the XML and the model is iterative.
"""
from __future__ import annotations

import os
import re
import warnings
import xml.parsers.expat

import numpy as np

from mbmix_taichi.errors import MbmixError

from .articulated_model import ArticulatedModel, Geom, quat_to_mat

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_XML_DEPTH = 200
MAX_BODY_DEPTH = 128
MAX_BODIES = 256
MAX_DOFS = 256

_CONTACT_GEOMS = ("sphere", "capsule", "box", "cylinder", "ellipsoid")


class MJCFError(MbmixError, ValueError):
    """Unsupported or malformed MJCF: says which element, which line, and what is wrong."""


class MJCFWarning(UserWarning):
    """A model feature that is simulated differently or matters only elsewhere."""


# ----------------------------------------------------------------------------- XML pre-pass
class _Pre:
    """What the pre-pass learns: element lines by (group, name) and by document order."""

    def __init__(self):
        self.named = {}          # (group, name) -> line
        self.ordered = {}        # group -> [(line, enclosing body index)]
        self.includes = []
        self.nbody = 1
        self.has_frames = False


_GROUPS = {"body": "body", "joint": "joint", "freejoint": "joint", "geom": "geom"}


def _encoding(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if data.startswith(b"<\x00"):
        return "utf-16-le"
    if data.startswith(b"\x00<"):
        return "utf-16-be"
    m = re.match(rb"\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']", data)
    return m.group(1).decode("ascii").lower() if m else "utf-8"


def _prepass(data: bytes, where: str) -> _Pre:
    pre = _Pre()
    depth = 0
    body_stack = [0]
    in_default = 0
    in_section = []
    p = xml.parsers.expat.ParserCreate()

    def start(tag, attrib):
        nonlocal depth, in_default
        depth += 1
        if depth > MAX_XML_DEPTH:
            raise MJCFError(f"{where}:{p.CurrentLineNumber}: <{tag}>: XML nested deeper than {MAX_XML_DEPTH} "
                            f"elements (the documented limit)")
        line = p.CurrentLineNumber
        in_section.append(tag)
        if tag == "default":
            in_default += 1
        if tag == "include" and "file" in attrib:
            pre.includes.append(attrib["file"])
        if tag in ("frame", "attach", "replicate", "composite", "flexcomp"):
            pre.has_frames = True
        if in_default:
            return
        parent = in_section[-2] if len(in_section) >= 2 else None
        group = None
        if "worldbody" in in_section and tag in ("body", "joint", "freejoint", "geom"):
            group = _GROUPS[tag]
        elif parent == "actuator":
            group = "actuator"
        elif parent in ("tendon", "equality"):
            group = parent
        if group is None:
            return
        if group == "body":
            if len(body_stack) > MAX_BODY_DEPTH:
                raise MJCFError(f"{where}:{line}: <body>: bodies nested deeper than {MAX_BODY_DEPTH} levels "
                                f"(the documented limit MAX_BODY_DEPTH)")
            idx = pre.nbody
            pre.nbody += 1
            if pre.nbody > MAX_BODIES:
                raise MJCFError(f"{where}:{line}: <body>: more than {MAX_BODIES - 1} bodies "
                                f"(the documented limit MAX_BODIES)")
            pre.ordered.setdefault(group, []).append((line, body_stack[-1], tag))
            body_stack.append(idx)
        else:
            pre.ordered.setdefault(group, []).append((line, body_stack[-1], tag))
        if "name" in attrib:
            pre.named.setdefault((group, attrib["name"]), (line, tag))

    def end(tag):
        nonlocal depth, in_default
        depth -= 1
        in_section.pop()
        if tag == "default":
            in_default -= 1
        elif tag == "body" and not in_default:
            body_stack.pop()

    p.StartElementHandler = start
    p.EndElementHandler = end
    try:
        p.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise MJCFError(f"{where}: malformed XML at line {exc.lineno}: "
                        f"{xml.parsers.expat.ErrorString(exc.code)}") from None
    except (LookupError, UnicodeError, ValueError) as exc:
        raise MJCFError(f"{where}: cannot decode the file: {exc}") from None
    return pre


def _read(path: str) -> bytes:
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise MJCFError(f"MJCF file {path!r} cannot be read: {exc.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise MJCFError(f"{path}: {size} bytes, more than the documented limit of {MAX_FILE_BYTES} bytes")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise MJCFError(f"MJCF file {path!r} cannot be read: {exc.strerror}") from None


def _utf8(data: bytes, where: str) -> str | None:
    """The document as text to hand MuJoCo, or None if the file can be compiled as it is."""
    enc = _encoding(data)
    if enc in ("utf-8", "utf8", "us-ascii", "ascii"):
        try:
            data.decode("utf-8")
            return None
        except UnicodeDecodeError:
            raise MJCFError(f"{where}: the file declares (or defaults to) UTF-8 but is not valid UTF-8") from None
    try:
        text = data.decode(enc)
    except (LookupError, UnicodeError) as exc:
        raise MJCFError(f"{where}: cannot decode the file as {enc}: {exc}") from None
    text = text.lstrip("\ufeff")
    # drop the declaration (same line count): MuJoCo reads the text as UTF-8
    return re.sub(r"^\s*<\?xml[^>]*\?>", lambda m: "\n" * m.group(0).count("\n"), text, count=1)


# ----------------------------------------------------------------------------- compile
_MJ_ERR = re.compile(r"^(?:XML Error: )?(?:Error: )?(?:Schema violation: )?")


def _compile_error(exc: Exception, where: str) -> MJCFError:
    text = str(exc).strip()
    lines = [s.strip() for s in text.splitlines() if s.strip()]
    first = _MJ_ERR.sub("", lines[0]) if lines else text
    m = re.search(r"[Ll]ine(?: number=)? ?(\d+)", text)
    e = re.search(r"Element '(\w+)'", text) or re.search(r"XMLElement name=(\w+)", text) or \
        re.search(r" in (\w+)$", lines[0] if lines else "")
    name = re.search(r"Element name '([^']+)'", text)
    loc = f"{where}:{m.group(1)}" if m else where
    el = f"<{e.group(1)}{' name=' + repr(name.group(1)) if name else ''}>: " if e else ""
    return MJCFError(f"{loc}: {el}MuJoCo cannot compile the model: {first}")


def _compile(path: str, pre: _Pre, text: str | None):
    """Compile with MuJoCo; its compiler warnings become MJCFWarnings (not MUJOCO_LOG.TXT in the cwd)."""
    import mujoco
    caught = []
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda msg: caught.append(" ".join(str(msg).split())))
    try:
        return _compile_quiet(path, pre, text, mujoco)
    finally:
        mujoco.set_mju_user_warning(previous)
        for msg in caught:
            warnings.warn(f"{path}: MuJoCo: {msg}", MJCFWarning, stacklevel=3)


def _compile_quiet(path, pre, text, mujoco):
    try:
        if text is None:
            return mujoco.MjModel.from_xml_path(path)
        base = os.path.dirname(os.path.abspath(path))
        include = {}
        todo = list(pre.includes)
        while todo:
            rel = todo.pop()
            if rel in include:
                continue
            data = _read(os.path.join(base, rel))
            sub = _prepass(data, os.path.join(base, rel))
            t = _utf8(data, rel)
            include[rel] = data if t is None else t.encode("utf-8")
            todo.extend(sub.includes)
        spec = mujoco.MjSpec.from_string(text, include=include or None)
        spec.modelfiledir = base
        return spec.compile()
    except MJCFError:
        raise
    except Exception as exc:  # MuJoCo raises ValueError with a multi-line message
        raise _compile_error(exc, path) from None


# ----------------------------------------------------------------------------- the loader
class _Reader:
    def __init__(self, path: str, pre: _Pre, mm):
        self.path, self.pre, self.mm = path, pre, mm
        self.model = ArticulatedModel(name=os.path.splitext(os.path.basename(path))[0], source=path)

    def name(self, objtype, i, default):
        import mujoco
        n = mujoco.mj_id2name(self.mm, objtype, i)
        return n if n else default

    def where(self, group, i, name, bodyid=None):
        """'path:line: <tag name='x'>' for the i-th compiled element of a group."""
        hit = self.pre.named.get((group, name)) if name else None
        if hit is None and not name and not self.pre.has_frames:
            lst = self.pre.ordered.get(group, [])
            if i < len(lst) and (bodyid is None or lst[i][1] == bodyid):
                hit = (lst[i][0], lst[i][2])
        tag = hit[1] if hit else group
        label = f"<{tag} name={name!r}>" if name else f"<{tag}> #{i}"
        if group == "equality" and tag != group:   # <equality><tendon name=...>: not the tendon itself
            label = f"<equality>{label}"
        return f"{self.path}:{hit[0]}: {label}" if hit else f"{self.path}: {label}"

    def refuse(self, group, i, name, msg, bodyid=None):
        raise MJCFError(f"{self.where(group, i, name, bodyid)}: {msg}")

    def read(self) -> ArticulatedModel:
        import mujoco
        mm, m = self.mm, self.model
        T = mujoco.mjtObj
        dis = int(mm.opt.disableflags)
        D = mujoco.mjtDisableBit

        def off(bit):
            return bool(dis & int(bit))

        no_constraint = off(D.mjDSBL_CONSTRAINT)
        no_limit = no_constraint or off(D.mjDSBL_LIMIT)
        no_contact = no_constraint or off(D.mjDSBL_CONTACT)
        no_eq = no_constraint or off(D.mjDSBL_EQUALITY)
        no_fric = no_constraint or off(D.mjDSBL_FRICTIONLOSS)

        # -- global options
        if mm.opt.integrator not in (int(mujoco.mjtIntegrator.mjINT_EULER),):
            iname = mujoco.mjtIntegrator(mm.opt.integrator).name.replace("mjINT_", "")
            warnings.warn(f"{self.path}: <option integrator={iname!r}>: simulated as semi-implicit Euler "
                          f"(MuJoCo's integrator='Euler')", MJCFWarning, stacklevel=4)
        if mm.opt.density > 0 or mm.opt.viscosity > 0:
            if off(D.mjDSBL_SPRING) or off(D.mjDSBL_DAMPER):
                raise MJCFError(f"{self.path}: <flag spring/damper='disable'> with fluid forces: which passive "
                                f"forces remain is not simulated")
            for g in range(mm.ngeom):
                if mm.geom_fluid[g, 0] > 0:
                    self.refuse("geom", g, self.name(T.mjOBJ_GEOM, g, ""), "fluidshape='ellipsoid' (the "
                                "ellipsoid fluid model) is not simulated; the default inertia-box model is",
                                bodyid=int(mm.geom_bodyid[g]))
            m.fluid = (float(mm.opt.density), float(mm.opt.viscosity), np.array(mm.opt.wind, float))
        if mm.nflex:
            raise MJCFError(f"{self.path}: <flex>/<flexcomp>: deformable flex objects are not simulated")
        if mm.nplugin:
            raise MJCFError(f"{self.path}: <plugin>: engine plugins are not simulated")
        tendon_ok = {}
        spatial_ok = []
        for t in range(mm.ntendon):
            tn = self.name(T.mjOBJ_TENDON, t, "")
            limited = bool(mm.tendon_limited[t]) and not no_limit
            acted = bool(np.any((mm.actuator_trntype == int(mujoco.mjtTrn.mjTRN_TENDON)) & (mm.actuator_trnid[:, 0] == t)))
            stiff = 0.0 if off(D.mjDSBL_SPRING) else float(mm.tendon_stiffness[t])
            damp = 0.0 if off(D.mjDSBL_DAMPER) else float(mm.tendon_damping[t])
            if not (limited or acted or stiff or damp or mm.tendon_armature[t] or
                    (mm.tendon_frictionloss[t] and not no_fric)):
                continue   # no dynamics: only a length for sensors or display
            wraps = range(int(mm.tendon_adr[t]), int(mm.tendon_adr[t] + mm.tendon_num[t]))
            if mm.tendon_armature[t] or (mm.tendon_frictionloss[t] and not no_fric):
                self.refuse("tendon", t, tn, "tendon armature and frictionloss are not simulated")
            kinds = {int(mm.wrap_type[w]) for w in wraps}
            if kinds != {int(mujoco.mjtWrap.mjWRAP_JOINT)}:
                if kinds != {int(mujoco.mjtWrap.mjWRAP_SITE)}:
                    self.refuse("tendon", t, tn, "spatial tendons that wrap around geoms or split at pulleys are not "
                                "simulated (site-to-site paths are)")
                if acted:
                    self.refuse("tendon", t, tn, "actuators on spatial tendons are not simulated (on fixed tendons "
                                "and joints they are)")
                spatial_ok.append(dict(name=tn or f"tendon{t}", stiffness=stiff, damping=damp,
                                       sites=[(int(mm.site_bodyid[mm.wrap_objid[w]]),
                                               mm.site_pos[mm.wrap_objid[w]].copy()) for w in wraps],
                                       lengthspring=(float(mm.tendon_lengthspring[t, 0]),
                                                     float(mm.tendon_lengthspring[t, 1])),
                                       range=(float(mm.tendon_range[t, 0]), float(mm.tendon_range[t, 1]))
                                       if limited else None))
                continue
            tendon_ok[t] = dict(name=tn or f"tendon{t}", stiffness=stiff, damping=damp,
                                joints=[(int(mm.wrap_objid[w]), float(mm.wrap_prm[w])) for w in wraps],
                                lengthspring=(float(mm.tendon_lengthspring[t, 0]), float(mm.tendon_lengthspring[t, 1])),
                                range=(float(mm.tendon_range[t, 0]), float(mm.tendon_range[t, 1])) if limited else None)
        for e in range(mm.neq):
            n = self.name(T.mjOBJ_EQUALITY, e, "")
            if no_eq:
                continue
            if mm.eq_active0[e]:
                self.refuse("equality", e, n, "equality constraints are not simulated (they need a "
                                                    "constraint solver)")
            warnings.warn(f"{self.where('equality', e, n)}: inactive equality constraint ignored (nothing "
                          f"activates it here)", MJCFWarning, stacklevel=4)
        if off(D.mjDSBL_EULERDAMP) and np.any(mm.dof_damping) and not off(D.mjDSBL_DAMPER):
            raise MJCFError(f"{self.path}: <flag eulerdamp='disable'>: explicit joint damping is not simulated "
                            f"(damping is implicit, as MuJoCo's Euler default)")
        m.timestep = float(mm.opt.timestep)
        m.gravity = np.zeros(3) if off(D.mjDSBL_GRAVITY) else np.array(mm.opt.gravity, float)
        if mm.nv == 0:
            raise MJCFError(f"{self.path}: the model has no joints (no degree of freedom): nothing to simulate")
        if mm.nv > MAX_DOFS:
            raise MJCFError(f"{self.path}: {mm.nv} degrees of freedom, more than the documented limit "
                            f"MAX_DOFS={MAX_DOFS}")

        # -- bodies (MuJoCo's order is ours: depth first, parents before children)
        for b in range(1, mm.nbody):
            bn = self.name(T.mjOBJ_BODY, b, f"body{b}")
            if mm.body_mocapid[b] >= 0:
                self.refuse("body", b - 1, bn, "mocap bodies are not simulated")
            R = quat_to_mat(mm.body_iquat[b])
            bi = m.add_body(bn, int(mm.body_parentid[b]), mm.body_pos[b].copy(), mm.body_quat[b].copy(),
                            float(mm.body_mass[b]), mm.body_ipos[b].copy(), R @ np.diag(mm.body_inertia[b]) @ R.T)
            m.bodies[bi].gravcomp = float(mm.body_gravcomp[b])
            m.bodies[bi].iquat = mm.body_iquat[b].copy()
        depth = np.zeros(mm.nbody, int)
        for b in range(1, mm.nbody):
            depth[b] = depth[mm.body_parentid[b]] + 1
        if mm.nbody > MAX_BODIES or depth.max() > MAX_BODY_DEPTH:
            raise MJCFError(f"{self.path}: {mm.nbody - 1} bodies nested {depth.max()} deep; the documented limits "
                            f"are MAX_BODIES={MAX_BODIES}, MAX_BODY_DEPTH={MAX_BODY_DEPTH}")

        # -- joints
        smoothed = []
        jtypes = {int(mujoco.mjtJoint.mjJNT_FREE): "free", int(mujoco.mjtJoint.mjJNT_BALL): "ball",
                  int(mujoco.mjtJoint.mjJNT_SLIDE): "slide", int(mujoco.mjtJoint.mjJNT_HINGE): "hinge"}
        for j in range(mm.njnt):
            t = jtypes[int(mm.jnt_type[j])]
            b = int(mm.jnt_bodyid[j])
            jn = self.name(T.mjOBJ_JOINT, j, "")
            d0, nvj = int(mm.jnt_dofadr[j]), (6 if t == "free" else 1)

            def bad(msg):
                self.refuse("joint", j, jn, msg, bodyid=b)

            if t == "ball":
                bad("ball joints are not simulated (use three hinges)")
            if mm.jnt_actgravcomp[j] and np.any(mm.body_gravcomp):
                bad("actuatorgravcomp is not simulated")
            fl = 0.0 if no_fric else mm.dof_frictionloss[d0:d0 + nvj]
            if np.any(fl) and t == "free":
                bad("frictionloss on a free joint is not simulated")
            if np.any(fl):
                smoothed.append(jn or f"#{j}")
            damping = 0.0 if off(D.mjDSBL_DAMPER) else mm.dof_damping[d0:d0 + nvj]
            arm = mm.dof_armature[d0:d0 + nvj]
            if np.ptp(damping) or np.ptp(arm):
                bad("per-dof damping or armature that differs within a joint is not simulated")
            stiff = 0.0 if off(D.mjDSBL_SPRING) else float(mm.jnt_stiffness[j])
            default = f"{m.bodies[b].name}_free" if t == "free" else f"joint{j}"
            if t == "free":
                if mm.body_parentid[b] != 0:
                    bad("a free joint is only simulated in a body attached to the world")
                if stiff:
                    bad("stiffness on a free joint is not simulated")
                if len(m.bodies[b].joints):
                    bad("a body with a free joint cannot have other joints")
                m.add_joint(b, "free", name=jn or default, damping=float(np.max(damping)), armature=float(arm[0]))
                continue
            if any(m.joints[k].type == "free" for k in m.bodies[b].joints):
                bad("a body with a free joint cannot have other joints")
            q0 = int(mm.jnt_qposadr[j])
            limited = bool(mm.jnt_limited[j]) and not no_limit
            m.add_joint(b, t, name=jn or default, axis=mm.jnt_axis[j].copy(), pos=mm.jnt_pos[j].copy(),
                        range=(float(mm.jnt_range[j, 0]), float(mm.jnt_range[j, 1])) if limited else None,
                        damping=float(np.max(damping)), stiffness=stiff, springref=float(mm.qpos_spring[q0]),
                        armature=float(arm[0]), ref=float(mm.qpos0[q0]), frictionloss=float(np.max(fl)))
        m.finalize()
        from .articulated_model import SpatialTendon, Tendon
        tendon_index = {}
        for t, kw in tendon_ok.items():
            tendon_index[t] = len(m.tendons)
            m.tendons.append(Tendon(**kw))
        m.spatial_tendons = [SpatialTendon(**kw) for kw in spatial_ok]
        if smoothed:
            warnings.warn(f"{self.path}: joint frictionloss on {', '.join(smoothed)}: simulated as smoothed dry "
                          f"friction -fl * qvel / sqrt(qvel^2 + {m.friction_v0:g}^2), implicit like damping "
                          f"(MuJoCo's constraint-based friction differs near zero velocity)", MJCFWarning,
                          stacklevel=4)

        # -- geoms
        import mujoco as mj
        d = mj.MjData(mm)
        mj.mj_kinematics(mm, d)
        gtypes = {int(v): k.replace("mjGEOM_", "").lower() for k, v in mj.mjtGeom.__members__.items()}
        planes, static = [], []
        for g in range(mm.ngeom):
            t = gtypes[int(mm.geom_type[g])]
            b = int(mm.geom_bodyid[g])
            gn = self.name(T.mjOBJ_GEOM, g, "")
            collides = bool(mm.geom_contype[g] or mm.geom_conaffinity[g]) and not no_contact
            moving = bool(m.chain_dofs(b)) if b else False
            rgba = mm.mat_rgba[mm.geom_matid[g]] if mm.geom_matid[g] >= 0 else mm.geom_rgba[g]
            geom = Geom(gn or f"geom{g}", t, b, mm.geom_size[g].copy(), mm.geom_pos[g].copy(), mm.geom_quat[g].copy(),
                        np.array(rgba, float), collides)
            if not moving:
                if collides and t == "plane" and abs(abs(d.geom_xmat[g][8]) - 1.0) < 1e-9:
                    planes.append((g, geom, float(d.geom_xpos[g][2])))
                elif collides:
                    static.append(gn or f"#{g} ({t})")
            elif collides and t not in _CONTACT_GEOMS:
                self.refuse("geom", g, gn, f"ground contact of {t} geoms is not simulated (only sphere, capsule, "
                            f"box, cylinder, ellipsoid); set contype='0' conaffinity='0' to keep it visual only", bodyid=b)
            m.geoms.append(geom)
            m.bodies[b].geoms.append(len(m.geoms) - 1)
        if planes:
            g, geom, z = planes[0]
            m.ground = z
            static += [p[1].name for p in planes[1:]]
        if static:
            warnings.warn(f"{self.path}: static world geometry not collided with (the contact model collides moving "
                          f"geoms with one horizontal ground plane only): {', '.join(static)}", MJCFWarning,
                          stacklevel=4)

        # -- actuators
        A = mujoco
        no_act = off(D.mjDSBL_ACTUATION)
        for a in range(mm.nu):
            an = self.name(T.mjOBJ_ACTUATOR, a, "")

            def bad(msg):
                self.refuse("actuator", a, an, msg)

            tendon = None
            if mm.actuator_trntype[a] == int(A.mjtTrn.mjTRN_TENDON):
                tendon = tendon_index[int(mm.actuator_trnid[a, 0])]
            elif mm.actuator_trntype[a] != int(A.mjtTrn.mjTRN_JOINT):
                bad("only joint and fixed-tendon transmissions are simulated (not site, body, slider-crank)")
            if mm.actuator_dyntype[a] != int(A.mjtDyn.mjDYN_NONE):
                bad("actuator dynamics (dyntype other than none: filters, integrators, muscles) are not simulated")
            if mm.actuator_gaintype[a] != int(A.mjtGain.mjGAIN_FIXED):
                bad("only gaintype='fixed' is simulated")
            affine = mm.actuator_biastype[a] == int(A.mjtBias.mjBIAS_AFFINE)
            if mm.actuator_biastype[a] not in (int(A.mjtBias.mjBIAS_NONE), int(A.mjtBias.mjBIAS_AFFINE)):
                bad("only biastype none or affine (position/velocity servos) is simulated")
            if np.any(mm.actuator_gear[a, 1:]):
                bad("only the first gear component is simulated for a joint")
            ji = -1 if tendon is not None else int(mm.actuator_trnid[a, 0])
            if tendon is None and m.joints[ji].type == "free":
                bad("actuating a free joint is not simulated")
            gain = float(mm.actuator_gainprm[a, 0])
            lim = bool(mm.actuator_ctrllimited[a])
            cr = (float(mm.actuator_ctrlrange[a, 0]), float(mm.actuator_ctrlrange[a, 1])) if lim else None
            bias = tuple(float(x) for x in mm.actuator_biasprm[a, :3]) if affine and np.any(mm.actuator_biasprm[a, :3]) \
                else None
            frange = None
            if mm.actuator_forcelimited[a]:
                lo, hi = (float(x) for x in mm.actuator_forcerange[a])
                f = sorted((gain * cr[0], gain * cr[1])) if cr else None
                if bias is not None or f is None or f[0] < lo - 1e-12 or f[1] > hi + 1e-12:
                    frange = (lo, hi)   # it can clip: simulated
            gear = 0.0 if no_act else float(mm.actuator_gear[a, 0])
            if bias is None and frange is None:
                m.add_actuator(ji, gear * gain, cr, name=an or f"act{a}", tendon=tendon)
            else:
                m.add_actuator(ji, gear, cr, name=an or f"act{a}", tendon=tendon)
                m.actuators[-1].gain, m.actuators[-1].bias, m.actuators[-1].forcerange = gain, bias, frange
        m.finalize()
        self.check()
        return m

    def check(self):
        m = self.model
        sub = [b.mass for b in m.bodies]
        for b in range(len(m.bodies) - 1, 0, -1):   # subtree masses, children before parents
            p = m.bodies[b].parent
            if p > 0:
                sub[p] += sub[b]
        for b in range(1, len(m.bodies)):
            if m.bodies[b].joints and sub[b] <= 1e-12:
                self.refuse("body", b - 1, m.bodies[b].name, "a moving body and its subtree need positive mass")


def load_mjcf(path) -> ArticulatedModel:
    """Compile an MJCF file with MuJoCo into an ArticulatedModel (raises MJCFError; warns MJCFWarning)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MJCFError(f"MJCF file {path!r} " + ("is a folder, not a file" if os.path.isdir(path) else "does not exist"))
    data = _read(path)
    pre = _prepass(data, path)
    text = _utf8(data, path)
    mm = _compile(path, pre, text)
    return _Reader(path, pre, mm).read()
