"""DiffRL locomotion tasks: float64 central differences of VJP, JVP and the full Jacobian of
one control step (including ground contact), the dot-product identity, float32 vs float64,
and the task definitions (shapes, rewards, termination). The derivative checks are
device-agnostic (tensors live where the env's do): run with TI_ARCH=cuda they check the CUDA kernels."""
import numpy as np
import pytest
import torch

import mbmix_taichi as mt
from mbmix_taichi.physics.articulated import contact_points
from mbmix_taichi.physics.articulated_model import forward_kinematics

FD_TASKS = ["cartpole-swingup", "hopper", "cheetah", "ant", "humanoid"]

DIMS = {"cartpole-swingup": (4, 5, 1, 240), "hopper": (12, 11, 3, 1000), "cheetah": (18, 17, 6, 1000),
        "ant": (37, 37, 8, 1000), "humanoid": (76, 76, 21, 1000)}  # ant, humanoid: + the previous action


_STATES = {}


def _state_action(env, steps=40, seed=1):
    """A state reached by `steps` random actions (with ground contact after 40), and an action.
    Computed once per env and arguments: humanoid's 40 steps of 48 substeps are not free."""
    key = (id(env), steps, seed)
    if key not in _STATES:
        g = torch.Generator().manual_seed(seed)
        env.reset(seed=seed)
        for _ in range(steps):
            env.step((torch.rand(env.num_envs, env.act_dim, generator=g, dtype=env.dtype) * 2 - 1).to(env.device))
        a = (torch.rand(env.num_envs, env.act_dim, generator=g, dtype=env.dtype) * 1.6 - 0.8).to(env.device)
        _STATES[key] = (env, env.get_state(), a)  # the env is kept so that id(env) stays unique
    _, s, a = _STATES[key]
    return s.clone(), a.clone()


def _penetration(env, s):
    m = env.task.model
    pts = contact_points(m)
    depth = []
    for row in s.detach().cpu().numpy():
        R, p = forward_kinematics(m, row[:m.nq])
        depth.append(min(p[b][2] + (R[b] @ lp)[2] - d for b, lp, d in pts))
    return np.array(depth)


def _fd(env, s, a, ts, ta, eps=1e-6):
    return (env.transition(s + eps * ts, a + eps * ta) - env.transition(s - eps * ts, a - eps * ta)) / (2 * eps)


@pytest.fixture(scope="module", params=FD_TASKS)
def env64(request):
    # the first use compiles the kernels (ant ~1 min, humanoid ~3 min on 2 cores; Taichi's
    # offline cache makes later runs start in seconds)
    return mt.make(request.param, num_envs=2, seed=0, dtype="float64")


def test_dimensions(env64):
    ds, do, da, T = DIMS[env64.task.name]
    assert (env64.state_dim, env64.obs_dim, env64.act_dim, env64.episode_length) == (ds, do, da, T)
    s, a = _state_action(env64, steps=2)
    assert env64.observe(s).shape == (2, do)
    assert env64.reward(s, a, env64.transition(s, a)).shape == (2,)


def test_contact_is_exercised(env64):
    if env64.task.name == "cartpole-swingup":  # DiffRL's cart-pole has no ground: nothing may touch it
        s, _ = _state_action(env64)
        assert not (_penetration(env64, s) < 0).any()
        return
    s, _ = _state_action(env64)
    assert (_penetration(env64, s) < 0).any(), "the derivative checks must include ground contact"


def test_jvp_matches_finite_differences(env64):
    s, a = _state_action(env64)
    g = torch.Generator().manual_seed(3)
    ts = torch.randn(s.shape, generator=g, dtype=s.dtype).to(s.device)
    ta = torch.randn(a.shape, generator=g, dtype=s.dtype).to(s.device)
    jv = env64.jvp(s, a, ts, ta)
    fd = _fd(env64, s, a, ts, ta)
    assert (jv - fd).abs().max() <= 1e-6 * max(1.0, fd.abs().max().item())


