"""PPO and SAC through Stable-Baselines3, as algorithms of a `Run` (``--algo ppo|sac``).

`SB3Agent` has what the trainer reads of an agent (``iterate()``, ``iteration``,
``env_steps``, ``state_dict()``), so a ppo/sac run writes the same run directory as the
project's algorithms: config.json (the ``sb3`` table: sb3_presets.py), metrics.csv (one row
per iteration: env_steps, wall_time, the mean return and task score of the episodes that
ended in it, SB3's losses), TensorBoard events, checkpoint.pt and policy.pt.

policy.pt of a ppo/sac run: ``{"format": 1, "config", "sb3_policy": the SB3 policy's
state_dict (tensors), "obs_rms": {"mean", "var"} (float64; VecNormalize's statistics, or
None), "obs_dim", "act_dim", "iteration"}``. Loading it rebuilds the SB3 policy class the
config's algorithm names (ActorCriticPolicy for ppo, SACPolicy for sac) from the config's
policy_kwargs and loads the tensors: nothing in the file is unpickled as code (SB3's own
``.load`` unpickles its zip, so no SB3 zip is written or read). The evaluated policy is SB3's
deterministic one: PPO the Gaussian's mean, SAC tanh of it, clipped to [-1, 1] as SB3's
``predict`` does, after VecNormalize's observation normalization.

Resume: refused (SB3 keeps its rollout or replay buffer, optimizer and VecNormalize state in
memory; a continued run would not be the run it continues). A seed fixes a CPU run: SB3 is
seeded with the run's seed (Python, NumPy and torch generators, the action space) and the
env with the same seed; SB3 runs on the CPU.

Needs the optional extra: ``pip install "mbmix-taichi[rl]"``.
"""
from __future__ import annotations

import math

import torch

from .config import Config, RunError
from .sb3_presets import SB3_ALGOS, steps_per_iteration

#: metrics.csv columns of ppo/sac runs beyond the common ones (SB3's own train/ values)
EXTRA_COLUMNS = {"ppo": ["entropy_loss", "approx_kl", "clip_fraction", "explained_variance", "std"],
                 "sac": ["ent_coef", "ent_coef_loss"]}
_LOGGED = {"ppo": {"train/policy_gradient_loss": "actor_loss", "train/value_loss": "critic_loss",
                   "train/entropy_loss": "entropy_loss", "train/approx_kl": "approx_kl",
                   "train/clip_fraction": "clip_fraction", "train/explained_variance": "explained_variance",
                   "train/std": "std"},
           "sac": {"train/actor_loss": "actor_loss", "train/critic_loss": "critic_loss",
                   "train/ent_coef": "ent_coef", "train/ent_coef_loss": "ent_coef_loss"}}

RESUME_REFUSED = ("{algo} runs cannot be resumed exactly: Stable-Baselines3 keeps its rollout/replay buffer, "
                  "optimizer and VecNormalize state in memory only; train again with --overwrite (or another --out)")


def is_sb3(algo: str) -> bool:
    return algo in SB3_ALGOS


def need_sb3(algo: str):
    """The stable_baselines3 module, or RunError naming the extra to install."""
    try:
        import gymnasium  # noqa: F401
        import stable_baselines3
    except ImportError as exc:
        raise RunError(f"--algo {algo} trains with Stable-Baselines3, which is not installed ({exc.name} is "
                       f"missing): pip install \"mbmix-taichi[rl]\"") from None
    return stable_baselines3


def _activation(name: str):
    from torch import nn

    return {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU}[name]


def policy_kwargs(cfg: Config) -> dict:
    pk = dict(cfg.sb3.get("policy_kwargs", {}))
    if "activation_fn" in pk:
        pk["activation_fn"] = _activation(pk["activation_fn"])
    if isinstance(pk.get("net_arch"), dict):
        pk["net_arch"] = {k: list(v) for k, v in pk["net_arch"].items()}
    return pk


