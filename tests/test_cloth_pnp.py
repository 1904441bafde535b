"""Pick-and-place cloth (PickPlaceSim, cloth-fold-pnp / cloth-unfold-pnp): per-env held sets in
the cloth kernels, exactness of a macro step's VJP and JVP against float64 central
differences (w.r.t. the state and the place point), a scripted fold, and bad actions."""
import pytest
import torch

import mbmix_taichi as mt
from mbmix_taichi import _ti
from mbmix_taichi.errors import InputError
from mbmix_taichi.physics.cloth import ClothSim
from mbmix_taichi.physics.cloth_model import grid

# a small cloth and short phases keep the checks fast; the derivatives do not depend on the counts
SMALL = dict(resolution=4, substeps=4, lift_steps=1, move_steps=2, lower_steps=1, settle_steps=1)


def test_a_per_env_held_table_equals_the_shared_one():
    _ti.init("cpu")
    m = grid(4, 4, 0.05, ke=(20, 10, 1), kd=(0.01, 0.01, 0.001), total_mass=0.05)
    sim = ClothSim(m, [[15, 14], [3]], dt=0.04, substeps=3, dtype=torch.float64)
    x = torch.tensor(m.positions)[None].repeat(2, 1, 1)
    x[1, :, 2] += 0.01
    s = sim.make_state(x)
    c = torch.tensor([[0.01, 0.0, -0.05, 0.0, 0.0, 0.02], [0.0, 0.01, 0.01, 0.0, 0.0, -0.004]], dtype=torch.float64)
    table = sim.held_by.expand(2, -1).contiguous()
    u, ts, tc = torch.randn_like(s), torch.randn(2, 3, sim.state_dim, dtype=torch.float64), torch.randn(2, 3, 6, dtype=torch.float64)
    (a, ta), (b, tb) = (sim.step(s, c, record=True, held=h) for h in (None, table))
    assert torch.equal(a, b)
    for ga, gb in zip(sim.vjp_tape(ta, u), sim.vjp_tape(tb, u)):
        assert torch.equal(ga, gb)
    assert torch.equal(sim.jvp(s, c, ts, tc), sim.jvp(s, c, ts, tc, held=table))
    # one env holding nothing: its particles fall freely, the other's picker still carries its own
    table[0] = -1
    out, _ = sim.step(s, c, held=table)
    assert torch.equal(out[1], a[1])
    assert not torch.allclose(sim.positions(out)[0, 15] - x[0, 15], c[0, :3])
    for bad in (table.long(), table[:1], torch.full_like(table, 2)):
        with pytest.raises(ValueError, match="held"):
            sim.step(s, c, held=bad)


@pytest.fixture(scope="module", params=[False, True], ids=["to-place", "relative-carry"])
def pnp64(request):
    return mt.make("cloth-fold-pnp", num_envs=2, seed=0, dtype="float64", relative_carry=request.param, **SMALL)


def _state_action(env):
    g = torch.Generator().manual_seed(3)
    s = env.get_state()
    s[:, 3 * env.sim.n: 6 * env.sim.n] += 0.05 * torch.randn(2, 3 * env.sim.n, generator=g, dtype=torch.float64)
    # pick near (not at) particles, place at generic points inside the cloth's extent
    a = torch.tensor([[0.9, -0.2, -0.55, 0.3], [-0.3, 0.8, 0.45, -0.7]], dtype=torch.float64)
    return s, a


def _fd(env, s, a, ts, ta, eps=1e-7):
    return (env.transition(s + eps * ts, a + eps * ta) - env.transition(s - eps * ts, a - eps * ta)) / (2 * eps)


def test_macro_step_jvp_and_vjp_match_finite_differences(pnp64):
    env = pnp64
    s, a = _state_action(env)
    relative = env.sim.relative_carry
    ts, ta = torch.randn_like(s), torch.randn_like(a)
    ta_fd = ta.clone()
    if not relative:
        ta_fd[:, :2] = 0  # the pick point only chooses particles: zero derivative (checked below)
    fd = _fd(env, s, a, ts, ta_fd)
    assert fd.abs().max() > 1e-2
    jv = env.jvp(s, a, ts, ta)
    assert (jv - fd).abs().max() < 1e-6 * fd.abs().max(), (jv - fd).abs().max()
    u = torch.randn_like(s)
    g_s, g_a = env.vjp(s, a, u)
    assert g_a[:, 2:].abs().max() > 0
    if relative:  # the carry is (place - pick) / steps
        assert torch.equal(g_a[:, :2], -g_a[:, 2:])
    else:
        assert g_a[:, :2].abs().max() == 0
    ours = (g_s * ts).sum(1) + (g_a * ta).sum(1)
    ref = (u * fd).sum(1)
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-8 * ref.abs().max().item()), (ours, ref)
    for k in (0, 1, 2, 3) if relative else (2, 3):  # the pick (relative carry) and place points, entry by entry
        e = torch.zeros_like(a)
        e[:, k] = 1
        fd_k = (u * _fd(env, s, a, torch.zeros_like(s), e)).sum(1)
        assert torch.allclose(g_a[:, k], fd_k, rtol=1e-6, atol=1e-8 * fd_k.abs().max().item())
    # the dot-product identity, and probes batched
    assert torch.allclose((u * jv).sum(1), ours, rtol=1e-12, atol=1e-12 * ours.abs().max().item())
    probes = env.jvp(s, a, torch.stack([ts, -ts], 1), torch.stack([ta, -ta], 1))
    assert torch.allclose(probes[:, 0], jv, rtol=0, atol=1e-14) and torch.allclose(probes[:, 1], -jv, rtol=0, atol=1e-14)