def _columns(n, k):
    """At most k column indices spread over 0..n-1, first and last included."""
    return sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(min(n, k))})


def test_jacobian_matches_finite_differences(env64):
    """Every column is checked at once along random directions (J [v; w] against one central
    difference: an error in any column shows), and up to 12 state and 6 action columns one by
    one (humanoid's 76 columns by differences cost 152 steps of 48 substeps)."""
    s, a = _state_action(env64)
    Js, Ja = env64.jacobian(s, a)
    g = torch.Generator().manual_seed(5)
    for _ in range(2):
        v = torch.randn(s.shape, generator=g, dtype=s.dtype).to(s.device)
        w = torch.randn(a.shape, generator=g, dtype=s.dtype).to(s.device)
        fd = _fd(env64, s, a, v, w)
        Jv = torch.einsum("bij,bj->bi", Js, v) + torch.einsum("bij,bj->bi", Ja, w)
        assert (Jv - fd).abs().max() <= 1e-6 * max(1.0, fd.abs().max().item())
    nq = env64.task.model.nq
    eye_s = torch.eye(s.shape[1], dtype=s.dtype, device=s.device)
    cols = sorted(set(_columns(nq, 7)) | {nq + c for c in _columns(s.shape[1] - nq, 5)})
    fd_s = torch.stack([_fd(env64, s, a, eye_s[i].expand_as(s), torch.zeros_like(a)) for i in cols], -1)
    assert (Js[:, :, cols] - fd_s).abs().max() <= 1e-6 * max(1.0, fd_s.abs().max().item())
    eye_a = torch.eye(a.shape[1], dtype=s.dtype, device=s.device)
    acols = _columns(a.shape[1], 6)
    fd_a = torch.stack([_fd(env64, s, a, torch.zeros_like(s), eye_a[i].expand_as(a)) for i in acols], -1)
    assert (Ja[:, :, acols] - fd_a).abs().max() <= 1e-6 * max(1.0, fd_a.abs().max().item())


def test_vjp_matches_finite_differences_and_dot_product(env64):
    s, a = _state_action(env64)
    g = torch.Generator().manual_seed(4)
    u = torch.randn(s.shape, generator=g, dtype=s.dtype).to(s.device)
    v = torch.randn(s.shape, generator=g, dtype=s.dtype).to(s.device)
    w = torch.randn(a.shape, generator=g, dtype=s.dtype).to(s.device)
    g_s, g_a = env64.vjp(s, a, u)
    lhs = (u * env64.jvp(s, a, v, w)).sum(1)
    rhs = (g_s * v).sum(1) + (g_a * w).sum(1)
    assert (lhs - rhs).abs().max() <= 1e-10 * max(1.0, lhs.abs().max().item())
    fd = _fd(env64, s, a, v, w)
    assert ((u * fd).sum(1) - rhs).abs().max() <= 1e-6 * max(1.0, rhs.abs().max().item())


def test_gradient_through_several_steps(env64):
    s, a = _state_action(env64, steps=5)
    acts = (a.unsqueeze(0).repeat(3, 1, 1) * 0.5).requires_grad_(True)
    x, ret = s, 0.0
    for t in range(3):
        nxt = env64.transition(x, acts[t])
        ret = ret + env64.reward(x, acts[t], nxt).sum()
        x = nxt
    ret.backward()
    assert torch.isfinite(acts.grad).all() and acts.grad.abs().sum() > 0


