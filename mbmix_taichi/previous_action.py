"""The previous action carried in the state (DiffRL's locomotion observation), for any task.

DiffRL's ant and humanoid append the last (clipped) action to the observation, and clear it
to zero on reset. The previous action is no part of a simulator's state, so appending it to
the observation alone would make the observation a function of more than the state: the
state would not be Markov and ``transition``/``vjp``/``jvp``/``jacobian`` would miss a
dependency. Instead the action is carried in the state:

    state  = [simulator state (n), previous action (k)]
    s'     = [sim(s[:n], control(a)), clip(a, -1, 1)]
    obs    = [task observation of s[:n], s[n:]]

so d s'/d s has a zero block in the previous-action columns and rows, and d s'/d a has the
clip's derivative (the identity inside [-1, 1]) in the previous-action rows: the derivatives
stay exact. Reward, termination, metrics and rendering read the simulator state only.

A task turns this on by declaring the option ``previous_action`` (a bool) in its
``default_options``; ``Env`` then wraps it (``PreviousActionTask``) and its simulator
(``PreviousActionSim``) when the option is true. The wrapper forwards every other attribute
to the task, so ``env.task.model``, ``env.task.qpos(...)`` keep working (on the first
``env.task.sim_state_dim`` columns of a state).
"""
from __future__ import annotations

import torch

from .physics.base import Simulator
from .task import Task

#: the task option that turns the mechanism on
OPTION = "previous_action"


class PreviousActionSim(Simulator):
    """A simulator whose state is [inner state (n), previous action (k)] and whose control is
    [inner control (c), clipped action (k)]; the last k controls become the last k states."""

    def __init__(self, sim: Simulator, k: int):
        self.sim, self.k = sim, int(k)
        self.inner_state_dim = int(sim.state_dim)
        self.state_dim = self.inner_state_dim + self.k
        self.inner_control_dim = int(getattr(sim, "control_dim", -1))
        if hasattr(sim, "control_dim"):
            self.control_dim = self.inner_control_dim + self.k
        self.dtype, self.device = sim.dtype, sim.device

    def __getattr__(self, name):  # launches, model, ... of the wrapped simulator
        if name == "sim":
            raise AttributeError(name)
        return getattr(self.sim, name)

    @property
    def launches(self):
        return self.sim.launches

    def _split(self, x):
        n = self.inner_state_dim
        return x[..., :n].contiguous(), x[..., n:]

    def _csplit(self, c):
        nc = c.shape[-1] - self.k
        return c[..., :nc].contiguous(), c[..., nc:]

    def step(self, state, control, record: bool = False):
        state, control = self.check_inputs(state, control)
        s, _ = self._split(state)
        c, prev = self._csplit(control)
        nxt, tape = self.sim.step(s, c, record=record)
        return torch.cat([nxt, prev.to(nxt.dtype)], -1), tape

    def _join_vjp(self, g_s, g_c, cotangent):
        zeros = torch.zeros(g_s.shape[0], self.k, dtype=g_s.dtype, device=g_s.device)
        return torch.cat([g_s, zeros], -1), torch.cat([g_c, cotangent[:, self.inner_state_dim:]], -1)

    def vjp_tape(self, tape, cotangent):
        cotangent = self.check_cotangent(cotangent, cotangent.shape[0] if cotangent.dim() else -1)
        g_s, g_c = self.sim.vjp_tape(tape, cotangent[:, :self.inner_state_dim].contiguous())
        return self._join_vjp(g_s, g_c, cotangent)

    def vjp(self, state, control, cotangent):
        state, control = self.check_inputs(state, control)
        cotangent = self.check_cotangent(cotangent, state.shape[0])
        s, _ = self._split(state)
        c, _ = self._csplit(control)
        g_s, g_c = self.sim.vjp(s, c, cotangent[:, :self.inner_state_dim].contiguous())
        return self._join_vjp(g_s, g_c, cotangent)

    def jvp(self, state, control, t_state, t_control):
        state, control = self.check_inputs(state, control)
        s, _ = self._split(state)
        c, _ = self._csplit(control)
        ts, _ = self._split(t_state)
        tc, tprev = self._csplit(t_control)
        return torch.cat([self.sim.jvp(s, c, ts, tc), tprev.to(state.dtype)], -1)

    def jacobian(self, state, control):
        state, control = self.check_inputs(state, control)
        s, _ = self._split(state)
        c, _ = self._csplit(control)
        js, jc = self.sim.jacobian(s, c)
        b, n, k, nc = state.shape[0], self.inner_state_dim, self.k, c.shape[1]
        J_s = torch.zeros(b, n + k, n + k, dtype=js.dtype, device=js.device)
        J_s[:, :n, :n] = js
        J_c = torch.zeros(b, n + k, nc + k, dtype=jc.dtype, device=jc.device)
        J_c[:, :n, :nc] = jc
        J_c[:, n:, nc:] = torch.eye(k, dtype=jc.dtype, device=jc.device)
        return J_s, J_c

    def bytes_per_env(self, record: bool = False) -> int:
        item = torch.empty((), dtype=self.dtype).element_size()
        return int(self.sim.bytes_per_env(record)) + 4 * item * self.k


