"""The algorithms: MB-MIX (Algorithm 1), MIX, SHAC, BPTT/APG and the MSE-model ablation.

They share one actor, one critic (with a target critic) and one data path; they differ in
where the differentiable trajectory comes from and how it is weighted:

  algo        trajectory source                        actor objective         critic
  ----------  ---------------------------------------  ----------------------  ---------------------
  mbmix       learned ensemble model, branch rollouts  J_mix, eq. 3, lam 0.98  line-9 lambda-returns
              from real states (Alg. 1 line 3a)
  mbmix-mse   same, model trained with alpha = 0       J_mix                   line-9 lambda-returns
  mix         the true simulator (env.transition)      J_mix                   line-9 lambda-returns
  shac        the true simulator, h = 32               lam = 1: h-step return  TD(0.95), target critic
                                                       + gamma^h V(s_h)
  bptt        the true simulator, whole episodes       lam = 1, V = 0          none

Gradients flow through the rollout as in eq. 5: rewards r(s_k, a_k, s_{k+1}) and values
V(s_{k+1}) are differentiated w.r.t. states, states w.r.t. earlier actions (through the
simulator's exact VJP or the model's autograd), actions w.r.t. theta.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .buffer import ReplayBuffer
from .config import Config
from .model import EnsembleModel, sobolev_loss
from .nets import Actor, Critic, RunningNorm
from .objectives import j_mix, lambda_returns


def build_networks(cfg: Config, env) -> dict[str, nn.Module]:
    """Networks in a fixed construction order from the run's seed (so `untrained_policy`
    rebuilds exactly the initial actor)."""
    torch.manual_seed(cfg.seed)
    nets = {
        "actor": Actor(env.obs_dim, env.act_dim, cfg.actor_hidden, cfg.init_log_std),
        "obs_norm": RunningNorm(env.obs_dim, enabled=cfg.obs_norm),
    }
    return nets


class Agent:
    """Everything a run trains; `iterate()` performs one iteration of the configured algorithm."""

    def __init__(self, cfg: Config, env):
        self.cfg, self.env = cfg, env
        nets = build_networks(cfg, env)
        self.actor, self.obs_norm = nets["actor"], nets["obs_norm"]
        self.critic = Critic(env.obs_dim, cfg.critic_hidden)
        self.target_critic = Critic(env.obs_dim, cfg.critic_hidden)
        self.target_critic.load_state_dict(self.critic.state_dict())
        for p in self.target_critic.parameters():
            p.requires_grad_(False)
        betas = tuple(cfg.betas)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, betas=betas)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, betas=betas)
        self.model_based = cfg.algo in ("mbmix", "mbmix-mse")
        if self.model_based:
            self.model = EnsembleModel(env.state_dim, env.act_dim, cfg.model_hidden, cfg.ensemble_size)
            self.model_opt = torch.optim.Adam(self.model.parameters(), lr=cfg.model_lr)
            self.buffer = ReplayBuffer(cfg.buffer_size)
            self.full_jacobian = env.state_dim <= cfg.full_jacobian_max_dim
        self.horizon = cfg.horizon if cfg.horizon > 0 else env.episode_length
        # counters and episode bookkeeping
        self.iteration = 0
        self.env_steps = 0
        self.skipped = 0
        self.blowups = 0
        self.ep_return = torch.zeros(env.num_envs)
        self.last_return = float("nan")
        self.last_score = float("nan")
        self.timers = {"sim_forward": 0.0, "backward": 0.0, "model": 0.0, "critic": 0.0, "jacobian": 0.0}

    # ---------------------------------------------------------------------------------------
    # shared pieces
    def policy(self, obs, deterministic=False):
        return self.actor(self.obs_norm(obs), deterministic)

    def value(self, obs):
        """V(s) for the actor objective: the target critic if there is one (as in SHAC)."""
        if not self.cfg.use_critic:
            return torch.zeros(obs.shape[0], dtype=obs.dtype)
        net = self.target_critic if self.cfg.target_critic_alpha > 0 else self.critic
        return net(self.obs_norm(obs))

    def _optimise(self, loss, params, opt, what: str) -> float:
        """Backward + clip + step; non-finite losses or gradients are skipped and counted."""
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self.skipped += 1
            self.log(f"skipped a {what} update: non-finite loss {loss.item()}")
            return float("nan")
        loss.backward()
        params = [p for p in params if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_norm if self.cfg.grad_norm > 0 else float("inf"))
        if not torch.isfinite(norm):
            opt.zero_grad(set_to_none=True)
            self.skipped += 1
            self.log(f"skipped a {what} update: non-finite gradient")
            return float("nan")
        opt.step()
        return float(norm)

    def log(self, msg: str) -> None:  # replaced by the trainer (tqdm.write + log file)
        pass

    def _track(self, reward, info) -> None:
        """Episode returns and the task score at episode ends (for metrics)."""
        self.ep_return += reward.detach().float().cpu()
        done = info["done"]
        if done.any():
            self._returns.append(self.ep_return[done].clone())
            if "score" in info:
                self._scores.append(info["score"].float().cpu()[done])
            self.ep_return[done] = 0.0

    def fit_critic(self, obs, targets) -> float:
        """Critic regression on the lambda-return targets (Algorithm 1 lines 9-10; SHAC's
        critic update): a few epochs of minibatch squared error, then the Polyak target."""
        cfg = self.cfg
        if not cfg.use_critic:
            return float("nan")
        obs_n = self.obs_norm(obs.reshape(-1, obs.shape[-1]).detach())
        targets = targets.reshape(-1).detach()
        keep = torch.isfinite(targets) & torch.isfinite(obs_n).all(1)
        obs_n, targets = obs_n[keep], targets[keep]
        n = len(targets)
        if n == 0:
            return float("nan")
        mb = max(1, n // cfg.critic_minibatches)
        losses = []
        for _ in range(cfg.critic_iterations):
            perm = torch.randperm(n)
            for i in range(0, n, mb):
                idx = perm[i:i + mb]
                loss = ((self.critic(obs_n[idx]) - targets[idx]) ** 2).mean()
                self._optimise(loss, self.critic.parameters(), self.critic_opt, "critic")
                losses.append(loss.item())
        a = cfg.target_critic_alpha
        if a > 0:
            with torch.no_grad():
                for pt, p in zip(self.target_critic.parameters(), self.critic.parameters()):
                    pt.mul_(a).add_((1 - a) * p)
        else:
            self.target_critic.load_state_dict(self.critic.state_dict())
        return sum(losses) / len(losses)

    def actor_step(self, rewards, next_values, dones) -> tuple[float, float]:
        """theta <- theta + lr grad J_mix (Algorithm 1 line 3b; eq. 3 with the config's lam and
        mix interval; SHAC and BPTT are lam = 1)."""
        cfg = self.cfg
        objective = j_mix(rewards, next_values, dones, cfg.gamma, cfg.lam, cfg.mix_interval)
        loss = -objective
        t0 = _now()
        gnorm = self._optimise(loss, self.actor.parameters(), self.actor_opt, "actor")
        self.timers["backward"] += _now() - t0
        return loss.item(), gnorm

    def critic_targets(self, rewards, next_values, dones):
        """V_hat(s_t) of Algorithm 1 line 9 (lambda-returns with the critic's lambda)."""
        with torch.no_grad():
            return lambda_returns(rewards.detach(), next_values.detach(), dones, self.cfg.gamma,
                                  self.cfg.critic_lambda, 1)

    # ---------------------------------------------------------------------------------------
    def iterate(self) -> dict:
        self._returns, self._scores = [], []
        if self.model_based:
            out = self._iterate_mbmix()
        else:
            out = self._iterate_sim()
        self.iteration += 1
        if self._returns:
            self.last_return = float(torch.cat(self._returns).mean())
        if self._scores:
            self.last_score = float(torch.cat(self._scores).mean())
        out.update({"return": self.last_return, "score": self.last_score, "skipped": self.skipped,
                    "blowups": self.blowups})
        return out

    # ---------------------------------------------------------------------------------------
    # MIX / SHAC / BPTT: differentiate through the true simulator
    def _iterate_sim(self) -> dict:
        env, cfg = self.env, self.cfg
        h = self.horizon
        if cfg.algo == "bptt":
            obs = env.reset()  # whole episodes from their start (APG)
            self.ep_return.zero_()
        state = env.get_state().detach()
        env.set_state(state)
        obs = env.observe(state)
        obs_seen, rewards, next_values, dones = [], [], [], []
        t0 = _now()
        for _ in range(h):
            obs_seen.append(obs.detach())
            action = self.policy(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            blow = info["blowup"]
            if blow.any():  # never train on a blown-up transition: zero reward, no bootstrap
                self.blowups += int(blow.sum())
                reward = torch.where(blow, torch.zeros_like(reward), reward)
            v = self.value(info["final_obs"])
            v = torch.where(terminated | blow, torch.zeros_like(v), v)
            rewards.append(reward)
            next_values.append(v)
            dones.append(info["done"] | blow)
            self._track(reward, info)
        self.env_steps += h * env.num_envs
        self.timers["sim_forward"] += _now() - t0
        rewards, next_values, dones = torch.stack(rewards), torch.stack(next_values), torch.stack(dones)
        actor_loss, gnorm = self.actor_step(rewards, next_values, dones)
        t0 = _now()
        obs_seen = torch.stack(obs_seen)
        critic_loss = float("nan")
        if cfg.use_critic:
            targets = self.critic_targets(rewards, next_values, dones)
            critic_loss = self.fit_critic(obs_seen, targets)
        self.obs_norm.update(obs_seen)
        self.timers["critic"] += _now() - t0
        env.set_state(env.get_state().detach())
        return {"actor_loss": actor_loss, "critic_loss": critic_loss, "grad_norm": gnorm}

    # ---------------------------------------------------------------------------------------
    # MB-MIX, Algorithm 1
    def _collect(self) -> None:
        """Line 1: act with pi_theta in the simulator; store s, a, s' and the step's Jacobians
        (full when state_dim is small, else P Gaussian JVP probes scaled by the model's input std)."""
        env, cfg = self.env, self.cfg
        ds, da = env.state_dim, env.act_dim
        for _ in range(cfg.collect_steps):
            state = env.get_state()
            obs = env.observe(state)
            with torch.no_grad():
                action = self.policy(obs)
            t0 = _now()
            _, reward, terminated, truncated, info = env.step(action)
            self.timers["sim_forward"] += _now() - t0
            self.env_steps += env.num_envs
            self.obs_norm.update(obs)
            self._track(reward, info)
            nxt = info["final_state"].detach()
            keep = ~info["blowup"]
            self.blowups += int((~keep).sum())
            if not keep.any():
                continue
            s, a, s2 = state[keep], action[keep].clamp(-1, 1), nxt[keep]
            t0 = _now()
            if cfg.sobolev_alpha <= 0:  # mbmix-mse: eq. 4 without the Jacobian term needs no derivatives
                self.buffer.add(s=s, a=a, s2=s2)
            elif self.full_jacobian:
                js, ja = env.jacobian(s, a)
                jac_t = torch.cat([js, ja], -1).transpose(1, 2)  # [B, ds+da, ds] = responses to e_p
                self.buffer.add(s=s, a=a, s2=s2, jac=jac_t)
            else:
                p = cfg.num_probes
                scale = self.model.in_std / math.sqrt(p)
                t_in = torch.randn(len(s), p, ds + da, dtype=s.dtype) * scale
                t_out = env.jvp(s, a, t_in[..., :ds].contiguous(), t_in[..., ds:].contiguous())
                self.buffer.add(s=s, a=a, s2=s2, t_in=t_in, t_out=t_out)
            self.timers["jacobian"] += _now() - t0

    def _probe_batch(self, batch):
        """Probe/response pairs for eq. 4: identity columns scaled by the input std (full
        Jacobians) or the stored random probes."""
        if self.full_jacobian:
            c = self.model.in_std
            jac_t = batch["jac"]  # [B, d, ds]
            t_in = torch.diag_embed(c).expand(jac_t.shape[0], -1, -1)
            return t_in, jac_t * c[None, :, None]
        return batch["t_in"], batch["t_out"]

    def train_model(self) -> tuple[float, float]:
        """Line 2: minimise J_M (eq. 4) on D_env; alpha = 0 for mbmix-mse."""
        cfg = self.cfg
        t0 = _now()
        self.model.fit_normaliser(self.buffer.all("s"), self.buffer.all("a"), self.buffer.all("s2"))
        # predicted states are kept inside the data's range (+10%) so that a model error cannot
        # run a branch rollout away (gradients are zero where the clamp is active)
        s2 = self.buffer.all("s2")
        lo, hi = s2.min(0).values, s2.max(0).values
        self._state_lo, self._state_hi = lo - 0.1 * (hi - lo) - 1e-6, hi + 0.1 * (hi - lo) + 1e-6
        st, jt = [], []
        for _ in range(cfg.model_updates):
            b = self.buffer.sample(cfg.model_batch)
            t_in, t_out = self._probe_batch(b) if cfg.sobolev_alpha > 0 else (None, None)
            loss, ls, lj = sobolev_loss(self.model, b["s"], b["a"], b["s2"], t_in, t_out, cfg.sobolev_alpha)
            self._optimise(loss, self.model.parameters(), self.model_opt, "model")
            st.append(ls.item())
            jt.append(lj.item())
        self.timers["model"] += _now() - t0
        return sum(st) / len(st), sum(jt) / len(jt)

    def _model_rollout(self):
        """Line 3a: branch rollouts from real states through M_phi, one random member per
        rollout; rewards from the task's differentiable reward on predicted states."""
        env, cfg = self.env, self.cfg
        s = self.buffer.sample(cfg.rollout_batch, keys=("s",))["s"]
        member = torch.randint(0, cfg.ensemble_size, (len(s),))
        obs_seen, rewards, next_values, dones = [], [], [], []
        for _ in range(cfg.model_horizon):
            obs = env.observe(s)
            obs_seen.append(obs.detach())
            action = self.policy(obs)
            s2 = self.model(s, action.clamp(-1.0, 1.0), member)
            s2 = torch.maximum(torch.minimum(s2, self._state_hi), self._state_lo)
            reward = env.reward(s, action, s2)
            term = env.task.terminated(s2.detach())
            v = self.value(env.observe(s2))
            rewards.append(reward)
            next_values.append(torch.where(term, torch.zeros_like(v), v))
            dones.append(term)
            s = s2
        return torch.stack(obs_seen), torch.stack(rewards), torch.stack(next_values), torch.stack(dones)

    def _iterate_mbmix(self) -> dict:
        cfg = self.cfg
        self._collect()
        model_loss, model_jac = self.train_model()
        actor_losses, critic_losses, gnorms = [], [], []
        if self.iteration >= cfg.warmup_iterations:
            for _ in range(cfg.policy_updates):  # line 3
                t0 = _now()
                obs_seen, rewards, next_values, dones = self._model_rollout()
                self.timers["model"] += _now() - t0
                loss, gnorm = self.actor_step(rewards, next_values, dones)  # line 3b
                actor_losses.append(loss)
                gnorms.append(gnorm)
                t0 = _now()
                targets = self.critic_targets(rewards, next_values, dones)  # line 3c
                critic_losses.append(self.fit_critic(obs_seen, targets))  # line 3d
                self.timers["critic"] += _now() - t0
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
        return {"actor_loss": mean(actor_losses), "critic_loss": mean(critic_losses), "grad_norm": mean(gnorms),
                "model_loss": model_loss, "model_jac_loss": model_jac}

    # ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        env = self.env
        d = {
            "actor": self.actor.state_dict(), "obs_norm": self.obs_norm.state_dict(),
            "critic": self.critic.state_dict(), "target_critic": self.target_critic.state_dict(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "counters": {"iteration": self.iteration, "env_steps": self.env_steps, "skipped": self.skipped,
                         "blowups": self.blowups, "last_return": self.last_return, "last_score": self.last_score},
            "ep_return": self.ep_return.clone(), "timers": dict(self.timers),
            "env": {"state": env.get_state().detach(), "t": env._t.clone(), "gen": env._gen.get_state()},
            "torch_rng": torch.get_rng_state(),
        }
        if self.model_based:
            d.update({"model": self.model.state_dict(), "model_opt": self.model_opt.state_dict(),
                      "buffer": self.buffer.state_dict()})
        return d

    def load_state_dict(self, d: dict) -> None:
        self.actor.load_state_dict(d["actor"])
        self.obs_norm.load_state_dict(d["obs_norm"])
        self.critic.load_state_dict(d["critic"])
        self.target_critic.load_state_dict(d["target_critic"])
        self.actor_opt.load_state_dict(d["actor_opt"])
        self.critic_opt.load_state_dict(d["critic_opt"])
        for k, v in d["counters"].items():
            setattr(self, k, v)
        self.ep_return = d["ep_return"].clone()
        self.timers.update(d.get("timers", {}))
        self.env.set_state(d["env"]["state"])
        self.env._t = d["env"]["t"].clone()
        self.env._gen.set_state(d["env"]["gen"])
        torch.set_rng_state(d["torch_rng"])
        if self.model_based:
            self.model.load_state_dict(d["model"])
            self.model_opt.load_state_dict(d["model_opt"])
            self.buffer.load_state_dict(d["buffer"])


def _now() -> float:
    import time

    return time.perf_counter()
