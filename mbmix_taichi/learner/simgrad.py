"""MIX, SHAC and BPTT/APG: policy gradients through the true simulator over real windows.

  algo   window                         actor objective                  critic
  -----  -----------------------------  -------------------------------  -------------------------
  mix    h steps of env.step             J_mix, eq. 3 (lam, mix interval) line-9 lambda-returns
  shac   h = 32                          lam = 1: h-step return           TD(lambda), target critic
                                         + gamma^h V(s_h)
  bptt   whole episodes from reset       lam = 1, V = 0                   none

Gradients flow as in eq. 5: rewards r(s_k, a_k, s_{k+1}) and values V(s_{k+1}) w.r.t. states,
states w.r.t. earlier states and actions through the simulator's exact VJP (`env.transition`),
actions w.r.t. theta. Each env's backward flow is cut where its state cotangent explodes
(`agent.GradTruncation`).
"""
from __future__ import annotations

import time

import torch

from .agent import Agent, Window


def real_window(agent: Agent, h: int, record=None) -> Window:
    """h steps of the policy in the simulator (env.step, auto-reset), differentiable end to end.

    `record(state, action, next_state, keep)` (optional) sees every transition, detached, with
    the mask of envs that did not blow up (MB-MIX stores them with their Jacobians)."""
    env = agent.env
    env.cut_graph()  # the window starts from the current states, off any old graph
    state = env.get_state()
    obs = env.observe(state)
    obs_seen, rewards, next_values, dones = [], [], [], []
    t0 = time.perf_counter()
    for _ in range(h):
        obs_seen.append(obs.detach())
        action = agent.policy(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        nxt = info["final_state"]
        agent.truncation.watch(nxt)
        blow = info["blowup"]
        if blow.any():  # never train on a blown-up transition: zero reward, no bootstrap
            agent.blowups += int(blow.sum())
            reward = torch.where(blow, torch.zeros_like(reward), reward)
        if record is not None:
            record(state.detach(), action.detach(), nxt.detach(), ~blow)
            state = env.get_state()  # the next step's state (after auto-reset), for the next record
        v = agent.value(info["final_obs"])
        v = torch.where(terminated | blow, torch.zeros_like(v), v)
        rewards.append(reward)
        next_values.append(v)
        dones.append(info["done"] | blow)
        agent.track(reward, info)
    agent.env_steps += h * env.num_envs
    agent.timers["sim_forward"] += time.perf_counter() - t0
    return Window(torch.stack(obs_seen), torch.stack(rewards), torch.stack(next_values), torch.stack(dones))


def cut_graph(agent: Agent) -> None:
    """The next window starts from the current states, detached from this one's graph."""
    agent.env.cut_graph()


class SimGradAgent(Agent):
    """MIX, SHAC and BPTT: one window through the simulator, one actor step, one critic fit."""

    def __init__(self, cfg, env):
        super().__init__(cfg, env)
        self.horizon = cfg.horizon if cfg.horizon > 0 else env.episode_length

    def iterate_once(self) -> dict:
        if self.cfg.algo == "bptt":  # APG: whole episodes from their start
            self.env.reset()
            self.ep_return.zero_()
        w = real_window(self, self.horizon)
        actor_loss, gnorm = self.actor_step(self.objective(w))
        critic_loss = self.fit_critic(w)
        self.obs_norm.update(w.obs)
        cut_graph(self)
        return {"actor_loss": actor_loss, "critic_loss": critic_loss, "grad_norm": gnorm}
