"""PPO and SAC (Stable-Baselines3) as algorithms of a run: their hyperparameters and budget.

A ``ppo`` or ``sac`` run keeps its SB3 hyperparameters in the config's ``sb3`` table
(config.json ``"sb3": {...}``); the learner keys of the config (actor_hidden, actor_lr,
gamma, lam, horizon, ...) are not used by them. The table's keys:

* ``total_timesteps``: the budget in simulator steps (all envs together, as SB3 counts); the
  run's ``iterations`` is derived from it (``--iterations`` is refused for ppo/sac, use
  ``--env-steps``): PPO: one iteration = one rollout of ``n_steps`` x ``num_envs`` steps and its
  update; SAC: one iteration = ``iteration_steps`` steps (rounded up to a multiple of
  ``num_envs``). The run ends after whole iterations, so at least the budget is spent (SB3's
  own ``learn`` ends after whole rollouts too).
* ``normalize``: wrap the env in SB3's ``VecNormalize`` (observations and, for training,
  rewards; its gamma is the algorithm's, as rl-zoo3 sets it); the observation statistics are
  stored in policy.pt and applied by the evaluated policy exactly as VecNormalize does.
* ``policy_kwargs``: ``net_arch`` (PPO: ``{"pi": [...], "vf": [...]}`` or a list; SAC: a
  list), ``activation_fn`` (a name: ``"relu"``, ``"tanh"``, ``"elu"``, ``"gelu"``,
  ``"leaky_relu"``), ``log_std_init``, ``ortho_init`` (PPO).
* every other key is passed to ``stable_baselines3.PPO(...)`` / ``SAC(...)`` as is (numbers
  only: learning-rate schedules such as rl-zoo3's ``lin_...`` are not offered):
  PPO: n_steps, batch_size, n_epochs, learning_rate, gamma, gae_lambda, clip_range, ent_coef,
  vf_coef, max_grad_norm; SAC: learning_rate, buffer_size, learning_starts, batch_size, tau,
  gamma, train_freq, gradient_steps, ent_coef (a number or "auto"), target_update_interval.
  SAC's ``buffer_size`` is capped at the budget (a larger buffer holds nothing more).

The numbers: rl-baselines3-zoo's MuJoCo hyperparameters (github.com/DLR-RM/rl-baselines3-zoo,
hyperparams/ppo.yml at commit 208b6fd and hyperparams/sac.yml at commit c94924e), the standard
reference for SB3's PPO and SAC on Hopper, HalfCheetah, Ant and Humanoid; every key an rl-zoo3
entry does not set is SB3's default (stable-baselines3 2.x), written out here so that
config.json shows every number the run used. cartpole-swingup has no MuJoCo counterpart: it
takes rl-zoo3's untuned MuJoCo defaults (its Ant-v4 PPO entry: SB3's defaults; SAC: the
``mujoco-defaults`` anchor). Budgets: rl-zoo3's n_timesteps (1e6; humanoid 1e7 PPO / 2e6 SAC),
cartpole 1e5 (our choice: DiffRL's SHAC budget for it is 500 x 64 x 32 ~ 1e6 steps).

This module is data and checks only (no torch, no SB3): ``config.resolve`` reads it.
"""
from __future__ import annotations

import math

from ..errors import OptionError

SB3_ALGOS = ("ppo", "sac")

#: SB3 2.x defaults, written out (PPO and SAC constructors)
PPO_DEFAULTS = {"n_steps": 2048, "batch_size": 64, "n_epochs": 10, "learning_rate": 3e-4, "gamma": 0.99,
                "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.0, "vf_coef": 0.5, "max_grad_norm": 0.5,
                "normalize": False,
                "policy_kwargs": {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": "tanh",
                                  "log_std_init": 0.0, "ortho_init": True}}
SAC_DEFAULTS = {"learning_rate": 3e-4, "buffer_size": 1_000_000, "learning_starts": 100, "batch_size": 256,
                "tau": 0.005, "gamma": 0.99, "train_freq": 1, "gradient_steps": 1, "ent_coef": "auto",
                "target_update_interval": 1, "normalize": False, "iteration_steps": 1000,
                "policy_kwargs": {"net_arch": [256, 256], "activation_fn": "relu", "log_std_init": -3.0}}

# rl-zoo3 hyperparams/ppo.yml, "# Tuned / # 10 mujoco envs": the tuned MuJoCo entries share these
_PPO_TUNED_NET = {"log_std_init": -2.0, "ortho_init": False, "activation_fn": "relu",
                  "net_arch": {"pi": [256, 256], "vf": [256, 256]}}
