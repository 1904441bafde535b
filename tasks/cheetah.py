"""Task ``cheetah``: DiffRL's CheetahEnv (envs/cheetah.py).

Where the numbers come from (DiffRL, envs/cheetah.py unless noted):

* model: assets/half_cheetah.xml (classic half-cheetah geometry; dflex parse_mjcf
  parameters density 1000, armature 0.1, per-joint damping and stiffness from the file,
  load_stiffness=True, root joints 0);
* control dt = 1/60 s, sim_substeps = 16; ground contact ke = 2e4, kd = 1e3, kf = 1e3,
  mu = 1.0; joint limits limit_ke = 1e3, limit_kd = 10 (always-on damping in dflex's
  jcalc_tau, added to the joint damping);
* action: clip(a, -1, 1) * action_strength 200 on the six leg joints (gear 200);
* observation [q[1:], qd] (17; DiffRL's cheetah does not append the previous action, option
  previous_action=true does, obs 23);
* reward: forward velocity qd[0] of the next state + action penalty -0.1 * sum(a^2);
* episode_length 1000, no early termination;
* reset: rootx = 0, rootz = -0.2 (DiffRL's start_height; the torso frame sits 1 m up at
  rootz = 0), rooty = 0, joints 0; with stochastic_init: q[0:2] += 0.1 U(-1, 1),
  q[2] = 0.2 (U[0,1) - 0.5), joints += 0.1 U(-1, 1), qd = 0.5 (U[0,1) - 0.5).

Differences: DiffRL's configs cache the mass matrix for 16 substeps (MM_caching_frequency, a whole
control step); we recompute it every substep unless option mass_matrix_every=16 is given.
"""
from __future__ import annotations

from mbmix_taichi.physics.articulated import ContactParams

from ._articulated import PlanarTask


class Cheetah(PlanarTask):
    name = "cheetah"
    description = "DiffRL half-cheetah: run forward (1000 steps)"
    default_options = {"episode_length": 1000, "substeps": 16, "stochastic_init": True, "previous_action": False,
                       "mass_matrix_every": 1}
    asset_name = "half_cheetah.xml"
    contact = ContactParams(ke=2e4, kd=1e3, kf=1e3, mu=1.0)
    start_z = -0.2
    # qd = 0.5 (U[0,1) - 0.5), written as 0.25 U(-1, 1) (the same numbers: scaling by 2 is exact)
    pos_noise, tilt, qd_noise = 0.1, 0.2, 0.25
    action_penalty = -0.1
    camera_distance = 5.0

    def reward(self, state, action, next_state):
        return self.forward_velocity(next_state) + self.action_penalty * (action.clamp(-1, 1) ** 2).sum(-1)

    def metrics(self, state):
        return {"forward_velocity": self.forward_velocity(state)}
