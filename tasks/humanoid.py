"""Task ``humanoid``: DiffRL's HumanoidEnv (envs/humanoid.py).

Where the numbers come from (DiffRL, envs/humanoid.py unless noted):

* model: assets/humanoid.xml (classic MuJoCo humanoid geometry; dflex parse_mjcf
  parameters density 1000, per-joint damping / stiffness / armature from the file with
  defaults 0.1 / 5.0 / 0.007, load_stiffness and load_armature True, ranges in degrees);
* control dt = 1/60 s, sim_substeps = 48; ground contact ke = 2e4, kd = 5e3, kf = 1e3,
  mu = 0.75; joint limits limit_ke = 1e3, limit_kd = 10 (always-on damping in dflex's
  jcalc_tau, added to the joint damping);
* action: clip(a, -1, 1) * motor_scale 0.35 * motor_strengths (200 ... 600), expressed as
  ctrlrange +-0.35 and gear = motor strength per joint;
* observation: see tasks/_legged.py (76 = DiffRL's 76: 55 + the 21 previous actions,
  carried in the state by option previous_action, on by default; state 55 + 21);
  joint_vel_obs_scaling 0.1; target (200, 0, 0);
* reward: progress + 0.1 up + heading + height term (d = z - (0.74 + 0.1) clipped to
  [-1, 0.1]; -200 d^2 if d < 0 else 10 d) - 0.002 sum(a^2);
* termination: z < termination_height 0.74 (always on in HumanoidEnv); episode 1000;
* reset: torso at (0, 0, 1.35) upright, joints 0; with stochastic_init: position += 0.1
  U(-1, 1), tilt in [-pi/24, pi/24) about a random axis, joints += 0.2 U(-1, 1),
  qd = 0.5 (U[0,1) - 0.5).

Compile time: the first use compiles the simulator's kernels (one kernel set
shared by every articulated task: ~32 CPU-s cold for forward, VJP and Jacobian kernels);
Taichi's offline cache makes later runs start in a few CPU-seconds.

Differences: DiffRL's configs cache the mass matrix for 48 substeps (MM_caching_frequency, a whole
control step); we recompute it every substep unless option mass_matrix_every=48 is given.
Option dflex_inertia=true builds the mass properties as dflex does (see tasks/ant.py); with it,
DiffRL's humanoid and ours differ by 0.039 after one control step (0.19 without; docs/locomotion.md).
"""
from __future__ import annotations

import torch

from mbmix_taichi.physics.articulated import ContactParams

from ._legged import LeggedTask


class Humanoid(LeggedTask):
    name = "humanoid"
    description = "DiffRL humanoid: run forward without falling (1000 steps)"
    default_options = {"episode_length": 1000, "substeps": 48, "stochastic_init": True, "previous_action": True,
                       "mass_matrix_every": 1, "dflex_inertia": False}
    asset_name = "humanoid.xml"
    contact = ContactParams(ke=2e4, kd=5e3, kf=1e3, mu=0.75)
    start_height = 1.35
    target = (200.0, 0.0, 0.0)
    termination_height = 0.74
    termination_tolerance = 0.1
    height_rew_scale = 10.0
    action_penalty = -0.002
    camera_distance = 5.0

    def height_term(self, z):
        d = torch.clamp(z - (self.termination_height + self.termination_tolerance), -1.0, self.termination_tolerance)
        return torch.where(d < 0.0, -200.0 * d * d, self.height_rew_scale * d)

    def terminated(self, state):
        return self.torso_height(state) < self.termination_height
