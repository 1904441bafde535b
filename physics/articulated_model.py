"""The articulated model: bodies in a tree, their joints, geoms and motors (numpy, float64).

Conventions are MuJoCo's, so that states can be compared with MuJoCo directly:

* bodies are numbered depth first (parents before children), body 0 is the world;
* ``qpos`` / ``qvel`` are the joints' coordinates in body order, joints in the order they
  appear in their body: hinge and slide use one coordinate, a free joint uses
  ``pos (3), quat (w, x, y, z)`` in qpos and ``linear velocity (world frame), angular
  velocity (body frame)`` in qvel;
* a joint's ``pos`` and ``axis`` are in its body's frame; a hinge rotates the body about
  the axis through ``pos``, a slide translates it along the axis; ``ref`` is the
  coordinate value of the body's modelled pose;
* quaternions are (w, x, y, z).

Built by :mod:`mbmix_taichi.physics.mjcf` from MJCF files, or directly in Python.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Joint:
    name: str
    type: str                      # "hinge" | "slide" | "free"
    body: int
    axis: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    pos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    range: tuple | None = None     # (lower, upper) if limited
    damping: float = 0.0
    stiffness: float = 0.0
    springref: float = 0.0
    armature: float = 0.0
    #: dry friction [N or N m], simulated smoothed (see ArticulatedModel.friction_v0)
    frictionloss: float = 0.0
    ref: float = 0.0
    qadr: int = 0
    dadr: int = 0

    @property
    def nq(self):
        return 7 if self.type == "free" else 1

    @property
    def nv(self):
        return 6 if self.type == "free" else 1


@dataclass
class Geom:
    name: str
    type: str                      # "sphere" | "capsule" | "box" | "plane" | "cylinder" | "ellipsoid"
                                   # (other MuJoCo types only as geometry without contact)
    body: int
    size: np.ndarray
    pos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    quat: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))
    rgba: np.ndarray = field(default_factory=lambda: np.array([0.8, 0.6, 0.4, 1.0]))
    contact: bool = True           # takes part in ground contact


@dataclass
class Body:
    name: str
    parent: int
    pos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    quat: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))
    mass: float = 0.0
    ipos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    inertia: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))  # about com, body frame
    gravcomp: float = 0.0          # MuJoCo's gravity compensation: gravity acts on (1 - gravcomp) * mass
    #: principal axes of the inertia (quaternion in the body frame), as MuJoCo's body_iquat; used
    #: by the fluid model, whose box dimensions follow these axes
    iquat: np.ndarray | None = None
    joints: list = field(default_factory=list)   # joint indices
    geoms: list = field(default_factory=list)    # geom indices


@dataclass
class Actuator:
    name: str
    joint: int                      # the driven joint (-1 if it drives a tendon)
    gear: float = 1.0
    ctrlrange: tuple | None = None  # (lo, hi) if ctrllimited
    tendon: int | None = None       # the driven fixed tendon, if any
    #: MuJoCo's affine servo (position/velocity actuators): with bias = (b0, b1, b2) the
    #: force along the transmission is gain * ctrl + b0 + b1 * length + b2 * velocity, with
    #: length = gear * q (or gear * tendon length); then clipped to forcerange if given, and
    #: the joint force is gear * force. Without bias and forcerange: gear * ctrl as above.
    gain: float = 1.0
    bias: tuple | None = None
    forcerange: tuple | None = None


@dataclass
class Tendon:
    """A fixed tendon: length L = sum(coef * q) over hinge/slide joints (MuJoCo's semantics).

    Force along it: stiffness outside the dead band ``lengthspring`` (lo, hi), damping
    (explicit, as MuJoCo's Euler), the limit penalty when ``range`` is set; each joint gets
    coef * force."""
    name: str
    joints: list                    # [(joint index, coef)]
    stiffness: float = 0.0
    damping: float = 0.0
    lengthspring: tuple = (0.0, 0.0)
    range: tuple | None = None


@dataclass
class SpatialTendon:
    """A spatial tendon through sites only (no wrapping geoms, no pulleys): length L = the sum
    of the straight segments between consecutive sites (MuJoCo's semantics). The force along
    it (stiffness outside the dead band, explicit damping, the limit penalty when ``range``
    is set) pulls each segment's end points along the segment."""
    name: str
    sites: list                     # [(body index, position in the body frame [3])]
    stiffness: float = 0.0
    damping: float = 0.0
    lengthspring: tuple = (0.0, 0.0)
    range: tuple | None = None


@dataclass
class ArticulatedModel:
    name: str = "model"
    bodies: list = field(default_factory=lambda: [Body("world", -1)])
    joints: list = field(default_factory=list)
    geoms: list = field(default_factory=list)
    actuators: list = field(default_factory=list)
    tendons: list = field(default_factory=list)
    spatial_tendons: list = field(default_factory=list)
    gravity: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, -9.81]))
    timestep: float = 0.002
    #: height of the ground plane (z), None if the model has no plane
    ground: float | None = None
    #: MuJoCo's inertia-box fluid model: (density, viscosity, wind [3]), None for none
    fluid: tuple | None = None
    #: joint frictionloss is smoothed: f = -frictionloss * qvel / sqrt(qvel^2 + v0^2), with the
    #: damper it equals treated implicitly (MuJoCo's dry friction is a constraint instead)
    friction_v0: float = 0.01
    source: str = ""

    # ------------------------------------------------------------------ building
    def add_body(self, name, parent, pos=(0, 0, 0), quat=(1, 0, 0, 0), mass=0.0, ipos=(0, 0, 0), inertia=None):
        b = Body(name, parent, np.asarray(pos, float), np.asarray(quat, float), float(mass), np.asarray(ipos, float),
                 np.zeros((3, 3)) if inertia is None else np.asarray(inertia, float).reshape(3, 3) if np.size(inertia) == 9
                 else np.diag(np.asarray(inertia, float)))
        self.bodies.append(b)
        return len(self.bodies) - 1

    def add_joint(self, body, type="hinge", name=None, **kw):
        j = Joint(name or f"joint{len(self.joints)}", type, body, **{k: (np.asarray(v, float) if k in ("axis", "pos") else v)
                                                                      for k, v in kw.items()})
        if type != "free":
            j.axis = j.axis / np.linalg.norm(j.axis)
        self.joints.append(j)
        self.bodies[body].joints.append(len(self.joints) - 1)
        self.finalize()
        return len(self.joints) - 1

    def add_geom(self, body, type, size, name=None, **kw):
        g = Geom(name or f"geom{len(self.geoms)}", type, body, np.asarray(size, float),
                 **{k: np.asarray(v, float) if k in ("pos", "quat", "rgba") else v for k, v in kw.items()})
        self.geoms.append(g)
        self.bodies[body].geoms.append(len(self.geoms) - 1)
        return len(self.geoms) - 1

    def add_actuator(self, joint, gear=1.0, ctrlrange=None, name=None, tendon=None):
        self.actuators.append(Actuator(name or f"act{len(self.actuators)}", joint, float(gear), ctrlrange, tendon))
        return len(self.actuators) - 1

    def finalize(self):
        """Assign qpos / qvel addresses in body order."""
        qa = da = 0
        for b in self.bodies:
            for ji in b.joints:
                j = self.joints[ji]
                j.qadr, j.dadr = qa, da
                qa += j.nq
                da += j.nv
        self.nq, self.nv = qa, da
        return self

    @property
    def nu(self):
        return len(self.actuators)

    def qpos0(self) -> np.ndarray:
        """The modelled pose: ref for hinge/slide, body pose for free joints."""
        q = np.zeros(self.nq)
        for j in self.joints:
            if j.type == "free":
                b = self.bodies[j.body]
                q[j.qadr:j.qadr + 3] = b.pos
                q[j.qadr + 3:j.qadr + 7] = b.quat / np.linalg.norm(b.quat)
            else:
                q[j.qadr] = j.ref
        return q

    def body_dofs(self, b):
        return [d for ji in self.bodies[b].joints for d in range(self.joints[ji].dadr, self.joints[ji].dadr + self.joints[ji].nv)]

    def chain_dofs(self, b):
        """Dofs that move body b (ancestors' first), in increasing order."""
        out = []
        while b > 0:
            out = self.body_dofs(b) + out
            b = self.bodies[b].parent
        return out