@pytest.mark.parametrize("task", ["cartpole-swingup", "hopper"])
def test_float32_close_to_float64(task):
    e64 = mt.make(task, num_envs=2, seed=0, dtype="float64")
    e32 = mt.make(task, num_envs=2, seed=0, dtype="float32")
    s, a = _state_action(e64, steps=10)
    n64 = e64.transition(s, a)
    n32 = e32.transition(s.float(), a.float())
    assert (n32.double() - n64).abs().max() < 1e-3 * max(1.0, n64.abs().max().item())
    J64, Ja64 = e64.jacobian(s, a)
    J32, Ja32 = e32.jacobian(s.float(), a.float())
    assert (J32.double() - J64).abs().max() < 2e-2 * max(1.0, J64.abs().max().item())
    u = torch.randn(s.shape, dtype=torch.float64, device=s.device)
    g64 = e64.vjp(s, a, u)[0]
    g32 = e32.vjp(s.float(), a.float(), u.float())[0]
    assert (g32.double() - g64).abs().max() < 2e-2 * max(1.0, g64.abs().max().item())


def test_cartpole_definition():
    env = mt.make("cartpole-swingup", num_envs=2, seed=0, dtype="float64", stochastic_init=False)
    s = env.get_state()
    assert torch.allclose(s[0], torch.tensor([0.0, -np.pi, 0.0, 0.0], dtype=torch.float64))
    up = torch.zeros(1, 4, dtype=torch.float64)
    assert env.reward(up, torch.zeros(1, 1, dtype=torch.float64), up).item() == 0.0
    obs = env.observe(s)
    assert torch.allclose(obs[0], torch.tensor([0.0, 0.0, 0.0, -1.0, 0.0], dtype=torch.float64), atol=1e-12)
    # a hanging pole at rest stays at rest; a push moves the cart along +x
    nxt = env.transition(s, torch.zeros(2, 1, dtype=torch.float64))
    assert (nxt - s).abs().max() < 1e-9
    nxt = env.transition(s, torch.ones(2, 1, dtype=torch.float64))
    assert nxt[0, 2] > 0.1


def test_hopper_rewards_and_termination():
    # early termination is DiffRL's HopperEnv default, so it is ours
    env = mt.make("hopper", num_envs=2, seed=0, dtype="float64", stochastic_init=False)
    s = env.get_state()
    assert s.abs().max() == 0
    r = env.reward(s, torch.zeros(2, 3, dtype=torch.float64), s)
    # height term at rootz = 0: d = 0 - (-0.45 + 0.15) = 0.3 -> +0.3; angle term 1
    assert torch.allclose(r, torch.full((2,), 1.3, dtype=torch.float64))
    low = s.clone()
    low[:, 1] = -0.5
    assert env.task.terminated(low).all() and not env.task.terminated(s).any()
    off = mt.make("hopper", num_envs=2, seed=0, dtype="float64", stochastic_init=False, early_termination=False)
    assert not off.task.terminated(low).any()


def test_legged_definitions():
    # the observation without DiffRL's appended previous action (tests/test_previous_action.py has it)
    env = mt.make("ant", num_envs=2, seed=0, dtype="float64", stochastic_init=False, previous_action=False)
    s = env.get_state()
    assert torch.allclose(s[0, :7], torch.tensor([0, 0, 0.75, 1, 0, 0, 0], dtype=torch.float64))
    assert torch.allclose(s[0, 7:15], torch.tensor([0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0], dtype=torch.float64))
    obs = env.observe(s)
    assert obs[0, 0] == 0.75 and obs[0, -2] == 1.0 and obs[0, -1] == pytest.approx(1.0)   # height, up, heading
    # reward at rest upright: progress 0 + 0.1 up + heading 1 + (0.75 - 0.27)
    r = env.reward(s, torch.zeros(2, 8, dtype=torch.float64), s)
    assert torch.allclose(r, torch.full((2,), 0.1 + 1.0 + 0.48, dtype=torch.float64))
    low = s.clone()
    low[:, 2] = 0.2
    assert env.task.terminated(low).all() and not env.task.terminated(s).any()
    # moving forward along +x is progress; the world-frame angular velocity is observed
    moving = s.clone()
    moving[:, 15] = 2.0
    assert torch.allclose(env.reward(s, torch.zeros(2, 8, dtype=torch.float64), moving) - r,
                          torch.full((2,), 2.0, dtype=torch.float64))
