"""Actor, critic and the running observation normaliser shared by every algorithm."""
from __future__ import annotations

import torch
from torch import nn


def mlp(n_in: int, hidden: list, n_out: int) -> nn.Sequential:
    """Linear -> LayerNorm -> ELU blocks (SHAC's actor/critic layout), linear head."""
    layers, d = [], n_in
    for h in hidden:
        layers += [nn.Linear(d, h), nn.LayerNorm(h), nn.ELU()]
        d = h
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


class RunningNorm(nn.Module):
    """Observation normaliser with running mean/variance (frozen inside a gradient step)."""

    def __init__(self, dim: int, clip: float = 10.0, enabled: bool = True):
        super().__init__()
        self.enabled = enabled
        self.clip = clip
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(1e-4))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        if not self.enabled:
            return
        x = x.reshape(-1, x.shape[-1]).float()
        x = x[torch.isfinite(x).all(1)]
        if len(x) == 0:
            return
        bm, bv, bn = x.mean(0), x.var(0, unbiased=False), float(len(x))
        delta, tot = bm - self.mean, self.count + bn
        self.mean += delta * bn / tot
        self.var.copy_((self.var * self.count + bv * bn + delta ** 2 * self.count * bn / tot) / tot)
        self.count.fill_(float(tot))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        return ((x - self.mean) / torch.sqrt(self.var + 1e-8)).clamp(-self.clip, self.clip)


class Actor(nn.Module):
    """Gaussian policy: mean tanh(MLP(obs)), state-independent log std; reparameterised samples."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list, init_log_std: float = -1.0):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def forward(self, obs_n: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        mean = torch.tanh(self.net(obs_n))
        if deterministic:
            return mean
        return mean + self.log_std.exp() * torch.randn_like(mean)


class Critic(nn.Module):
    def __init__(self, obs_dim: int, hidden: list):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1)

    def forward(self, obs_n: torch.Tensor) -> torch.Tensor:
        return self.net(obs_n).squeeze(-1)
