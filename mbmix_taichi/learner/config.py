"""Learner configuration: one documented dataclass, per-task and per-algorithm presets.

Resolution order (later wins): dataclass defaults < algorithm preset < task preset <
task+algorithm preset < config file (JSON or TOML) < command-line flags. The keys of an
algorithm preset named in DEFINING are what the algorithm is: they also win over the task
presets, and a config file or flag that contradicts one is an error.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MbmixError, OptionError
from . import sb3_presets as _sb3

ALGOS = ("mbmix", "mix", "shac", "bptt", "mbmix-mse", "mbmix-model")
#: ALGOS (the project's learner) and PPO, SAC (Stable-Baselines3, sb3_presets.py)
ALL_ALGOS = ALGOS + _sb3.SB3_ALGOS


class RunError(MbmixError):
    """A missing or corrupt run directory, config or checkpoint."""


@dataclass
class Config:
    # -- what to train --------------------------------------------------------------
    task: str = ""
    task_options: dict = field(default_factory=dict)
    algo: str = "mbmix"
    seed: int = 0
    num_envs: int = 8
    iterations: int = 200

    # -- policy objective (docs/method.md, eq. 1-3) ------------------------------------------
    gamma: float = 0.99
    #: lambda of trajectory-length mixing, eq. 2/3 (1.0 = SVG(inf) / SHAC's actor loss)
    lam: float = 0.98
    #: mix interval k: only horizons H in {k, 2k, ...} are mixed (weights renormalised)
    mix_interval: int = 1
    #: window h: simulator steps per policy update (mix, shac); 0 = whole episode (bptt)
    horizon: int = 32
    #: lambda of the critic's targets (Algorithm 1 line 9; SHAC's TD(lambda))
    critic_lambda: float = 0.98
    use_critic: bool = True

    # -- actor and critic ------------------------------------------------------------------
    actor_hidden: list = field(default_factory=lambda: [64, 64])
    critic_hidden: list = field(default_factory=lambda: [64, 64])
    actor_lr: float = 2e-3
    critic_lr: float = 2e-3
    betas: list = field(default_factory=lambda: [0.7, 0.95])  # SHAC's Adam betas
    grad_norm: float = 1.0
    init_log_std: float = -1.0
    #: the actor's output layer at the start is PyTorch's default init times this: 0.01 (ours) starts
    #: near zero action; 1.0 is DiffRL's ActorStochasticMLP (docs/locomotion.md, session 12)
    actor_head_scale: float = 0.01
    #: the exploration noise's log std: "learned" (a parameter of the actor, trained with it) or
    #: "linear" (not trained: annealed from init_log_std at iteration 0 to final_log_std at the last)
    log_std_schedule: str = "learned"
    final_log_std: float = -2.0
    critic_iterations: int = 8
    critic_minibatches: int = 4
    #: learning-rate schedule of actor and critic: "constant", or "linear" from the set rate at
    #: iteration 0 to 1e-5 at the last iteration (DiffRL's SHAC)
    lr_schedule: str = "constant"
    #: critic weights at the start: "default" (PyTorch's) or "orthogonal" (gain sqrt 2, DiffRL's)
    critic_init: str = "default"
    #: target critic Polyak factor (SHAC: target <- a * target + (1 - a) * critic); 0 = none
    target_critic_alpha: float = 0.2
    obs_norm: bool = True
    #: per-env truncation of the state cotangent through a rollout: a row whose norm exceeds this
    #: (or is not finite) is zeroed, cutting that env's window there (0 = only non-finite rows)
    grad_truncation: float = 1e3

    # -- MB-MIX: data, model (eq. 4) and branch rollouts (Algorithm 1) -----------------
    #: env steps per env collected per iteration (Algorithm 1 line 1)
    collect_steps: int = 8
    buffer_size: int = 50000
    ensemble_size: int = 4
    model_hidden: list = field(default_factory=lambda: [128, 128])
    model_lr: float = 1e-3
    model_updates: int = 40
    model_batch: int = 256
    #: alpha of eq. 4 (weight of the Jacobian error); mbmix-mse forces 0
    sobolev_alpha: float = 1.0
    #: weight of the Jacobian error along adjoint pairs (w, w^T J): the simulator VJPs that the real
    #: windows' policy-gradient backward passes ran (model.adjoint_loss); 0 = off. Needs the
    #: simulator's gradient in the policy update (mbmix); mbmix-mse forces 0
    sobolev_adjoint_alpha: float = 0.0
    #: the Sobolev term uses full Jacobians when state_dim <= this, random JVP probes above
    full_jacobian_max_dim: int = 64
    num_probes: int = 4
    #: policy updates per iteration (Algorithm 1 line 3, T)
    policy_updates: int = 4
    rollout_batch: int = 256
    #: branch rollout length through the model
    model_horizon: int = 16
    #: iterations of data collection before the first policy update
    warmup_iterations: int = 1
    #: measure the model's k-step policy-gradient cosine (k = 1..model_horizon) against the
    #: simulator's every this many iterations (0 = never)
    fidelity_every: int = 5
    #: branch length = the longest k whose every cosine up to k reaches this (adaptive_horizon)
    fidelity_threshold: float = 0.8
    adaptive_horizon: bool = True

    # -- PPO and SAC (Stable-Baselines3; sb3_presets.py documents the keys and their sources) ----
    #: SB3 hyperparameters and the budget in simulator steps (total_timesteps) of a ppo/sac run
    sb3: dict = field(default_factory=dict)

    # -- bookkeeping ----------------------------------------------------------------------------
    checkpoint_every: int = 10
    #: torch CPU threads (1 is fastest for these small networks; taichi has its own threads)
    torch_threads: int = 1
    eval_episodes: int = 8

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Per-algorithm presets (docs/method.md, "Algorithms").
ALGO_PRESETS: dict[str, dict[str, Any]] = {
    "mbmix": {},
    "mbmix-mse": {"sobolev_alpha": 0.0, "sobolev_adjoint_alpha": 0.0},
    "mbmix-model": {},
    "mix": {"horizon": 32},
    # SHAC: h = 32, TD(lambda = 0.95) critic, target critic, gamma 0.99, betas (0.7, 0.95), grad norm 1;
    # its actor loss is the plain h-step return with a terminal value (lam = 1 in eq. 3).
    "shac": {"horizon": 32, "lam": 1.0, "mix_interval": 1, "critic_lambda": 0.95},
    # BPTT / APG: whole episodes, no critic, plain sum of rewards.
    "bptt": {"horizon": 0, "lam": 1.0, "mix_interval": 1, "use_critic": False},
    # PPO, SAC through Stable-Baselines3: SB3's defaults (sb3_presets.py)
    **_sb3.ALGO_PRESETS,
}

# The preset keys that define an algorithm: they win over task presets, and a user value that
# contradicts one is an error (not silently replaced).
DEFINING: dict[str, tuple[str, ...]] = {
    "mbmix-mse": ("sobolev_alpha", "sobolev_adjoint_alpha"),  # the ablation: eq. 4 without Jacobian terms
    "bptt": ("horizon", "use_critic"),  # APG: whole episodes, no critic
}
FORCED: dict[str, dict[str, Any]] = {a: {k: ALGO_PRESETS[a][k] for k in keys} for a, keys in DEFINING.items()}

# Per-task presets (lambda 0.98 and mix interval 1 or 2 as in the paper).
_CLOTH = {
    # a 6x6 cloth (state_dim 222) and 30-step episodes. An even resolution puts no particle row on
    # the fold line, which a 5x5 cloth cannot fold across.
    "task_options": {"resolution": 6, "episode_length": 30},
    "num_envs": 8, "actor_lr": 1e-3,
    # Short windows with a critic and wide exploration noise (sigma = 1 before the tanh). A fold
    # needs the edge lifted past ~2.5 cm before carrying it (docs/cloth_lift_scan.md): below that
    # the return is flat in the lift and the exact gradient of a whole-episode window (h = 30,
    # sigma e^-1) settles in a drag of the edge along the ground (trajectory optimisation from
    # hold-still does the same, docs/trajopt_cloth.md). Measured with MIX, seed 0: h = 10,
    # lambda 0.95, sigma 1 reached eval -6.04 / score 0.81 after 600 iterations; h = 30, lambda
    # 0.98, sigma e^-1 trained at -8.8 / 0.60 after 130 (hold-still: -9.0 / 0.74). docs/cloth.md
    # (the window and lambda are MB-MIX's and MIX's: SHAC keeps its 32-step windows and lambda 1,
    # BPTT whole episodes; see TASK_ALGO_PRESETS below)
    "mix_interval": 2, "init_log_std": 0.0,
    # ... annealed to sigma e^-3 by the last iteration (not learned): with sigma ~0.9 to the end (the
    # learned log std barely moves) the deterministic policy chattered bang-bang after the fold and
    # crumpled it (seed 0: eval -5.15 / 0.79); annealed to e^-1.5: -5.02 / 0.86; to e^-3: -4.16 / 0.97,
    # folding by step 15 and holding still (docs/cloth.md)
    "log_std_schedule": "linear", "final_log_std": -3.0,
    # MB-MIX: the cloth Jacobian (222 x 228) is matched through 4 JVP probes per transition with a
    # small alpha; branches of at most 8 steps (the model's gradient cosine falls below 0.8 beyond
    # 3-8 steps, measured per run); a few model steps and critic epochs per iteration
    "model_horizon": 8, "sobolev_alpha": 0.1, "num_probes": 4,
    "model_updates": 8, "ensemble_size": 3, "critic_iterations": 4, "policy_updates": 1,
    "rollout_batch": 128, "fidelity_every": 10, "checkpoint_every": 50, "buffer_size": 12000,
    # 900 iterations (72,000 simulator steps, about 0.5 CPU-second each for mbmix): at 600 all three
    # seeds evaluated 0.92-0.93 with the folded half tented (return -4.17 +- 0.01); at 900 seeds 1
    # and 2 had flattened it (0.97, 0.94) and seed 0 had not (0.90-0.93) (docs/cloth.md)
    "iterations": 900,
}

TASK_PRESETS: dict[str, dict[str, Any]] = {
    # cloth-fold trains 1,200 iterations (96,000 simulator steps): seed 0, tented at 900, lies flat
    # at 1,200 (0.98); the noise anneals over the whole run, so its last stretch is slower
    # (docs/cloth.md: the three seeds, and seed 0 at 1,500); cloth-unfold keeps 900 (not re-measured)
    "cloth-fold": {**_CLOTH, "iterations": 1200},
    "cloth-unfold": dict(_CLOTH),
    # DaXBench's pick-and-place setting (tasks/_cloth.py, ClothPickPlaceTask): a 6 x 6 cloth, 3 macro
    # steps per episode, windows of one whole episode (h = 3, as DaXBench's APG differentiates whole
    # episodes); a short sanity preset, not tuned (docs/cloth.md)
    "cloth-fold-pnp": {"task_options": {"resolution": 6}, "num_envs": 8, "horizon": 3, "iterations": 100},
    "cloth-unfold-pnp": {"task_options": {"resolution": 6}, "num_envs": 8, "horizon": 3, "iterations": 100},
}

# The DiffRL locomotion suite. Numbers from DiffRL's examples/cfg/shac/<task>.yaml (Xu et al. 2022,
# commit 6b8d695): networks, learning rates and their linear decay, target-critic alpha, TD(0.95)
# critic with 16 iterations x 4 minibatches, gamma 0.99, betas (0.7, 0.95), grad norm 1, 32-step
# windows, num_actors (parallel envs) and max_epochs (iterations). The same networks and rates are
# used by every algorithm on the task; what differs per algorithm is in ALGO_PRESETS and below.
_DIFFRL = {"critic_lambda": 0.95, "critic_iterations": 16, "critic_minibatches": 4, "gamma": 0.99,
           "betas": [0.7, 0.95], "grad_norm": 1.0, "horizon": 32, "lr_schedule": "linear",
           "critic_init": "orthogonal"}
TASK_PRESETS.update({
    # cartpole_swing_up.yaml: actor/critic [64, 64], lr 1e-2 / 1e-3, 64 actors, 500 epochs
    "cartpole-swingup": {**_DIFFRL, "actor_hidden": [64, 64], "critic_hidden": [64, 64], "actor_lr": 1e-2,
                         "critic_lr": 1e-3, "target_critic_alpha": 0.2, "num_envs": 64, "iterations": 500},
    # hopper.yaml: actor [128, 64, 32], critic [64, 64], lr 2e-3 / 2e-4, 256 actors, 2000 epochs
    "hopper": {**_DIFFRL, "actor_hidden": [128, 64, 32], "critic_hidden": [64, 64], "actor_lr": 2e-3,
               "critic_lr": 2e-4, "target_critic_alpha": 0.2, "num_envs": 256, "iterations": 2000},
    # cheetah.yaml: actor [128, 64, 32], critic [64, 64], lr 2e-3 / 2e-3, 64 actors, 2000 epochs
    "cheetah": {**_DIFFRL, "actor_hidden": [128, 64, 32], "critic_hidden": [64, 64], "actor_lr": 2e-3,
                "critic_lr": 2e-3, "target_critic_alpha": 0.2, "num_envs": 64, "iterations": 2000},
    # ant.yaml: actor [128, 64, 32], critic [64, 64], lr 2e-3 / 2e-3, 64 actors, 2000 epochs
    "ant": {**_DIFFRL, "actor_hidden": [128, 64, 32], "critic_hidden": [64, 64], "actor_lr": 2e-3,
            "critic_lr": 2e-3, "target_critic_alpha": 0.2, "num_envs": 64, "iterations": 2000},
    # humanoid.yaml: actor [256, 128], critic [128, 128], lr 2e-3 / 5e-4, target alpha 0.995, 64 actors
    "humanoid": {**_DIFFRL, "actor_hidden": [256, 128], "critic_hidden": [128, 128], "actor_lr": 2e-3,
                 "critic_lr": 5e-4, "target_critic_alpha": 0.995, "num_envs": 64, "iterations": 2000},
})

# Presets for one algorithm on one task.
TASK_ALGO_PRESETS: dict[tuple[str, str], dict[str, Any]] = {}
for _task in ("cartpole-swingup", "hopper", "cheetah", "ant", "humanoid"):
    # the paper runs MB-MIX and MIX with 4 or 8 parallel envs "to stress sample efficiency",
    # lambda 0.98 and mix interval 1 (our choice among its 1 or 2: measured per task in a sweep)
    for _algo in ("mbmix", "mbmix-mse", "mbmix-model", "mix"):
        TASK_ALGO_PRESETS[(_task, _algo)] = {"num_envs": 8, "lam": 0.98, "mix_interval": 1}
for _task in ("cloth-fold", "cloth-unfold"):
    for _algo in ("mbmix", "mbmix-mse", "mbmix-model", "mix"):
        TASK_ALGO_PRESETS[(_task, _algo)] = {"horizon": 10, "lam": 0.95}  # see _CLOTH
# PPO and SAC on the locomotion tasks: rl-baselines3-zoo's MuJoCo hyperparameters (sb3_presets.py)
TASK_ALGO_PRESETS.update(_sb3.TASK_ALGO_PRESETS)
# cartpole-swingup trains in 200 MB-MIX iterations (our measurement, README), not DiffRL's 500
TASK_ALGO_PRESETS[("cartpole-swingup", "mbmix")]["iterations"] = 200


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(Config)}


def _check_value(name: str, value, default):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise OptionError(f"config {name} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise OptionError(f"config {name} must be an integer, got {value!r}")
        value = int(value)
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionError(f"config {name} must be a number, got {value!r}")
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise OptionError(f"config {name} must be a string, got {value!r}")
    elif isinstance(default, list):
        if not isinstance(value, (list, tuple)):
            raise OptionError(f"config {name} must be a list, got {value!r}")
        value = list(value)
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise OptionError(f"config {name} must be a table/dict, got {value!r}")
        value = dict(value)
    return value


def apply(cfg: Config, updates: dict, source: str) -> Config:
    """Return cfg with `updates` applied; unknown keys or wrong types raise OptionError."""
    fields = _fields()
    defaults = Config()
    new = dataclasses.replace(cfg)
    for k, v in updates.items():
        key = k.replace("-", "_")
        if key not in fields:
            raise OptionError(f"unknown config key {k!r} in {source}; known keys: {', '.join(fields)}")
        v = _check_value(key, v, getattr(defaults, key))
        if key == "task_options":
            v = {**new.task_options, **v}
        elif key == "sb3":
            v = _sb3.merge(new.sb3, v)
        setattr(new, key, v)
    return new


def load_file(path) -> dict:
    """Read a JSON or TOML config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"config file {str(path)!r} does not exist")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            with open(path, "rb") as f:
                return tomllib.load(f)
        data = json.loads(path.read_text())
    except Exception as exc:
        raise OptionError(f"could not parse config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise OptionError(f"config file {path} holds a {type(data).__name__}; expected a JSON object / TOML table "
                          'of config keys, e.g. {"actor_lr": 0.001}')
    return data


