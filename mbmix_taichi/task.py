"""What a task is: a small definition over a shared simulator.

Subclass :class:`Task` in a module of ``tasks/`` (or of a ``--tasks-dir`` folder, or of a
package exposing the ``mbmix_taichi.tasks`` entry-point group); a subclass with a ``name``
registers itself. Everything below ``build`` is a torch function of the simulator state,
so rewards and observations are differentiable.
"""
from __future__ import annotations

import abc
from typing import Any

import torch

from .errors import OptionError


class Task(abc.ABC):
    #: registry name, e.g. "cloth-fold"
    name: str = ""
    #: one line shown by `mbmix-taichi tasks`
    description: str = ""
    #: option name -> default value; `mt.make(task, **options)` may override any of them
    default_options: dict[str, Any] = {}

    # set by build(): episode_length, act_dim, obs_dim, sim
    episode_length: int
    act_dim: int
    obs_dim: int

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.name:
            from .registry import _register

            _register(cls)

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.default_options))
        if unknown:
            known = ", ".join(f"{k}={v!r}" for k, v in self.default_options.items()) or "none"
            raise OptionError(f"task {self.name!r} has no option {', '.join(unknown)}; its options are: {known}")
        self.options = {**self.default_options, **options}
        for k, v in self.options.items():
            d = self.default_options[k]
            if d is not None and v is not None and isinstance(d, (int, float)) and not isinstance(d, bool):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise OptionError(f"option {k} of task {self.name!r} must be a number, got {v!r}")
                if isinstance(d, int) and not isinstance(d, bool) and float(v) != int(v):
                    raise OptionError(f"option {k} of task {self.name!r} must be an integer, got {v!r}")
                self.options[k] = type(d)(v)

    # -- to implement -------------------------------------------------------------
    @abc.abstractmethod
    def build(self, dtype: torch.dtype, device: torch.device):
        """Build and return the simulator (a physics.Simulator); set episode_length, act_dim, obs_dim."""
        ...

    @abc.abstractmethod
    def reset(self, generator: torch.Generator, num_envs: int) -> torch.Tensor:
        """Seeded initial states [num_envs, state_dim] (draw all randomness from `generator`)."""
        ...

    @abc.abstractmethod
    def observe(self, state: torch.Tensor) -> torch.Tensor:
        ...

    @abc.abstractmethod
    def reward(self, state, action, next_state) -> torch.Tensor:
        ...

    # -- optional -----------------------------------------------------------------
    def control(self, action: torch.Tensor) -> torch.Tensor:
        """Map actions in [-1, 1] to the simulator's controls (differentiable). Default: clamp."""
        return action.clamp(-1.0, 1.0)

    def terminated(self, state: torch.Tensor) -> torch.Tensor:
        return torch.zeros(state.shape[0], dtype=torch.bool, device=state.device)

    def metrics(self, state: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-env task metrics of a state reported in `info` (e.g. {"score": ...})."""
        return {}

    def render_spec(self) -> dict:
        """What to draw (the contract is documented at the top of mbmix_taichi/render.py). Keys:
        meshes: [{"vertices": fn(state_row) -> [V,3], "faces": [F,3], "color", "back_color"}]
        spheres: [{"centers": fn(state_row) -> [K,3], "radius", "color"}]
        geoms: fn(state_row) -> [{"type": sphere|capsule|box, "pos", "rot", "size", "color"}]
        camera: {"position", "focal_point", "up", "follow": fn(state_row) -> [3] (optional;
                 position and focal_point are then offsets from the followed point)}
        ground: {"height", "size"}
        Render code never special-cases task names.
        """
        return {}
