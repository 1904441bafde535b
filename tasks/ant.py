"""Task ``ant``: DiffRL's AntEnv (envs/ant.py).

Where the numbers come from (DiffRL, envs/ant.py unless noted):

* model: assets/ant.xml (classic MuJoCo ant geometry; dflex parse_mjcf parameters density
  1000, armature 0.05, damping 1.0, stiffness 0, ranges in degrees);
* control dt = 1/60 s, sim_substeps = 16; ground contact ke = 4e4, kd = 1e4, kf = 3e3,
  mu = 0.75; joint limits limit_ke = 1e3, limit_kd = 10 (always-on damping in dflex's
  jcalc_tau, added to the joint damping);
* action: clip(a, -1, 1) * action_strength 200 on the 8 leg joints (gear 200);
* observation: see tasks/_legged.py (37 = DiffRL's 37: 29 + the 8 previous actions,
  carried in the state by option previous_action, on by default; state 29 + 8);
  joint_vel_obs_scaling 0.1; target (10000, 0, 0) m ahead;
* reward: progress + 0.1 up + heading + (z - termination_height 0.27), action_penalty 0;
* termination: z < 0.27 (early_termination True by default in AntEnv); episode 1000;
* reset: torso at (0, 0, 0.75) upright, joints [0, 1, 0, -1, 0, -1, 0, 1]; with
  stochastic_init: position += 0.1 U(-1, 1), tilt by an angle in [-pi/24, pi/24) about a
  random axis, joints += 0.2 U(-1, 1), qd = 0.5 (U[0,1) - 0.5).

Compile time: the first use compiles the simulator's kernels (one kernel set
shared by every articulated task: ~32 CPU-s cold for forward, VJP and Jacobian kernels);
Taichi's offline cache makes later runs start in a few CPU-seconds.

Differences: DiffRL's configs cache the mass matrix for 16 substeps (MM_caching_frequency, a whole
control step); we recompute it every substep unless option mass_matrix_every=16 is given.
dflex builds body inertias with an elementwise rotation (tasks/_legged.py: dflex_mass_properties),
so DiffRL's legs have other inertias than their capsules'; we take MuJoCo's unless option
dflex_inertia=true is given (docs/locomotion.md: one control step then agrees with dflex to 1e-3).
"""
from __future__ import annotations

from mbmix_taichi.physics.articulated import ContactParams

from ._legged import LeggedTask


class Ant(LeggedTask):
    name = "ant"
    description = "DiffRL ant: run forward on four legs (1000 steps)"
    default_options = {"episode_length": 1000, "substeps": 16, "stochastic_init": True, "early_termination": True,
                       "previous_action": True, "mass_matrix_every": 1,
                       "dflex_inertia": False}
    asset_name = "ant.xml"
    contact = ContactParams(ke=4e4, kd=1e4, kf=3e3, mu=0.75)
    start_height = 0.75
    start_joint_q = [0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0]
    target = (10000.0, 0.0, 0.0)
    termination_height = 0.27
    action_penalty = 0.0
    camera_distance = 5.0

    def height_term(self, z):
        return z - self.termination_height

    def terminated(self, state):
        if not self.options["early_termination"]:
            return super().terminated(state)
        return self.torso_height(state) < self.termination_height
