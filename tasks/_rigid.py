"""Shared pieces of the articulated-body tasks (mjcf, cartpole-swingup, hopper, cheetah,
ant, humanoid): model loading, action -> control map, rendering, torch quaternion helpers.

Actions in [-1, 1] map linearly onto each motor's ctrlrange (``ctrl = lo + (a + 1) / 2 *
(hi - lo)``; motors without a range get ``ctrl = a``), and the simulator applies
``gear * ctrl`` as the joint force, so DiffRL's ``action * action_strength`` is expressed by
the bundled models' gear and ctrlrange.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from mbmix_taichi.physics.articulated import ArticulatedSim, ContactParams
from mbmix_taichi.physics.articulated_model import forward_kinematics, quat_to_mat
from mbmix_taichi.physics.mjcf import load_mjcf
from mbmix_taichi.task import Task

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")


def asset(name: str) -> str:
    """Path of a bundled model (works for editable and regular installs)."""
    try:
        from importlib.resources import files
        p = files("mbmix_taichi.assets").joinpath(name)
        if p.is_file():
            return str(p)
    except Exception:  # pragma: no cover
        pass
    return os.path.join(ASSETS, name)


# ----------------------------------------------------------------------------- torch helpers
def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v [..., 3] by unit quaternions q [..., 4] (w, x, y, z)."""
    w, u = q[..., :1], q[..., 1:]
    t = 2.0 * torch.cross(u, v, dim=-1)
    return v + w * t + torch.cross(u, t, dim=-1)


def normalize_angle(x: torch.Tensor) -> torch.Tensor:
    """Wrap to [-pi, pi) as DiffRL's torch_utils.normalize_angle (atan2(sin, cos))."""
    return torch.atan2(torch.sin(x), torch.cos(x))


def _hex(rgba) -> str:
    r, g, b = (int(round(255 * min(max(float(c), 0.0), 1.0))) for c in rgba[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


class RigidTask(Task):
    """Base of the articulated tasks; subclasses set the class attributes below."""

    #: bundled model file in assets/ (or an option "model")
    asset_name: str = ""
    #: DiffRL/dflex constants (see each task module for the source of each number)
    contact_params: ContactParams | None = None
    limit_ke: float = 1e3
    #: dflex's jcalc_tau applies -limit_kd * qd on every hinge/slide joint, always
    always_on_limit_kd: float = 10.0
    implicit_damping: bool = False
    #: extra limit damping while a limit is violated (MuJoCo-like); 0 for the DiffRL tasks
    limit_kd: float = 0.0
    camera_distance: float = 4.0
    #: type and range of the options the articulated tasks share (each declares its own extras)
    option_types = {"episode_length": "int >= 1", "substeps": "int >= 1", "stochastic_init": "bool",
                    "early_termination": "bool"}

    def load_model(self):
        return load_mjcf(asset(self.asset_name))

    def prepare_model(self, model):
        for j in model.joints:
            if j.type != "free":
                j.damping += self.always_on_limit_kd
        return model

    def make_sim(self, dtype, device, dt, substeps, contact):
        self.model = self.prepare_model(self.load_model())
        sim = ArticulatedSim(self.model, dt=dt, substeps=substeps, dtype=dtype, device=device, contact=contact,
                             implicit_damping=self.implicit_damping, limit_ke=self.limit_ke, limit_kd=self.limit_kd)
        m = self.model
        lo = [a.ctrlrange[0] if a.ctrlrange else -1.0 for a in m.actuators]
        hi = [a.ctrlrange[1] if a.ctrlrange else 1.0 for a in m.actuators]
        self._ctrl_lo = torch.tensor(lo, dtype=dtype, device=device)
        self._ctrl_hi = torch.tensor(hi, dtype=dtype, device=device)
        self._limited = torch.tensor([a.ctrlrange is not None for a in m.actuators], dtype=torch.bool, device=device)
        self.nq, self.nv = m.nq, m.nv
        self.act_dim = m.nu
        return sim

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


def uniform(generator, shape, lo, hi, dtype=torch.float64):
    return lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=dtype)


def random_quat_small(generator, n, max_angle):
    """DiffRL's reset tilt: angle uniform in [-max/2, max/2) about a random axis."""
    angle = (torch.rand(n, generator=generator, dtype=torch.float64) - 0.5) * max_angle
    axis = torch.rand((n, 3), generator=generator, dtype=torch.float64) - 0.5
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.cat([torch.cos(angle / 2)[:, None], torch.sin(angle / 2)[:, None] * axis], dim=1)


__all__ = ["RigidTask", "asset", "quat_rotate", "normalize_angle", "uniform", "random_quat_small", "math"]
