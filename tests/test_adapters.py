"""Gymnasium and Stable-Baselines3 adapters on top of the env API."""
import numpy as np
import pytest

from mbmix_taichi.adapters import GymVectorEnv, SB3VecEnv
from mbmix_taichi.errors import OptionError

OPTS = dict(resolution=4, substeps=4, episode_length=6)


def test_gymnasium_vector_env_spaces_and_same_step_autoreset():
    venv = GymVectorEnv("cloth-fold", num_envs=3, seed=0, dtype="float64", autoreset_mode="same_step", **OPTS)
    obs, _ = venv.reset(seed=1)
    assert obs.shape == (3, venv.single_observation_space.shape[0]) and obs.dtype == np.float32
    assert venv.observation_space.contains(obs)
    for t in range(6):
        obs, rew, term, trunc, infos = venv.step(venv.action_space.sample())  # float32 actions, float64 env
        assert rew.shape == (3,) and np.isfinite(rew).all() and infos["score"].shape == (3,)
    assert trunc.all() and infos["_final_obs"].all()
    assert all(o.shape == obs.shape[1:] for o in infos["final_obs"])
    assert not np.allclose(infos["final_obs"][0], obs[0])  # final obs is pre-reset, obs is post-reset


def test_stable_baselines3_ppo_runs_on_the_adapter():
    from stable_baselines3 import PPO

    venv = SB3VecEnv("cloth-fold", num_envs=2, seed=0, **OPTS)
    venv.seed(3)
    first = venv.reset()
    venv.seed(3)
    assert np.array_equal(first, venv.reset())
    assert not np.array_equal(first, venv.reset())  # unseeded resets draw new starts
    dones_seen = []
    for _ in range(6):
        venv.step_async(np.zeros((2, venv.action_space.shape[0]), np.float32))
        _, _, dones, infos = venv.step_wait()
        dones_seen.append(dones.copy())
    assert dones_seen[-1].all() and "terminal_observation" in infos[0] and infos[0]["TimeLimit.truncated"]
    model = PPO("MlpPolicy", venv, n_steps=12, batch_size=12, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=48)
    assert model.num_timesteps >= 48


# --------------------------------------------------------------------------- Gymnasium conformance
def test_next_step_autoreset_is_the_default_and_matches_same_step():
    from gymnasium.vector import AutoresetMode

    nxt = GymVectorEnv("cloth-fold", num_envs=2, seed=0, **OPTS)
    same = GymVectorEnv("cloth-fold", num_envs=2, seed=0, autoreset_mode="same_step", **OPTS)
    assert nxt.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert same.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    o1, _ = nxt.reset(seed=5)
    o2, _ = same.reset(seed=5)
    assert np.array_equal(o1, o2)
    a = np.zeros((2, nxt.single_action_space.shape[0]), np.float32)
    for _ in range(6):
        o1, r1, _, t1, _ = nxt.step(a)
        o2, r2, _, t2, i2 = same.step(a)
    assert t1.all() and t2.all() and np.array_equal(r1, r2)
    assert np.array_equal(o1, np.stack(i2["final_obs"]))    # NEXT_STEP: the last obs now
    o1, r1, te1, t1, _ = nxt.step(np.ones_like(a))          # ... the reset obs next, action ignored
    assert np.array_equal(o1, o2) and not r1.any() and not te1.any() and not t1.any()
    for _ in range(5):                                       # a full episode follows
        o1, r1, te1, t1, _ = nxt.step(a)
        o2, *_ = same.step(a)
        assert np.array_equal(o1, o2)
    assert not t1.any()
    *_, t1, _ = nxt.step(a)
    assert t1.all()


def test_reset_seed_int_or_list():
    venv = GymVectorEnv("cloth-fold", num_envs=2, seed=0, **OPTS)
    a = venv.reset(seed=[1, 2])[0]
    assert np.array_equal(a, venv.reset(seed=[1, 2])[0]) and np.array_equal(venv.reset(seed=7)[0], venv.reset(seed=7)[0])
    assert not np.array_equal(a, venv.reset(seed=[2, 1])[0])
    venv.reset(seed=[None, None])
    for bad in ("abc", 2 ** 70, -1, [1], 1.5):
        with pytest.raises(OptionError):
            venv.reset(seed=bad)