PPO_TASK = {
    # Hopper-v4 (tuned): normalize, n_envs 1, 1e6 steps
    "hopper": {"num_envs": 1, "sb3": {
        "total_timesteps": 1_000_000, "normalize": True, "batch_size": 32, "n_steps": 512, "gamma": 0.999,
        "learning_rate": 9.80828e-05, "ent_coef": 0.00229519, "clip_range": 0.2, "n_epochs": 5,
        "gae_lambda": 0.99, "max_grad_norm": 0.7, "vf_coef": 0.835671, "policy_kwargs": _PPO_TUNED_NET}},
    # HalfCheetah-v4 (tuned): normalize, n_envs 1, 1e6 steps
    "cheetah": {"num_envs": 1, "sb3": {
        "total_timesteps": 1_000_000, "normalize": True, "batch_size": 64, "n_steps": 512, "gamma": 0.98,
        "learning_rate": 2.0633e-05, "ent_coef": 0.000401762, "clip_range": 0.1, "n_epochs": 20,
        "gae_lambda": 0.92, "max_grad_norm": 0.8, "vf_coef": 0.58096, "policy_kwargs": _PPO_TUNED_NET}},
    # Ant-v4 (&mujoco-defaults): normalize, 1e6 steps, everything else SB3's defaults
    "ant": {"num_envs": 1, "sb3": {"total_timesteps": 1_000_000, "normalize": True}},
    # Humanoid-v4 (tuned): normalize, n_envs 1, 1e7 steps
    "humanoid": {"num_envs": 1, "sb3": {
        "total_timesteps": 10_000_000, "normalize": True, "batch_size": 256, "n_steps": 512, "gamma": 0.95,
        "learning_rate": 3.56987e-05, "ent_coef": 0.00238306, "clip_range": 0.3, "n_epochs": 5,
        "gae_lambda": 0.9, "max_grad_norm": 2.0, "vf_coef": 0.431892, "policy_kwargs": _PPO_TUNED_NET}},
    # no MuJoCo counterpart: rl-zoo3's MuJoCo defaults (normalize, SB3's defaults); 1e5 steps (ours)
    "cartpole-swingup": {"num_envs": 1, "sb3": {"total_timesteps": 100_000, "normalize": True}},
}
# rl-zoo3 hyperparams/sac.yml "=== Mujoco Envs ===": &mujoco-defaults = learning_starts 10000,
# 1e6 steps (Humanoid-v3: 2e6), everything else SB3's defaults; n_envs 1 (rl-zoo3's default)
SAC_TASK = {
    "hopper": {"num_envs": 1, "sb3": {"total_timesteps": 1_000_000, "learning_starts": 10_000}},
    "cheetah": {"num_envs": 1, "sb3": {"total_timesteps": 1_000_000, "learning_starts": 10_000}},
    "ant": {"num_envs": 1, "sb3": {"total_timesteps": 1_000_000, "learning_starts": 10_000}},
    "humanoid": {"num_envs": 1, "sb3": {"total_timesteps": 2_000_000, "learning_starts": 10_000}},
    "cartpole-swingup": {"num_envs": 1, "sb3": {"total_timesteps": 100_000, "learning_starts": 10_000}},
}

#: algorithm presets (config.ALGO_PRESETS): SB3's defaults, one env, a 1e5-step budget
ALGO_PRESETS = {"ppo": {"num_envs": 1, "sb3": {**PPO_DEFAULTS, "total_timesteps": 100_000}},
                "sac": {"num_envs": 1, "sb3": {**SAC_DEFAULTS, "total_timesteps": 100_000}}}
#: (task, algo) presets (config.TASK_ALGO_PRESETS)
TASK_ALGO_PRESETS = {**{(t, "ppo"): p for t, p in PPO_TASK.items()},
                     **{(t, "sac"): p for t, p in SAC_TASK.items()}}

ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "leaky_relu")
_PPO_KEYS = set(PPO_DEFAULTS) | {"total_timesteps"}
_SAC_KEYS = set(SAC_DEFAULTS) | {"total_timesteps"}
_POLICY_KEYS = {"ppo": {"net_arch", "activation_fn", "log_std_init", "ortho_init"},
                "sac": {"net_arch", "activation_fn", "log_std_init"}}


def merge(base: dict, update: dict) -> dict:
    """`base` with `update`'s keys; policy_kwargs merged key by key (a preset's net can change
    one entry, e.g. log_std_init)."""
    out = {**base, **update}
    if isinstance(base.get("policy_kwargs"), dict) and isinstance(update.get("policy_kwargs"), dict):
        out["policy_kwargs"] = {**base["policy_kwargs"], **update["policy_kwargs"]}
    return out


