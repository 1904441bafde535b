"""What a task is: a small definition over a shared simulator.

Subclass :class:`Task` in a module of ``tasks/`` (or of a ``--tasks-dir`` folder, or of a
package exposing the ``mbmix_taichi.tasks`` entry-point group) and give it a ``name``; the
registry (``registry.py``) finds it there. Everything below ``build`` is a torch function of the simulator state,
so rewards and observations are differentiable.
"""
from __future__ import annotations

import abc
import math
import numbers
import operator
import os
from functools import lru_cache
from typing import Any

import torch

from .errors import OptionError

_CMP = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_KINDS = {"int": "an integer", "float": "a finite number", "bool": "true or false", "str": "a string",
          "path": "a file path"}


@lru_cache(maxsize=None)
def parse_option_type(spec: str):
    """'float > 0, <= 1 | None' -> (kind, ((op, bound), ...), none_ok). Kinds: int, float, bool,
    str, path; bounds only for int/float; '| None' also accepts None."""
    alts = [a.strip() for a in spec.split("|")]
    none_ok = "None" in alts
    alts = [a for a in alts if a != "None"]
    if len(alts) != 1:
        raise ValueError(f"bad option type {spec!r}")
    kind, _, rest = alts[0].partition(" ")
    if kind not in _KINDS:
        raise ValueError(f"bad option type {spec!r}: kind must be one of {', '.join(_KINDS)}")
    bounds = []
    for cond in filter(None, (c.strip() for c in rest.split(","))):
        op, _, num = cond.partition(" ")
        if op not in _CMP or kind not in ("int", "float"):
            raise ValueError(f"bad option type {spec!r}: bound {cond!r}")
        bounds.append((op, float(num)))
    return kind, tuple(bounds), none_ok


def describe_option_type(spec: str) -> str:
    kind, bounds, none_ok = parse_option_type(spec)
    text = _KINDS[kind] + "".join(f"{',' if i else ''} {op} {b:g}" for i, (op, b) in enumerate(bounds))
    return text + (" (or none)" if none_ok else "")


def check_option(task: str, key: str, value, spec: str | None, default=None):
    """The checked (and converted) value of task option `key`, or OptionError saying what is expected."""
    if spec is None:  # undeclared: infer from the default
        if isinstance(default, bool):
            spec = "bool"
        elif isinstance(default, int):
            spec = "int"
        elif isinstance(default, float):
            spec = "float"
        else:
            return value
        spec += " | None"
    kind, bounds, none_ok = parse_option_type(spec)
    given = value

    def bad():
        return OptionError(f"option {key} of task {task!r} must be {describe_option_type(spec)}, "
                           f"got {given!r}" + (" (a string)" if isinstance(given, str) else ""))

    if value is None:
        if none_ok:
            return None
        raise bad()
    if kind == "bool":
        if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy bools too
            return bool(value)
        raise bad()
    if kind in ("str", "path"):
        if isinstance(value, str) or (kind == "path" and isinstance(value, os.PathLike)):
            return value
        raise bad()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise bad()
    if not math.isfinite(float(value)):
        raise bad()
    if kind == "int":
        if float(value) != int(value):
            raise bad()
        value = int(value)
    else:
        value = float(value)
    for op, b in bounds:
        if not _CMP[op](value, b):
            raise bad()
    return value


class Task(abc.ABC):
    #: registry name, e.g. "cloth-fold"
    name: str = ""
    #: one line shown by `mbmix-taichi tasks`
    description: str = ""
    #: option name -> default value; `mt.make(task, **options)` may override any of them
    default_options: dict[str, Any] = {}
    #: option name -> its type and range, e.g. "float > 0", "int >= 1 | None", "bool", "path | None"
    #: (the grammar is `parse_option_type`); checked once in __init__. Options without a declaration
    #: fall back to the type of their default (and must then be finite numbers).
    option_types: dict[str, str] = {}

    #: a state entry above this magnitude counts as a simulator blow-up (Env.step resets the env,
    #: Env.transition raises SimulationError)
    state_limit: float = 1e6

    # set by build(): episode_length, act_dim, obs_dim
    episode_length: int
    act_dim: int
    obs_dim: int

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.default_options))
        if unknown:
            known = ", ".join(f"{k}={v!r}" for k, v in self.default_options.items()) or "none"
            raise OptionError(f"task {self.name!r} has no option {', '.join(unknown)}; its options are: {known}")
        self.options = {**self.default_options, **options}
        for k in options:  # defaults are trusted; what the caller passed is checked once, here
            self.options[k] = check_option(self.name, k, options[k], self.option_types.get(k),
                                           self.default_options[k])

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
        """What to draw (the contract is documented at the top of mbmix_taichi/viz/scene.py). Keys:
        meshes: [{"vertices": fn(state_row) -> [V,3], "faces": [F,3], "color", "back_color"}]
        spheres: [{"centers": fn(state_row) -> [K,3], "radius", "color"}]
        geoms: fn(state_row) -> [{"type": sphere|capsule|box, "pos", "rot", "size", "color"}]
        camera: {"position", "focal_point", "up", "follow": fn(state_row) -> [3] (optional;
                 position and focal_point are then offsets from the followed point)}
        ground: {"height", "size"}
        Render code never special-cases task names.
        """
        return {}
