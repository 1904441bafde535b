"""What every algorithm shares: actor, critic and target critic, the guarded optimiser step,
the policy-objective step on a differentiable window, critic fitting, episode bookkeeping and
the agent's checkpointable state.

An algorithm (`simgrad.SimGradAgent`: MIX, SHAC, BPTT; `mbmix.MBMixAgent`: MB-MIX) subclasses
`Agent` and defines `iterate_once()`; the windows it differentiates are `Window`s.
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass

import torch
from torch import nn

from .config import Config
from .nets import Actor, Critic, RunningNorm
from .objectives import j_mix, lambda_returns


def build_networks(cfg: Config, env) -> dict[str, nn.Module]:
    """Networks in a fixed construction order from the run's seed (so `untrained_policy`
    rebuilds exactly the initial actor)."""
    torch.manual_seed(cfg.seed)
    return {
        "actor": Actor(env.obs_dim, env.act_dim, cfg.actor_hidden, cfg.init_log_std, cfg.actor_head_scale),
        "obs_norm": RunningNorm(env.obs_dim, enabled=cfg.obs_norm),
    }


@dataclass
class Window:
    """A differentiable stretch of h steps, time-major: obs [h, B, do] (detached, for the critic),
    rewards [h, B], next_values [h, B] (V(s_{t+1}), 0 after termination), dones [h, B]."""
    obs: torch.Tensor
    rewards: torch.Tensor
    next_values: torch.Tensor
    dones: torch.Tensor


class GradTruncation:
    """Per-env truncation of the state cotangent flowing back through a rollout.

    A hook on each next state zeroes the rows of d J / d s_{t+1} whose norm exceeds `limit` or
    that are not finite: that env's window is cut at that step (as an adaptive horizon), so a
    window whose gradient explodes (a contact kink, a chaotic stretch) cannot wreck the update
    of the whole batch. `count` counts the truncated (step, env) pairs."""

    def __init__(self, limit: float):
        self.limit = float(limit) if limit > 0 else float("inf")
        self.count = 0

    def watch(self, state: torch.Tensor) -> None:
        if state.requires_grad:
            state.register_hook(self._hook)

    def _hook(self, grad: torch.Tensor) -> torch.Tensor:
        norm = grad.reshape(grad.shape[0], -1).norm(dim=1)
        bad = ~torch.isfinite(norm) | (norm > self.limit)
        n = int(bad.sum())
        if n == 0:
            return grad
        self.count += n
        return torch.where(bad.view(-1, *([1] * (grad.dim() - 1))), torch.zeros_like(grad), grad)


class Agent(abc.ABC):
    """Everything a run trains; `iterate()` performs one iteration of the configured algorithm."""

    def __init__(self, cfg: Config, env):
        self.cfg, self.env = cfg, env
        nets = build_networks(cfg, env)
        self.actor, self.obs_norm = nets["actor"], nets["obs_norm"]
        ortho = cfg.critic_init == "orthogonal"
        self.critic = Critic(env.obs_dim, cfg.critic_hidden, ortho)
        self.target_critic = Critic(env.obs_dim, cfg.critic_hidden, ortho)
        self.target_critic.load_state_dict(self.critic.state_dict())
        for p in self.target_critic.parameters():
            p.requires_grad_(False)
        betas = tuple(cfg.betas)
        if cfg.log_std_schedule == "linear":
            self.actor.log_std.requires_grad_(False)  # set by schedule(), not trained
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, betas=betas)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, betas=betas)
        self.truncation = GradTruncation(cfg.grad_truncation)
        # counters and episode bookkeeping
        self.iteration = 0
        self.env_steps = 0
        self.skipped = 0
        self.blowups = 0
        self.ep_return = torch.zeros(env.num_envs)
        self.last_return = float("nan")
        self.last_score = float("nan")
        self.timers = {"sim_forward": 0.0, "backward": 0.0, "model": 0.0, "critic": 0.0, "jacobian": 0.0}

    # -- policy and value ------------------------------------------------------------------------
    def policy(self, obs, deterministic=False):
        return self.actor(self.obs_norm(obs), deterministic)

    def value(self, obs):
        """V(s) for the actor objective: the target critic if there is one (as in SHAC)."""
        if not self.cfg.use_critic:
            return torch.zeros(obs.shape[0], dtype=obs.dtype)
        net = self.target_critic if self.cfg.target_critic_alpha > 0 else self.critic
        return net(self.obs_norm(obs))

    # -- the guarded optimiser step ---------------------------------------------------------------
    def optimise(self, loss, params, opt, what: str) -> float:
        """Backward + clip + step; non-finite losses or gradients are skipped and counted."""
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self.skipped += 1
            self.log(f"iteration {self.iteration}: skipped a {what} update: non-finite loss {loss.item()}")
            return float("nan")
        loss.backward()
        params = [p for p in params if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_norm if self.cfg.grad_norm > 0 else float("inf"))
        if not torch.isfinite(norm):
            opt.zero_grad(set_to_none=True)
            self.skipped += 1
            self.log(f"iteration {self.iteration}: skipped a {what} update: non-finite gradient")
            return float("nan")
        opt.step()
        return float(norm)

    def log(self, msg: str) -> None:  # replaced by the trainer (progress output + log.txt)
        pass

    # -- the policy objective, critic targets and critic fit -------------------------------------------
    def objective(self, w: Window) -> torch.Tensor:
        """J_mix of eq. 3 on a window (the config's lam and mix interval; SHAC and BPTT are lam = 1)."""
        cfg = self.cfg
        return j_mix(w.rewards, w.next_values, w.dones, cfg.gamma, cfg.lam, cfg.mix_interval)

    def actor_step(self, objective: torch.Tensor) -> tuple[float, float]:
        """theta <- theta + lr grad J (Algorithm 1 line 3b)."""
        t0 = time.perf_counter()
        gnorm = self.optimise(-objective, self.actor.parameters(), self.actor_opt, "actor")
        self.timers["backward"] += time.perf_counter() - t0
        return -objective.item(), gnorm

    def critic_targets(self, w: Window):
        """V_hat(s_t) of Algorithm 1 line 9 (lambda-returns with the critic's lambda)."""
        with torch.no_grad():
            return lambda_returns(w.rewards.detach(), w.next_values.detach(), w.dones, self.cfg.gamma,
                                  self.cfg.critic_lambda, 1)

    def fit_critic(self, *windows: Window) -> float:
        """Critic regression on the windows' lambda-return targets (Algorithm 1 lines 9-10; SHAC's
        critic update): a few epochs of minibatch squared error, then the Polyak target."""
        cfg = self.cfg
        if not cfg.use_critic:
            return float("nan")
        t0 = time.perf_counter()
        targets = torch.cat([self.critic_targets(w).reshape(-1) for w in windows])
        obs = torch.cat([w.obs.reshape(-1, w.obs.shape[-1]) for w in windows])
        obs_n = self.obs_norm(obs.detach())
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
                self.optimise(loss, self.critic.parameters(), self.critic_opt, "critic")
                losses.append(loss.item())
        a = cfg.target_critic_alpha
        with torch.no_grad():
            for pt, p in zip(self.target_critic.parameters(), self.critic.parameters()):
                pt.mul_(a).add_((1 - a) * p)
        self.timers["critic"] += time.perf_counter() - t0
        return sum(losses) / len(losses)

    # -- episode bookkeeping -----------------------------------------------------------------------
    def track(self, reward, info) -> None:
        """Episode returns and the task score at episode ends (for metrics)."""
        self.ep_return += reward.detach().float().cpu()
        done = info["done"]
        if done.any():
            self._returns.append(self.ep_return[done].clone())
            if "score" in info:
                self._scores.append(info["score"].float().cpu()[done])
            self.ep_return[done] = 0.0

    def schedule(self) -> None:
        """Schedules that are a function of the iteration alone (a resumed run follows them):
        DiffRL's linear learning-rate decay, lr(i) = lr0 + (1e-5 - lr0) * i / iterations, and
        the annealed exploration noise, log std(i) = init + (final - init) * i / iterations."""
        cfg = self.cfg
        frac = self.iteration / max(1, cfg.iterations)
        if cfg.lr_schedule == "linear":
            for opt, lr0 in ((self.actor_opt, cfg.actor_lr), (self.critic_opt, cfg.critic_lr)):
                for group in opt.param_groups:
                    group["lr"] = lr0 + (1e-5 - lr0) * frac
        if cfg.log_std_schedule == "linear":
            with torch.no_grad():
                self.actor.log_std.fill_(cfg.init_log_std + (cfg.final_log_std - cfg.init_log_std) * frac)

    def iterate(self) -> dict:
        """One iteration of the algorithm, with the metrics row's algorithm columns."""
        self._returns, self._scores = [], []
        self.schedule()
        trunc0 = self.truncation.count
        out = self.iterate_once()
        self.iteration += 1
        if self._returns:
            self.last_return = float(torch.cat(self._returns).mean())
        if self._scores:
            self.last_score = float(torch.cat(self._scores).mean())
        out.update({"return": self.last_return, "score": self.last_score, "skipped": self.skipped,
                    "blowups": self.blowups, "truncated": self.truncation.count - trunc0})
        return out

    @abc.abstractmethod
    def iterate_once(self) -> dict:
        """One iteration of the algorithm; returns its metric columns (losses, gradient norm...)."""

    # -- checkpointable state ----------------------------------------------------------------------
    def modules(self) -> dict:
        return {"actor": self.actor, "obs_norm": self.obs_norm, "critic": self.critic,
                "target_critic": self.target_critic, "actor_opt": self.actor_opt, "critic_opt": self.critic_opt}

    def state_dict(self) -> dict:
        d = {k: m.state_dict() for k, m in self.modules().items()}
        d.update({
            "counters": {"iteration": self.iteration, "env_steps": self.env_steps, "skipped": self.skipped,
                         "blowups": self.blowups, "last_return": self.last_return, "last_score": self.last_score,
                         "truncated": self.truncation.count},
            "ep_return": self.ep_return.clone(), "timers": dict(self.timers),
            "env": self.env.episode_state(), "torch_rng": torch.get_rng_state(),
        })
        return d

    def load_state_dict(self, d: dict) -> None:
        for k, m in self.modules().items():
            m.load_state_dict(d[k])
        counters = dict(d["counters"])
        self.truncation.count = counters.pop("truncated", 0)
        for k, v in counters.items():
            setattr(self, k, v)
        self.ep_return = d["ep_return"].clone()
        self.timers.update(d.get("timers", {}))
        self.env.set_episode_state(d["env"])
        torch.set_rng_state(d["torch_rng"])
