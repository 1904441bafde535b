"""The base of the articulated-body tasks (mjcf, cartpole-swingup, hopper, cheetah, ant,
humanoid): one build path (model -> ArticulatedSim), the action -> control map, named views
of the state, rendering, and torch quaternion helpers.

A task says what differs in class attributes (``asset_name``, ``dt``, ``contact``, the joint
limit and damping constants) and in ``observation_dim``/``reset``/``observe``/``reward``;
``build`` is the same for all of them. States are ``[qpos, qvel]`` in MuJoCo's order;
``qpos(state, "rootz")`` / ``qvel(state, "rootx")`` read one joint's coordinate by name.

Actions in [-1, 1] map linearly onto each motor's ctrlrange (``ctrl = lo + (a + 1) / 2 *
(hi - lo)``; motors without a range get ``ctrl = a``), and the simulator applies
``gear * ctrl`` as the joint force, so DiffRL's ``action * action_strength`` is expressed by
the bundled models' gear and ctrlrange.
"""
from __future__ import annotations

import abc

import numpy as np
import torch

from mbmix_taichi import assets
from mbmix_taichi.errors import OptionError
from mbmix_taichi.physics.articulated import ArticulatedSim, ContactParams
from mbmix_taichi.physics.articulated_model import ArticulatedModel, forward_kinematics, quat_to_mat
from mbmix_taichi.physics.mjcf import load_mjcf
from mbmix_taichi.task import Task

def asset(name: str) -> str:
    """Path of a bundled robot model (``"hopper.xml"``)."""
    found = assets.path(name, ".xml")
    if found is None:
        raise OptionError(f"no bundled model {name!r}; bundled models: {', '.join(assets.names('.xml'))}")
    return str(found)


# ----------------------------------------------------------------------------- torch helpers
def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v [..., 3] by unit quaternions q [..., 4] (w, x, y, z)."""
    w, u = q[..., :1], q[..., 1:]
    t = 2.0 * torch.cross(u, v, dim=-1)
    return v + w * t + torch.cross(u, t, dim=-1)


def wrap_angle(x: torch.Tensor) -> torch.Tensor:
    """Wrap to [-pi, pi) as DiffRL's torch_utils.normalize_angle (atan2(sin, cos))."""
    return torch.atan2(torch.sin(x), torch.cos(x))


