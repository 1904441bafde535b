"""The algorithms by name: which agent class runs each one (see `simgrad` and `mbmix`)."""
from __future__ import annotations

from .agent import Agent
from .mbmix import MBMixAgent
from .simgrad import SimGradAgent

AGENTS: dict[str, type[Agent]] = {
    "mbmix": MBMixAgent,        # Fig. 1: J_mix through the simulator and through the Sobolev model
    "mbmix-mse": MBMixAgent,    # the same with an MSE-trained model (the paper's ablation)
    "mbmix-model": MBMixAgent,  # J_mix through the model only; simulator Jacobians as Sobolev targets
    "mix": SimGradAgent,
    "shac": SimGradAgent,
    "bptt": SimGradAgent,
}


def make_agent(cfg, env) -> Agent:
    if cfg.algo in ("ppo", "sac"):  # Stable-Baselines3 (an optional extra), imported only for them
        from .sb3 import SB3Agent

        return SB3Agent(cfg, env)
    return AGENTS[cfg.algo](cfg, env)
