"""Actor, critic and the running observation normaliser shared by every algorithm."""
from __future__ import annotations

import math

import torch
from torch import nn


def mlp(n_in: int, hidden: list, n_out: int, orthogonal: bool = False, activation=nn.ELU,
        layer_norm: bool = True) -> nn.Sequential:
    """Linear -> ELU -> LayerNorm blocks and a linear head (DiffRL's actor and critic layout);
    `orthogonal`: DiffRL's critic init (orthogonal weights, gain sqrt 2, zero biases);
    `activation` / `layer_norm`: other blocks (the studies in tools/ use tanh without norms)."""
    layers, d = [], n_in
    for h in hidden:
        layers += [nn.Linear(d, h), activation()] + ([nn.LayerNorm(h)] if layer_norm else [])
        d = h
    layers.append(nn.Linear(d, n_out))
    if orthogonal:
        for m in layers:
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight, gain=math.sqrt(2))
                nn.init.zeros_(m.bias)
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
    """Gaussian policy squashed after sampling (SHAC's parameterisation): u = mu(obs) + sigma eps,
    a = tanh(u), with a state-independent log sigma. Every sample stays differentiable (no clamp:
    a saturated action still has gradient 1 - tanh(u)^2 > 0); the deterministic action is tanh(mu).
    The head starts small (`head_scale` 0.01, zero bias) so that the untrained policy acts near
    zero (holding still) instead of driving the robot steadily in one random direction;
    head_scale 1 keeps PyTorch's default head, as DiffRL's ActorStochasticMLP."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list, init_log_std: float = -1.0,
                 head_scale: float = 0.01):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)
        if head_scale != 1.0:
            with torch.no_grad():
                self.net[-1].weight.mul_(head_scale)
                self.net[-1].bias.zero_()
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def forward(self, obs_n: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        mu = self.net(obs_n)
        if deterministic:
            return torch.tanh(mu)
        return torch.tanh(mu + self.log_std.exp() * torch.randn_like(mu))

    def log_prob(self, obs_n: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(a | obs) of the squashed Gaussian (change of variables through tanh), [B]."""
        a = action.clamp(-1 + 1e-6, 1 - 1e-6)
        u = torch.atanh(a)
        mu, std = self.net(obs_n), self.log_std.exp()
        logp_u = -0.5 * ((u - mu) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
        return (logp_u - torch.log1p(-a * a)).sum(-1)

    def entropy_estimate(self, obs_n: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """Monte-Carlo entropy of the squashed policy, -E log pi(a), [B] (reparameterised)."""
        mu, std = self.net(obs_n), self.log_std.exp()
        eps = torch.randn((samples, *mu.shape), dtype=mu.dtype)
        u = mu + std * eps
        logp_u = (-0.5 * eps ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_det = (2 * (math.log(2) - u - nn.functional.softplus(-2 * u))).sum(-1)  # log(1 - tanh^2)
        return -(logp_u - log_det).mean(0)


class Critic(nn.Module):
    def __init__(self, obs_dim: int, hidden: list, orthogonal: bool = False):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, orthogonal=orthogonal)

    def forward(self, obs_n: torch.Tensor) -> torch.Tensor:
        return self.net(obs_n).squeeze(-1)
