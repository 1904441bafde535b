"""The env API contract: seeding, auto-reset, differentiable stepping, bad input, blow-ups,
task discovery."""
import textwrap

import numpy as np
import pytest
import torch

import mbmix_taichi as mt

OPTS = dict(resolution=4, substeps=4, episode_length=5)


@pytest.fixture()
def env():
    return mt.make("cloth-fold", num_envs=3, seed=0, **OPTS)


def _rollout(env, seed, steps=4):
    g = torch.Generator().manual_seed(123)
    obs = [env.reset(seed=seed)]
    for _ in range(steps):
        obs.append(env.step(torch.rand(env.num_envs, env.act_dim, generator=g) * 2 - 1)[0])
    return torch.stack(obs)


def test_same_seed_same_rollout_other_seed_other_rollout(env):
    a, b = _rollout(env, 7), _rollout(env, 7)
    other = mt.make("cloth-fold", num_envs=3, seed=7, **OPTS)
    assert torch.equal(a, b)
    assert torch.equal(a, _rollout(other, 7))
    assert not torch.equal(a, _rollout(env, 8))


def test_dims_and_types(env):
    obs = env.reset()
    assert obs.shape == (3, env.obs_dim) and obs.dtype == torch.float32
    assert env.get_state().shape == (3, env.state_dim)
    assert env.act_dim == 6 and env.episode_length == 5


def test_auto_reset_reports_final_state(env):
    env.reset(seed=0)
    a = torch.ones(3, env.act_dim)
    for t in range(5):
        obs, r, term, trunc, info = env.step(a)
    assert trunc.all() and not term.any()
    # the final state went up with the pickers; the returned state is a fresh reset
    assert env.sim.pickers(info["final_state"])[..., 2].min() > 0.09
    assert env.sim.pickers(env.get_state())[..., 2].max() < 0.01
    assert torch.equal(obs, env.observe(env.get_state()))
    assert torch.equal(info["final_obs"], env.observe(info["final_state"]))
    assert "score" in info and info["score"].shape == (3,)


def test_step_is_differentiable_through_many_steps(env):
    env.reset(seed=0)
    a = torch.zeros(3, env.act_dim, requires_grad=True)
    total = 0
    for _ in range(4):
        _, r, *_ = env.step(a)
        total = total + r.sum()
    total.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_transition_does_not_touch_env_state(env):
    s = env.get_state()
    env.transition(s, torch.ones(3, env.act_dim))
    env.transition(s[:2], torch.ones(2, env.act_dim))  # any batch size
    assert torch.equal(env.get_state(), s)


@pytest.mark.parametrize("bad, msg", [
    (torch.full((3, 6), float("nan")), "NaN or Inf"),
    (torch.tensor([[0.0] * 6, [float("inf")] + [0.0] * 5, [0.0] * 6]), "NaN or Inf"),
    (torch.zeros(3, 5), "expected [3, 6]"),
    (torch.zeros(6), "expected [3, 6]"),
    (torch.zeros(3, 6, dtype=torch.float64), "dtype"),
    (torch.zeros(3, 6, dtype=torch.int64), "dtype"),
    ([[0.0] * 6] * 3, "torch tensor or numpy array"),
])
def test_bad_actions_raise_clear_errors_and_leave_env_usable(env, bad, msg):
    s = env.get_state()
    with pytest.raises(mt.InputError) as e:
        env.step(bad)
    assert msg in str(e.value)
    assert torch.equal(env.get_state(), s)
    env.step(torch.zeros(3, 6))  # still usable


def test_bad_states_and_tangents_raise(env):
    s, a = env.get_state(), torch.zeros(3, 6)
    with pytest.raises(mt.InputError, match="shape"):
        env.set_state(s[:, :-1])
    with pytest.raises(mt.InputError, match="NaN"):
        env.transition(s * float("nan"), a)
    with pytest.raises(mt.InputError, match="tangent_action"):
        env.jvp(s, a, torch.zeros_like(s), torch.zeros(3, 4))


def test_numpy_actions_are_accepted(env):
    env.step(np.zeros((3, 6), dtype=np.float32))


def test_unknown_task_lists_tasks_and_unknown_option_lists_options():
    with pytest.raises(mt.UnknownTaskError, match="cloth-fold"):
        mt.make("cloth-flod")
    with pytest.raises(mt.OptionError, match="resolution"):
        mt.make("cloth-fold", resoluton=4)
    with pytest.raises(mt.OptionError, match="integer"):
        mt.make("cloth-fold", resolution=4.5)
    with pytest.raises(mt.OptionError):
        mt.make("cloth-fold", dtype="float16")
    with pytest.raises(mt.OptionError):
        mt.make("cloth-fold", num_envs=0)


def test_blowup_is_detected_reported_and_reset(env):
    s = env.get_state()
    s[1, env.sim.n * 3: env.sim.n * 6] = 5e3  # absurd velocities: positions leave the limit
    env.set_state(s)
    with pytest.warns(RuntimeWarning, match="blow-up"):
        _, r, term, trunc, info = env.step(torch.zeros(3, 6))
    assert info["blowup"].tolist() == [False, True, False]
    assert term[1] and r[1] == 0
    assert env.get_state().abs().max() < 1.0  # env 1 was reset
    assert env.blowups == 1


def test_tasks_dir_adds_user_tasks(tmp_path):
    (tmp_path / "my_task.py").write_text(textwrap.dedent('''
        from mbmix_taichi.tasks.cloth_fold import ClothFold

        class SmallFold(ClothFold):
            name = "my-small-fold"
            description = "cloth-fold on a 4x4 cloth"
            default_options = {**ClothFold.default_options, "resolution": 4}
    '''))
    assert mt.load_tasks_dir(tmp_path) == ["my-small-fold"]
    assert "my-small-fold" in mt.list_tasks()
    env = mt.make("my-small-fold", substeps=2)
    assert env.sim.n == 16
