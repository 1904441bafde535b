"""The pickers' ground clamp inside the cloth kernels: both kernel layouts apply it alike, the
tie rule of its derivative (the picker's own height first), and the tangent kernel leaves the
caller's control tangents alone. (Finite-difference agreement of JVP, VJP and Jacobian with
the clamp active: tests/test_cloth_gradients.py.) Tensors live on the device of the arch Taichi
runs on (TI_ARCH=cuda: these tests check the CUDA kernels of both layouts)."""
import torch

from mbmix_taichi import _ti
from mbmix_taichi.physics.cloth import ClothSim
from mbmix_taichi.physics.cloth_model import grid


def _sim(layout="auto"):
    _ti.init("auto")
    m = grid(4, 4, 0.05, ke=(20, 10, 1), kd=(0.01, 0.01, 0.001), total_mass=0.05)
    return ClothSim(m, [[15, 14], [3]], dt=0.04, substeps=3, dtype=torch.float64, device=_ti.device(), layout=layout), m


def _t(x, **kw):
    """A float64 tensor on the simulators' device."""
    return torch.as_tensor(x, dtype=kw.pop("dtype", torch.float64), device=_ti.device(), **kw)


def test_both_layouts_clamp_a_picker_pushed_into_the_ground():
    sims = [_sim(lay)[0] for lay in ("fused", "wide")]
    m = _sim()[1]
    x = _t(m.positions)[None].repeat(2, 1, 1)
    x[1, :, 2] += 0.01
    s = sims[0].make_state(x)
    c = _t([[0.01, 0.0, -0.05, 0.0, 0.0, 0.02], [0.0, 0.01, -0.05, 0.0, 0.0, -0.004]])
    outs = [sim.step(s, c, record=True) for sim in sims]
    for out, (_, _, _, _, rec) in outs:
        assert rec.clamped.tolist() == [[True, False], [True, False]]
        p = sims[0].pickers(out)
        assert p[:, 0, 2].abs().max() < 1e-15, "picker 0 stops at the ground"
        assert torch.allclose(p[1, 1, 2], _t(0.006)), "picker 1 moves freely"
    assert torch.allclose(outs[0][0], outs[1][0], rtol=0, atol=1e-13)
    assert torch.equal(outs[0][1][4].low_entry, outs[1][1][4].low_entry)


def test_a_tie_at_the_clamp_follows_the_pickers_own_height():
    """Flat cloth on the ground, pickers level with it: picker 0 pushed down is clamped at a tie of
    its own height and its particles'; the derivative follows the picker's entry (listed first)."""
    sim, m = _sim()
    s = sim.make_state(_t(m.positions)[None])
    c = _t([[0.0, 0.0, -0.01, 0.0, 0.0, 0.0]])
    _, (_, _, _, _, rec) = sim.step(s, c, record=True)
    n = sim.n
    assert rec.clamped.tolist() == [[True, False]] and int(rec.low_entry[0, 0]) == 6 * n + 2
    J_s, J_c = sim.jacobian(s, c)
    pz = 6 * n + 2
    assert J_s[0, pz, pz] == 0 and J_c[0, pz, 2] == 0  # the picker's height: h - its own height + itself
    for i in (15, 14):
        assert J_s[0, 3 * i + 2, pz] == -1 and J_s[0, 3 * i + 2, 3 * i + 2] == 1


def test_jvp_does_not_write_the_callers_control_tangents():
    sim, m = _sim()
    s = sim.make_state(_t(m.positions)[None])
    c = _t([[0.0, 0.0, -0.01, 0.0, 0.0, 0.0]])
    ts, tc = _t(torch.randn(1, 3, sim.state_dim)), _t(torch.randn(1, 3, sim.control_dim))
    tc0 = tc.clone()
    out = sim.jvp(s, c, ts, tc)
    assert torch.equal(tc, tc0)
    assert torch.allclose(sim.pickers(out)[0, :, 0, 2], _t(torch.zeros(3))), "clamped: no z tangent"


def test_wide_layout_derivatives_agree_with_the_fused_layout():
    """The wide (GPU) layout's adjoint and tangent kernels, run here on the CPU, give the fused
    kernels' VJP and multi-probe JVP to rounding: with ground contact and friction, one picker
    clamped at the ground, and a per-env held table; and they satisfy <u, J t> = <J^T u, t>."""
    sims = [_sim(lay)[0] for lay in ("fused", "wide")]
    m = _sim()[1]
    g = torch.Generator().manual_seed(3)
    x = _t(m.positions)[None].repeat(2, 1, 1)
    x[1, :, 2] += _t(0.004 * torch.rand(m.num_particles, generator=g, dtype=torch.float64))  # some off the ground
    v = _t(0.05 * torch.randn(2, m.num_particles, 3, generator=g, dtype=torch.float64))
    s = sims[0].make_state(x, v)
    c = _t([[0.01, 0.0, -0.05, 0.0, 0.0, 0.02], [0.0, 0.01, 0.003, 0.01, 0.0, -0.004]])
    held = torch.full((2, m.num_particles), -1, dtype=torch.int32, device=_ti.device())
    held[0, [15, 14]], held[0, 3] = 0, 1
    held[1, [12, 13]], held[1, 0] = 0, 1
    u = _t(torch.randn(s.shape, generator=g, dtype=torch.float64))
    ts = _t(torch.randn(2, 5, s.shape[1], generator=g, dtype=torch.float64))
    tc = _t(torch.randn(2, 5, c.shape[1], generator=g, dtype=torch.float64))
    for h in (None, held):
        res = []
        for sim in sims:
            out, tape = sim.step(s, c, record=True, held=h)
            assert tape[4].clamped[0, 0], "picker 0 of env 0 is pushed into the ground"
            gs, gc = sim.vjp_tape(tape, u)
            jt = sim.jvp_tape(tape, ts, tc)
            lhs = (u[:, None] * jt).sum(-1)
            rhs = (gs[:, None] * ts).sum(-1) + (gc[:, None] * tc).sum(-1)
            assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-12), (sim.layout, lhs, rhs)
            res.append((out, gs, gc, jt))
        for a, b in zip(*res):
            scale = a.abs().max()
            assert scale > 0 and (a - b).abs().max() <= 1e-12 * scale, (a - b).abs().max()
