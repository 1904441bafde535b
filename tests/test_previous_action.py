"""Option previous_action (mbmix_taichi/previous_action.py): DiffRL's observation with the last
clipped action appended, carried in the state so that the derivatives of a step stay exact."""
import pytest
import torch

import mbmix_taichi as mt
from mbmix_taichi.errors import OptionError
from mbmix_taichi.gradcheck import check


def test_cartpole_with_previous_action_state_obs_and_step():
    env = mt.make("cartpole-swingup", num_envs=3, seed=0, dtype="float64", previous_action=True)
    assert (env.state_dim, env.obs_dim, env.act_dim) == (5, 6, 1)
    s = env.get_state()
    assert (s[:, 4] == 0).all()  # reset clears the previous action (DiffRL)
    plain = mt.make("cartpole-swingup", num_envs=3, seed=0, dtype="float64")
    assert torch.equal(s[:, :4], plain.get_state())  # same reset draws
    a = torch.tensor([[0.3], [-2.0], [1.5]], dtype=torch.float64)
    nxt = env.transition(s, a)
    assert torch.equal(nxt[:, :4], plain.transition(s[:, :4], a))
    assert torch.equal(nxt[:, 4:], a.clamp(-1, 1))
    obs = env.observe(nxt)
    assert torch.equal(obs[:, :5], plain.observe(nxt[:, :4])) and torch.equal(obs[:, 5:], a.clamp(-1, 1))
    assert torch.equal(env.reward(s, a, nxt), plain.reward(s[:, :4], a, nxt[:, :4]))
    # step: the reward reads the simulator state; a reset env's previous action is zero again
    env.reset(seed=1)
    plain.reset(seed=1)
    for t in range(3):
        o, r, term, trunc, info = env.step(a)
        o0, r0, *_ = plain.step(a)
        assert torch.equal(r, r0) and torch.equal(o[:, :5], o0) and torch.equal(o[:, 5:], a.clamp(-1, 1))


def test_derivative_blocks_are_exact():
    env = mt.make("cartpole-swingup", num_envs=2, seed=0, dtype="float64", previous_action=True)
    s = env.get_state()
    s[:, 4] = torch.tensor([0.2, -0.7], dtype=torch.float64)
    a = torch.tensor([[0.4], [-0.9]], dtype=torch.float64)
    Js, Ja = env.jacobian(s, a)
    assert (Js[:, :, 4:] == 0).all() and (Js[:, 4:, :] == 0).all()  # d s'/d s: zero in the extra rows/columns
    assert torch.equal(Ja[:, 4:, :], torch.ones(2, 1, 1, dtype=torch.float64))  # identity in d s'/d a
    plain = mt.make("cartpole-swingup", num_envs=2, seed=0, dtype="float64")
    Js0, Ja0 = plain.jacobian(s[:, :4], a)
    assert torch.allclose(Js[:, :4, :4], Js0) and torch.allclose(Ja[:, :4], Ja0)
    # vjp, jvp and the autograd path agree with the Jacobian
    u = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g_s, g_a = env.vjp(s, a, u)
    assert torch.allclose(g_s, torch.einsum("bi,bij->bj", u, Js)) and torch.allclose(g_a, torch.einsum("bi,bij->bj", u, Ja))
    ts, ta = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 1, dtype=torch.float64)
    assert torch.allclose(env.jvp(s, a, ts, ta), torch.einsum("bij,bj->bi", Js, ts) + torch.einsum("bij,bj->bi", Ja, ta))
    x, y = s.clone().requires_grad_(True), a.clone().requires_grad_(True)
    (env.transition(x, y) * u).sum().backward()
    assert torch.allclose(x.grad, g_s) and torch.allclose(y.grad, g_a)


def test_gradcheck_with_previous_action():
    res = check("cartpole-swingup", num_envs=2, seed=0, jacobian_columns=5, previous_action=True)
    assert res["state_dim"] == 5
    assert res["jvp"]["best"] < 1e-5 and res["vjp"]["best"] < 1e-5 and res["jacobian"]["best"] < 1e-5
    assert res["dot"] < 1e-10


def test_option_defaults_follow_diffrl():
    from mbmix_taichi.registry import get_task_class

    assert {n: get_task_class(n).default_options["previous_action"]
            for n in ("cartpole-swingup", "hopper", "cheetah", "ant", "humanoid")} == {
        "cartpole-swingup": False, "hopper": False, "cheetah": False, "ant": True, "humanoid": True}
    with pytest.raises(OptionError):
        mt.make("cartpole-swingup", previous_action="yes")


def test_hopper_with_previous_action_gradcheck_through_contact():
    """Hopper (obs 11 as DiffRL; 14 with the option) with contact: the extra block keeps the step exact."""
    env = mt.make("hopper", num_envs=2, seed=0, dtype="float64", previous_action=True)
    assert (env.state_dim, env.obs_dim) == (15, 14)
    res = check("hopper", num_envs=2, seed=0, warmup=20, jacobian_columns=6, previous_action=True)
    assert res["jvp"]["best"] < 1e-5 and res["vjp"]["best"] < 1e-5 and res["dot"] < 1e-10


def test_ant_observation_is_diffrls_37():
    """DiffRL's AntEnv: num_obs 37 = 29 + the 8 previous actions (obs[29:37] = self.actions)."""
    env = mt.make("ant", num_envs=2, seed=0, dtype="float64", stochastic_init=False)
    assert (env.state_dim, env.obs_dim, env.act_dim) == (37, 37, 8)
    off = mt.make("ant", num_envs=2, seed=0, dtype="float64", stochastic_init=False, previous_action=False)
    assert (off.state_dim, off.obs_dim) == (29, 29)
    a = torch.linspace(-1.2, 1.2, 8, dtype=torch.float64).repeat(2, 1)
    obs, *_ = env.step(a)
    obs0, *_ = off.step(a)
    assert torch.equal(obs[:, :29], obs0) and torch.equal(obs[:, 29:], a.clamp(-1, 1))