def _hex(rgba) -> str:
    r, g, b = (int(round(255 * min(max(float(c), 0.0), 1.0))) for c in rgba[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


class ArticulatedTask(Task):
    """Base of the articulated tasks; subclasses set the class attributes below."""

    #: bundled model file in assets/
    asset_name: str = ""
    #: control step [s] (DiffRL's tasks: 1/60 s, each in ``options["substeps"]`` substeps)
    dt: float = 1.0 / 60.0
    #: ground contact (None: no ground contact)
    contact: ContactParams | None = None
    #: DiffRL/dflex constants (see each task module for the source of each number)
    limit_ke: float = 1e3
    #: dflex's jcalc_tau applies -limit_kd * qd on every hinge/slide joint, always
    always_on_limit_kd: float = 10.0
    implicit_damping: bool = False
    #: extra limit damping while a limit is violated (MuJoCo-like); 0 for the DiffRL tasks
    limit_kd: float = 0.0
    camera_distance: float = 4.0
    #: type and range of the options the articulated tasks share (each declares its own extras)
    #: previous_action: carry the last clipped action in the state and append it to the observation
    #: (DiffRL's ant and humanoid observations; mbmix_taichi/previous_action.py keeps the state Markov
    #: and the derivatives exact)
    #: mass_matrix_every: compute the mass matrix every k-th substep of a control step and reuse it in
    #: between (dflex's MM_caching_frequency; DiffRL's configs cache it for a whole control step:
    #: cartpole 4, hopper, cheetah and ant 16, humanoid 48); 1 (the default) recomputes it every substep
    option_types = {"episode_length": "int >= 1", "substeps": "int >= 1", "stochastic_init": "bool",
                    "early_termination": "bool", "previous_action": "bool", "mass_matrix_every": "int >= 1"}

    # set by build()
    model: ArticulatedModel
    nq: int
    nv: int

    # -- what a task may override
    def load_model(self) -> ArticulatedModel:
        return load_mjcf(asset(self.asset_name))

    def prepare_model(self, model: ArticulatedModel) -> ArticulatedModel:
        for j in model.joints:
            if j.type != "free":
                j.damping += self.always_on_limit_kd
        return model

    def control_dt(self, model: ArticulatedModel) -> float:
        return self.dt

    @abc.abstractmethod
    def observation_dim(self) -> int:
        """obs_dim, known once the model is loaded (self.nq, self.nv)."""

    # -- the one build path
    def build(self, dtype, device):
        m = self.model = self.prepare_model(self.load_model())
        sim = ArticulatedSim(m, dt=float(self.control_dt(m)), substeps=int(self.options["substeps"]), dtype=dtype,
                             device=device, contact=self.contact, implicit_damping=self.implicit_damping,
                             limit_ke=self.limit_ke, limit_kd=self.limit_kd,
                             mass_matrix_every=int(self.options["mass_matrix_every"]))
        lo = [a.ctrlrange[0] if a.ctrlrange else -1.0 for a in m.actuators]
        hi = [a.ctrlrange[1] if a.ctrlrange else 1.0 for a in m.actuators]
        self._ctrl_lo = torch.tensor(lo, dtype=dtype, device=device)
        self._ctrl_hi = torch.tensor(hi, dtype=dtype, device=device)
        self._limited = torch.tensor([a.ctrlrange is not None for a in m.actuators], dtype=torch.bool, device=device)
        self._qadr = {j.name: j.qadr for j in m.joints if j.name}
        self._dadr = {j.name: j.dadr for j in m.joints if j.name}
        self.nq, self.nv = m.nq, m.nv
        self.act_dim = m.nu
        self.episode_length = int(self.options["episode_length"])
        self.obs_dim = self.observation_dim()
        return sim

    # -- named views of a state [B, nq + nv]
    def qpos(self, state: torch.Tensor, joint: str | None = None) -> torch.Tensor:
        """All joint positions [B, nq], or joint `joint`'s first coordinate [B]."""
        return state[:, :self.nq] if joint is None else state[:, self._qadr[joint]]

    def qvel(self, state: torch.Tensor, joint: str | None = None) -> torch.Tensor:
        """All joint velocities [B, nv], or joint `joint`'s first velocity coordinate [B]."""
        return state[:, self.nq:] if joint is None else state[:, self.nq + self._dadr[joint]]

    def control(self, action):
        a = action.clamp(-1.0, 1.0)
        lo, hi = self._ctrl_lo.to(a.dtype), self._ctrl_hi.to(a.dtype)
        mapped = lo + (a + 1.0) * 0.5 * (hi - lo)
        return torch.where(self._limited, mapped, a)

    # -- rendering
    def render_spec(self) -> dict:
        model = self.model
        geoms = [g for g in model.geoms if g.type != "plane"]
        colors = [_hex(g.rgba) for g in geoms]
        local_R = [quat_to_mat(g.quat) for g in geoms]
        nq = model.nq
        root = 1 if len(model.bodies) > 1 else 0

        def draw(state_row):
            R, p = forward_kinematics(model, np.asarray(state_row, float)[:nq])
            out = []
            for g, col, Rl in zip(geoms, colors, local_R):
                rot = R[g.body] @ Rl
                pos = p[g.body] + R[g.body] @ g.pos
                if g.type == "sphere":
                    size = [float(g.size[0])]
                    t = "sphere"
                elif g.type in ("capsule", "cylinder"):
                    size = [float(g.size[0]), float(g.size[1])]
                    t = "capsule"
                else:
                    size = [float(x) for x in g.size[:3]]
                    t = "box"
                out.append({"type": t, "pos": pos.tolist(), "rot": rot.tolist(), "size": size, "color": col})
            return out

        def follow(state_row):
            _, p = forward_kinematics(model, np.asarray(state_row, float)[:nq])
            return p[root].tolist()

        d = self.camera_distance
        return {"geoms": draw,
                "camera": {"position": [0.0, -d, 0.4 * d], "focal_point": [0.0, 0.0, 0.5], "up": [0.0, 0.0, 1.0],
                           "follow": follow},
                "ground": {"height": float(model.ground if model.ground is not None else 0.0)}}


class PlanarTask(ArticulatedTask):
    """A planar robot on root joints rootx, rootz, rooty (hopper, cheetah) and its DiffRL reset:
    q = 0 but rootz = start_z, qd = 0; with stochastic_init rootx and rootz += pos_noise U(-1, 1),
    rooty = tilt (U[0,1) - 0.5), the other joints += pos_noise U(-1, 1), qd = qd_noise U(-1, 1)."""

    start_z: float = 0.0
    pos_noise: float = 0.05
    tilt: float = 0.1
    qd_noise: float = 0.05

    def observation_dim(self) -> int:
        return self.nq - 1 + self.nv

    def reset(self, generator, num_envs):
        n = num_envs
        q = torch.zeros(n, self.nq, dtype=torch.float64)
        q[:, self._qadr["rootz"]] = self.start_z
        qd = torch.zeros(n, self.nv, dtype=torch.float64)
        if self.options["stochastic_init"]:
            def r(*s):
                return torch.rand(s, generator=generator, dtype=torch.float64)
            q[:, 0:2] += self.pos_noise * (r(n, 2) - 0.5) * 2.0  # rootx, rootz
            q[:, 2] = (r(n) - 0.5) * self.tilt  # rooty
            q[:, 3:] += self.pos_noise * (r(n, self.nq - 3) - 0.5) * 2.0
            qd = self.qd_noise * (r(n, self.nv) - 0.5) * 2.0
        return torch.cat([q, qd], 1)

    def observe(self, state):
        return state[:, 1:]  # everything but rootx (qpos 0): the x position does not matter

    def forward_velocity(self, state):
        return self.qvel(state, "rootx")


__all__ = ["ArticulatedTask", "PlanarTask", "asset", "quat_rotate", "wrap_angle"]