def resolve(task: str, algo: str = "mbmix", file=None, overrides: dict | None = None) -> Config:
    """The resolved config of a run (see the module docstring for the order)."""
    if algo not in ALL_ALGOS:
        raise OptionError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALL_ALGOS)}")
    cfg = Config(task=task, algo=algo)
    cfg = apply(cfg, ALGO_PRESETS[algo], f"the {algo} preset")
    cfg = apply(cfg, TASK_PRESETS.get(task, {}), f"the {task} preset")
    cfg = apply(cfg, TASK_ALGO_PRESETS.get((task, algo), {}), f"the {task}/{algo} preset")
    cfg = apply(cfg, FORCED.get(algo, {}), f"what {algo} is")
    if file is not None:
        data = load_file(file)
        if "algo" in data and data["algo"] != algo:
            # a file may choose the algorithm; re-resolve the presets for it
            a = data["algo"]
            if a not in ALL_ALGOS:
                raise OptionError(f"unknown algorithm {a!r} in {file}; choose one of {', '.join(ALL_ALGOS)}")
            return resolve(task, a, file, overrides)
        cfg = apply(cfg, {k: v for k, v in data.items() if k != "task"}, str(file))
    cfg = apply(cfg, overrides or {}, "the command line")
    if cfg.algo in _sb3.SB3_ALGOS:  # the budget is in simulator steps: iterations follow from it
        given = dict(overrides or {})
        if file is not None:
            given.update(load_file(file))
        _sb3.finish(cfg, user_iterations="iterations" in given)
    for key, value in FORCED.get(cfg.algo, {}).items():
        if getattr(cfg, key) != value:
            raise OptionError(f"{cfg.algo} requires {key} = {value!r} (that is what the algorithm is); "
                              f"got {getattr(cfg, key)!r} from a config file or the command line")
    validate(cfg)
    return cfg


