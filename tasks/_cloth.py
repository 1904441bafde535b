"""Shared definition of the cloth manipulation tasks (cloth-fold, cloth-unfold).

A square cloth (a `resolution` x `resolution` particle grid, `size` metres wide) or a bundled
mesh (`mesh="tshirt"`) lies on the ground. Two kinematic pickers hold the two corners of
the cloth's +x edge; an action moves each picker by up to `max_step` metres per axis per
control step. As in DaXBench, the goal is a particle configuration; folding mirrors the +x
half over the line x = x_mid onto the -x half. The cloth has no self-collision, so a
folded layer rests on the ground where the other layer is (layers coincide).

reward  = -(mean_i |x_i - goal_i| + chamfer_weight * chamfer(x, goal)) / size
          (dense, per step: the correspondence distance, plus, with chamfer_weight > 0, the
          chamfer distance the score measures. With the default chamfer_weight = 0 a folded half
          left tented over the fold line and one folded flat can earn the same correspondence
          distance; weight 1 separates them but trained worse over 3 seeds, docs/cloth.md)
score   = exp(-10 * chamfer(x, goal))     (DaXBench's metric; chamfer in metres, mean of
          the two directed mean nearest-neighbour distances), reported in info["score"].
"""
from __future__ import annotations

import abc

import numpy as np
import torch

from mbmix_taichi.errors import OptionError
from mbmix_taichi.physics.cloth import ClothSim, PickPlaceSim
from mbmix_taichi.physics.cloth_model import asset_path, check_flat, check_pickers, grid, load_obj
from mbmix_taichi.task import Task


def stable_substeps(model, dt: float, safety: float = 0.6) -> int:
    """Substeps that keep semi-implicit Euler stable: dt_sub <= safety * 2 / omega_max, with
    omega_max^2 bounded per particle by (sum of incident spring stiffnesses) / mass, and the
    damping term dt_sub * (sum of incident kd) / mass below safety."""
    n = model.num_particles
    ksum, dsum = np.zeros(n), np.zeros(n)
    for end in (0, 1):
        np.add.at(ksum, model.springs[:, end], model.ke)
        np.add.at(dsum, model.springs[:, end], model.kd)
    omega = np.sqrt((ksum / model.mass).max())
    h = min(safety * 2.0 / omega, safety * (model.mass / np.maximum(dsum, 1e-12)).min())
    return max(1, int(np.ceil(dt / h)))


