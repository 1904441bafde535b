"""A tiny pure-torch task for the learner's tests: a 2-D point mass with quadratic drag
pushed towards the origin. Registered as "toy-reach" when this module is imported."""
from __future__ import annotations

import torch

from mbmix_taichi.physics.base import Simulator
from mbmix_taichi.task import Task


class ToySim(Simulator):
    def __init__(self, dim: int, dtype, device, dt=0.1, drag=0.5):
        self.dim, self.dt, self.drag = dim, dt, drag
        self.state_dim = 2 * dim
        self.control_dim = dim
        self.dtype, self.device = dtype, device

    def f(self, state, control):
        d = self.dim
        x, v = state[..., :d], state[..., d:]
        acc = 2.0 * control - self.drag * v * v.abs() - 0.2 * torch.sin(3.0 * x)
        v2 = v + self.dt * acc
        return torch.cat([x + self.dt * v2, v2], -1)

    def step(self, state, control, record=False):
        with torch.no_grad():
            nxt = self.f(state, control)
        return nxt, ((state, control) if record else None)

    def vjp_tape(self, tape, cotangent):
        s, c = (t.detach().requires_grad_(True) for t in tape)
        with torch.enable_grad():
            out = self.f(s, c)
            gs, gc = torch.autograd.grad(out, (s, c), cotangent)
        return gs, gc

    def jvp(self, state, control, t_state, t_control):
        if t_state.dim() == 3:
            p = t_state.shape[1]
            s = state[:, None].expand(-1, p, -1).contiguous()
            c = control[:, None].expand(-1, p, -1).contiguous()
            return torch.func.jvp(self.f, (s, c), (t_state.contiguous(), t_control.contiguous()))[1]
        return torch.func.jvp(self.f, (state, control), (t_state, t_control))[1]


class ToyReach(Task):
    name = "toy-reach"
    description = "test helper: drive a point mass with drag to the origin"
    default_options = {"dim": 2, "episode_length": 32}

    def build(self, dtype, device):
        self.dim = int(self.options["dim"])
        self.sim = ToySim(self.dim, dtype, device)
        self.episode_length = int(self.options["episode_length"])
        self.act_dim = self.dim
        self.obs_dim = 2 * self.dim
        return self.sim

    def reset(self, generator, num_envs):
        x = (torch.rand(num_envs, self.dim, generator=generator) * 2 - 1) * 1.5
        return torch.cat([x, torch.zeros(num_envs, self.dim)], -1)

    def observe(self, state):
        return state

    def reward(self, state, action, next_state):
        x = next_state[..., : self.dim]
        return -(x ** 2).sum(-1) - 0.01 * (action.clamp(-1, 1) ** 2).sum(-1)

    def metrics(self, state):
        return {"score": torch.exp(-(state[..., : self.dim] ** 2).sum(-1).sqrt())}
