"""Exactness of the cloth step's derivatives: float64 central differences against VJP, JVP
and the full Jacobian, the dot-product identity, float32 vs float64, and gradients through
several transition + reward steps."""
import pytest
import torch

import mbmix_taichi as mt

TASKS = ["cloth-fold", "cloth-unfold"]
SMALL = dict(resolution=4, substeps=4)


def _state_action(env, steps=3, seed=1):
    """A state with velocities and ground contact, reached by a few random actions."""
    g = torch.Generator().manual_seed(seed)
    env.reset(seed=seed)
    # cloth-unfold holds particles at one height, level with their picker: a picker pressed to
    # the ground is then clamped at a tie of them (a kink: central differences average two
    # sides); distinct heights keep the checks away from it (see test_derivatives_exact_with_...)
    s = env.get_state()
    for idx in env.sim.held:
        idx = torch.as_tensor(idx, device=s.device)
        s[:, 3 * idx + 2] += torch.arange(1, len(idx) + 1, dtype=s.dtype, device=s.device) * 1e-4
    env.set_state(s)
    for _ in range(steps):
        env.step((torch.rand(env.num_envs, env.act_dim, generator=g, dtype=env.dtype) * 2 - 1).to(env.device))
    a = (torch.rand(env.num_envs, env.act_dim, generator=g, dtype=env.dtype) * 1.6 - 0.8).to(env.device)
    return env.get_state(), a


def _fd(env, s, a, ts, ta, eps=1e-7):
    return (env.transition(s + eps * ts, a + eps * ta) - env.transition(s - eps * ts, a - eps * ta)) / (2 * eps)


@pytest.fixture(scope="module", params=TASKS)
def env64(request):
    return mt.make(request.param, num_envs=3, seed=0, dtype="float64", **SMALL)


def test_state_has_contact_and_motion(env64):
    s, _ = _state_action(env64)
    x = env64.sim.positions(s)
    assert (x[..., 2] < 1e-9).any(), "the checks must cover particles on the ground"
    assert env64.sim.velocities(s).abs().max() > 1e-3


def test_jvp_matches_finite_differences(env64):
    s, a = _state_action(env64)
    ts, ta = torch.randn_like(s), torch.randn_like(a)
    jv = env64.jvp(s, a, ts, ta)
    fd = _fd(env64, s, a, ts, ta)
    err = (jv - fd).abs().max() / fd.abs().max()
    assert err < 1e-6, f"relative JVP error {err:.2e}"


def test_vjp_matches_finite_differences(env64):
    s, a = _state_action(env64)
    u = torch.randn_like(s)
    g_s, g_a = env64.vjp(s, a, u)
    # directional checks: <u, J e> by central differences for random directions e
    for _ in range(3):
        ts, ta = torch.randn_like(s), torch.randn_like(a)
        fd = (u * _fd(env64, s, a, ts, ta)).sum(1)
        ours = (g_s * ts).sum(1) + (g_a * ta).sum(1)
        assert torch.allclose(ours, fd, rtol=1e-6, atol=1e-8 * fd.abs().max().item()), (ours, fd)
    # and the action gradient entry by entry
    for k in range(env64.act_dim):
        ta = torch.zeros_like(a)
        ta[:, k] = 1
        fd = (u * _fd(env64, s, a, torch.zeros_like(s), ta)).sum(1)
        assert torch.allclose(g_a[:, k], fd, rtol=1e-6, atol=1e-6 * g_a.abs().max().item())


def test_dot_product_identity(env64):
    s, a = _state_action(env64)
    u, ts, ta = torch.randn_like(s), torch.randn_like(s), torch.randn_like(a)
    g_s, g_a = env64.vjp(s, a, u)
    lhs = (u * env64.jvp(s, a, ts, ta)).sum(1)
    rhs = (g_s * ts).sum(1) + (g_a * ta).sum(1)
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * lhs.abs().max().item())