class PreviousActionTask(Task):
    """`task` with the previous action carried in its state and appended to its observation
    (see the module docstring). Attributes it does not define are the wrapped task's."""

    def __init__(self, task: Task):  # no Task.__init__: the options were checked by `task`
        self.inner = task
        self.name, self.description = task.name, task.description
        self.default_options, self.option_types = task.default_options, task.option_types
        self.options = task.options
        self.state_limit = task.state_limit

    def __getattr__(self, name):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self):
        return f"PreviousActionTask({self.inner!r})"

    def build(self, dtype, device):
        sim = self.inner.build(dtype, device)
        self.episode_length, self.act_dim = self.inner.episode_length, self.inner.act_dim
        self.obs_dim = self.inner.obs_dim + self.act_dim
        #: columns of a state that are the simulator's (the rest: the previous action)
        self.sim_state_dim = int(sim.state_dim)
        return PreviousActionSim(sim, self.act_dim)

    def _s(self, state):
        return state[..., :self.sim_state_dim]

    def reset(self, generator, num_envs):
        s = self.inner.reset(generator, num_envs)
        # DiffRL clears the action buffer of reset envs
        return torch.cat([s, torch.zeros(s.shape[0], self.act_dim, dtype=s.dtype, device=s.device)], -1)

    def observe(self, state):
        obs = self.inner.observe(self._s(state))
        return torch.cat([obs, state[..., self.sim_state_dim:].to(obs.dtype)], -1)

    def reward(self, state, action, next_state):
        return self.inner.reward(self._s(state), action, self._s(next_state))

    def control(self, action):
        # the stored action is clipped, as DiffRL stores torch.clip(actions, -1, 1)
        return torch.cat([self.inner.control(action), action.clamp(-1.0, 1.0)], -1)

    def terminated(self, state):
        return self.inner.terminated(self._s(state))

    def metrics(self, state):
        return self.inner.metrics(self._s(state))

    def render_spec(self) -> dict:
        spec = dict(self.inner.render_spec() or {})
        n = self.sim_state_dim

        def cut(fn):
            return (lambda row: fn(row[:n])) if callable(fn) else fn

        for key, field in (("meshes", "vertices"), ("spheres", "centers")):
            if key in spec:
                spec[key] = [{**item, field: cut(item[field])} if field in item else item for item in spec[key]]
        if "geoms" in spec:
            spec["geoms"] = cut(spec["geoms"])
        if isinstance(spec.get("camera"), dict) and "follow" in spec["camera"]:
            spec["camera"] = {**spec["camera"], "follow": cut(spec["camera"]["follow"])}
        return spec


def wrap(task: Task) -> Task:
    """`task` wrapped when it declares the option and it is on; otherwise `task` itself."""
    if isinstance(task, PreviousActionTask) or not getattr(task, "options", {}).get(OPTION):
        return task
    return PreviousActionTask(task)
