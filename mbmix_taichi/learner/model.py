"""Ensemble dynamics model M_phi and the Sobolev loss (eq. 4 of the paper; docs/method.md).

Each member is an MLP (SiLU, smooth so its Jacobian is meaningful) that maps the normalised
(state, action) to the normalised state delta:  s_hat' = s + mu_d + sigma_d * f((s, a) normalised).
`predict_tangents` pushes tangent vectors through the same MLP layer by layer (forward-mode
by hand), so J_hat v for a batch of probes v costs one extra matmul per layer and stays
differentiable w.r.t. the weights; `predict_cotangents` pulls cotangents back the same way
(reverse-mode by hand): w^T J_hat for the adjoint pairs of `adjoint_loss`.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class EnsembleModel(nn.Module):
    def __init__(self, state_dim: int, act_dim: int, hidden: list, ensemble: int = 4):
        super().__init__()
        self.state_dim, self.act_dim, self.ensemble = state_dim, act_dim, ensemble
        dims = [state_dim + act_dim, *hidden, state_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            bound = 1.0 / math.sqrt(a)
            w = (torch.rand(ensemble, a, b) * 2 - 1) * bound
            if i == len(dims) - 2:
                w = w * 0.1  # start near "no change beyond the mean delta"
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter((torch.rand(ensemble, 1, b) * 2 - 1) * bound))
        din = state_dim + act_dim
        self.register_buffer("in_mean", torch.zeros(din))
        self.register_buffer("in_std", torch.ones(din))
        self.register_buffer("out_mean", torch.zeros(state_dim))
        self.register_buffer("out_std", torch.ones(state_dim))

    @torch.no_grad()
    def fit_normaliser(self, s, a, s_next) -> None:
        x = torch.cat([s, a], -1)
        d = s_next - s
        self.in_mean.copy_(x.mean(0))
        self.in_std.copy_(safe_std(x))
        self.out_mean.copy_(d.mean(0))
        self.out_std.copy_(safe_std(d))

    def _mlp(self, x, tx=None, pre=None):
        """x [E, B, din], tx [E, B, P, din] (tangents) -> out [E, B, dout], tout [E, B, P, dout];
        `pre` (a list) receives each hidden layer's pre-activation, for a reverse sweep."""
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, x, w)
            if pre is not None and i < n - 1:
                pre.append(h)
            if tx is not None:
                e, b_, p_, _ = tx.shape
                tx = torch.bmm(tx.reshape(e, b_ * p_, -1), w).reshape(e, b_, p_, -1)
            if i < n - 1:
                sig = torch.sigmoid(h)
                x = h * sig
                if tx is not None:
                    tx = tx * (sig * (1 + h * (1 - sig))).unsqueeze(2)  # d silu / dh
            else:
                x = h
        return x, tx

    def _inputs(self, s, a):
        x = (torch.cat([s, a], -1) - self.in_mean) / self.in_std
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.ensemble, *x.shape)
        return x

    def predict_all(self, s, a):
        """Next states of every member: [E, B, ds]."""
        out, _ = self._mlp(self._inputs(s, a))
        return s + self.out_mean + self.out_std * out

    def forward(self, s, a, member: torch.Tensor | None = None):
        """Next state [B, ds] from member[b] for row b (all members' mean if member is None)."""
        allp = self.predict_all(s, a)
        if member is None:
            return allp.mean(0)
        return allp.gather(0, member.view(1, -1, 1).expand(1, -1, allp.shape[-1]))[0]

    def predict_tangents(self, s, a, t_in):
        """(next states [E, B, ds], J_hat t [E, B, P, ds]) for raw-space tangents t_in [B, P, ds+da]."""
        x = self._inputs(s, a)
        tx = (t_in / self.in_std).unsqueeze(0).expand(self.ensemble, *t_in.shape)
        out, tout = self._mlp(x, tx)
        pred = s + self.out_mean + self.out_std * out
        resp = self.out_std * tout + t_in[..., : self.state_dim]  # d s/d s = identity part
        return pred, resp

    def predict_cotangents(self, s, a, w):
        """(next states [E, B, ds], w^T J_hat [E, B, ds+da]) for raw-space cotangents w [B, ds]."""
        pre = []
        out, _ = self._mlp(self._inputs(s, a), pre=pre)
        pred = s + self.out_mean + self.out_std * out
        g = (w * self.out_std).unsqueeze(0).expand(self.ensemble, *w.shape)  # d pred / d out
        for i in range(len(self.weights) - 1, -1, -1):
            g = torch.bmm(g, self.weights[i].transpose(1, 2))
            if i > 0:
                h = pre[i - 1]
                sig = torch.sigmoid(h)
                g = g * (sig * (1 + h * (1 - sig)))  # d silu / dh
        g = g / self.in_std  # d x / d (s, a)
        ident = torch.cat([w, torch.zeros_like(g[0, :, self.state_dim:])], -1)  # d s'/d s = identity part
        return pred, g + ident

    def jacobian(self, s, a):
        """Full model Jacobians per member: ([E, B, ds, ds], [E, B, ds, da])."""
        d = self.state_dim + self.act_dim
        eye = torch.eye(d, dtype=s.dtype).expand(s.shape[0], d, d)
        _, resp = self.predict_tangents(s, a, eye)  # [E, B, d (probe), ds]
        jac = resp.transpose(-1, -2)
        return jac[..., : self.state_dim], jac[..., self.state_dim:]