def _algo_kwargs(cfg: Config) -> dict:
    skip = {"total_timesteps", "normalize", "policy_kwargs", "iteration_steps"}
    return {k: v for k, v in cfg.sb3.items() if k not in skip}


def _spaces(obs_dim: int, act_dim: int):
    import numpy as np
    from gymnasium.spaces import Box

    return Box(-np.inf, np.inf, (obs_dim,), np.float32), Box(-1.0, 1.0, (act_dim,), np.float32)


def build_model(cfg: Config, env):
    """(model, venv): the SB3 algorithm over `env` (an mbmix Env) wrapped in VecMonitor (raw episode
    returns) and, with sb3.normalize, VecNormalize; seeded with cfg.seed, on the CPU."""
    sb3 = need_sb3(cfg.algo)
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    from ..adapters import SB3VecEnv

    venv = VecMonitor(SB3VecEnv(env))
    if cfg.sb3.get("normalize"):
        venv = VecNormalize(venv, gamma=float(cfg.sb3["gamma"]))
    cls = sb3.PPO if cfg.algo == "ppo" else sb3.SAC
    model = cls("MlpPolicy", venv, seed=cfg.seed, device="cpu", verbose=0, policy_kwargs=policy_kwargs(cfg),
                **_algo_kwargs(cfg))
    return model, venv


def _episode_callback(agent):
    from stable_baselines3.common.callbacks import BaseCallback

    class _Episodes(BaseCallback):
        """Raw returns (VecMonitor's) and task scores of the episodes that end."""

        def _on_step(self) -> bool:
            for i, done in enumerate(self.locals["dones"]):
                if done:
                    info = self.locals["infos"][i]
                    if "episode" in info:
                        agent._returns.append(float(info["episode"]["r"]))
                    if "score" in info:
                        agent._scores.append(float(info["score"]))
                    agent.blowups += int(bool(info.get("blowup", False)))
            return True

    return _Episodes()


class SB3Agent:
    """A PPO or SAC learner with the interface `trainer.Run` drives (see the module doc)."""

    def __init__(self, cfg: Config, env):
        self.cfg, self.env = cfg, env
        self.model, self.venv = build_model(cfg, env)
        self.steps_per_iteration = steps_per_iteration(cfg.algo, cfg.sb3, env.num_envs)
        budget = float(cfg.sb3["total_timesteps"])
        model = self.model

        # SB3's learn() measures progress (for learning-rate and clip-range schedules) against the total
        # of that call; the run calls learn() once per iteration, so progress is measured against the budget
        def progress(num_timesteps, total_timesteps):
            model._current_progress_remaining = max(0.0, 1.0 - float(num_timesteps) / budget)

        model._update_current_progress_remaining = progress
        self.callback = _episode_callback(self)
        self.iteration = 0
        self.env_steps = 0
        self.blowups = 0
        self.skipped = 0
        self.last_return = float("nan")
        self.last_score = float("nan")
        self._returns, self._scores = [], []
        self.log = print

    def iterate(self) -> dict:
        self._returns, self._scores = [], []
        self.model.learn(total_timesteps=self.steps_per_iteration, callback=self.callback, log_interval=None,
                         reset_num_timesteps=self.iteration == 0)
        logger = self.model.logger  # made by the first learn()
        self.iteration += 1
        self.env_steps = int(self.model.num_timesteps)
        if self._returns:
            self.last_return = sum(self._returns) / len(self._returns)
        if self._scores:
            self.last_score = sum(self._scores) / len(self._scores)
        out = {"return": self.last_return, "score": self.last_score, "blowups": self.blowups, "skipped": 0}
        for key, col in _LOGGED[self.cfg.algo].items():
            try:
                v = float(logger.name_to_value[key])  # numpy scalars too
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(v):
                out[col] = v
        logger.name_to_value.clear()
        logger.name_to_count.clear()
        logger.name_to_excluded.clear()
        return out

    # -- what the trainer saves -------------------------------------------------------------------
    def obs_rms(self):
        from stable_baselines3.common.vec_env import VecNormalize

        if isinstance(self.venv, VecNormalize):
            rms = self.venv.obs_rms
            return {"mean": torch.as_tensor(rms.mean, dtype=torch.float64).clone(),
                    "var": torch.as_tensor(rms.var, dtype=torch.float64).clone(),
                    "count": torch.tensor(float(rms.count), dtype=torch.float64),
                    "clip": torch.tensor(float(self.venv.clip_obs), dtype=torch.float64),
                    "epsilon": torch.tensor(float(self.venv.epsilon), dtype=torch.float64)}
        return None

    def policy_payload(self) -> dict:
        """What policy.pt holds besides format and config (plain tensors)."""
        return {"sb3_policy": {k: v.detach().cpu().clone() for k, v in self.model.policy.state_dict().items()},
                "obs_rms": self.obs_rms(), "obs_dim": self.env.obs_dim, "act_dim": self.env.act_dim,
                "iteration": self.iteration}

    def state_dict(self) -> dict:
        """checkpoint.pt's agent entry: the policy (so an unfinished run can be evaluated) and the
        counters; not enough to resume (see RESUME_REFUSED)."""
        return {**self.policy_payload(), "counters": {
            "iteration": self.iteration, "env_steps": self.env_steps, "blowups": self.blowups,
            "last_return": self.last_return, "last_score": self.last_score}}

    def load_state_dict(self, d: dict) -> None:
        raise RunError(RESUME_REFUSED.format(algo=self.cfg.algo))


