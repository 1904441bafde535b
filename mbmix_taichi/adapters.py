"""Adapters to the Gymnasium and Stable-Baselines3 interfaces.

They sit on top of the env API and only convert: numpy in and out, actions cast to the env's
dtype, done envs reported the way each library expects. The env API itself stays torch-only
and strict.

    import gymnasium, mbmix_taichi.adapters          # the import registers "mbmix/<task>"
    env = gymnasium.make("mbmix/cloth-fold")          # GymEnv: one env, a gymnasium.Env
    venv = gymnasium.make_vec("mbmix/cloth-fold", num_envs=8)   # GymVectorEnv, NEXT_STEP
    from mbmix_taichi.adapters import SB3VecEnv
    stable_baselines3.PPO("MlpPolicy", SB3VecEnv("cloth-fold", num_envs=8, seed=0)).learn(100_000)

* ``GymVectorEnv(task, num_envs, seed, dtype, autoreset_mode=AutoresetMode.NEXT_STEP)``:
  Gymnasium's default NEXT_STEP (an episode's last obs is returned by the step that ends
  it, the reset obs by the next step, which ignores that env's action and returns reward 0),
  or SAME_STEP (the reset obs at once, the last one in ``infos["final_obs"]``), which is what
  :meth:`Env.step` does natively. Every ``gymnasium.wrappers.vector`` wrapper that supports
  the chosen mode works on it (NormalizeObservation and the other observation wrappers need
  NEXT_STEP).
* ``reset(seed=int | list | None)``: a list (one entry per env, ints or None) seeds the whole
  batch reproducibly: the envs share one generator, so a list is folded into one seed.
* ``GymEnv(task, seed, dtype, render_mode=None | "rgb_array")``: one env as a
  ``gymnasium.Env`` (passes ``gymnasium.utils.env_checker.check_env`` and SB3's
  ``check_env``). Like any ``gymnasium.Env`` it must be reset after an episode ends.
* ``SB3VecEnv``: SB3's VecEnv (its own autoreset, ``infos[i]["terminal_observation"]``).

Multi-process use (gymnasium ``AsyncVectorEnv``, SB3 ``SubprocVecEnv``): start the workers with
the 'spawn' (or 'forkserver') method - ``AsyncVectorEnv(fns, context="spawn")``,
``SubprocVecEnv(fns, start_method="spawn")``. Both libraries fork by default on Linux, and a
process forked after Taichi was initialised hangs in its first kernel. One ``GymVectorEnv`` /
``SB3VecEnv`` already steps all its envs in one batched kernel, so worker processes are
rarely needed.

Needs the optional extra: `pip install "mbmix-taichi[rl]"`.
"""
from __future__ import annotations

import numpy as np
import torch

from .env import Env, make
from .errors import OptionError

#: namespace of the Gymnasium ids registered by this module: ``"mbmix/<task>"``
NAMESPACE = "mbmix"


def _env(task_or_env, num_envs, seed, dtype, options) -> Env:
    if isinstance(task_or_env, Env):
        return task_or_env
    return make(task_or_env, num_envs=num_envs, seed=seed, dtype=dtype, **options)


def _spaces(env: Env):
    from gymnasium.spaces import Box

    obs = Box(-np.inf, np.inf, (env.obs_dim,), np.float32)
    act = Box(-1.0, 1.0, (env.act_dim,), np.float32)
    return obs, act


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _action(env: Env, actions) -> torch.Tensor:
    a = np.asarray(actions, dtype=np.float64).reshape(env.num_envs, env.act_dim)
    return torch.as_tensor(a, dtype=env.dtype, device=env.device)


def _seed(seed, num_envs):
    """An int seed (or None) from ``int | list | None``, as Gymnasium's reset(seed=...) accepts."""
    def one(x, what):
        if x is None:
            return None
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or not 0 <= int(x) < 2 ** 63:
            raise OptionError(f"{what} must be an int in [0, 2**63) or None, got {x!r}")
        return int(x)

    if isinstance(seed, (list, tuple, np.ndarray)):
        seeds = [one(x, "seed[%d]" % i) for i, x in enumerate(seed)]
        if len(seeds) != num_envs:
            raise OptionError(f"reset(seed=list) needs one seed per env ({num_envs}), got {len(seeds)}")
        if all(x is None for x in seeds):
            return None
        entropy = [x if x is not None else 2 ** 63 for x in seeds]
        return int(np.random.SeedSequence(entropy).generate_state(2, np.uint32).view(np.uint64)[0] >> np.uint64(1))
    return one(seed, "seed")