# ------------------------------------------------------------------ numpy rotation helpers
def quat_to_mat(q):
    q = np.asarray(q, float)
    q = q / np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def quat_mul(a, b):
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw])


def axis_angle_quat(axis, angle):
    axis = np.asarray(axis, float)
    axis = axis / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def forward_kinematics(model: ArticulatedModel, qpos) -> tuple[np.ndarray, np.ndarray]:
    """World rotation [nbody, 3, 3] and position [nbody, 3] of every body frame (numpy)."""
    qpos = np.asarray(qpos, float)
    nb = len(model.bodies)
    R = np.zeros((nb, 3, 3))
    p = np.zeros((nb, 3))
    R[0] = np.eye(3)
    for b in range(1, nb):
        body = model.bodies[b]
        par = body.parent
        Rb = R[par] @ quat_to_mat(body.quat)
        pb = p[par] + R[par] @ body.pos
        for ji in body.joints:
            j = model.joints[ji]
            q = qpos[j.qadr:j.qadr + j.nq]
            if j.type == "free":
                pb = q[:3].copy()
                Rb = quat_to_mat(q[3:7])
            elif j.type == "slide":
                pb = pb + Rb @ j.axis * (q[0] - j.ref)
            else:
                anchor = pb + Rb @ j.pos
                Rb = Rb @ quat_to_mat(axis_angle_quat(j.axis, q[0] - j.ref))
                pb = anchor - Rb @ j.pos
        R[b], p[b] = Rb, pb
    return R, p