# -- loading a ppo/sac policy from a run directory (no SB3 pickles) -------------------------------
def build_policy(cfg: Config, obs_dim: int, act_dim: int, state_dict: dict | None = None):
    """The SB3 policy network of a ppo/sac config (its weights from `state_dict`, or the run seed's
    initial ones), in evaluation mode."""
    need_sb3(cfg.algo)
    obs_space, act_space = _spaces(obs_dim, act_dim)
    if state_dict is None:  # the untrained policy of the run's seed: what SB3 builds for it
        from .trainer import make_env

        policy = build_model(cfg, make_env(cfg))[0].policy
    else:
        if cfg.algo == "ppo":
            from stable_baselines3.common.policies import ActorCriticPolicy as cls
        else:
            from stable_baselines3.sac.policies import SACPolicy as cls
        policy = cls(obs_space, act_space, lambda _: 0.0, **policy_kwargs(cfg))
        policy.load_state_dict(state_dict)
    policy.set_training_mode(False)
    return policy


def policy_fn(cfg: Config, policy, obs_rms: dict | None):
    """policy_fn(obs [N, obs_dim]) -> actions [N, act_dim]: VecNormalize's normalization (float64,
    clipped, then float32, as VecNormalize.normalize_obs), SB3's deterministic action, clipped."""

    def fn(obs: torch.Tensor) -> torch.Tensor:
        x = obs.detach().cpu().float()
        if obs_rms is not None:
            x = ((x.double() - obs_rms["mean"]) / torch.sqrt(obs_rms["var"] + obs_rms["epsilon"]))
            x = x.clamp(-float(obs_rms["clip"]), float(obs_rms["clip"])).float()
        with torch.no_grad():
            a = policy._predict(x, deterministic=True)
        return a.clamp(-1.0, 1.0).to(obs.device)

    return fn


def untrained_obs_rms(cfg: Config, obs_dim: int):
    """VecNormalize's statistics before any step (mean 0, var 1), or None without normalization."""
    if not cfg.sb3.get("normalize"):
        return None
    return {"mean": torch.zeros(obs_dim, dtype=torch.float64), "var": torch.ones(obs_dim, dtype=torch.float64),
            "clip": torch.tensor(10.0, dtype=torch.float64), "epsilon": torch.tensor(1e-8, dtype=torch.float64)}
