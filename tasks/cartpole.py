"""Task ``cartpole-swingup``: DiffRL's CartPoleSwingUpEnv (envs/cartpole_swing_up.py).

Where the numbers come from (DiffRL, envs/cartpole_swing_up.py unless noted):

* model: assets/cartpole.xml, our MJCF of envs/assets/cartpole.urdf as dflex loads it
  (masses from the collision boxes at density 1000: cart 50 kg, pole 2.5 kg);
* control step dt = 1/60 s with sim_substeps = 4; no ground (model.ground = False);
  gravity 9.81;
* urdf_load(..., limit_kd=1.) and urdf_load's default limit_ke = 100 (utils/load_utils.py):
  dflex applies -limit_kd * qd on every joint at all times (jcalc_tau), and the penalty
  ke * violation beyond the slider's +-4 m;
* action: clip(a, -1, 1) * action_strength 1000 N on the slider (motor gear 1000);
* observation [x, x_dot, sin(theta), cos(theta), theta_dot] (5), theta = 0 upright (option
  previous_action=true appends the previous action, carried in the state: obs 6, state 5);
* reward -theta^2 * 1.0 - theta_dot^2 * 0.1 - x^2 * 0.05 - x_dot^2 * 0.1 (cart_action_penalty
  0), theta wrapped to [-pi, pi), evaluated on the next state as DiffRL does after a step;
* episode_length 240, no early termination;
* reset: q = [0, -pi] (hanging down), q_dot = 0; with stochastic_init (DiffRL's SHAC
  configs set stochastic_env: True) q += pi * (U[0,1) - 0.5), q_dot += 0.5 * (U[0,1) - 0.5).

Differences: DiffRL caches the mass matrix for MM_caching_frequency = 4 substeps (one per
control step); we recompute it every substep (exact semi-implicit Euler) unless option
mass_matrix_every=4 is given.
"""
from __future__ import annotations

import math

import torch

from ._articulated import ArticulatedTask, wrap_angle


class CartPoleSwingUp(ArticulatedTask):
    name = "cartpole-swingup"
    description = "DiffRL cart-pole swing-up: swing the pole up and balance it (240 steps)"
    default_options = {"episode_length": 240, "substeps": 4, "stochastic_init": True, "previous_action": False,
                       "mass_matrix_every": 1}
    asset_name = "cartpole.xml"
    contact = None
    limit_ke = 100.0
    always_on_limit_kd = 1.0
    camera_distance = 6.0

    def observation_dim(self) -> int:
        return 5

    def reset(self, generator, num_envs):
        q = torch.tensor([0.0, -math.pi], dtype=torch.float64).repeat(num_envs, 1)
        qd = torch.zeros(num_envs, 2, dtype=torch.float64)
        if self.options["stochastic_init"]:
            q = q + math.pi * (torch.rand((num_envs, 2), generator=generator, dtype=torch.float64) - 0.5)
            qd = qd + 0.5 * (torch.rand((num_envs, 2), generator=generator, dtype=torch.float64) - 0.5)
        return torch.cat([q, qd], 1)

    def _parts(self, state):
        """cart position x, pole angle theta (0 upright), and their velocities; [B] each."""
        return (self.qpos(state, "slider"), self.qpos(state, "hinge"), self.qvel(state, "slider"),
                self.qvel(state, "hinge"))

    def observe(self, state):
        x, th, xd, thd = self._parts(state)
        return torch.stack([x, xd, torch.sin(th), torch.cos(th), thd], dim=-1)

    def reward(self, state, action, next_state):
        x, th, xd, thd = self._parts(next_state)
        th = wrap_angle(th)
        return -th ** 2 * 1.0 - thd ** 2 * 0.1 - x ** 2 * 0.05 - xd ** 2 * 0.1

    def metrics(self, state):
        return {"upright": torch.cos(wrap_angle(self.qpos(state, "hinge")))}
