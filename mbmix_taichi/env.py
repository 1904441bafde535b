"""The batched, differentiable environment API (see DESIGN.md, "Public API").

`Env` joins a task (reset, observation, reward, termination; torch functions of the state)
and its simulator (one control step and its exact derivatives). `transition` is a torch
autograd operation whose backward is the simulator's exact VJP, so gradients flow through
any number of steps; `vjp`, `jvp` and `jacobian` expose the derivatives of one step directly.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from . import _ti
from .errors import InputError, OptionError
from .registry import get_task_class

_DTYPES = {"float32": torch.float32, "float64": torch.float64,
           torch.float32: torch.float32, torch.float64: torch.float64}


class _SimStep(torch.autograd.Function):
    """next_state = sim(state, control); backward = the simulator's exact VJP."""

    @staticmethod
    def forward(ctx, state, control, sim):
        record = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        nxt, tape = sim.step(state.detach(), control.detach(), record=record)
        ctx.sim, ctx.tape = sim, tape
        return nxt

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        g_state, g_control = ctx.sim.vjp_tape(ctx.tape, grad.contiguous())
        ctx.tape = None
        return g_state, g_control, None


def make(task: str, num_envs: int = 1, seed: int = 0, dtype="float32", arch: str = "auto", **options) -> "Env":
    """Build an environment: ``mt.make("cloth-fold", num_envs=16, seed=0)``."""
    return Env(get_task_class(task)(**options), num_envs=num_envs, seed=seed, dtype=dtype, arch=arch)