def chamfer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric chamfer distance between point sets a [N, n, 3] and b [N or 1, m, 3] -> [N]."""
    # direct differences, not the |a|^2 + |b|^2 - 2ab shortcut torch takes for > 25 points (its
    # cancellation costs ~1e-4 m in float32 near the goal, where the distances are ~1e-3 m)
    d = torch.cdist(a, b.expand(a.shape[0], -1, -1), compute_mode="donot_use_mm_for_euclid_dist")
    return 0.5 * (d.min(2).values.mean(1) + d.min(1).values.mean(1))


class ClothTask(Task):
    default_options = {
        "resolution": 10,        # particles per side of the square cloth
        "size": 0.3,             # side of the square cloth [m]
        "mesh": None,            # a bundled mesh name ("tshirt") or an .obj path instead of the grid
        "episode_length": 50,    # control steps
        "dt": 0.04,              # control step [s] (25 Hz)
        "substeps": None,        # semi-implicit Euler substeps per control step (None: from the stability bound)
        "max_step": 0.02,        # picker displacement per axis per control step at |action| = 1 [m]
        "mass": 0.05,            # cloth mass [kg]
        "stretch": 20.0,         # spring stiffness [N/m]: stretch, shear, bend
        "shear": 10.0,
        "bend": 0.05,           # (bending is soft in real cloth; stiffer bend springs keep coarse cloths from folding)
        "damping": 0.01,         # spring damping along the spring [N s/m]
        "drag": 1.0,             # air drag [1/s]
        "friction": 1.0,         # ground Coulomb friction coefficient (cloth on a table)
        "chamfer_weight": 0.0,   # weight of the chamfer distance in the reward (0: correspondence only; docs/cloth.md)
    }
    #: type and range of every option (grammar: mbmix_taichi.task.parse_option_type)
    option_types = {
        "resolution": "int >= 4", "size": "float > 0", "mesh": "path | None", "episode_length": "int >= 1",
        "dt": "float > 0", "substeps": "int >= 1 | None", "max_step": "float > 0", "mass": "float > 0",
        "stretch": "float >= 0", "shear": "float >= 0", "bend": "float >= 0", "damping": "float >= 0",
        "drag": "float >= 0", "friction": "float >= 0", "chamfer_weight": "float >= 0",
    }
    #: any |state entry| beyond this (metres, m/s) is a simulator blow-up
    state_limit = 100.0

    # -- construction -----------------------------------------------------------------------
    def _model(self):
        o = self.options
        ke = (o["stretch"], o["shear"], o["bend"])
        kd = (o["damping"], o["damping"], o["damping"] * 0.1)
        if o["mesh"]:
            model = load_obj(asset_path(str(o["mesh"])), ke=ke, kd=kd, total_mass=o["mass"])
            check_flat(model.positions, model.faces, str(o["mesh"]))
            pos = model.positions - model.positions.mean(0)
            pos[:, 2] = 0.0
            model.positions = pos
            size = float(np.ptp(pos[:, 0]))
            spacing = float(np.median(model.rest[model.kind == 0]))
        else:
            r = o["resolution"]
            if r < 3:
                raise OptionError(f"resolution must be at least 3, got {r}")
            spacing = o["size"] / (r - 1)
            model = grid(r, r, spacing, ke=ke, kd=kd, total_mass=o["mass"],
                         origin=(-o["size"] / 2, -o["size"] / 2, 0.0))
            size = o["size"]
        return model, size, spacing

    def build(self, dtype, device):
        o = self.options
        if o["episode_length"] < 1 or (o["substeps"] is not None and (not isinstance(o["substeps"], int) or o["substeps"] < 1)):
            raise OptionError(f"episode_length and substeps must be positive integers, got {o['episode_length']}, {o['substeps']}")
        for k in ("dt", "max_step", "mass", "size"):
            if not o[k] > 0:
                raise OptionError(f"{k} must be positive, got {o[k]}")
        model, self.size, self.spacing = self._model()
        pos = model.positions
        self.x_mid = 0.5 * (pos[:, 0].min() + pos[:, 0].max())
        self.sim = self._simulator(model, dtype, device)
        self.model = model
        self.episode_length = int(o["episode_length"])
        self.act_dim = self.sim.control_dim
        self.obs_dim = self.sim.state_dim
        self.flat = torch.tensor(pos, dtype=dtype, device=device)
        self.folded = torch.tensor(self._fold(pos), dtype=dtype, device=device)
        self.goal = self._goal()
        self._scale = torch.cat([torch.full((3 * model.num_particles,), 1.0 / self.size),
                                 torch.full((3 * model.num_particles,), 0.1),
                                 torch.full((3 * self.sim.K,), 1.0 / self.size)]).to(dtype=dtype, device=device)
        return self.sim

    def _cloth_sim(self, model, held, dtype, device) -> ClothSim:
        o = self.options
        substeps = o["substeps"] or stable_substeps(model, o["dt"])
        return ClothSim(model, held, dt=o["dt"], substeps=substeps, drag=o["drag"],
                        friction=o["friction"], ground=0.0, dtype=dtype, device=device)

    def _simulator(self, model, dtype, device):
        """Pickers hold the two corners of the +x side (and particles within one spacing of them):
        the right-most vertices of the bottom and the top 15% of the cloth's height (for a
        T-shirt: the hem's corner and the shoulder, not the sleeve tips)."""
        o, pos = self.options, model.positions
        y, span = pos[:, 1], np.ptp(pos[:, 1])
        corners = []
        for band, sign in ((y <= y.min() + 0.15 * span, 1.0), (y >= y.max() - 0.15 * span, -1.0)):
            cand = np.flatnonzero(band)
            corners.append(int(cand[np.argmax(pos[cand, 0] + 1e-3 * sign * (y.mean() - y[cand]))]))
        held = [np.flatnonzero(np.linalg.norm(pos - pos[c], axis=1) < 1.01 * self.spacing) for c in corners]
        check_pickers(held, str(o["mesh"] or f"grid {o['resolution']}x{o['resolution']}"))
        return self._cloth_sim(model, held, dtype, device)

    def _fold(self, pos, radius: float = 0.0):
        """Positions of the cloth folded in half over x = x_mid (a half-cylinder of `radius` at the fold)."""
        out = pos.copy()
        s = pos[:, 0] - self.x_mid
        right = s > 0
        if radius > 0:
            arc = right & (s < np.pi * radius)
            th = s[arc] / radius
            out[arc, 0] = self.x_mid + radius * np.sin(th)
            out[arc, 2] = radius * (1 - np.cos(th))
            flat_top = right & ~arc
            out[flat_top, 0] = self.x_mid - (s[flat_top] - np.pi * radius)
            out[flat_top, 2] = 2 * radius
        else:
            out[right, 0] = self.x_mid - s[right]
        return out

    # -- to define in subclasses ------------------------------------------------------------------
    @abc.abstractmethod
    def _goal(self) -> torch.Tensor:
        ...

    @abc.abstractmethod
    def _initial_positions(self, gen: torch.Generator, n: int) -> torch.Tensor:
        ...

    # -- task functions ----------------------------------------------------------------------------
    def reset(self, generator, num_envs):
        x = self._initial_positions(generator, num_envs)
        return self.sim.make_state(x)

    def control(self, action):
        return action.clamp(-1.0, 1.0) * self.options["max_step"]

    def observe(self, state):
        return state * self._scale

    def _distance(self, state):
        return (self.sim.positions(state) - self.goal).norm(dim=-1).mean(-1) / self.size

    def reward(self, state, action, next_state):
        d = self._distance(next_state)
        w = float(self.options["chamfer_weight"])
        if w:
            d = d + w * chamfer(self.sim.positions(next_state), self.goal[None]) / self.size
        return -d

    def metrics(self, state):
        x = self.sim.positions(state)
        return {"score": torch.exp(-10.0 * chamfer(x, self.goal[None])), "distance": self._distance(state)}

    def render_spec(self):
        n = self.model.num_particles
        faces = self.model.faces
        pos = self.model.positions
        c = np.array([0.0, 0.0, 0.0])
        return {
            "meshes": [{"vertices": lambda s: np.asarray(s[: 3 * n]).reshape(n, 3), "faces": faces,
                        "color": "#3a7bd5", "back_color": "#f2a541"}],
            "spheres": [{"centers": lambda s: np.asarray(s[6 * n:]).reshape(-1, 3), "radius": 0.3 * self.spacing + 0.004,
                         "color": "#d62728"}],
            "camera": {"position": [c[0] - 0.05, c[1] - 1.3 * self.size * 1.6, 1.1 * self.size * 1.6],
                       "focal_point": [c[0], c[1], 0.0], "up": [0.0, 0.0, 1.0]},
            "ground": {"height": 0.0, "size": 3.0 * float(np.ptp(pos[:, 0]))},
        }


