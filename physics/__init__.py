"""Batched differentiable Taichi simulators (imported as ``mbmix_taichi.physics``).

Every simulator maps (state [N, state_dim], control [N, control_dim]) to the next state of
one control step (all substeps) and gives that step's exact derivatives; see ``base.py``.
"""
from .base import Simulator

__all__ = ["Simulator"]