def test_autograd_through_two_macro_steps(pnp64):
    env = pnp64
    s0, a = _state_action(env)
    acts = torch.stack([a, a.flip(1)])

    def final_reward(s, acts):
        for act in acts:
            s2 = env.transition(s, act)
            r = env.reward(s, act, s2)
            s = s2
        return (r + 10 * env.sim.positions(s)[..., 0].mean(-1)).sum()

    s = s0.clone().requires_grad_(True)
    A = acts.clone().requires_grad_(True)
    g_s, g_a = torch.autograd.grad(final_reward(s, A), (s, A))
    ts, ta = torch.randn_like(s0), torch.randn_like(acts)
    if not env.sim.relative_carry:
        ta[..., :2] = 0
    eps = 1e-7
    fd = (final_reward(s0 + eps * ts, acts + eps * ta) - final_reward(s0 - eps * ts, acts - eps * ta)) / (2 * eps)
    ours = (g_s * ts).sum() + (g_a * ta).sum()
    assert abs(ours - fd) < 1e-6 * max(1.0, abs(fd)), (ours.item(), fd.item())


def test_scripted_fold_beats_holding_still():
    """Pick the +x edge's middle and place it mirrored over x = x_mid: one macro step folds the
    cloth; picking and placing at the centre (holding still) does not."""
    env = mt.make("cloth-fold-pnp", num_envs=1, seed=0, dtype="float64", resolution=6)
    s = env.get_state()
    fold = env.transition(s, torch.tensor([[1.0, 0.0, -1.0, 0.0]], dtype=torch.float64))
    still = env.transition(s, torch.zeros(1, 4, dtype=torch.float64))
    score = {k: env.metrics(v)["score"].item() for k, v in (("start", s), ("fold", fold), ("still", still))}
    assert score["fold"] > score["still"] + 0.1 and score["fold"] > score["start"] + 0.1, score
    x = env.sim.positions(fold)[0]
    assert x[:, 0].max() < env.task.x_mid + 0.2 * env.task.size, "the +x half went over the middle"
    assert x[:, 2].min() > -1e-9


def test_unfold_pnp_starts_folded_and_an_unfold_helps():
    env = mt.make("cloth-unfold-pnp", num_envs=1, seed=0, dtype="float64", resolution=6)
    s = env.get_state()
    assert env.sim.positions(s)[0, :, 0].max() < env.task.x_mid + 0.05 * env.task.size
    # the folded layer's free edge lies over the -x edge: carry it back out towards +x (a little
    # short of the edge, as the picker grabbed one of the two middle particles and the cloth turns)
    unfold = env.transition(s, torch.tensor([[-1.0, 0.0, 0.8, 0.0]], dtype=torch.float64))
    assert env.metrics(unfold)["score"].item() > env.metrics(s)["score"].item() + 0.1


def test_bad_actions_raise_clear_errors(pnp64):
    env = pnp64
    s = env.get_state()
    with pytest.raises(InputError, match="NaN or Inf"):
        env.step(torch.tensor([[0.0, float("nan"), 0.0, 0.0]] * 2, dtype=torch.float64))
    with pytest.raises(InputError, match="shape"):
        env.step(torch.zeros(2, 6, dtype=torch.float64))
    with pytest.raises(InputError, match="shape"):
        env.transition(s, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="PickPlaceSim|do not match"):
        env.sim.step(s, torch.zeros(2, 6, dtype=torch.float64))
    obs, r, *_ = env.step(torch.zeros(2, 4, dtype=torch.float64))  # and the env is still usable
    assert torch.isfinite(obs).all() and ((r > 0) & (r <= 1)).all()


_DEBUG_SCRIPT = r'''
import torch, mbmix_taichi as mt
env = mt.make("cloth-fold-pnp", num_envs=2, resolution=4, lift_steps=1, move_steps=1, lower_steps=1, settle_steps=1)
s, a = env.get_state(), torch.rand(2, 4) * 2 - 1
env.jvp(s, a, torch.randn(2, 3, env.state_dim), torch.randn(2, 3, 4))
env.vjp(s, a, torch.randn(2, env.state_dim))
env.transition(s, a.clone().requires_grad_(True)).sum().backward()
env.step(a)
print("pnp accepted inputs: no out-of-bounds access")
'''


def test_per_env_held_tables_stay_in_bounds_under_taichi_debug_mode():
    """The kernels index per-env held tables (rows b * n): every launch of a macro step, under
    Taichi's bounds checks."""
    import os
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _DEBUG_SCRIPT], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "MBMIX_TAICHI_DEBUG": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "pnp accepted inputs: no out-of-bounds access" in res.stdout