class ClothPickPlaceTask(ClothTask):
    """The cloth tasks with DaXBench's pick-and-place macro actions (`PickPlaceSim`): an action
    (pick x, y, place x, y) in [-1, 1]^4 spans the flat cloth's x-y extent; one env step is a
    whole pick, lift, carry, lower, release and settle of one picker; `episode_length` counts
    these macro steps (DaXBench: 3 for Fold-Cloth1, 4 for Fold-Cloth3, 15 for Unfold-Cloth1/3).

    reward = exp(-10 * chamfer(x, goal)), DaXBench's per-step reward (it also scales it by
    0.99^t; here the learner's discount does that), equal to info["score"].
    """
    default_options = {
        **{k: v for k, v in ClothTask.default_options.items() if k != "chamfer_weight"},  # the reward is the score
        "episode_length": 3,     # macro steps (pick-and-places) per episode
        "pick_radius": 0.8,      # grab the particles within this many particle spacings (x-y) of the picked one (DaXBench: 0.8)
        "grab_depth": 0.005,     # ... and no more than this far below it [m]: the top layer only
        "lift": 0.3,             # lift height, as a fraction of the cloth's size (DaXBench: 0.06 for a 0.2 x 0.4 cloth)
        "lift_steps": 4,         # inner control steps (of dt each) of the lift, move, lower and settle phases;
        "move_steps": 12,        # slow enough that a carried edge folds over instead of dragging the cloth
        "lower_steps": 4,        # (2, 6, 2, 4) dragged it: a scripted fold then scored below a flat cloth
        "settle_steps": 6,
        "relative_carry": False,  # True: carry by (place - pick) as DaXBench (the pick point then has a derivative)
    }
    option_types = {
        **{k: v for k, v in ClothTask.option_types.items() if k != "chamfer_weight"}, "pick_radius": "float >= 0", "grab_depth": "float >= 0", "lift": "float >= 0", "lift_steps": "int >= 0",
        "move_steps": "int >= 1", "lower_steps": "int >= 0", "settle_steps": "int >= 0", "relative_carry": "bool",
    }

    def _simulator(self, model, dtype, device):
        o = self.options
        cloth = self._cloth_sim(model, [[]], dtype, device)
        pos = model.positions
        lo, hi = pos[:, :2].min(0), pos[:, :2].max(0)
        self._centre = torch.tensor(0.5 * (lo + hi), dtype=dtype, device=device).repeat(2)
        self._half = torch.tensor(0.5 * (hi - lo), dtype=dtype, device=device).repeat(2)
        return PickPlaceSim(cloth, radius=o["pick_radius"] * self.spacing, lift=o["lift"] * self.size, depth=o["grab_depth"],
                            lift_steps=o["lift_steps"], move_steps=o["move_steps"], lower_steps=o["lower_steps"],
                            settle_steps=o["settle_steps"], relative_carry=o["relative_carry"])

    def control(self, action):
        """(pick, place) x-y over the flat cloth's extent: -1 and 1 are its edges."""
        return self._centre + action.clamp(-1.0, 1.0) * self._half

    def reward(self, state, action, next_state):
        return torch.exp(-10.0 * chamfer(self.sim.positions(next_state), self.goal[None]))