def test_jacobian_matches_finite_differences(env64):
    s, a = _state_action(env64)
    J_s, J_a = env64.jacobian(s, a)
    assert J_s.shape == (3, env64.state_dim, env64.state_dim) and J_a.shape == (3, env64.state_dim, env64.act_dim)
    cols = [0, 7, env64.state_dim // 2 + 5, env64.state_dim - 1]  # a position, velocity and picker column
    for c in cols:
        ts = torch.zeros_like(s)
        ts[:, c] = 1
        fd = _fd(env64, s, a, ts, torch.zeros_like(a))
        assert (J_s[:, :, c] - fd).abs().max() < 1e-6 * max(1.0, fd.abs().max().item())
    for c in range(env64.act_dim):
        ta = torch.zeros_like(a)
        ta[:, c] = 1
        fd = _fd(env64, s, a, torch.zeros_like(s), ta)
        assert (J_a[:, :, c] - fd).abs().max() < 1e-6 * max(1.0, fd.abs().max().item())
    # the Jacobian is the JVP with probes
    ts = torch.randn(3, 5, env64.state_dim, dtype=torch.float64, device=s.device)
    ta = torch.randn(3, 5, env64.act_dim, dtype=torch.float64, device=s.device)
    probes = env64.jvp(s, a, ts, ta)
    direct = torch.einsum("bij,bpj->bpi", J_s, ts) + torch.einsum("bij,bpj->bpi", J_a, ta)
    assert torch.allclose(probes, direct, rtol=1e-10, atol=1e-10)


def test_autograd_through_several_steps_matches_finite_differences(env64):
    s0, _ = _state_action(env64)
    acts = torch.rand(4, env64.num_envs, env64.act_dim, dtype=torch.float64, device=s0.device) * 1.6 - 0.8

    def total_reward(s, acts):
        ret = 0
        for a in acts:
            s2 = env64.transition(s, a)
            ret = ret + env64.reward(s, a, s2)
            s = s2
        return ret.sum()

    s = s0.clone().requires_grad_(True)
    A = acts.clone().requires_grad_(True)
    g_s, g_a = torch.autograd.grad(total_reward(s, A), (s, A))
    ts, ta = torch.randn_like(s0), torch.randn_like(acts)
    eps = 1e-7
    fd = (total_reward(s0 + eps * ts, acts + eps * ta) - total_reward(s0 - eps * ts, acts - eps * ta)) / (2 * eps)
    ours = (g_s * ts).sum() + (g_a * ta).sum()
    assert abs(ours - fd) < 1e-6 * max(1.0, abs(fd)), (ours.item(), fd.item())


@pytest.mark.parametrize("task", TASKS)
def test_float32_agrees_with_float64(task):
    e32 = mt.make(task, num_envs=2, seed=0, dtype="float32", **SMALL)
    e64 = mt.make(task, num_envs=2, seed=0, dtype="float64", **SMALL)
    s64, a64 = _state_action(e64)
    s32, a32 = s64.float(), a64.float()
    n64 = e64.transition(s64, a64)
    n32 = e32.transition(s32, a32)
    assert (n32.double() - n64).abs().max() < 1e-4
    u = torch.randn_like(s64)
    g64 = e64.vjp(s64, a64, u)
    g32 = e32.vjp(s32, a32, u.float())
    for x32, x64 in zip(g32, g64):
        assert (x32.double() - x64).abs().max() < 1e-3 * x64.abs().max()
    t = torch.randn_like(s64)
    ta = torch.randn_like(a64)
    j64 = e64.jvp(s64, a64, t, ta)
    j32 = e32.jvp(s32, a32, t.float(), ta.float())
    assert (j32.double() - j64).abs().max() < 1e-3 * j64.abs().max()


def test_derivatives_exact_with_a_picker_clamped_at_the_ground(env64):
    """A picker pushed into the ground is clamped (its z displacement raised to keep it and its
    particles on the ground): the clamped entry has zero derivative w.r.t. the action and
    follows the lowest held particle's height; JVP, VJP and Jacobian match finite differences."""
    s, a = _state_action(env64)
    a = a.clone()
    a[:, 2] = -0.9  # picker 0 down (not at the action bound, a kink of its own), picker 1 up
    a[:, 5] = 0.5
    sim = env64.sim
    held0 = torch.as_tensor(sim.held[0], device=s.device)  # at distinct heights (_state_action): no tie at the clamp
    for _ in range(6):  # reach the ground first
        s = env64.transition(s, a)
    assert sim.pickers(s)[:, 0, 2].min() < 1e-9 or sim.positions(s)[:, held0, 2].min() < 1e-9, "picker 0 or a particle it holds should be on the ground"
    _, (_, _, _, _, clamp) = sim.step(s, env64.task.control(a), record=True)
    assert clamp is not None and clamp[0][:, 0].all() and not clamp[0][:, 1].any()
    J_s, J_a = env64.jacobian(s, a)
    assert J_a[:, :, 2].abs().max() == 0, "a clamped picker does not respond to its z action"
    for c in list(range(env64.act_dim)):
        ta = torch.zeros_like(a)
        ta[:, c] = 1
        fd = _fd(env64, s, a, torch.zeros_like(s), ta)
        assert (J_a[:, :, c] - fd).abs().max() < 1e-6 * max(1.0, fd.abs().max().item()), c
    # state columns: the held particles' heights (one of them bounds the clamp), a picker, others
    cols = [3 * int(i) + 2 for i in sim.held[0]] + [env64.state_dim - 4, 0, 7]
    for c in cols:
        ts = torch.zeros_like(s)
        ts[:, c] = 1
        fd = _fd(env64, s, a, ts, torch.zeros_like(a))
        assert (J_s[:, :, c] - fd).abs().max() < 1e-6 * max(1.0, fd.abs().max().item()), c
    u, ts, ta = torch.randn_like(s), torch.randn_like(s), torch.randn_like(a)
    g_s, g_a = env64.vjp(s, a, u)
    fd = (u * _fd(env64, s, a, ts, ta)).sum(1)
    ours = (g_s * ts).sum(1) + (g_a * ta).sum(1)
    assert torch.allclose(ours, fd, rtol=1e-6, atol=1e-8 * fd.abs().max().item()), (ours, fd)
    lhs = (u * env64.jvp(s, a, ts, ta)).sum(1)
    assert torch.allclose(lhs, ours, rtol=1e-12, atol=1e-12 * lhs.abs().max().item())