WRAPPERS = [
    ("NormalizeObservation", {}), ("NormalizeReward", {}), ("RecordEpisodeStatistics", {}), ("DictInfoToList", {}),
    ("ClipAction", {}), ("RescaleAction", {"min_action": -2.0, "max_action": 2.0}), ("ClipReward", {"min_reward": -1.0}),
    ("TransformObservation", {"func": lambda o: 2 * o}), ("TransformAction", {"func": lambda a: 0.5 * a}),
    ("TransformReward", {"func": lambda r: 2 * r}), ("FlattenObservation", {}), ("DtypeObservation", {"dtype": np.float64}),
    ("ReshapeObservation", {"shape": None}), ("NumpyToTorch", {}),
    ("VectorizeTransformObservation", {"wrapper": "DtypeObservation", "dtype": np.float64}),
    ("VectorizeTransformAction", {"wrapper": "ClipAction"}),
    ("VectorizeTransformReward", {"wrapper": "ClipReward", "min_reward": -1.0}),
]


@pytest.mark.parametrize("name,kw", WRAPPERS, ids=[w[0] for w in WRAPPERS])
def test_gymnasium_vector_wrappers_run(name, kw):
    import gymnasium
    import gymnasium.wrappers.vector as V

    env = GymVectorEnv("cloth-fold", num_envs=2, seed=0, **OPTS)
    kw = dict(kw)
    if "wrapper" in kw:
        kw["wrapper"] = getattr(gymnasium.wrappers, kw["wrapper"])
    if name == "ReshapeObservation":
        kw["shape"] = (env.single_observation_space.shape[0], 1)
    w = getattr(V, name)(env, **kw)
    w.reset(seed=0)
    for _ in range(8):  # across an autoreset
        act = w.action_space.sample()
        out = w.step(act)
    assert len(out) == 5
    w.close()


def test_gymnasium_make_and_check_env():
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    from mbmix_taichi.adapters import GymEnv

    env = gymnasium.make("mbmix/cloth-fold", **OPTS)
    assert isinstance(env.unwrapped, GymEnv)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    for _ in range(6):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        assert isinstance(r, float) and obs.dtype == np.float32
    assert trunc
    venv = gymnasium.make_vec("mbmix/cloth-fold", num_envs=3, **OPTS)
    assert isinstance(venv.unwrapped, GymVectorEnv) and venv.num_envs == 3
    assert venv.reset(seed=1)[0].shape[0] == 3


def test_stable_baselines3_check_env_and_render_mode():
    from stable_baselines3.common.env_checker import check_env

    from mbmix_taichi.adapters import GymEnv

    check_env(GymEnv("cloth-fold", **OPTS))
    venv = SB3VecEnv("cloth-fold", num_envs=2, seed=0, **OPTS)
    assert venv.render_mode is None and venv.get_attr("render_mode") == [None, None]


def test_worker_processes_with_spawn():
    """The documented multi-process use: workers started with 'spawn' (fork hangs after Taichi init)."""
    import functools

    from gymnasium.vector import AsyncVectorEnv

    from mbmix_taichi.adapters import GymEnv

    fns = [functools.partial(GymEnv, "cloth-fold", seed=i, **OPTS) for i in range(2)]
    venv = AsyncVectorEnv(fns, context="spawn")
    try:
        obs, _ = venv.reset(seed=0)
        obs, rew, *_ = venv.step(venv.action_space.sample())
        assert obs.shape[0] == 2 and np.isfinite(rew).all()
    finally:
        venv.close()


def test_gym_env_renders_rgb_array():
    from mbmix_taichi.adapters import GymEnv

    env = GymEnv("cloth-fold", render_mode="rgb_array", **OPTS)
    env.reset(seed=0)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 and frame.std() > 0
    env.close()
