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
* observation [x, x_dot, sin(theta), cos(theta), theta_dot] (5), theta = 0 upright;
* reward -theta^2 * 1.0 - theta_dot^2 * 0.1 - x^2 * 0.05 - x_dot^2 * 0.1 (cart_action_penalty
  0), theta wrapped to [-pi, pi), evaluated on the next state as DiffRL does after a step;
* episode_length 240, no early termination;
* reset: q = [0, -pi] (hanging down), q_dot = 0; with stochastic_init (DiffRL's SHAC
  configs set stochastic_env: True) q += pi * (U[0,1) - 0.5), q_dot += 0.5 * (U[0,1) - 0.5).

Differences: DiffRL caches the mass matrix for MM_caching_frequency = 4 substeps (one per
control step); we recompute it every substep (exact semi-implicit Euler).
"""
from __future__ import annotations

import math

import torch

from ._rigid import RigidTask


class CartPoleSwingUp(RigidTask):
    name = "cartpole-swingup"
    description = "DiffRL cart-pole swing-up: swing the pole up and balance it (240 steps)"
    default_options = {"episode_length": 240, "substeps": 4, "stochastic_init": True}
    asset_name = "cartpole.xml"
    contact_params = None
    limit_ke = 100.0
    always_on_limit_kd = 1.0
    camera_distance = 6.0

    def build(self, dtype, device):
        sim = self.make_sim(dtype, device, 1.0 / 60.0, int(self.options["substeps"]), None)
        self.episode_length = int(self.options["episode_length"])
        self.obs_dim = 5
        return sim

    def reset(self, generator, num_envs):
        q = torch.tensor([0.0, -math.pi], dtype=torch.float64).repeat(num_envs, 1)
        qd = torch.zeros(num_envs, 2, dtype=torch.float64)
        if self.options["stochastic_init"]:
            q = q + math.pi * (torch.rand((num_envs, 2), generator=generator, dtype=torch.float64) - 0.5)
            qd = qd + 0.5 * (torch.rand((num_envs, 2), generator=generator, dtype=torch.float64) - 0.5)
        return torch.cat([q, qd], 1)

    def observe(self, state):
        x, th, xd, thd = state[:, 0:1], state[:, 1:2], state[:, 2:3], state[:, 3:4]
        return torch.cat([x, xd, torch.sin(th), torch.cos(th), thd], dim=-1)

    def reward(self, state, action, next_state):
        x = next_state[:, 0]
        th = torch.atan2(torch.sin(next_state[:, 1]), torch.cos(next_state[:, 1]))
        xd, thd = next_state[:, 2], next_state[:, 3]
        return -th ** 2 * 1.0 - thd ** 2 * 0.1 - x ** 2 * 0.05 - xd ** 2 * 0.1

    def metrics(self, state):
        th = torch.atan2(torch.sin(state[:, 1]), torch.cos(state[:, 1]))
        return {"upright": torch.cos(th)}
