"""Adapters to the Gymnasium and Stable-Baselines3 vector-env interfaces.

They sit on top of the env API and only convert: numpy in and out, actions cast to the env's
dtype, done envs reported the way each library expects (both libraries' "same step" autoreset,
which is what `Env.step` does). The env API itself stays torch-only and strict.

    from mbmix_taichi.adapters import GymVectorEnv, SB3VecEnv
    venv = SB3VecEnv("cloth-fold", num_envs=8, seed=0)
    stable_baselines3.PPO("MlpPolicy", venv).learn(100_000)

Needs the optional extra: `pip install "mbmix-taichi[rl]"`.
"""
from __future__ import annotations

import numpy as np
import torch

from .env import Env, make


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


try:
    from gymnasium.vector import AutoresetMode, VectorEnv
    from gymnasium.vector.utils import batch_space
except ImportError:  # gymnasium is optional; the class below needs it
    VectorEnv = object


class GymVectorEnv(VectorEnv):
    """A `gymnasium.vector.VectorEnv` (autoreset mode SAME_STEP) over an mbmix-taichi env."""

    def __init__(self, task_or_env, num_envs: int = 1, seed: int = 0, dtype="float32", **options):
        if VectorEnv is object:
            raise ImportError("GymVectorEnv needs gymnasium: pip install 'mbmix-taichi[rl]'")
        self.env = _env(task_or_env, num_envs, seed, dtype, options)
        self.num_envs = self.env.num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.env)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def reset(self, *, seed=None, options=None):
        return _np(self.env.reset(seed=seed)).astype(np.float32), {}

    def step(self, actions):
        obs, rew, term, trunc, info = self.env.step(_action(self.env, actions))
        done = _np(info["done"]).astype(bool)
        infos = {"blowup": _np(info["blowup"]), "_blowup": np.ones(self.num_envs, bool)}
        for k in ("score",):
            if k in info:
                infos[k], infos["_" + k] = _np(info[k]), np.ones(self.num_envs, bool)
        if done.any():
            final = np.full(self.num_envs, None, dtype=object)
            fo = _np(info["final_obs"]).astype(np.float32)
            for i in np.flatnonzero(done):
                final[i] = fo[i]
            infos["final_obs"], infos["_final_obs"] = final, done
        return (_np(obs).astype(np.float32), _np(rew).astype(np.float64), _np(term).astype(bool),
                _np(trunc).astype(bool), infos)


def SB3VecEnv(task_or_env, num_envs: int = 1, seed: int = 0, dtype="float32", **options):
    """A Stable-Baselines3 `VecEnv` over an mbmix-taichi env."""
    try:
        from stable_baselines3.common.vec_env.base_vec_env import VecEnv
    except ImportError as exc:
        raise ImportError("SB3VecEnv needs stable-baselines3: pip install 'mbmix-taichi[rl]'") from exc

    class _SB3VecEnv(VecEnv):
        def __init__(self, env: Env):
            self.env = env
            obs, act = _spaces(env)
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
            return [getattr(self.env, attr_name)] * len(self._get_indices(indices))

        def set_attr(self, attr_name, value, indices=None):
            setattr(self.env, attr_name, value)

        def env_method(self, method_name, *args, indices=None, **kwargs):
            return [getattr(self.env, method_name)(*args, **kwargs)] * len(self._get_indices(indices))

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * len(self._get_indices(indices))

    return _SB3VecEnv(_env(task_or_env, num_envs, seed, dtype, options))