def safe_std(x):
    """Per-column std of x [B, d], with near-constant columns given a scale instead of ~0."""
    std = x.std(0, unbiased=False)
    scale = std.abs().max().clamp_min(1e-12)
    return torch.where(std > 1e-6 * scale + 1e-12, std, torch.ones_like(std) * scale.clamp_min(1e-6))


def sobolev_loss(model: EnsembleModel, s, a, s_next, t_in=None, t_out=None, alpha: float = 1.0):
    """Eq. 4 (docs/method.md) with squared norms, in the model's normalised output units:

        L = E_b [ ||D (s_hat' - s')||^2 / ds  +  alpha ||D (J_hat - J) C||_F^2 / (ds (ds + da)) ],
        D = diag(1 / sigma_delta),  J = [ds'/ds, ds'/da]  (one control step, from the simulator)

    The Jacobian term is estimated from probe/response pairs: sum_p ||D (J_hat - J) t_p||^2
    with t_in [B, P, ds+da] and t_out = J t_in [B, P, ds]. With the columns of C as probes
    (full Jacobians) it is exact; with Gaussian probes C z / sqrt(P) it is an unbiased
    estimate (E ||M z||^2 = ||M||_F^2, Czarnecki et al. 2017). Both terms are means over their
    entries (per state dimension, per Jacobian entry), so alpha = 1 weighs them alike whatever
    the state size. Returns (total, state, jac).
    """
    ds = model.state_dim
    din = ds + model.act_dim
    if alpha > 0 and t_in is not None:
        pred, resp = model.predict_tangents(s, a, t_in)
        jac = (((resp - t_out) / model.out_std) ** 2).sum((-1, -2)).mean() / (ds * din)
    else:
        pred = model.predict_all(s, a)
        jac = torch.zeros((), dtype=s.dtype)
    state = (((pred - s_next) / model.out_std) ** 2).sum(-1).mean() / ds
    return state + alpha * jac, state, jac


def adjoint_loss(model: EnsembleModel, s, a, w, w_jac):
    """The Jacobian error along adjoint pairs (w [B, ds], w^T J [B, ds+da]) in the units of eq. 4:
    the batch mean of ||(f w)^T (J_hat - J) C||^2 / (ds (ds + da)), C = diag(input std), with f
    scaling each pair so that ||D f w||^2 = ds (D = diag(output std)),
    the energy of one Gaussian probe of the normalised Jacobian: a pair weighs what one random
    probe of `sobolev_loss` weighs, and pairs from large and small cotangents weigh alike.
    Exact for any scale: (f w, f w^T J) is again a pair, J being linear.

    The pairs are the simulator VJPs that a policy-gradient backward pass ran (`Env.vjp_observer`):
    they constrain J_hat along the directions the policy gradient pulls back through the dynamics,
    where random JVP probes of a large Jacobian constrain it evenly (value-gradient weighted model
    losses, e.g. VaGraM, weigh the state error the same way)."""
    ds = model.state_dim
    din = ds + model.act_dim
    f = math.sqrt(ds) / (w * model.out_std).norm(dim=-1, keepdim=True).clamp_min(1e-30)
    _, resp = model.predict_cotangents(s, a, w * f)
    return (((resp - w_jac * f) * model.in_std) ** 2).sum(-1).mean() / (ds * din)
