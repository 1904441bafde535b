"""Task ``hopper``: DiffRL's HopperEnv (envs/hopper.py).

Where the numbers come from (DiffRL, envs/hopper.py unless noted):

* model: assets/hopper.xml (classic MuJoCo hopper geometry; dflex parse_mjcf parameters
  density 1000, armature 1.0, damping 2.0, stiffness 0; root joints damping 0);
* control dt = 1/60 s, sim_substeps = 16; ground contact ke = 2e4, kd = 1e3, kf = 1e3,
  mu = 0.9; joint limits limit_ke = 1e3, limit_kd = 10 (dflex's jcalc_tau applies
  -limit_kd * qd on every joint at all times, so it is added to the joint damping);
* action: clip(a, -1, 1) * action_strength 200 on the thigh, leg and foot joints (gear 200);
* observation [q[1:], qd] (11): rootz, rooty, 3 joint angles, 6 velocities (DiffRL's hopper
  does not append the previous action; option previous_action=true does, obs 14);
* reward (on the next state): progress qd[0]; height: d = rootz - (termination_height -0.45
  + tolerance 0.15) clipped to [-1, 0.3], -200 d^2 if d < 0 else 1.0 * d; angle
  1 - rooty^2 / (pi/6)^2; action penalty -0.1 * sum(a^2);
* episode_length 1000; early termination when rootz < -0.45 (HopperEnv's default
  early_termination=True, which DiffRL's SHAC keeps: shac.py does not pass it; option
  early_termination=false turns it off, and then a fallen hopper collects the -200 d^2 height
  penalty for the rest of its 1000 steps);
* reset: q = 0, qd = 0; with stochastic_init (SHAC configs: stochastic_env True):
  q[0:2] += 0.05 U(-1, 1), q[2] = 0.1 (U[0,1) - 0.5), joints += 0.05 U(-1, 1),
  qd = 0.05 U(-1, 1).

rootz = 0 puts the torso at 1.25 m, as in DiffRL's coordinates. Differences: DiffRL caches
the mass matrix for 16 substeps (MM_caching_frequency); we recompute it every substep unless
option mass_matrix_every=16 is given (docs/locomotion.md measures what it changes).
"""
from __future__ import annotations

import math

import torch

from mbmix_taichi.physics.articulated import ContactParams

from ._articulated import PlanarTask


def height_reward(h, low, tol, scale, upper=0.3):
    d = torch.clamp(h - (low + tol), -1.0, upper)
    return torch.where(d < 0.0, -200.0 * d * d, scale * d)


class Hopper(PlanarTask):
    name = "hopper"
    description = "DiffRL hopper: hop forward on one leg (1000 steps)"
    default_options = {"episode_length": 1000, "substeps": 16, "stochastic_init": True, "early_termination": True,
                       "previous_action": False, "mass_matrix_every": 1}
    asset_name = "hopper.xml"
    contact = ContactParams(ke=2e4, kd=1e3, kf=1e3, mu=0.9)
    pos_noise, tilt, qd_noise = 0.05, 0.1, 0.05
    termination_height = -0.45
    termination_angle = math.pi / 6.0
    termination_height_tolerance = 0.15
    action_penalty = -1e-1

    def reward(self, state, action, next_state):
        z, ang = self.qpos(next_state, "rootz"), self.qpos(next_state, "rooty")
        hr = height_reward(z, self.termination_height, self.termination_height_tolerance, 1.0)
        angle_reward = 1.0 - ang ** 2 / self.termination_angle ** 2
        return (self.forward_velocity(next_state) + hr + angle_reward
                + self.action_penalty * (action.clamp(-1, 1) ** 2).sum(-1))

    def terminated(self, state):
        if not self.options["early_termination"]:
            return super().terminated(state)
        return self.qpos(state, "rootz") < self.termination_height

    def metrics(self, state):
        return {"height": self.qpos(state, "rootz"), "forward_velocity": self.forward_velocity(state)}