def _num(table, key, what, lo=None, integer=False, none_ok=False, strings=()):
    v = table[key]
    if v in strings:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise OptionError(f"config sb3.{key} must be {what}, got {v!r}")
    if integer and float(v) != int(v):
        raise OptionError(f"config sb3.{key} must be an integer, got {v!r}")
    if lo is not None and not v >= lo:
        raise OptionError(f"config sb3.{key} must be >= {lo}, got {v!r}")
    if integer:
        table[key] = int(v)


def steps_per_iteration(algo: str, sb3: dict, num_envs: int) -> int:
    if algo == "ppo":
        return int(sb3["n_steps"]) * num_envs
    return int(math.ceil(int(sb3["iteration_steps"]) / num_envs)) * num_envs


def finish(cfg, user_iterations: bool = False):
    """Check the sb3 table of a ppo/sac config and derive `iterations` from its budget (in place)."""
    algo = cfg.algo
    sb3 = cfg.sb3 = dict(cfg.sb3)
    keys = _PPO_KEYS if algo == "ppo" else _SAC_KEYS
    unknown = sorted(set(sb3) - keys)
    if unknown:
        raise OptionError(f"config sb3 has no key {', '.join(unknown)} for {algo}; its keys: {', '.join(sorted(keys))}")
    if user_iterations:
        raise OptionError(f"{algo} runs are budgeted in simulator steps: give --env-steps N (config "
                          f"sb3.total_timesteps), not --iterations / iterations")
    pk = sb3.get("policy_kwargs", {})
    if not isinstance(pk, dict) or set(pk) - _POLICY_KEYS[algo]:
        raise OptionError(f"config sb3.policy_kwargs must be a table of {', '.join(sorted(_POLICY_KEYS[algo]))}; "
                          f"got {pk!r}")
    if pk.get("activation_fn", "relu") not in ACTIVATIONS:
        raise OptionError(f"config sb3.policy_kwargs.activation_fn must be one of {', '.join(ACTIVATIONS)}, "
                          f"got {pk.get('activation_fn')!r}")
    arch = pk.get("net_arch", [])
    layers = list(arch.values()) if isinstance(arch, dict) and algo == "ppo" else [arch]
    if (isinstance(arch, dict) and set(arch) != {"pi", "vf"}) or not all(
            isinstance(x, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in x)
            for x in layers):
        raise OptionError(f"config sb3.policy_kwargs.net_arch must be a list of layer sizes"
                          f"{' or {pi: [...], vf: [...]}' if algo == 'ppo' else ''}, got {arch!r}")
    if "log_std_init" in pk:
        _num(pk, "log_std_init", "a number")
    if not isinstance(sb3.get("normalize"), bool):
        raise OptionError(f"config sb3.normalize must be true or false, got {sb3.get('normalize')!r}")
    _num(sb3, "total_timesteps", "a positive integer", lo=1, integer=True)
    _num(sb3, "learning_rate", "a positive number", lo=1e-300)
    _num(sb3, "gamma", "a number in (0, 1]", lo=1e-300)
    _num(sb3, "batch_size", "a positive integer", lo=1, integer=True)
    if not sb3["gamma"] <= 1.0:
        raise OptionError(f"config sb3.gamma must lie in (0, 1], got {sb3['gamma']}")
    if algo == "ppo":
        for k in ("n_steps", "n_epochs"):
            _num(sb3, k, "a positive integer", lo=1, integer=True)
        for k in ("gae_lambda", "clip_range", "ent_coef", "vf_coef", "max_grad_norm"):
            _num(sb3, k, "a number >= 0", lo=0.0)
        if sb3["n_steps"] * cfg.num_envs < 2:
            raise OptionError("ppo needs n_steps x num_envs >= 2 (SB3 normalizes advantages over a rollout)")
    else:
        for k in ("buffer_size", "train_freq", "gradient_steps", "target_update_interval", "iteration_steps"):
            _num(sb3, k, "a positive integer", lo=1, integer=True)
        _num(sb3, "learning_starts", "an integer >= 0", lo=0, integer=True)
        _num(sb3, "tau", "a number in [0, 1]", lo=0.0)
        _num(sb3, "ent_coef", "a number > 0 or 'auto'", lo=1e-300, strings=("auto",))
        sb3["buffer_size"] = min(sb3["buffer_size"], max(sb3["total_timesteps"], sb3["batch_size"]))
    cfg.iterations = int(math.ceil(sb3["total_timesteps"] / steps_per_iteration(algo, sb3, cfg.num_envs)))
    return cfg
