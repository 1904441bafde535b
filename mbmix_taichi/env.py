"""The batched, differentiable environment API (the README's "The API in ten lines").

`Env` joins a task (reset, observation, reward, termination; torch functions of the state)
and its simulator (one control step and its exact derivatives). `transition` is a torch
autograd operation whose backward is the simulator's exact VJP, so gradients flow through
any number of steps; `vjp`, `jvp` and `jacobian` expose the derivatives of one step directly.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import torch

from . import _ti, previous_action
from .errors import InputError, OptionError, SimulationError
from .registry import get_task_class

_DTYPES = {"float32": torch.float32, "float64": torch.float64,
           torch.float32: torch.float32, torch.float64: torch.float64}


class _SimStep(torch.autograd.Function):
    """next_state = sim(state, control); backward = the simulator's exact VJP."""

    @staticmethod
    def forward(ctx, state, control, sim, observer=None):
        record = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        nxt, tape = sim.step(state.detach(), control.detach(), record=record)
        ctx.sim, ctx.tape, ctx.observer = sim, tape, observer
        return nxt

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        grad = grad.contiguous()
        g_state, g_control = ctx.sim.vjp_tape(ctx.tape, grad)
        ctx.tape = None
        if ctx.observer is not None:
            ctx.observer(grad, g_state, g_control)
        return g_state, g_control, None, None