# ranges checked by validate(), before any network or buffer is built: integer key -> its minimum
_INT_MIN = {"num_envs": 1, "mix_interval": 1, "ensemble_size": 1, "collect_steps": 1, "model_horizon": 1,
            "rollout_batch": 1, "model_batch": 1, "num_probes": 1, "critic_minibatches": 1, "buffer_size": 1,
            "eval_episodes": 1, "iterations": 0, "horizon": 0, "critic_iterations": 0, "model_updates": 0,
            "policy_updates": 0, "warmup_iterations": 0, "checkpoint_every": 0, "torch_threads": 0,
            "full_jacobian_max_dim": 0, "seed": 0}
_POSITIVE = ("actor_lr", "critic_lr", "model_lr", "grad_norm", "actor_head_scale")
_UNIT = ("lam", "critic_lambda", "target_critic_alpha")  # in [0, 1]


def validate(cfg: Config) -> None:
    """Range checks of a resolved config; OptionError names the key and what is expected."""
    if cfg.algo not in ALL_ALGOS:
        raise OptionError(f"unknown algorithm {cfg.algo!r}; choose one of {', '.join(ALL_ALGOS)}")
    for name, lo in _INT_MIN.items():
        if getattr(cfg, name) < lo:
            raise OptionError(f"config {name} must be >= {lo}, got {getattr(cfg, name)}")
    if cfg.seed >= 2 ** 64:
        raise OptionError(f"config seed must be below 2**64, got {cfg.seed}")
    for f in dataclasses.fields(Config):
        v = getattr(cfg, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise OptionError(f"config {f.name} must be a finite number, got {v}")
    for name in _POSITIVE:
        if not getattr(cfg, name) > 0:
            raise OptionError(f"config {name} must be > 0, got {getattr(cfg, name)}")
    for name in _UNIT:
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise OptionError(f"config {name} must lie in [0, 1], got {getattr(cfg, name)}")
    if not 0.0 < cfg.gamma <= 1.0:
        raise OptionError(f"config gamma must lie in (0, 1], got {cfg.gamma}")
    if cfg.sobolev_alpha < 0:
        raise OptionError(f"config sobolev_alpha must be >= 0, got {cfg.sobolev_alpha}")
    if cfg.sobolev_adjoint_alpha < 0:
        raise OptionError(f"config sobolev_adjoint_alpha must be >= 0, got {cfg.sobolev_adjoint_alpha}")
    if cfg.sobolev_adjoint_alpha > 0 and cfg.algo != "mbmix":
        raise OptionError(f"sobolev_adjoint_alpha > 0 needs the simulator's gradient in the policy update "
                          f"(algo mbmix); {cfg.algo} has no real-window backward pass to take VJPs from")
    b = cfg.betas
    if (len(b) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in b)
            or not all(0.0 <= x < 1.0 for x in b)):
        raise OptionError(f"config betas must be two numbers in [0, 1) (Adam's beta1, beta2), got {b!r}")
    for name in ("actor_hidden", "critic_hidden", "model_hidden"):
        sizes = getattr(cfg, name)
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in sizes):
            raise OptionError(f"config {name} must be a list of positive integer layer sizes, got {sizes!r}")
    if not isinstance(cfg.task_options, dict) or not all(isinstance(k, str) for k in cfg.task_options):
        raise OptionError(f"config task_options must be a table of option names, got {cfg.task_options!r}")
    if cfg.critic_init not in ("default", "orthogonal"):
        raise OptionError(f"critic_init must be 'default' or 'orthogonal', got {cfg.critic_init!r}")
    if cfg.lr_schedule not in ("constant", "linear"):
        raise OptionError(f"lr_schedule must be 'constant' or 'linear', got {cfg.lr_schedule!r}")
    if cfg.log_std_schedule not in ("learned", "linear"):
        raise OptionError(f"log_std_schedule must be 'learned' or 'linear', got {cfg.log_std_schedule!r}")
    if cfg.grad_truncation < 0 or cfg.fidelity_every < 0 or not -1.0 <= cfg.fidelity_threshold <= 1.0:
        raise OptionError("grad_truncation and fidelity_every must be >= 0, fidelity_threshold in [-1, 1]")


def from_dict(d: dict) -> Config:
    """Rebuild a Config from config.json (unknown keys are an error)."""
    try:
        cfg = apply(Config(), d, "config.json")
        validate(cfg)  # a run directory is data from anywhere: its config gets the same checks
        return cfg
    except OptionError as exc:
        raise RunError(str(exc)) from exc