try:
    import gymnasium
    from gymnasium.vector import AutoresetMode, VectorEnv
    from gymnasium.vector.utils import batch_space
except ImportError:  # gymnasium is optional; the classes below need it
    gymnasium = None
    VectorEnv = object


def _need_gym(what):
    if gymnasium is None:
        raise ImportError(f"{what} needs gymnasium: pip install 'mbmix-taichi[rl]'")


class GymVectorEnv(VectorEnv):
    """A `gymnasium.vector.VectorEnv` over an mbmix-taichi env (see the module doc).

    ``autoreset_mode``: ``AutoresetMode.NEXT_STEP`` (default, Gymnasium's) or ``SAME_STEP``
    (also as strings "next_step" / "same_step"). Worker processes: use 'spawn'.
    """

    metadata = {"render_modes": [], "autoreset_mode": None}

    def __init__(self, task_or_env, num_envs: int = 1, seed: int = 0, dtype="float32", autoreset_mode=None,
                 **options):
        _need_gym("GymVectorEnv")
        options.pop("max_episode_steps", None)  # gymnasium.make_vec passes the spec's; the task has its own
        options.pop("render_mode", None)
        mode = AutoresetMode.NEXT_STEP if autoreset_mode is None else autoreset_mode
        try:
            names = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}
            mode = names[mode.lower()] if isinstance(mode, str) and mode.lower() in names else AutoresetMode(mode)
        except ValueError:
            raise OptionError(f"autoreset_mode must be AutoresetMode.NEXT_STEP or SAME_STEP, got {autoreset_mode!r}") \
                from None
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise OptionError(f"autoreset_mode {mode} is not supported (NEXT_STEP or SAME_STEP)")
        self.env = _env(task_or_env, num_envs, seed, dtype, options)
        self.num_envs = self.env.num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.env)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {"render_modes": [], "autoreset_mode": mode}
        self.autoreset_mode = mode
        self.render_mode = None
        self._autoreset = np.zeros(self.num_envs, bool)   # NEXT_STEP: envs whose next step is their reset
        self._reset_obs = None

    def reset(self, *, seed=None, options=None):
        obs = _np(self.env.reset(seed=_seed(seed, self.num_envs))).astype(np.float32)
        self._autoreset[:] = False
        return obs, {}

    def step(self, actions):
        pending = self._autoreset.copy()
        if pending.any():
            fresh = self.env.get_state()   # the env reset these rows at the end of the last step
        obs, rew, term, trunc, info = self.env.step(_action(self.env, actions))
        obs, rew = _np(obs).astype(np.float32), _np(rew).astype(np.float64)
        term, trunc = _np(term).astype(bool), _np(trunc).astype(bool)
        done = _np(info["done"]).astype(bool)
        infos = {"blowup": _np(info["blowup"]), "_blowup": np.ones(self.num_envs, bool)}
        for k in ("score",):
            if k in info:
                infos[k], infos["_" + k] = _np(info[k]), np.ones(self.num_envs, bool)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            if done.any():
                final = np.full(self.num_envs, None, dtype=object)
                fo = _np(info["final_obs"]).astype(np.float32)
                for i in np.flatnonzero(done):
                    final[i] = fo[i]
                infos["final_obs"], infos["_final_obs"] = final, done
            return obs, rew, term, trunc, infos
        # NEXT_STEP: a done env shows its last obs now and its reset obs on the next step
        if pending.any():
            rows = torch.as_tensor(pending, device=self.env.device)
            state = torch.where(rows[:, None], fresh, self.env.get_state())
            self.env.set_state(state)
            self.env.restart_step_count(pending)   # the step just taken did not count for them
            obs[pending] = self._reset_obs[pending]
            rew[pending] = 0.0
            term[pending] = trunc[pending] = done[pending] = False
        if done.any():
            self._reset_obs = obs.copy()
            obs[done] = _np(info["final_obs"]).astype(np.float32)[done]
        self._autoreset = done
        return obs, rew, term, trunc, infos

    def render(self):
        return None


if gymnasium is not None:
    _GymBase = gymnasium.Env
else:  # pragma: no cover
    _GymBase = object


