"""MB-MIX (Algorithm 1): a Sobolev-trained dynamics model and mixed-length policy objectives.

One iteration:
  1. act with pi_theta in the simulator for one window (line 1); every transition goes into
     D_env with its exact Jacobians (full ones for small states, random JVP probes otherwise);
  2. measure, on this window's states before the model sees them, how well the model's k-step
     policy gradient matches the simulator's (cosine, k = 1..model_horizon) and set the branch
     length to the longest k whose cosine reaches `fidelity_threshold`;
  3. fit the ensemble model M_phi with the Sobolev loss, eq. 4 (line 2; alpha = 0: MSE ablation),
     plus, with `sobolev_adjoint_alpha` > 0, the Jacobian error along the simulator VJPs that the
     previous policy updates pulled back through the real windows (`model.adjoint_loss`);
  4. policy updates (line 3): branch rollouts from real states through M_phi (3a) and
     theta <- theta + lr grad J (3b), where
       mbmix        J = J_mix(real window, through the simulator) + J_mix(model branches)
                    (the paper's Fig. 1: both rollouts feed the policy gradient; the first
                    update uses both, the remaining `policy_updates - 1` the model alone),
       mbmix-mse    the same with the model trained on states only (alpha = 0),
       mbmix-model  J = J_mix(model branches) only (the simulator's derivatives are used only as
                    Sobolev targets; data collected without gradients);
  5. the critic regresses lambda-returns of the windows used (lines 9-10).
"""
from __future__ import annotations

import contextlib
import math
import time

import torch

from .agent import Agent, Window
from .buffer import ReplayBuffer
from .model import EnsembleModel, adjoint_loss, sobolev_loss
from .simgrad import cut_graph, real_window


def _mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def rescale_probes(t_in, t_out, in_std):
    """Scale each probe pair (t_in [B, P, d], t_out = J t_in [B, P, ds]) so that
    ||t_in / in_std||^2 = d / P, the expected normalised energy of a fresh draw C z / sqrt(P).
    Exact: J is linear, so (f t, f J t) is again a probe/response pair."""
    p, d = t_in.shape[-2], t_in.shape[-1]
    norm = (t_in / in_std).norm(dim=-1, keepdim=True).clamp_min(1e-30)
    f = math.sqrt(d / p) / norm
    return t_in * f, t_out * f


