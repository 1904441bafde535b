"""Task ``mjcf``: any MJCF model MuJoCo compiles and we simulate (see physics/mjcf.py for what
is simulated, warned about and refused), simulated as MuJoCo's Euler would.

``mt.make("mjcf", model="path/to/model.xml", dt=0.01, substeps=5)``

* state ``[qpos, qvel]`` in MuJoCo's order and conventions (free joints: position,
  quaternion w x y z; linear velocity in the world frame, angular velocity in the body
  frame), so states can be copied to and from ``mujoco.MjData``;
* actions in [-1, 1] map onto each motor's ctrlrange (unlimited motors: ctrl = action),
  the joint force is gear * ctrl;
* damping is implicit in the velocity update, as MuJoCo's Euler integrator does, so
  trajectories of models without contact and joint limits agree with MuJoCo to rounding;
* ground contact (if the model has a plane in its worldbody) uses DiffRL's penalty model
  with the contact_* options, joint limits a penalty with limit_ke / limit_kd (MuJoCo's
  constraint solver is not modelled);
* reward 0, never terminates; reset: the model's reference pose qpos0 plus uniform noise of
  +-init_noise on every qpos (quaternions re-normalized) and qvel.

Options: model (required), dt (control step; default: the file's timestep * substeps),
substeps, episode_length, init_noise, contact_ke/kd/kf/mu, limit_ke, limit_kd, previous_action
(carry the last action in the state and append it to the observation; default false).
"""
from __future__ import annotations

import os

import torch

from mbmix_taichi import assets
from mbmix_taichi.errors import OptionError
from mbmix_taichi.physics.articulated import ContactParams
from mbmix_taichi.physics.mjcf import load_mjcf

from ._articulated import ArticulatedTask


class MJCFTask(ArticulatedTask):
    name = "mjcf"
    description = "any MJCF model (compiled by MuJoCo; hinge/slide/free joints, motors, tendons); model=PATH; reward 0"
    default_options = {
        "model": None,
        "dt": None,
        "substeps": 1,
        "episode_length": 1000,
        "init_noise": 0.0,
        "contact_ke": 1e4,
        "contact_kd": 1e3,
        "contact_kf": 1e3,
        "contact_mu": 0.5,
        "limit_ke": 1e3,
        "limit_kd": 0.0,
        "previous_action": False,
        "mass_matrix_every": 1,
    }
    option_types = {
        "model": "path | None", "dt": "float > 0 | None", "substeps": "int >= 1", "episode_length": "int >= 1",
        "init_noise": "float >= 0", "contact_ke": "float >= 0", "contact_kd": "float >= 0",
        "contact_kf": "float >= 0", "contact_mu": "float >= 0", "limit_ke": "float >= 0", "limit_kd": "float >= 0",
        "previous_action": "bool", "mass_matrix_every": "int >= 1",
    }
    implicit_damping = True
    always_on_limit_kd = 0.0

    def __init__(self, **options):
        super().__init__(**options)
        o = self.options
        self.limit_ke, self.limit_kd = float(o["limit_ke"]), float(o["limit_kd"])
        self.contact = ContactParams(o["contact_ke"], o["contact_kd"], o["contact_kf"], o["contact_mu"])

    def _path(self):
        m = self.options["model"]
        if m is None:
            raise OptionError("task 'mjcf' needs model=PATH (an MJCF .xml file), e.g. "
                              "mt.make('mjcf', model='robot.xml')")
        if not isinstance(m, (str, os.PathLike)):
            raise OptionError(f"option model of task 'mjcf' must be a path, got {m!r}")
        m = os.fspath(m)
        if not os.path.isfile(m):
            bundled = assets.path(m, ".xml")
            if bundled is not None:
                return str(bundled)
        return m

    def load_model(self):
        return load_mjcf(self._path())

    def control_dt(self, model):
        dt = self.options["dt"]
        return dt if dt is not None else model.timestep * int(self.options["substeps"])

    def observation_dim(self) -> int:
        return self.nq + self.nv

    def build(self, dtype, device):
        sim = super().build(dtype, device)
        self._qpos0 = torch.tensor(self.model.qpos0(), dtype=torch.float64)
        self._free = [j.qadr for j in self.model.joints if j.type == "free"]
        return sim

    def reset(self, generator, num_envs):
        noise = float(self.options["init_noise"])
        q = self._qpos0.expand(num_envs, -1).clone()
        qd = torch.zeros(num_envs, self.nv, dtype=torch.float64)
        if noise > 0:
            q = q + noise * (2 * torch.rand(q.shape, generator=generator, dtype=torch.float64) - 1)
            qd = qd + noise * (2 * torch.rand(qd.shape, generator=generator, dtype=torch.float64) - 1)
            for a in self._free:
                q[:, a + 3:a + 7] = q[:, a + 3:a + 7] / q[:, a + 3:a + 7].norm(dim=1, keepdim=True)
        return torch.cat([q, qd], dim=1)

    def observe(self, state):
        return state

    def reward(self, state, action, next_state):
        return torch.zeros(state.shape[0], dtype=state.dtype, device=state.device) + 0.0 * next_state.sum(1)