class GymEnv(_GymBase):
    """One mbmix-taichi env as a `gymnasium.Env` (float32 spaces; reset after an episode ends).

    ``render_mode="rgb_array"`` renders the state with the task's render spec (pyvista, off
    screen). Worker processes: use 'spawn' (see the module doc).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task_or_env, seed: int = 0, dtype="float32", render_mode=None, **options):
        _need_gym("GymEnv")
        options.pop("max_episode_steps", None)
        if render_mode not in (None, "rgb_array"):
            raise OptionError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.env = _env(task_or_env, 1, seed, dtype, options)
        if self.env.num_envs != 1:
            raise OptionError(f"GymEnv wraps one env; got an Env with num_envs={self.env.num_envs}")
        self.observation_space, self.action_space = _spaces(self.env)
        self.render_mode = render_mode
        self._scene = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        obs = self.env.reset(seed=_seed(seed, 1))
        return _np(obs)[0].astype(np.float32), {}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(1, self.env.act_dim)
        obs, rew, term, trunc, info = self.env.step(torch.as_tensor(a, dtype=self.env.dtype, device=self.env.device))
        done = bool(info["done"][0])
        # the env auto-resets; a gymnasium.Env reports the episode's last observation
        o = _np(info["final_obs"] if done else obs)[0].astype(np.float32)
        infos = {"blowup": bool(info["blowup"][0])}
        if "score" in info:
            infos["score"] = float(info["score"][0])
        return o, float(rew[0]), bool(term[0]), bool(trunc[0]), infos

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from .viz.scene import Scene
        state = _np(self.env.get_state())[0]
        if self._scene is None:
            self._scene = Scene(self.env.task.render_spec(), state, overlay=False)
        self._scene.update(state)
        return self._scene.frame()

    def close(self):
        if self._scene is not None:
            self._scene.close()
            self._scene = None


def register_envs() -> list:
    """Register ``"mbmix/<task>"`` for every known task with Gymnasium (done on import)."""
    _need_gym("register_envs")
    from .registry import list_tasks

    ids = []
    for name in list_tasks():
        env_id = f"{NAMESPACE}/{name}"
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point="mbmix_taichi.adapters:GymEnv",
                               vector_entry_point="mbmix_taichi.adapters:GymVectorEnv",
                               kwargs={"task_or_env": name}, disable_env_checker=True,
                               order_enforce=False)
        ids.append(env_id)
    return ids


def _sb3_vec_env_class():
    """Define SB3VecEnv on first use: its base class comes from stable-baselines3, an optional
    dependency that importing this module must not need."""
    try:
        from stable_baselines3.common.vec_env.base_vec_env import VecEnv
    except ImportError as exc:
        raise ImportError("SB3VecEnv needs stable-baselines3: pip install 'mbmix-taichi[rl]'") from exc

    class SB3VecEnv(VecEnv):
        """A Stable-Baselines3 `VecEnv` over an mbmix-taichi env (``render_mode`` None; worker
        processes: ``SubprocVecEnv(..., start_method="spawn")``, see the module doc)."""

        def __init__(self, task_or_env, num_envs: int = 1, seed: int = 0, dtype="float32", **options):
            self.env = env = _env(task_or_env, num_envs, seed, dtype, options)
            obs, act = _spaces(env)
            self.render_mode = None
            super().__init__(env.num_envs, obs, act)
            self._actions = None

        def reset(self):
            seed = self._seeds[0] if any(s is not None for s in self._seeds) else None
            self._reset_seeds()
            return _np(self.env.reset(seed=seed)).astype(np.float32)

        def step_async(self, actions):
            self._actions = actions

        def step_wait(self):
            obs, rew, term, trunc, info = self.env.step(_action(self.env, self._actions))
            done = _np(info["done"]).astype(bool)
            fo = _np(info["final_obs"]).astype(np.float32)
            infos = []
            for i in range(self.num_envs):
                d = {"blowup": bool(info["blowup"][i])}
                if "score" in info:
                    d["score"] = float(info["score"][i])
                if done[i]:
                    d["terminal_observation"] = fo[i]
                    d["TimeLimit.truncated"] = bool(trunc[i])
                infos.append(d)
            return _np(obs).astype(np.float32), _np(rew).astype(np.float32), done, infos

        def close(self):
            pass

        def get_attr(self, attr_name, indices=None):
            target = self if attr_name in ("render_mode", "env") else self.env
            return [getattr(target, attr_name)] * len(self._get_indices(indices))

        def set_attr(self, attr_name, value, indices=None):
            setattr(self.env, attr_name, value)

        def env_method(self, method_name, *args, indices=None, **kwargs):
            return [getattr(self.env, method_name)(*args, **kwargs)] * len(self._get_indices(indices))

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * len(self._get_indices(indices))

    return SB3VecEnv


def __getattr__(name):  # PEP 562: SB3VecEnv is defined when first asked for
    if name == "SB3VecEnv":
        cls = globals()["SB3VecEnv"] = _sb3_vec_env_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if gymnasium is not None:
    register_envs()