def make(task: str, num_envs: int = 1, seed: int = 0, dtype="float32", arch: str = "auto", **options) -> "Env":
    """Build an environment: ``mt.make("cloth-fold", num_envs=16, seed=0)``."""
    return Env(get_task_class(task)(**options), num_envs=num_envs, seed=seed, dtype=dtype, arch=arch)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2 ** 64:
        raise OptionError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def _available_memory(device: torch.device) -> int | None:
    """Bytes this process can still allocate on `device` (None if unknown)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        avail = None
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
        try:  # a cgroup (container) limit below the machine's memory
            with open("/sys/fs/cgroup/memory.max") as f:
                lim = f.read().strip()
            with open("/sys/fs/cgroup/memory.current") as f:
                cur = int(f.read())
            if lim != "max":
                avail = min(avail if avail is not None else 1 << 62, int(lim) - cur)
        except OSError:
            pass
        return avail
    except Exception:
        return None


class Env:
    """Every public method validates its inputs here, once, in ``_tensor`` (tensors) and
    ``_check_seed`` / ``Task`` options; errors are MbmixError subclasses and leave the env usable."""

    def __init__(self, task, num_envs: int = 1, seed: int = 0, dtype="float32", arch: str = "auto"):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise OptionError(f"num_envs must be a positive integer, got {num_envs!r}")
        if not isinstance(dtype, (str, torch.dtype)) or dtype not in _DTYPES:
            raise OptionError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        seed = _check_seed(seed)
        self.arch = _ti.init(arch)
        self.device = _ti.device()
        self.dtype = _DTYPES[dtype]
        # a task with the option previous_action on carries its last action in the state (previous_action.py)
        self.task = task = previous_action.wrap(task)
        self.sim = task.build(self.dtype, self.device)
        self.num_envs = int(num_envs)
        self.state_dim = self.sim.state_dim
        self.act_dim = task.act_dim
        self.obs_dim = task.obs_dim
        self.episode_length = task.episode_length
        self._check_memory()
        #: a state entry above this magnitude counts as a simulator blow-up
        self.state_limit = float(task.state_limit)
        self.blowups = 0
        self._seed = seed
        self._gen = torch.Generator().manual_seed(self._seed)
        self._state = None
        self._vjp_observer = None  # see vjp_observer()
        self._t = torch.zeros(self.num_envs, dtype=torch.long)
        self._seen = {}  # (what, shape, dtype, device, rows, probes) of inputs that passed the static checks
        self.reset(seed)

    def __repr__(self):
        return (f"Env({self.task.name!r}, num_envs={self.num_envs}, state_dim={self.state_dim}, "
                f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, dtype={self.dtype}, arch={self.arch!r})")

    def _check_memory(self) -> None:
        """Refuse a num_envs whose states and one simulator step cannot fit, before allocating them."""
        per_env = int(self.sim.bytes_per_env(record=False))
        need = self.num_envs * per_env
        avail = _available_memory(self.device)
        if avail is not None and need > avail:
            rec = self.num_envs * int(self.sim.bytes_per_env(record=True))
            raise OptionError(
                f"num_envs={self.num_envs} needs about {need / 2**30:.1f} GiB on {self.device} for states and one "
                f"step ({per_env / 2**10:.1f} KiB per env; {rec / 2**30:.1f} GiB with a VJP tape), but only "
                f"{avail / 2**30:.1f} GiB is available; use at most {max(1, avail // per_env)} envs")

    # -- validation -------------------------------------------------------------------
    def _tensor(self, x, what: str, dim: int, rows=None, probes=0, finite: bool = True) -> torch.Tensor:
        """x as a tensor of this env's dtype/device and shape [rows, dim] (probes=None: [rows, dim] or
        [rows, P, dim]; probes=P: [rows, P, dim]); NaN/Inf refused if `finite`. The static checks run
        once per (shape, dtype, device); the finiteness check is one reduction."""
        if type(x) is not torch.Tensor:
            if isinstance(x, np.ndarray):
                try:  # negative or other strides: copy to a contiguous array first
                    x = torch.from_numpy(np.ascontiguousarray(x))
                except TypeError as exc:
                    raise InputError(f"{what} is a numpy array of dtype {x.dtype}; this env expects "
                                     f"{self.dtype} ({exc})") from None
            elif not isinstance(x, torch.Tensor):
                raise InputError(f"{what} must be a torch tensor or numpy array, got {type(x).__name__}")
        key = (what, x.shape, x.dtype, x.device, rows, probes)
        if key not in self._seen:
            if x.dtype != self.dtype:
                raise InputError(f"{what} has dtype {x.dtype}; this env expects {self.dtype} (make(..., dtype=...))")
            if x.device != self.device:
                raise InputError(f"{what} is on device {x.device}; this env's tensors live on {self.device}")
            nd = x.dim()
            ok = nd in ((2, 3) if probes is None else (3,) if probes else (2,))
            ok = ok and x.shape[-1] == dim and (rows is None or x.shape[0] == rows)
            ok = ok and not (probes and x.shape[1] != probes)
            if not ok:
                r = rows if rows is not None else "B"
                p = ", P" if probes is None else f", {probes}" if probes else ""
                want = f"[{r}, {dim}] or [{r}, P, {dim}]" if probes is None else f"[{r}{p}, {dim}]"
                raise InputError(f"{what} has shape {list(x.shape)}; expected {want}")
            if len(self._seen) > 256:
                self._seen.clear()
            self._seen[key] = True
        # one reduction: a finite sum means no NaN/Inf (either would propagate); only a non-finite sum
        # (or a finite overflow) takes the exact check
        if finite and not math.isfinite(float(x.detach().sum())) and not bool(torch.isfinite(x.detach()).all()):
            bad = ~torch.isfinite(x.detach())
            rows_bad = bad.reshape(x.shape[0], -1).any(1).nonzero().flatten().tolist()
            raise InputError(f"{what} contains NaN or Inf (rows {rows_bad[:10]}); expected finite values")
        return x

    def _check_pair(self, state, action):
        _ti.check_not_forked()
        state = self._tensor(state, "state", self.state_dim)
        action = self._tensor(action, "action", self.act_dim, rows=state.shape[0])
        return state, action

    def _blown(self, nxt: torch.Tensor) -> torch.Tensor | None:
        """Rows of nxt that are non-finite or beyond state_limit (None if there are none; one reduction)."""
        d = nxt.detach()
        if not d.numel() or float(d.abs().amax()) <= self.state_limit:  # NaN propagates, compares False
            return None
        return ~(d.abs() <= self.state_limit).all(1)

    # -- episode API ---------------------------------------------------------------------
    def reset(self, seed=None) -> torch.Tensor:
        if seed is not None:
            self._gen.manual_seed(_check_seed(seed))
        self._state = self._initial(self.num_envs)
        self._t.zero_()
        return self.task.observe(self._state)

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

    def cut_graph(self) -> None:
        """Detach the current states from any autograd graph: gradients of what follows stop here."""
        self._state = self._state.detach()

    def restart_step_count(self, rows) -> None:
        """Set the step counters of the envs in `rows` (a boolean mask or indices) back to 0, as if
        their episodes had just begun (the Gymnasium adapter's NEXT_STEP autoreset)."""
        self._t[torch.as_tensor(rows, device="cpu")] = 0

    def terminated(self, state) -> torch.Tensor:
        """Which rows of `state` end their episode (the task's termination; [B] bool)."""
        return self.task.terminated(self._tensor(state, "state", self.state_dim, finite=False))

    def set_state(self, state) -> None:
        """Set the envs' states to a copy of `state` [num_envs, state_dim] (later edits of it do not leak in)."""
        state = self._tensor(state, "state", self.state_dim, rows=self.num_envs)
        self._state = state.clone(memory_format=torch.contiguous_format)

    @contextlib.contextmanager
    def vjp_observer(self, fn):
        """Steps taken (`step`, `transition`) while this is active report their exact VJPs when a
        backward pass later runs through them: fn(state, action, cotangent, vjp_state, vjp_action),
        detached, [B, .] each (cotangent: the gradient w.r.t. the next state; vjp_* = cotangent^T
        d s'/d s, cotangent^T d s'/d a). A learner sees the vector-Jacobian pairs that its own
        policy gradient used, e.g. as Sobolev targets for a dynamics model."""
        saved, self._vjp_observer = self._vjp_observer, fn
        try:
            yield
        finally:
            self._vjp_observer = saved

    def _observer(self, state, action):
        fn = self._vjp_observer
        if fn is None:
            return None
        s, a = state.detach().clone(), action.detach().clone()

        def observe(cotangent, g_state, g_control):
            g_action = torch.einsum("bc,bca->ba", g_control, self._control_jacobian(a))
            fn(s, a, cotangent.detach(), g_state.detach(), g_action.detach())

        return observe

    def _advance(self, state, action):
        """One step of checked inputs; a torch op with the exact VJP only when a gradient is wanted."""
        if torch.is_grad_enabled() and (state.requires_grad or action.requires_grad):
            return _SimStep.apply(state.contiguous(), self.task.control(action).contiguous(), self.sim,
                                  self._observer(state, action))
        # nothing wants a gradient: no autograd Function, no tape (the simulator reads the data only)
        return self.sim.step(state.contiguous(), self.task.control(action).contiguous())[0]

    def step(self, action):
        _ti.check_not_forked()
        action = self._tensor(action, "action", self.act_dim, rows=self.num_envs)
        state = self._state
        nxt = self._advance(state, action)
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
        info = {"final_state": nxt, "final_obs": self.task.observe(nxt), "done": done, "blowup": blowup.cpu(),
                "t": self._t.clone()}
        info.update({k: v.detach() for k, v in self.task.metrics(nxt.detach()).items()})
        if done.any():
            fresh = nxt.detach().clone()
            fresh[done.to(self.device)] = self._initial(int(done.sum()))
            nxt = torch.where(done.to(self.device)[:, None], fresh, nxt)
            self._t[done] = 0
        self._state = nxt
        return self.task.observe(nxt), reward, terminated, truncated, info

    # -- pure, differentiable functions ----------------------------------------------------
    def transition(self, state, action) -> torch.Tensor:
        """The next state of one control step; a torch op with the simulator's exact VJP.

        Raises SimulationError if the result is non-finite or beyond ``state_limit`` in any row
        (the same test as ``step``'s blow-up detection; ``step`` resets such envs instead)."""
        state, action = self._check_pair(state, action)
        nxt = self._advance(state, action)
        blown = self._blown(nxt)
        if blown is not None:
            rows = blown.nonzero().flatten().tolist()
            raise SimulationError(
                f"{self.task.name}: the simulator blew up (non-finite or |state| > {self.state_limit:g}) in rows "
                f"{rows[:10]} of this transition; those inputs are beyond what the simulator integrates stably "
                "(env.step resets such envs and reports info['blowup'])")
        return nxt

    def observe(self, state) -> torch.Tensor:
        return self.task.observe(self._tensor(state, "state", self.state_dim, finite=False))

    def reward(self, state, action, next_state) -> torch.Tensor:
        state = self._tensor(state, "state", self.state_dim, finite=False)
        action = self._tensor(action, "action", self.act_dim, rows=state.shape[0], finite=False)
        next_state = self._tensor(next_state, "next_state", self.state_dim, rows=state.shape[0], finite=False)
        return self.task.reward(state, action, next_state)

    def metrics(self, state) -> dict:
        return self.task.metrics(self._tensor(state, "state", self.state_dim, finite=False))

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
        ts = self._tensor(tangent_state, "tangent_state", self.state_dim, rows=state.shape[0], probes=None)
        probes = ts.dim() == 3
        # the tangent kernels read one action tangent per (env, probe): the probe counts must agree
        ta = self._tensor(tangent_action, "tangent_action", self.act_dim, rows=state.shape[0],
                          probes=ts.shape[1] if probes else 0)
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