class Env:
    def __init__(self, task, num_envs: int = 1, seed: int = 0, dtype="float32", arch: str = "auto"):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise OptionError(f"num_envs must be a positive integer, got {num_envs!r}")
        if dtype not in _DTYPES:
            raise OptionError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.arch = _ti.init(arch)
        self.device = _ti.device()
        self.dtype = _DTYPES[dtype]
        self.task = task
        self.sim = task.build(self.dtype, self.device)
        self.num_envs = int(num_envs)
        self.state_dim = self.sim.state_dim
        self.act_dim = task.act_dim
        self.obs_dim = task.obs_dim
        self.episode_length = task.episode_length
        #: a state entry above this magnitude counts as a simulator blow-up
        self.state_limit = float(getattr(task, "state_limit", 1e6))
        self.blowups = 0
        self._seed = int(seed)
        self._gen = torch.Generator().manual_seed(self._seed)
        self._state = None
        self._t = torch.zeros(self.num_envs, dtype=torch.long)
        self.reset(seed)

    def __repr__(self):
        return (f"Env({self.task.name!r}, num_envs={self.num_envs}, state_dim={self.state_dim}, "
                f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, dtype={self.dtype}, arch={self.arch!r})")

    # -- validation -------------------------------------------------------------------
    def _tensor(self, x, what: str, dim: int, rows=None, extra_dims: int = 0) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{what} must be a torch tensor or numpy array, got {type(x).__name__}")
        if x.dtype != self.dtype:
            raise InputError(f"{what} has dtype {x.dtype}; this env expects {self.dtype} (make(..., dtype=...))")
        if x.device != self.device:
            raise InputError(f"{what} is on device {x.device}; this env's tensors live on {self.device}")
        want = 2 + extra_dims
        if x.dim() != want or x.shape[-1] != dim or (rows is not None and x.shape[0] != rows):
            shape = f"[{rows if rows is not None else 'B'}{', P' if extra_dims else ''}, {dim}]"
            raise InputError(f"{what} has shape {list(x.shape)}; expected {shape}")
        bad = ~torch.isfinite(x.detach())
        if bad.any():
            rows_bad = bad.reshape(x.shape[0], -1).any(1).nonzero().flatten().tolist()
            raise InputError(f"{what} contains NaN or Inf (rows {rows_bad[:10]}); expected finite values")
        return x

    def _check_pair(self, state, action):
        state = self._tensor(state, "state", self.state_dim)
        action = self._tensor(action, "action", self.act_dim, rows=state.shape[0])
        return state, action

    # -- episode API ---------------------------------------------------------------------
    def reset(self, seed=None) -> torch.Tensor:
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self._state = self._initial(self.num_envs)
        self._t.zero_()
        return self.observe(self._state)

    def _initial(self, n: int) -> torch.Tensor:
        s = self.task.reset(self._gen, n)
        return s.to(device=self.device, dtype=self.dtype).contiguous()

    def get_state(self) -> torch.Tensor:
        return self._state.clone()

    def episode_state(self) -> dict:
        """What besides the simulator state a bit-identical resume needs: the per-env step
        counters and the reset generator's state (plain tensors)."""
        return {"state": self._state.detach().clone(), "t": self._t.clone(), "gen": self._gen.get_state()}

    def set_episode_state(self, d: dict) -> None:
        """Restore what `episode_state` returned."""
        t = torch.as_tensor(d["t"], dtype=torch.long)
        if t.shape != self._t.shape:
            raise InputError(f"episode state is for {t.shape[0]} envs; this env has {self.num_envs}")
        self.set_state(d["state"])
        self._t = t.clone()
        self._gen.set_state(d["gen"])

    def set_state(self, state) -> None:
        self._state = self._tensor(state, "state", self.state_dim, rows=self.num_envs)

    def step(self, action):
        action = self._tensor(action, "action", self.act_dim, rows=self.num_envs)
        state = self._state
        if action.requires_grad or state.requires_grad:
            nxt = self.transition(state, action)
        else:
            with torch.no_grad():
                nxt = self.sim.step(state, self.task.control(action).contiguous())[0]
        reward = self.task.reward(state, action, nxt)
        blowup = ~torch.isfinite(nxt.detach()).all(1) | (nxt.detach().abs() > self.state_limit).any(1)
        if blowup.any():
            self.blowups += int(blowup.sum())
            warnings.warn(f"{self.task.name}: simulator blow-up (non-finite or |state| > {self.state_limit:g}) "
                          f"in envs {blowup.nonzero().flatten().tolist()[:10]}; those envs were reset", RuntimeWarning)
            reward = torch.where(blowup, torch.zeros_like(reward), reward)
        self._t += 1
        terminated = self.task.terminated(nxt.detach()).cpu() | blowup.cpu()
        truncated = (self._t >= self.episode_length) & ~terminated
        done = terminated | truncated
        info = {"final_state": nxt, "final_obs": self.observe(nxt), "done": done, "blowup": blowup.cpu(),
                "t": self._t.clone()}
        info.update({k: v.detach() for k, v in self.task.metrics(nxt.detach()).items()})
        if done.any():
            fresh = nxt.detach().clone()
            fresh[done.to(self.device)] = self._initial(int(done.sum()))
            nxt = torch.where(done.to(self.device)[:, None], fresh, nxt)
            self._t[done] = 0
        self._state = nxt
        return self.observe(nxt), reward, terminated, truncated, info

    # -- pure, differentiable functions ----------------------------------------------------
    def transition(self, state, action) -> torch.Tensor:
        """The next state of one control step; a torch op with the simulator's exact VJP."""
        state, action = self._check_pair(state, action)
        control = self.task.control(action).contiguous()
        return _SimStep.apply(state.contiguous(), control, self.sim)

    def observe(self, state) -> torch.Tensor:
        return self.task.observe(state)

    def reward(self, state, action, next_state) -> torch.Tensor:
        return self.task.reward(state, action, next_state)

    def metrics(self, state) -> dict:
        return self.task.metrics(state)

    # -- derivatives of one control step ------------------------------------------------------
    def _control_jacobian(self, action) -> torch.Tensor:
        """d control / d action, [B, dc, da] (the task's action map, usually a scaled clamp)."""
        def one(a):
            return self.task.control(a[None])[0]
        return torch.func.vmap(torch.func.jacrev(one))(action.detach())

    def vjp(self, state, action, cotangent):
        """(cotangent^T d s'/d s, cotangent^T d s'/d a) for cotangent [B, state_dim]."""
        state, action = self._check_pair(state, action)
        cot = self._tensor(cotangent, "cotangent", self.state_dim, rows=state.shape[0])
        control = self.task.control(action.detach()).contiguous()
        g_s, g_c = self.sim.vjp(state.detach().contiguous(), control, cot.detach().clone())
        g_a = torch.einsum("bc,bca->ba", g_c, self._control_jacobian(action))
        return g_s, g_a

    def jvp(self, state, action, tangent_state, tangent_action):
        """d s' along (tangent_state, tangent_action); tangents [B, d] or probe batches [B, P, d]."""
        state, action = self._check_pair(state, action)
        probes = torch.as_tensor(tangent_state).dim() == 3
        ts = self._tensor(tangent_state, "tangent_state", self.state_dim, rows=state.shape[0], extra_dims=int(probes))
        ta = self._tensor(tangent_action, "tangent_action", self.act_dim, rows=state.shape[0], extra_dims=int(probes))
        control = self.task.control(action.detach()).contiguous()
        jca = self._control_jacobian(action)
        tc = torch.einsum("bca,bpa->bpc" if probes else "bca,ba->bc", jca, ta.detach())
        return self.sim.jvp(state.detach().contiguous(), control, ts.detach().contiguous(), tc.contiguous())

    def jacobian(self, state, action):
        """Full Jacobians of one control step: ([B, ds, ds], [B, ds, da])."""
        state, action = self._check_pair(state, action)
        control = self.task.control(action.detach()).contiguous()
        j_s, j_c = self.sim.jacobian(state.detach().contiguous(), control)
        return j_s, torch.einsum("bsc,bca->bsa", j_c, self._control_jacobian(action))
