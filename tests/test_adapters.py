"""Gymnasium and Stable-Baselines3 adapters on top of the env API."""
import numpy as np

from mbmix_taichi.adapters import GymVectorEnv, SB3VecEnv

OPTS = dict(resolution=4, substeps=4, episode_length=6)


def test_gymnasium_vector_env_spaces_and_same_step_autoreset():
    venv = GymVectorEnv("cloth-fold", num_envs=3, seed=0, dtype="float64", **OPTS)
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