class MBMixAgent(Agent):
    def __init__(self, cfg, env):
        super().__init__(cfg, env)
        self.model = EnsembleModel(env.state_dim, env.act_dim, cfg.model_hidden, cfg.ensemble_size)
        self.model_opt = torch.optim.Adam(self.model.parameters(), lr=cfg.model_lr)
        self.buffer = ReplayBuffer(cfg.buffer_size)
        self.full_jacobian = env.state_dim <= cfg.full_jacobian_max_dim
        self.sim_gradient = cfg.algo != "mbmix-model"
        self.horizon = cfg.horizon if cfg.horizon > 0 else env.episode_length
        self.branch = cfg.model_horizon  # adapted by the gradient-fidelity measurement
        self._lo = self._hi = None
        # adjoint pairs (s, a, w, w^T J) seen by the real windows' backward passes (eq. 4's extra term)
        self.adjoints = ReplayBuffer(cfg.buffer_size) if cfg.sobolev_adjoint_alpha > 0 else None
        self._seen_vjps = []

    # -- line 1: data with derivatives ------------------------------------------------------------
    def _derivatives(self, s, a, s2) -> dict:
        """The rows' Jacobian information for eq. 4 (none for the MSE ablation)."""
        env, cfg = self.env, self.cfg
        if cfg.sobolev_alpha <= 0:
            return {}
        t0 = time.perf_counter()
        if self.full_jacobian:
            js, ja = env.jacobian(s, a)
            out = {"jac": torch.cat([js, ja], -1).transpose(1, 2)}  # [B, ds+da, ds]: responses to e_p
        else:
            if self.buffer.size == 0:  # draw the very first probes in the data's own units too
                self.model.fit_normaliser(s, a, s2)
            p, ds = cfg.num_probes, env.state_dim
            t_in = torch.randn(len(s), p, ds + env.act_dim, dtype=s.dtype) * (self.model.in_std / math.sqrt(p))
            t_out = env.jvp(s, a, t_in[..., :ds].contiguous(), t_in[..., ds:].contiguous())
            out = {"t_in": t_in, "t_out": t_out}  # raw units; rescaled at use (`_probe_batch`)
        self.timers["jacobian"] += time.perf_counter() - t0
        return out

    def collect_window(self) -> tuple[Window, list]:
        """One window of the policy in the simulator; returns it and its transitions (staged,
        not yet in D_env). Differentiable for mbmix/mbmix-mse, plain data collection for mbmix-model."""
        staged = []

        def record(s, a, s2, keep):
            if keep.any():
                staged.append((s[keep], a[keep], s2[keep]))

        if self.sim_gradient:
            with self.env.vjp_observer(self._observe_vjp) if self.adjoints is not None else contextlib.nullcontext():
                w = real_window(self, self.horizon, record)
        else:
            with torch.no_grad():
                w = real_window(self, self.cfg.collect_steps, record)
        self.obs_norm.update(w.obs)
        return w, staged

    def store(self, staged) -> None:
        for s, a, s2 in staged:
            self.buffer.add(s=s, a=a, s2=s2, **self._derivatives(s, a, s2))

    def _observe_vjp(self, s, a, cotangent, g_state, g_action) -> None:
        """A real window's backward pass ran the simulator's VJP: keep the rows whose cotangent is
        nonzero and finite (a truncated env's is zero) as adjoint pairs (w, w^T J)."""
        wj = torch.cat([g_state, g_action], -1)
        keep = (cotangent.abs().sum(-1) > 0) & torch.isfinite(cotangent).all(-1) & torch.isfinite(wj).all(-1)
        if keep.any():
            self._seen_vjps.append((s[keep], a[keep], cotangent[keep], wj[keep]))

    def store_adjoints(self) -> None:
        for s, a, w, wj in self._seen_vjps:
            self.adjoints.add(s=s, a=a, w=w, wj=wj)
        self._seen_vjps = []

    # -- line 2: the model ----------------------------------------------------------------------
    def _probe_batch(self, batch):
        """Probe/response pairs for eq. 4 in the model's *current* input units: identity columns
        scaled by the input std (full Jacobians), or the stored random pairs rescaled so that each
        probe has the normalised energy of a fresh draw (`rescale_probes`). Stored probes keep the
        units they were drawn in; without the rescaling, pairs drawn under an older normaliser
        (the first iteration's: in_std = 1) would carry orders of magnitude more weight."""
        if self.full_jacobian:
            c = self.model.in_std
            jac_t = batch["jac"]  # [B, d, ds]
            t_in = torch.diag_embed(c).expand(jac_t.shape[0], -1, -1)
            return t_in, jac_t * c[None, :, None]
        return rescale_probes(batch["t_in"], batch["t_out"], self.model.in_std)

    def train_model(self) -> tuple[float, float]:
        """Line 2: minimise J_M (eq. 4) on D_env; alpha = 0 for mbmix-mse."""
        cfg = self.cfg
        t0 = time.perf_counter()
        self.model.fit_normaliser(self.buffer.all("s"), self.buffer.all("a"), self.buffer.all("s2"))
        # predicted states are kept inside the data's range (+10%) so that a model error cannot
        # run a branch rollout away (gradients are zero where the clamp is active)
        s2 = self.buffer.all("s2")
        lo, hi = s2.min(0).values, s2.max(0).values
        self._lo, self._hi = lo - 0.1 * (hi - lo) - 1e-6, hi + 0.1 * (hi - lo) + 1e-6
        st, jt, at = [], [], []
        adjoint = self.adjoints is not None and self.adjoints.size > 0
        for _ in range(cfg.model_updates):
            b = self.buffer.sample(cfg.model_batch)
            t_in, t_out = self._probe_batch(b) if cfg.sobolev_alpha > 0 else (None, None)
            loss, ls, lj = sobolev_loss(self.model, b["s"], b["a"], b["s2"], t_in, t_out, cfg.sobolev_alpha)
            if adjoint:
                p = self.adjoints.sample(cfg.model_batch)
                la = adjoint_loss(self.model, p["s"], p["a"], p["w"], p["wj"])
                loss = loss + cfg.sobolev_adjoint_alpha * la
                at.append(la.item())
            self.optimise(loss, self.model.parameters(), self.model_opt, "model")
            st.append(ls.item())
            jt.append(lj.item())
        self.timers["model"] += time.perf_counter() - t0
        return _mean(st), _mean(jt), _mean(at)

    def model_step(self, s, a, member=None):
        s2 = self.model(s, a, member)
        return torch.maximum(torch.minimum(s2, self._hi), self._lo)

    # -- line 3a: branch rollouts ----------------------------------------------------------------------
    def model_window(self, h: int) -> Window:
        """Branch rollouts of h steps from real states of D_env through M_phi, one random member
        per rollout; rewards from the task's differentiable reward on predicted states."""
        env, cfg = self.env, self.cfg
        t0 = time.perf_counter()
        s = self.buffer.sample(cfg.rollout_batch, keys=("s",))["s"]
        member = torch.randint(0, cfg.ensemble_size, (len(s),))
        obs_seen, rewards, next_values, dones = [], [], [], []
        for _ in range(h):
            obs = env.observe(s)
            obs_seen.append(obs.detach())
            action = self.policy(obs)
            s2 = self.model_step(s, action, member)
            self.truncation.watch(s2)
            term = env.terminated(s2.detach())
            v = self.value(env.observe(s2))
            rewards.append(env.reward(s, action, s2))
            next_values.append(torch.where(term, torch.zeros_like(v), v))
            dones.append(term)
            s = s2
        self.timers["model"] += time.perf_counter() - t0
        return Window(torch.stack(obs_seen), torch.stack(rewards), torch.stack(next_values), torch.stack(dones))

    # -- step 2: gradient fidelity of the model ------------------------------------------------------
    def k_step_policy_gradients(self, states: torch.Tensor, kmax: int, step) -> list[torch.Tensor]:
        """grad_theta J_k, k = 1..kmax, J_k = sum_{t<k} gamma^t r_t of the deterministic policy from
        `states` through `step(s, a)` (the simulator's `env.transition` or a model step), flattened."""
        env, gamma = self.env, self.cfg.gamma
        params = list(self.actor.net.parameters())
        out = []
        for k in range(1, kmax + 1):  # one rollout per k: the simulator's tape is used once
            s, total = states.detach(), 0.0
            for t in range(k):
                a = self.policy(env.observe(s), deterministic=True)
                s2 = step(s, a)
                total = total + gamma ** t * env.reward(s, a, s2).mean()
                s = s2
            g = torch.autograd.grad(total, params, allow_unused=True)
            out.append(torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1)
                                  for x, p in zip(g, params)]))
        return out

    def gradient_fidelity(self, states: torch.Tensor, kmax: int) -> list[float]:
        """cos(grad_theta J_k through M_phi, grad_theta J_k through the simulator), k = 1..kmax
        (`k_step_policy_gradients`; the ensemble mean model). Measures what the model is used for:
        the policy gradient, not the state error."""
        sim = self.k_step_policy_gradients(states, kmax, self.env.transition)
        mod = self.k_step_policy_gradients(states, kmax, lambda s, a: self.model_step(s, a))
        return [float(torch.nn.functional.cosine_similarity(m, r, dim=0)) if r.norm() > 0 else float("nan")
                for m, r in zip(mod, sim)]

    # -- one iteration --------------------------------------------------------------------------------
    def iterate_once(self) -> dict:
        cfg = self.cfg
        w_real, staged = self.collect_window()
        out = {}
        trained = self.buffer.size > 0 and self._lo is not None
        if trained and cfg.fidelity_every > 0 and self.iteration % cfg.fidelity_every == 0 and staged:
            t0 = time.perf_counter()
            held_out = torch.cat([s for s, _, _ in staged[:1]])  # this window's first states: unseen
            cos = self.gradient_fidelity(held_out, cfg.model_horizon)
            self.timers["model"] += time.perf_counter() - t0
            if cfg.adaptive_horizon:
                # the longest prefix of horizons whose gradients the model gets right
                self.branch = next((k for k in range(1, len(cos) + 1) if cos[k - 1] < cfg.fidelity_threshold),
                                   len(cos) + 1) - 1
                self.branch = max(1, self.branch)
            out.update({f"fidelity_k{k + 1}": c for k, c in enumerate(cos)})
        self.store(staged)
        out["model_loss"], out["model_jac_loss"], adj = self.train_model()
        if self.adjoints is not None:
            out["model_adjoint_loss"] = adj
        out["branch"] = self.branch
        actor_losses, gnorms, windows = [], [], []
        if self.iteration >= cfg.warmup_iterations:
            for u in range(cfg.policy_updates):  # line 3
                w_model = self.model_window(self.branch)
                objective = self.objective(w_model)
                windows.append(w_model)
                if u == 0 and self.sim_gradient:  # Fig. 1: the real window's J_mix as well
                    objective = objective + self.objective(w_real)
                loss, gnorm = self.actor_step(objective)  # line 3b
                actor_losses.append(loss)
                gnorms.append(gnorm)
        elif self.sim_gradient:  # before the model is fitted: the real window alone (MIX)
            loss, gnorm = self.actor_step(self.objective(w_real))
            actor_losses.append(loss)
            gnorms.append(gnorm)
        if self.adjoints is not None:  # the real window's backward has run: its VJPs are targets now
            self.store_adjoints()
        critic_loss = self.fit_critic(w_real, *windows)  # lines 9-10, on real and model windows
        cut_graph(self)
        out.update({"actor_loss": _mean(actor_losses), "critic_loss": critic_loss, "grad_norm": _mean(gnorms)})
        return out

    # -- checkpointable state ----------------------------------------------------------------------
    def modules(self) -> dict:
        return {**super().modules(), "model": self.model, "model_opt": self.model_opt}

    def state_dict(self) -> dict:
        d = super().state_dict()
        d["buffer"] = self.buffer.state_dict()
        if self.adjoints is not None:
            d["adjoints"] = self.adjoints.state_dict()
        d["branch"] = self.branch
        d["state_range"] = None if self._lo is None else (self._lo, self._hi)
        return d

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.buffer.load_state_dict(d["buffer"])
        if self.adjoints is not None:
            if "adjoints" not in d:
                raise KeyError("adjoints (this run has sobolev_adjoint_alpha > 0; the checkpoint has no adjoint pairs)")
            self.adjoints.load_state_dict(d["adjoints"])
        self.branch = d["branch"]
        self._lo, self._hi = d["state_range"] if d["state_range"] is not None else (None, None)
