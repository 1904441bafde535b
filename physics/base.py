"""The contract every simulator in ``physics/`` keeps.

A simulator is a pure function of one control step, batched over environments::

    next_state, tape = sim.step(state, control, record=True)   # torch tensors in, out
    g_state, g_control = sim.vjp_tape(tape, cotangent)        # reverse mode, exact
    t_next = sim.jvp(state, control, t_state, t_control)       # forward mode, exact

``state`` is ``[N, state_dim]``, ``control`` is ``[N, control_dim]`` in physical units
(tasks map actions in [-1, 1] to controls). ``jvp`` takes tangents ``[N, ds]`` or a batch
of probes ``[N, P, ds]``; ``jacobian`` is built from probe batches. All tensors live on the
device the taichi arch reads in place (cpu or cuda) and share the simulator's dtype.
Simulators never import the learner.
"""
from __future__ import annotations

import abc

import torch


class Simulator(abc.ABC):
    state_dim: int
    control_dim: int
    dtype: torch.dtype
    device: torch.device
    #: kernel launches (python -> taichi calls) made so far; benchmarks read it.
    launches: int = 0

    # -- to implement -------------------------------------------------------------
    @abc.abstractmethod
    def step(self, state: torch.Tensor, control: torch.Tensor, record: bool = False):
        """Return (next_state, tape). ``tape`` is whatever ``vjp_tape`` needs (None if not recorded)."""
        ...

    @abc.abstractmethod
    def vjp_tape(self, tape, cotangent: torch.Tensor):
        """Return (g_state [N, ds], g_control [N, dc]) = cotangent^T d next_state / d(state, control)."""
        ...

    @abc.abstractmethod
    def jvp(self, state, control, t_state, t_control):
        """Return d next_state along (t_state, t_control); tangents [N, ds]/[N, dc] or [N, P, .]."""
        ...

    # -- derived --------------------------------------------------------------------
    def bytes_per_env(self, record: bool = False) -> int:
        """Rough memory one env needs: its state and reset intermediates, and the scratch of one step
        (with the VJP tape if `record`). Env refuses a num_envs that cannot fit. Override if known."""
        item = torch.empty((), dtype=self.dtype).element_size()
        return item * self.state_dim * (16 if record else 8)

    def check_inputs(self, state, control):
        """(state, control) made contiguous, or ValueError: the kernels index state [N, ds] and
        control [N, dc] of the simulator's dtype by these sizes, so never launch on others."""
        if (state.dtype != self.dtype or control.dtype != self.dtype or state.dim() != 2 or control.dim() != 2
                or state.shape[1] != self.state_dim or tuple(control.shape) != (state.shape[0], self.control_dim)):
            raise ValueError(f"{type(self).__name__}: state {list(state.shape)} {state.dtype} and control "
                             f"{list(control.shape)} {control.dtype} do not match [N, {self.state_dim}], "
                             f"[N, {self.control_dim}] {self.dtype}")
        return state.contiguous(), control.contiguous()

    def check_cotangent(self, cotangent, n: int):
        if cotangent.dtype != self.dtype or tuple(cotangent.shape) != (n, self.state_dim):
            raise ValueError(f"{type(self).__name__}: cotangent {list(cotangent.shape)} {cotangent.dtype} does not "
                             f"match [{n}, {self.state_dim}] {self.dtype}")
        return cotangent.contiguous()

    def check_tangents(self, state, control, t_state, t_control) -> None:
        """Shapes the tangent kernels index: t_state [N, ds] / [N, P, ds], t_control [N, dc] / [N, P, dc]."""
        n = state.shape[0]
        lead = tuple(t_state.shape[:-1])
        if (t_state.dim() not in (2, 3) or lead[0] != n or t_state.shape[-1] != self.state_dim
                or tuple(t_control.shape[:-1]) != lead or t_control.shape[-1] != control.shape[-1]):
            raise ValueError(f"tangent shapes {list(t_state.shape)} and {list(t_control.shape)} do not match "
                             f"state {list(state.shape)} and control {list(control.shape)}")

    def vjp(self, state, control, cotangent):
        _, tape = self.step(state, control, record=True)
        return self.vjp_tape(tape, cotangent)

    #: probes per jvp launch when building full Jacobians (bounds scratch memory)
    jacobian_chunk: int = 256

    def jacobian(self, state: torch.Tensor, control: torch.Tensor):
        """Full Jacobians ([N, ds, ds], [N, ds, dc]) from batches of unit-vector JVPs."""
        n, ds = state.shape
        dc = control.shape[1]
        total = ds + dc
        eye = torch.eye(total, dtype=state.dtype, device=state.device)
        cols = []
        for lo in range(0, total, self.jacobian_chunk):
            hi = min(total, lo + self.jacobian_chunk)
            probes = eye[lo:hi].unsqueeze(0).expand(n, hi - lo, total)
            t_s = probes[..., :ds].contiguous()
            t_c = probes[..., ds:].contiguous()
            cols.append(self.jvp(state, control, t_s, t_c))  # [N, P, ds]
        jac = torch.cat(cols, dim=1).transpose(1, 2)  # [N, ds, ds + dc]
        return jac[:, :, :ds].contiguous(), jac[:, :, ds:].contiguous()
