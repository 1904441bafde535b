"""Shared definition of DiffRL's free-floating locomotion tasks (ant, humanoid).

Observation (DiffRL's, translated to z-up and MuJoCo's state conventions):

    [torso height z (1), torso quaternion w x y z (4), torso origin linear velocity in the
     world frame (3), torso angular velocity in the world frame (3), joint angles (n),
     joint_vel_obs_scaling * joint velocities (n), up-vector z component (1),
     heading . direction to target (1)] + [previous action (act_dim)]

The previous action (clipped to [-1, 1], zero after a reset) is DiffRL's last block; it is
no part of the simulator state, so option ``previous_action`` (on by default, as in DiffRL)
carries it in the state (mbmix_taichi/previous_action.py): state [qpos, qvel, previous
action], derivatives exact. ``-o previous_action=false`` leaves it out of state and observation.

Reward terms (on the next state): progress = forward velocity x, 0.1 * up, heading,
height term (task-specific), action penalty * sum(a^2).
"""
from __future__ import annotations

import abc
import math

import numpy as np
import torch

from mbmix_taichi.physics.articulated_model import ArticulatedModel, quat_to_mat

from ._articulated import ArticulatedTask, quat_rotate


def _axis_angle(axis, angle):
    """Rotation matrix of `angle` about the unit `axis` (Rodrigues)."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * k @ k


def dflex_mass_properties(model: ArticulatedModel, density: float) -> None:
    """Set every body's mass, centre of mass and inertia the way dflex's ModelBuilder computes
    them from the body's spheres and capsules (DiffRL's parse_mjcf at `density`), including
    how it rotates and adds inertias: ``dflex/util.py: transform_inertia`` writes ``R * I * R.T``
    for numpy arrays, an elementwise product, so a shape inertia rotated off the body's axes,
    and the running sum at every later shape, keeps only the elementwise part. Capsules are
    along x, turned onto their axis d (fromto's first point to its second) by dflex's fromto
    construction (about normalize(d x e_x) by -acos(d . e_x)); capsule inertia is dflex's (ODE's)
    formula. Planar robots (rotations about their hinge axis) are unaffected; DiffRL's ant and
    humanoid (legs and limbs at angles) get other inertias than the shapes' true ones
    (docs/locomotion.md)."""
    def shift(m, inertia, p, R):  # dflex's transform_inertia, elementwise rotation included
        return R * inertia * R.T + m * (np.dot(p, p) * np.eye(3) - np.outer(p, p))

    for bi, body in enumerate(model.bodies):
        if bi == 0 or not body.geoms:
            continue
        mass, com, inertia = 0.0, np.zeros(3), np.zeros((3, 3))
        for gi in body.geoms:
            g = model.geoms[gi]
            if g.type == "plane":
                continue
            R = np.eye(3)
            if g.type == "sphere":
                r = float(g.size[0])
                m = density * 4.0 / 3.0 * math.pi * r ** 3
                ig = 0.4 * m * r * r * np.eye(3)
            elif g.type == "capsule":
                r, length = float(g.size[0]), 2.0 * float(g.size[1])
                ms, mc = density * 4.0 / 3.0 * math.pi * r ** 3, density * math.pi * r * r * length
                m = ms + mc
                ia = mc * (0.25 * r * r + length * length / 12.0) + ms * (0.4 * r * r + 0.375 * r * length
                                                                           + 0.25 * length * length)
                ib = (0.5 * mc + 0.4 * ms) * r * r
                ig = np.diag([ib, ia, ia])
                # the capsule's axis from its fromto's first point to its second (MuJoCo's compiled
                # capsule z-axis points the other way; the elementwise rotation tells the two apart)
                d = -quat_to_mat(g.quat)[:, 2]
                ax = np.cross(d, [1.0, 0.0, 0.0])
                if np.linalg.norm(ax) > 1e-12:
                    R = _axis_angle(ax / np.linalg.norm(ax), -math.acos(max(-1.0, min(1.0, float(d[0])))))
            else:
                raise ValueError(f"dflex mass properties: geom {g.name!r} of type {g.type!r} is not a sphere or capsule")
            new_mass = mass + m
            new_com = (com * mass + g.pos * m) / new_mass
            inertia = shift(mass, inertia, new_com - com, np.eye(3)) + shift(m, ig, new_com - g.pos, R)
            mass, com = new_mass, new_com
        body.mass, body.ipos, body.inertia = mass, com, inertia


class LeggedTask(ArticulatedTask):
    """A free-floating torso (a free joint: qpos 0:3 position, 3:7 quaternion; qvel 0:3 linear,
    3:6 angular velocity) and its legs' joints."""

    start_height: float = 0.75
    start_joint_q: list = []
    target = (10000.0, 0.0, 0.0)
    joint_vel_obs_scaling = 0.1
    action_penalty = 0.0
    joint_noise = 0.2

    #: dflex_inertia: each body's mass properties as DiffRL's dflex computes them from its shapes
    #: (dflex_mass_properties: its elementwise rotation of inertias included), not MuJoCo's
    option_types = {**ArticulatedTask.option_types, "dflex_inertia": "bool"}
    #: DiffRL's parse_mjcf density for the ant and the humanoid
    density = 1000.0

    def prepare_model(self, model: ArticulatedModel) -> ArticulatedModel:
        model = super().prepare_model(model)
        if self.options["dflex_inertia"]:
            dflex_mass_properties(model, self.density)
        return model

    def observation_dim(self) -> int:
        self.nj = self.nq - 7
        return 1 + 4 + 3 + 3 + 2 * self.nj + 2

    def torso_height(self, state):
        return state[:, 2]

    def joint_pos(self, state):
        return state[:, 7:self.nq]

    def joint_vel(self, state):
        return state[:, self.nq + 6:]

    def reset(self, generator, num_envs):
        n = num_envs
        pos = torch.tensor([0.0, 0.0, self.start_height], dtype=torch.float64).repeat(n, 1)
        quat = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64).repeat(n, 1)
        jq = torch.tensor(self.start_joint_q or [0.0] * self.nj, dtype=torch.float64).repeat(n, 1)
        qd = torch.zeros(n, self.nv, dtype=torch.float64)
        if self.options["stochastic_init"]:
            def r(*s):
                return torch.rand(s, generator=generator, dtype=torch.float64)
            pos = pos + 0.1 * (r(n, 3) - 0.5) * 2.0
            angle = (r(n) - 0.5) * math.pi / 12.0  # a tilt in [-pi/24, pi/24) about a random axis
            axis = r(n, 3) - 0.5
            axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
            quat = torch.cat([torch.cos(angle / 2)[:, None], torch.sin(angle / 2)[:, None] * axis], 1)
            jq = jq + self.joint_noise * (r(n, self.nj) - 0.5) * 2.0
            qd = 0.5 * (r(n, self.nv) - 0.5)
        return torch.cat([pos, quat, jq, qd], 1)

    def _parts(self, state):
        nq = self.nq
        pos = state[:, 0:3]
        quat = state[:, 3:7]
        quat = quat / quat.norm(dim=1, keepdim=True)
        lin_vel = state[:, nq:nq + 3]
        ang_vel = quat_rotate(quat, state[:, nq + 3:nq + 6])
        ex = torch.zeros_like(pos)
        ex[:, 0] = 1.0
        ez = torch.zeros_like(pos)
        ez[:, 2] = 1.0
        up = quat_rotate(quat, ez)
        heading = quat_rotate(quat, ex)
        target = torch.tensor(self.target, dtype=state.dtype, device=state.device)
        start = torch.tensor([0.0, 0.0, self.start_height], dtype=state.dtype, device=state.device)
        to_target = target + start - pos
        to_target = torch.cat([to_target[:, :2], torch.zeros_like(to_target[:, 2:])], 1)
        dirs = to_target / to_target.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return pos, quat, lin_vel, ang_vel, up, (heading * dirs).sum(-1)

    def observe(self, state):
        pos, quat, lin_vel, ang_vel, up, head = self._parts(state)
        return torch.cat([pos[:, 2:3], quat, lin_vel, ang_vel, self.joint_pos(state),
                          self.joint_vel_obs_scaling * self.joint_vel(state), up[:, 2:3], head[:, None]], 1)

    @abc.abstractmethod
    def height_term(self, z):
        ...

    def reward(self, state, action, next_state):
        pos, quat, lin_vel, ang_vel, up, head = self._parts(next_state)
        return (lin_vel[:, 0] + 0.1 * up[:, 2] + head + self.height_term(pos[:, 2])
                + self.action_penalty * (action.clamp(-1, 1) ** 2).sum(-1))

    def metrics(self, state):
        return {"height": self.torso_height(state), "forward_velocity": self.qvel(state)[:, 0]}
