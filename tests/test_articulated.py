"""The articulated simulator against MuJoCo (trajectories of the Euler integrator, one-step
Jacobians from mjd_transitionFD), energy conservation, resting contact, launch counts."""
import numpy as np
import pytest
import torch

import mujoco  # the oracle; a test-only dependency (the `test` extra)

import mbmix_taichi as mt  # noqa: E402
from mbmix_taichi.physics.articulated import ArticulatedSim  # noqa: E402
from mbmix_taichi.physics.mjcf import load_mjcf  # noqa: E402

from _rigid_models import BRANCH, CHAIN, DROP, FLOATING, FLUID, PENDULUM_CART, SERVO, SLIDES, SPATIAL, TENDON, write  # noqa: E402,E501

MODELS = {"cartpend": PENDULUM_CART, "slides": SLIDES, "floating": FLOATING, "fluid": FLUID, "tendon": TENDON,
          "servo": SERVO, "spatial": SPATIAL}


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("mjcf")
    return {k: write(d, k, v) for k, v in {**MODELS, "chain": CHAIN, "drop": DROP, "branch": BRANCH}.items()}


def _random_state(mm, d, rng):
    d.qpos[:] = mm.qpos0 + 0.5 * rng.normal(size=mm.nq)
    for j in range(mm.njnt):
        if mm.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            a = mm.jnt_qposadr[j]
            d.qpos[a + 3:a + 7] /= np.linalg.norm(d.qpos[a + 3:a + 7])
    d.qvel[:] = rng.normal(size=mm.nv)


@pytest.mark.parametrize("name", list(MODELS))
def test_trajectory_matches_mujoco_euler(paths, name):
    mm = mujoco.MjModel.from_xml_path(paths[name])
    d = mujoco.MjData(mm)
    sim = ArticulatedSim(load_mjcf(paths[name]), dt=mm.opt.timestep, substeps=1, dtype=torch.float64)
    rng = np.random.default_rng(0)
    _random_state(mm, d, rng)
    s = torch.tensor(np.concatenate([d.qpos, d.qvel]))[None]
    err = 0.0
    for _ in range(300):
        u = rng.uniform(-1, 1, size=mm.nu)
        d.ctrl[:] = u
        mujoco.mj_step(mm, d)
        s, _ = sim.step(s, torch.tensor(u)[None])
        err = max(err, float(np.abs(s[0].numpy() - np.concatenate([d.qpos, d.qvel])).max()))
    assert err < 1e-10, err


def test_substeps_equal_mujoco_steps(paths):
    mm = mujoco.MjModel.from_xml_path(paths["chain"])
    d = mujoco.MjData(mm)
    sim = ArticulatedSim(load_mjcf(paths["chain"]), dt=10 * mm.opt.timestep, substeps=10, dtype=torch.float64)
    _random_state(mm, d, np.random.default_rng(1))
    s = torch.tensor(np.concatenate([d.qpos, d.qvel]))[None]
    for _ in range(20):
        mujoco.mj_step(mm, d, nstep=10)
        s, _ = sim.step(s, torch.zeros(1, 0, dtype=torch.float64))
    assert np.abs(s[0].numpy() - np.concatenate([d.qpos, d.qvel])).max() < 1e-10


@pytest.mark.parametrize("name", ["cartpend", "slides", "tendon", "servo", "spatial"])
def test_jacobian_matches_mjd_transitionFD(paths, name):
    mm = mujoco.MjModel.from_xml_path(paths[name])
    d = mujoco.MjData(mm)
    sim = ArticulatedSim(load_mjcf(paths[name]), dt=mm.opt.timestep, substeps=1, dtype=torch.float64)
    rng = np.random.default_rng(2)
    for _ in range(3):
        _random_state(mm, d, rng)
        u = rng.uniform(-1, 1, mm.nu)
        d.ctrl[:] = u
        A = np.zeros((2 * mm.nv, 2 * mm.nv))
        B = np.zeros((2 * mm.nv, mm.nu))
        mujoco.mjd_transitionFD(mm, d, 1e-7, True, A, B, None, None)
        s = torch.tensor(np.concatenate([d.qpos, d.qvel]))[None]
        Js, Jc = sim.jacobian(s, torch.tensor(u)[None])
        assert np.abs(Js[0].numpy() - A).max() < 1e-6 * max(1.0, np.abs(A).max())
        assert np.abs(Jc[0].numpy() - B).max() < 1e-6 * max(1.0, np.abs(B).max())


def test_energy_conserved_for_frictionless_chain(paths):
    """No damping, no armature, no contact: energy drift of semi-implicit Euler stays small."""
    mm = mujoco.MjModel.from_xml_path(paths["chain"])
    mm.opt.enableflags |= mujoco.mjtEnableBit.mjENBL_ENERGY
    d = mujoco.MjData(mm)
    sim = ArticulatedSim(load_mjcf(paths["chain"]), dt=0.01, substeps=20, dtype=torch.float64)

    def energy(state):
        d.qpos[:] = state[:mm.nq]
        d.qvel[:] = state[mm.nq:]
        mujoco.mj_forward(mm, d)
        return d.energy[0] + d.energy[1]

    s = torch.tensor([[0.8, -0.5, 0.3, 0.0, 1.0, -1.0]], dtype=torch.float64)
    e0 = energy(s[0].numpy())
    scale = abs(e0) + 10.0
    worst = 0.0
    for _ in range(200):  # 2 s
        s, _ = sim.step(s, torch.zeros(1, 0, dtype=torch.float64))
        worst = max(worst, abs(energy(s[0].numpy()) - e0))
    assert worst / scale < 2e-3, (worst, e0)
    assert s[0, 3:].abs().max() > 0.5  # it really swings


def test_dropped_box_comes_to_rest(paths):
    env = mt.make("mjcf", model=paths["drop"], dt=0.01, substeps=20, dtype="float64",
                  contact_ke=1e4, contact_kd=1e4, contact_kf=1e2, contact_mu=0.5)
    for _ in range(300):  # 3 s
        env.step(torch.zeros(1, 0, dtype=torch.float64, device=env.device))
    s = env.get_state()[0]
    z = s[2].item()
    assert abs(z - 0.05) < 5e-3, z           # resting on its face (penalty penetration < 5 mm)
    assert s[7:].abs().max() < 1e-2          # at rest
    q = s[3:7] / s[3:7].norm()
    up = 1 - 2 * (q[1] ** 2 + q[2] ** 2)       # z-axis of the box stays up
    assert up > 0.99


def test_launches_per_control_step_and_derivative(paths):
    sim = ArticulatedSim(load_mjcf(paths["chain"]), dt=0.01, substeps=20, dtype=torch.float64)
    s = torch.zeros(4, sim.state_dim, dtype=torch.float64)
    c = torch.zeros(4, 0, dtype=torch.float64)
    before = sim.launches
    _, tape = sim.step(s, c, record=True)
    sim.vjp_tape(tape, torch.ones_like(s))
    sim.jacobian(s, c)
    # step 1 (keeping its intermediates); VJP 1; Jacobian: replay, substeps and (a small model's) their chain
    assert sim.launches - before == 5
    sim.kernel_chain_madds = -1  # a large model's chain: torch's batched matmuls
    before = sim.launches
    sim.jacobian(s, c)
    assert sim.launches - before == 2
    sim.tape_budget = 0  # no stored intermediates: the VJP replays the step
    before = sim.launches
    _, tape = sim.step(s, c, record=True)
    sim.vjp_tape(tape, torch.ones_like(s))
    assert sim.launches - before == 3


def test_derivative_kernels_compile_with_their_own_options_and_leave_the_process_config(paths):
    """The adjoint and tangent kernels are compiled without Taichi's advanced IR passes (their cold
    compile) while the forward and everything else keep the process-wide options; every kernel's loop
    over envs is compiled to give each env a task of its own (PER_ENV_TASKS), and the process's
    config is restored after each of their calls."""
    import taichi as ti

    from mbmix_taichi.physics import _launch

    sim = ArticulatedSim(load_mjcf(paths["chain"]), dt=0.01, substeps=2, dtype=torch.float64)
    s = torch.zeros(2, sim.state_dim, dtype=torch.float64)
    c = torch.zeros(2, 0, dtype=torch.float64)
    cfg = ti.lang.impl.current_cfg()
    assert cfg.advanced_optimization
    seen = []
    fk = _launch.FastKernel(lambda *a: seen.append(cfg.advanced_optimization), {"advanced_optimization": False})
    fk(1)
    assert seen == [False] and cfg.advanced_optimization  # set for the Taichi call, restored after
    boom = _launch.FastKernel(lambda *a: 1 / 0, {"advanced_optimization": False})
    with pytest.raises(ZeroDivisionError):
        boom(1)
    assert cfg.advanced_optimization  # restored when the call raises too
    per_env = {"make_cpu_multithreading_loop": False, "default_cpu_block_dim": 1}
    for variant in ("parallel", "serial"):  # (the loop over envs on Taichi's pool, or on the caller's thread)
        adj, tan, fwd, chain = (getattr(k, variant).fast for k in (sim._adj, sim._tan, sim._fwd, sim._chain))
        assert adj.compile_options == {"advanced_optimization": False, **per_env} == tan.compile_options
        assert fwd.compile_options == per_env == chain.compile_options
    process = (cfg.make_cpu_multithreading_loop, cfg.default_cpu_block_dim)
    _, tape = sim.step(s, c, record=True)
    sim.vjp_tape(tape, torch.ones_like(s))
    sim.jacobian(s, c)
    assert cfg.advanced_optimization and (cfg.make_cpu_multithreading_loop, cfg.default_cpu_block_dim) == process


def test_stored_and_replayed_tapes_give_the_same_vjp(paths):
    """A tape that keeps the step's intermediates and one that replays the step give bit-identical
    VJPs; stored bytes count against tape_budget while the tape lives, and beyond the budget a
    recorded step falls back to replaying."""
    import gc
    from mbmix_taichi.physics.articulated import ContactParams
    sim = ArticulatedSim(load_mjcf(paths["drop"]), dt=0.01, substeps=5, dtype=torch.float64,
                         contact=ContactParams())
    gen = torch.Generator().manual_seed(0)
    s = torch.tensor(sim.model.qpos0().tolist() + [0.0] * sim.nv, dtype=torch.float64).repeat(3, 1)
    s = s + 0.05 * torch.randn(s.shape, generator=gen, dtype=torch.float64)
    c = torch.zeros(3, sim.nu, dtype=torch.float64)
    cot = torch.randn(s.shape, generator=gen, dtype=torch.float64)
    out_a, stored = sim.step(s, c, record=True)
    assert stored.W is not None
    one = sim.tape_bytes()[0]
    assert one > 0
    sim.tape_budget = one  # room for exactly one stored tape
    out_b, replayed = sim.step(s, c, record=True)
    assert replayed.W is None and sim.tape_bytes()[0] == one
    assert torch.equal(out_a, out_b)
    ga, gb = sim.vjp_tape(stored, cot), sim.vjp_tape(replayed, cot)
    assert torch.equal(ga[0], gb[0]) and torch.equal(ga[1], gb[1])
    buf = stored.W.data_ptr()
    del stored
    gc.collect()
    assert sim.tape_bytes() == (0, one)  # its buffer is kept for the next recorded step
    out_c, again = sim.step(s, c, record=True)
    assert again.W is not None and again.W.data_ptr() == buf and sim.tape_bytes() == (one, 0)
    assert torch.equal(out_c, out_a) and torch.equal(sim.vjp_tape(again, cot)[0], ga[0])


def _limited_sim_and_inputs(paths, name, n, seed, mass_matrix_every=1):
    """A simulator of model `name` with limits (and contact for "drop" and "branch") active, n random states
    near its reference pose and n random controls, and a generator for more."""
    from mbmix_taichi.physics.articulated import ContactParams
    sim = ArticulatedSim(load_mjcf(paths[name]), dt=0.01, substeps=3, dtype=torch.float64,
                         contact=ContactParams() if name in ("drop", "branch") else None, limit_ke=1e3, limit_kd=10.0,
                         mass_matrix_every=mass_matrix_every)
    gen = torch.Generator().manual_seed(seed)
    s = torch.tensor(sim.model.qpos0().tolist() + [0.0] * sim.nv, dtype=torch.float64).repeat(n, 1)
    s = s + 0.3 * torch.randn(s.shape, generator=gen, dtype=torch.float64)
    c = torch.randn(n, sim.nu, generator=gen, dtype=torch.float64)
    return sim, s, c, gen


@pytest.mark.parametrize("name", list(MODELS) + ["drop", "branch"])
def test_adjoint_reads_no_scratch_it_did_not_write(paths, name):
    """The adjoint zeroes only its accumulators (W_GZERO..W_GZEND) and stores its other slots
    before reading them: NaN in all of its scratch beforehand changes no bit of the VJP."""
    sim, s, c, gen = _limited_sim_and_inputs(paths, name, 2, seed=1)
    cot = torch.randn(s.shape, generator=gen, dtype=torch.float64)
    _, clean = sim.step(s, c, record=True)
    _, poisoned = sim.step(s, c, record=True)
    clean.W[sim._primal_size(2, sim.tables.keep_adjoint):] = 0.0
    poisoned.W[sim._primal_size(2, sim.tables.keep_adjoint):] = float("nan")
    ga, gb = sim.vjp_tape(clean, cot), sim.vjp_tape(poisoned, cot)
    assert torch.isfinite(ga[0]).all() and torch.equal(ga[0], gb[0]) and torch.equal(ga[1], gb[1])


@pytest.mark.parametrize("name", list(MODELS) + ["drop", "branch"])
def test_forward_reads_no_scratch_it_did_not_write(paths, name):
    """The forward stores every slot of its workspace before reading it (contact points above
    the ground skip their force, so the wrench slots they would add to must already hold gravity's
    share): NaN in all of its scratch beforehand changes no bit of the next state, with and
    without keeping the substeps for a derivative."""
    sim, s, c, _ = _limited_sim_and_inputs(paths, name, 2, seed=3)
    if name == "drop":  # one env resting in contact, one falling from high above the ground
        s[0, 2], s[1, 2] = -0.02, 5.0
    clean = sim.step(s, c)[0]
    assert torch.isfinite(clean).all()
    ctrl = c.contiguous().view(-1) if sim.nu else sim._dummy1
    for keep in (0, sim.tables.keep_adjoint, sim.tables.keep_tangent):
        W = torch.full((sim._workspace_size(2, keep),), float("nan"), dtype=torch.float64)
        out = torch.empty_like(clean)
        sim._fwd(sim._I, sim._P, s.contiguous().view(-1), ctrl, out.view(-1), W, 2, keep)
        assert torch.equal(out, clean), keep


@pytest.mark.parametrize("mass_matrix_every", [1, 2])
@pytest.mark.parametrize("name", list(MODELS) + ["drop", "branch"])
def test_kept_substeps_hold_all_their_derivatives_read(paths, name, mass_matrix_every):
    """A kept substep stores only the prefix of its block that the adjoint (keep_adjoint) or the
    tangent (keep_tangent) reads; the rest is scratch that the next substep's block overwrites.
    VJPs, JVPs and substep Jacobians from such a tape equal, bit for bit, those from whole blocks
    (keep = the block's size, where nothing is overwritten)."""
    sim, s, c, gen = _limited_sim_and_inputs(paths, name, 2, seed=7, mass_matrix_every=mass_matrix_every)
    wp, t = sim.tables.head["W_GXN"], sim.tables
    assert 0 < t.keep_adjoint <= t.keep_tangent < wp
    ctrl = sim._flat_ctrl(c)
    cot = torch.randn(s.shape, generator=gen, dtype=torch.float64)
    probes = torch.randn(2, 3, sim.state_dim, generator=gen, dtype=torch.float64)
    tc = torch.randn(2, 3, max(sim.nu, 1), generator=gen, dtype=torch.float64)[:, :, :sim.nu].contiguous()
    out = {}
    for name_, keep in (("adjoint", t.keep_adjoint), ("tangent", t.keep_tangent), ("whole", wp)):
        res = []
        if name_ != "tangent":
            W = sim._replay(s, ctrl, 2, keep).clone()
            gs, gc = cot.clone(), torch.zeros(2 * max(sim.nu, 1), dtype=torch.float64)
            sim._adj(sim._I, sim._P, ctrl, gs.view(-1), gc, W, 2, 1, 0, keep)
            res += [gs, gc]
            if mass_matrix_every == 1:
                js = torch.zeros(2 * sim.substeps * sim.state_dim * (sim.state_dim + sim.nu), dtype=torch.float64)
                sim._adj(sim._I, sim._P, ctrl, js, torch.zeros(2 * sim.nv * max(sim.nu, 1), dtype=torch.float64),
                         W, 2, sim.nv, 1, keep)
                res.append(js)
        if name_ != "adjoint":
            W = sim._replay(s, ctrl, 2, keep).clone()
            tx = probes.clone()
            sim._tan(sim._I, sim._P, ctrl, tx.view(-1), tc.view(-1) if sim.nu else sim._dummy1, W, 2, 3, keep)
            res.append(tx)
        out[name_] = res
    whole = out["whole"]
    n_adj = len(out["adjoint"])
    assert all(torch.isfinite(x).all() for x in whole)
    assert all(torch.equal(a, b) for a, b in zip(out["adjoint"], whole[:n_adj]))
    assert torch.equal(out["tangent"][0], whole[n_adj])
    assert any(x.abs().max() > 0 for x in whole)


@pytest.mark.parametrize("name", list(MODELS) + ["drop", "branch"])
def test_substep_jacobians_read_no_scratch_they_did_not_write(paths, name):
    """By substeps, the adjoint kernel zeroes its accumulators before each sweep and stores its other
    slots (the rows of d qacc, the control shares' scratch, every output entry) before reading them,
    and so does the chain kernel (its rows' scratch, its output): NaN in all of their scratch and in
    the output buffers beforehand changes no bit."""
    sim, s, c, _ = _limited_sim_and_inputs(paths, name, 2, seed=5)
    ctrl = sim._flat_ctrl(c)
    nc = sim.state_dim + sim.nu
    size = 2 * sim.substeps * sim.state_dim * nc
    out = []
    for fill in (0.0, float("nan")):
        keep = sim.tables.keep_adjoint
        W = sim._replay(s, ctrl, 2, keep)
        W[sim._primal_size(2, keep):] = fill
        js = torch.full((size,), fill, dtype=torch.float64)
        scratch = torch.full((2 * sim.nv * max(sim.nu, 1),), fill, dtype=torch.float64)
        sim._adj(sim._I, sim._P, ctrl, js, scratch, W, 2, sim.nv, 1, keep)
        TX = torch.full((2 * sim.state_dim ** 2,), fill, dtype=torch.float64)
        TU = torch.full((2 * sim.state_dim * max(sim.nu, 1),), fill, dtype=torch.float64)
        sim._chain(sim._I, js, TX, TU, torch.full((2 * (sim.state_dim + 1) * nc,), fill, dtype=torch.float64), 2)
        out.append(torch.cat([js, TX, TU[:2 * sim.state_dim * sim.nu]]))
    assert torch.isfinite(out[0]).all() and torch.equal(out[0], out[1])


@pytest.mark.parametrize("chain", ["kernel", "torch"])
@pytest.mark.parametrize("name", list(MODELS) + ["drop", "branch"])
def test_jacobian_by_substeps_equals_jacobian_by_columns(paths, name, chain):
    """`jacobian` forms each substep's Jacobian from adjoint sweeps with unit cotangents on tau (each
    reaching only its dof's subtree and ancestors: "branch" has skipped bodies) and chains them, in
    a kernel of their own (small products) or in torch; the tangent kernel's unit JVP probes through
    the whole step (`Simulator.jacobian`) give the same matrices, and each row is what a single VJP
    of that env gives: the derivative kernels check each other on every model kind, with limits
    and contact active."""
    from mbmix_taichi.physics.base import Simulator
    sim, s, c, gen = _limited_sim_and_inputs(paths, name, 3, seed=2)
    sim.kernel_chain_madds = 10 ** 12 if chain == "kernel" else -1
    threads = torch.get_num_threads()
    Js, Jc = sim.jacobian(s, c)  # 3 envs: its chain of small products runs on one torch thread
    assert torch.get_num_threads() == threads
    Fs, Fc = Simulator.jacobian(sim, s, c)

    def worst(x):  # (a model without actuators has [N, ds, 0] control Jacobians)
        return float(x.abs().max()) if x.numel() else 0.0
    scale = max(1.0, worst(Fs), worst(Fc))
    assert Js.shape == Fs.shape and Jc.shape == Fc.shape == (3, sim.state_dim, sim.nu)
    assert worst(Js - Fs) < 1e-12 * scale and worst(Jc - Fc) <= 1e-12 * scale
    cot = torch.randn(s.shape, generator=gen, dtype=torch.float64)
    _, tape = sim.step(s, c, record=True)
    gs, gc = sim.vjp_tape(tape, cot)
    size = scale * float(cot.abs().sum(1).max())
    assert worst(gs - torch.einsum("ni,nij->nj", cot, Js)) < 1e-12 * size
    assert worst(gc - torch.einsum("ni,nij->nj", cot, Jc)) <= 1e-12 * size


def test_one_torch_thread_restores_the_count_even_on_error():
    """The Jacobian chain's small products run on one torch thread; the caller's count comes back,
    also when the block raises, and nothing changes when the block is not small."""
    from mbmix_taichi.physics.articulated import _one_torch_thread
    threads = torch.get_num_threads()
    with _one_torch_thread(True):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads
    with pytest.raises(ZeroDivisionError):
        with _one_torch_thread(True):
            1 / 0
    assert torch.get_num_threads() == threads
    with _one_torch_thread(False):
        assert torch.get_num_threads() == threads


def test_cached_mass_matrix_is_the_start_of_the_groups(paths):
    """mass_matrix_every = k (dflex's MM_caching_frequency): substeps 0, k, 2k, ... of a control step
    compute M, the others reuse it. Against MuJoCo's own pieces: each substep solves
    (M(q_s0) + h D) qacc = qfrc_smooth(q, qvel) with s0 the group's first substep, then Euler."""
    mm = mujoco.MjModel.from_xml_path(paths["chain"])
    d = mujoco.MjData(mm)
    S, k = 5, 2  # groups {0, 1}, {2, 3}, {4}
    h = mm.opt.timestep
    sim = ArticulatedSim(load_mjcf(paths["chain"]), dt=S * h, substeps=S, dtype=torch.float64, mass_matrix_every=k)
    _random_state(mm, d, np.random.default_rng(3))
    s = torch.tensor(np.concatenate([d.qpos, d.qvel]))[None]
    for _ in range(3):
        for sub in range(S):
            mujoco.mj_forward(mm, d)
            if sub % k == 0:
                M = np.zeros((mm.nv, mm.nv))
                mujoco.mj_fullM(mm, d, M)
                M += h * np.diag(mm.dof_damping)
            d.qvel[:] += h * np.linalg.solve(M, d.qfrc_smooth)
            mujoco.mj_integratePos(mm, d.qpos, d.qvel, h)
        s, _ = sim.step(s, torch.zeros(1, 0, dtype=torch.float64))
        ref = np.concatenate([d.qpos, d.qvel])
        assert np.abs(s[0].numpy() - ref).max() < 1e-10
    every, _ = ArticulatedSim(load_mjcf(paths["chain"]), dt=S * h, substeps=S, dtype=torch.float64).step(
        s, torch.zeros(1, 0, dtype=torch.float64))
    cached, _ = sim.step(s, torch.zeros(1, 0, dtype=torch.float64))
    assert (every - cached).abs().max() > 1e-6  # the option changes the dynamics


def test_cached_mass_matrix_option_is_checked(paths):
    from mbmix_taichi.errors import InputError, OptionError
    for bad in (0, -16, 1.5, True, "16"):
        with pytest.raises(InputError, match="mass_matrix_every"):
            ArticulatedSim(load_mjcf(paths["chain"]), dt=0.01, mass_matrix_every=bad)
    with pytest.raises(OptionError, match="mass_matrix_every"):
        mt.make("hopper", mass_matrix_every=0)
    assert mt.make("hopper", mass_matrix_every=16).sim.mass_matrix_every == 16


@pytest.mark.parametrize("name", list(MODELS) + ["drop", "branch"])
def test_cached_mass_matrix_derivatives_are_exact(paths, name):
    """With M cached over substeps, its cotangent is summed back to the substep that computed it and
    its tangent carried forward: rows (adjoint) and columns (tangent) agree with each other and
    with central differences, and the adjoint reads no scratch it did not write (its summed
    cotangent lives across substeps)."""
    from mbmix_taichi.physics.base import Simulator
    sim, s, c, gen = _limited_sim_and_inputs(paths, name, 2, seed=4, mass_matrix_every=2)
    Js, Jc = sim.jacobian(s, c)
    Fs, Fc = Simulator.jacobian(sim, s, c)
    scale = max(1.0, float(Fs.abs().max()), float(Fc.abs().max()) if Fc.numel() else 0.0)
    assert (Js - Fs).abs().max() < 1e-12 * scale
    if sim.nu:
        assert (Jc - Fc).abs().max() < 1e-12 * scale
    eps = 1e-6
    for i in range(sim.state_dim):
        e = torch.zeros_like(s)
        e[:, i] = eps
        fd = (sim.step(s + e, c)[0] - sim.step(s - e, c)[0]) / (2 * eps)
        assert (fd - Js[:, :, i]).abs().max() < 1e-6 * scale, i
    for i in range(sim.nu):
        e = torch.zeros_like(c)
        e[:, i] = eps
        fd = (sim.step(s, c + e)[0] - sim.step(s, c - e)[0]) / (2 * eps)
        assert (fd - Jc[:, :, i]).abs().max() < 1e-6 * scale, i
    cot = torch.randn(s.shape, generator=gen, dtype=torch.float64)
    _, clean = sim.step(s, c, record=True)
    _, poisoned = sim.step(s, c, record=True)
    poisoned.W[sim._primal_size(2, sim.tables.keep_adjoint):] = float("nan")
    ga, gb = sim.vjp_tape(clean, cot), sim.vjp_tape(poisoned, cot)
    assert torch.equal(ga[0], gb[0]) and torch.equal(ga[1], gb[1])
    assert (ga[0] - torch.einsum("ni,nij->nj", cot, Js)).abs().max() < 1e-12 * scale * float(cot.abs().sum(1).max())


def test_every_model_runs_on_one_compiled_kernel_set(paths):
    """The kernels read the model as data: models of every kind (hinge/slide/free joints, tendons,
    servos, fluid, contact) share one compiled forward, adjoint and tangent per float type, and a
    new model compiles nothing; each call is one launch whatever the model size."""
    from mbmix_taichi.physics import articulated_kernels as ak
    from mbmix_taichi.physics.articulated import ContactParams
    counts = None
    for name in ["chain", "floating", "tendon", "servo", "fluid", "drop", "branch"]:
        sim = ArticulatedSim(load_mjcf(paths[name]), dt=0.01, substeps=3, dtype=torch.float64,
                             contact=ContactParams() if name in ("drop", "branch") else None, limit_ke=100.0)
        s = torch.tensor(sim.model.qpos0().tolist() + [0.1] * sim.nv, dtype=torch.float64).repeat(2, 1)
        c = torch.full((2, sim.nu), 0.2, dtype=torch.float64)
        before = sim.launches
        out, tape = sim.step(s, c, record=True)
        sim.vjp_tape(tape, torch.ones_like(s))
        sim.jvp(s, c, torch.ones_like(s), torch.ones_like(c))
        sim.jacobian(s, c)  # the adjoint kernel again (by substeps), then the chain kernel
        assert sim.launches - before == 7 and torch.isfinite(out).all()
        # one compiled instance per kernel and value of its `serial` flag (one-env launches, which
        # earlier tests in this process may have made, take the serial one)
        now = {k: len(v._primal.compiled_kernels) for k, v in ak.kernels("f64").items()}
        assert all(n in (1, 2) for n in now.values()), now
        counts = counts or now
        assert now == counts, (name, now, counts)


FRICTION = """<mujoco model="friction">
  <option timestep="0.002" gravity="0 0 0"/>
  <worldbody>
    <body name="slider" pos="0 0 1">
      <joint name="x" type="slide" axis="1 0 0" frictionloss="2"/>
      <geom type="box" size="0.1 0.1 0.1" mass="1"/>
      <body name="arm" pos="0.1 0 0">
        <joint name="h" type="hinge" axis="0 0 1" frictionloss="0.05" damping="0.01"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.02" mass="0.2"/>
      </body>
    </body>
  </worldbody>
  <actuator><motor joint="x"/></actuator>
</mujoco>"""


def test_smoothed_frictionloss_brakes_like_mujoco_and_is_differentiable(tmp_path):
    """Dry friction (smoothed, implicit) decelerates at ~frictionloss / mass and stops without
    chatter, close to MuJoCo's constraint-based frictionloss; its Jacobian matches differences."""
    from mbmix_taichi.physics.mjcf import MJCFWarning
    p = write(tmp_path, "friction", FRICTION)
    with pytest.warns(MJCFWarning, match="smoothed dry friction"):
        model = load_mjcf(p)
    mm = mujoco.MjModel.from_xml_path(p)
    d = mujoco.MjData(mm)
    d.qvel[:] = [1.0, 3.0]
    sim = ArticulatedSim(model, dt=mm.opt.timestep, substeps=1, dtype=torch.float64)
    s = torch.tensor(np.concatenate([d.qpos, d.qvel]))[None]
    u = torch.zeros(1, 1, dtype=torch.float64)
    for _ in range(400):
        mujoco.mj_step(mm, d)
        s, _ = sim.step(s, u)
        assert abs(float(s[0, 2]) - d.qvel[0]) < 0.03 and abs(float(s[0, 3]) - d.qvel[1]) < 0.15
    assert abs(float(s[0, 2])) < 1e-2 and abs(float(s[0, 3])) < 1e-2  # stopped
    x = torch.tensor([[0.1, 0.2, 0.05, -0.3]], dtype=torch.float64)
    c = torch.tensor([[0.4]], dtype=torch.float64)
    Js, Jc = sim.jacobian(x, c)
    eps = 1e-6
    for i in range(4):
        dx = torch.zeros_like(x)
        dx[0, i] = eps
        fd = (sim.step(x + dx, c)[0] - sim.step(x - dx, c)[0])[0] / (2 * eps)
        assert torch.allclose(Js[0][:, i], fd, atol=1e-6), (i, Js[0][:, i], fd)


ELLIPSOID = """<mujoco model="ell">
  <option timestep="0.001"/>
  <worldbody>
    <geom type="plane" size="5 5 0.1"/>
    <body name="e" pos="0 0 0.4" euler="30 20 10">
      <freejoint/>
      <geom type="GEOM" size="SIZE" density="500"/>
    </body>
  </worldbody>
</mujoco>"""


def _drop(tmp_path, geom, size, steps=1500):
    p = write(tmp_path, f"ell_{geom}_{size.replace(' ', '_')}", ELLIPSOID.replace("GEOM", geom).replace("SIZE", size))
    env = mt.make("mjcf", model=p, dt=0.01, substeps=10, dtype="float64", contact_ke=2e4, contact_kd=500)
    for _ in range(steps // 10):
        env.step(torch.zeros(1, 0, dtype=torch.float64, device=env.device))
    return env.get_state()[0].cpu()


def test_ellipsoid_ground_contact(tmp_path):
    """A round ellipsoid lands exactly like the sphere it equals; a tilted flat one feels the
    penalty force at its analytic lowest point: ke * depth when 1 mm in, nothing when 1 mm out."""
    from mbmix_taichi.physics.articulated import ContactParams
    from mbmix_taichi.physics.articulated_model import quat_to_mat

    a = _drop(tmp_path, "ellipsoid", "0.1 0.1 0.1", steps=300)
    b = _drop(tmp_path, "sphere", "0.1", steps=300)
    assert torch.allclose(a, b, atol=1e-9), (a, b)
    p = write(tmp_path, "flat", ELLIPSOID.replace("GEOM", "ellipsoid").replace("SIZE", "0.2 0.12 0.05"))
    model = load_mjcf(p)
    h, ke = 1e-6, 1e4
    sim = ArticulatedSim(model, dt=h, substeps=1, dtype=torch.float64, contact=ContactParams(ke, 0.0, 0.0, 0.0))
    q = model.qpos0()
    n = quat_to_mat(q[3:7]).T @ np.array([0.0, 0.0, 1.0])
    reach = float(np.sqrt(np.sum((np.array([0.2, 0.12, 0.05]) * n) ** 2)))   # centre to lowest point
    m = model.bodies[1].mass
    for depth in (1e-3, -1e-3):
        q[2] = reach - depth
        s = torch.tensor(np.concatenate([q, np.zeros(6)]))[None]
        vz = float(sim.step(s, torch.zeros(1, 0, dtype=torch.float64))[0][0, 9]) / h
        want = -9.81 + (ke * depth / m if depth > 0 else 0.0)
        assert vz == pytest.approx(want, rel=1e-4), (depth, vz, want)


def _long_chain(n):
    """n hinges in one chain (alternating axes): n dofs, bodies nested n deep."""
    body = "<body pos='0 0 -0.05'><joint axis='{}' damping='0.01'/><geom type='capsule' size='0.01 0.02'/>"
    return ("<mujoco><option timestep='0.001' integrator='Euler'/><worldbody>"
            + "".join(body.format("0 1 0" if k % 2 else "1 0 0") for k in range(n))
            + "</body>" * n + "</worldbody></mujoco>")


@pytest.mark.parametrize("vt", [0.05, 3.0])  # tangential speed: sticking (viscous) and slipping (Coulomb)
def test_ellipsoid_contact_derivatives_are_exact(tmp_path, vt):
    """The ellipsoid's lowest point slides over its surface as the body turns: the adjoint (each
    substep's Jacobian from sweeps on tau) and the tangent (unit JVP probes) of a tilted flat
    ellipsoid in contact, spinning and sliding, agree with each other and with central
    differences of the step."""
    from mbmix_taichi.physics.articulated import ContactParams
    from mbmix_taichi.physics.base import Simulator
    p = write(tmp_path, "flat_d", ELLIPSOID.replace("GEOM", "ellipsoid").replace("SIZE", "0.2 0.12 0.05"))
    model = load_mjcf(p)
    sim = ArticulatedSim(model, dt=1e-3, substeps=2, dtype=torch.float64, contact=ContactParams(1e4, 1e2, 50.0, 0.5))
    from mbmix_taichi.physics.articulated_model import quat_to_mat
    q = model.qpos0()
    n = quat_to_mat(q[3:7]).T @ np.array([0.0, 0.0, 1.0])
    q[2] = float(np.sqrt(np.sum((np.array([0.2, 0.12, 0.05]) * n) ** 2))) - 2e-3  # 2 mm in
    qd = np.array([vt, 0.3 * vt, -0.1, 0.5 * vt, -0.7 * vt, 0.2 * vt])
    s = torch.tensor(np.concatenate([q, qd]))[None]
    c = torch.zeros(1, 0, dtype=torch.float64)
    Js, _ = sim.jacobian(s, c)
    Fs, _ = Simulator.jacobian(sim, s, c)
    eps = 1e-7
    fd = torch.stack([(sim.step(s + eps * e, c)[0] - sim.step(s - eps * e, c)[0])[0] / (2 * eps)
                      for e in torch.eye(s.shape[1], dtype=torch.float64)[:, None]], 1)
    scale = float(fd.abs().max())
    assert float((Js[0] - Fs[0]).abs().max()) < 1e-12 * scale
    assert float((Js[0] - fd).abs().max()) < 1e-6 * scale, (Js[0] - fd).abs().max()
    # the rotation moves the lowest point: the Jacobian's orientation columns feel the contact
    free = ArticulatedSim(model, dt=1e-3, substeps=2, dtype=torch.float64, contact=ContactParams(0.0, 0.0, 0.0, 0.5))
    assert float((Js[0][:, 3:7] - free.jacobian(s, c)[0][0][:, 3:7]).abs().max()) > 1e-3 * scale


def test_a_long_chain_past_the_old_limits_agrees_with_mujoco(tmp_path):
    """100 dofs nested 100 deep (the loader used to stop at 64 dofs and depth 32, when kernels
    were generated per model): one generic kernel set simulates it as MuJoCo does."""
    p = write(tmp_path, "long", _long_chain(100))
    mm = mujoco.MjModel.from_xml_path(p)
    d = mujoco.MjData(mm)
    sim = ArticulatedSim(load_mjcf(p), dt=mm.opt.timestep, substeps=1, dtype=torch.float64)
    assert sim.nv == 100
    rng = np.random.default_rng(3)
    d.qpos[:] = 0.1 * rng.normal(size=mm.nq)
    d.qvel[:] = rng.normal(size=mm.nv)
    s = torch.tensor(np.concatenate([d.qpos, d.qvel]))[None]
    for _ in range(50):
        mujoco.mj_step(mm, d)
        s, _ = sim.step(s, torch.zeros(1, 0, dtype=torch.float64))
    assert np.abs(s[0].numpy() - np.concatenate([d.qpos, d.qvel])).max() < 1e-9


def test_a_launch_past_32_bit_indexing_is_refused_before_allocating(paths):
    """The kernels index their workspace with 32-bit integers: too many envs for one launch is
    a clear error, not memory corruption."""
    from mbmix_taichi.errors import InputError
    from mbmix_taichi.physics import articulated
    sim = ArticulatedSim(load_mjcf(paths["chain"]), dt=0.01, substeps=4, dtype=torch.float64)
    n = articulated.INDEX_LIMIT // sim.tables.head["W_GXN"] + 1
    with pytest.raises(InputError, match="32-bit"):
        sim._workspace(n)
    keep = sim.tables.keep_adjoint
    with pytest.raises(InputError, match="32-bit"):
        sim._workspace(articulated.INDEX_LIMIT // sim._workspace_size(1, keep) + 1, keep)
    sim._workspace(2)  # an ordinary call still works


def test_spatial_tendon_limit_is_a_penalty_with_exact_derivatives(tmp_path):
    """A spatial tendon's length limit is a penalty, like joint and fixed-tendon limits (MuJoCo's
    is a constraint, so there is no oracle): with it active, the JVP Jacobian matches central
    differences of our own step and the VJP is its transpose."""
    text = SPATIAL.replace('<spatial name="loop" stiffness="5">',
                           '<spatial name="loop" stiffness="5" limited="true" range="0 0.2">')
    m = load_mjcf(write(tmp_path, "limited", text))
    assert m.spatial_tendons[1].range == (0.0, 0.2)
    kw = dict(dt=0.004, substeps=2, dtype=torch.float64)
    sim = ArticulatedSim(m, limit_ke=500.0, limit_kd=5.0, **kw)
    free = ArticulatedSim(m, limit_ke=0.0, **kw)
    rng = np.random.default_rng(4)
    s = torch.tensor(np.concatenate([0.3 * rng.normal(size=(2, m.nq)), rng.normal(size=(2, m.nv))], 1))
    u = torch.tensor(rng.uniform(-1, 1, size=(2, m.nu)))
    assert (sim.step(s, u)[0] - free.step(s, u)[0]).abs().max() > 1e-3   # the limit acts here
    Js, Jc = sim.jacobian(s, u)
    eps = 1e-6
    for k in range(s.shape[1]):
        e = torch.zeros_like(s)
        e[:, k] = eps
        fd = (sim.step(s + e, u)[0] - sim.step(s - e, u)[0]) / (2 * eps)
        assert (fd - Js[:, :, k]).abs().max() < 1e-6 * max(1.0, float(Js.abs().max()))
    for k in range(u.shape[1]):
        e = torch.zeros_like(u)
        e[:, k] = eps
        fd = (sim.step(s, u + e)[0] - sim.step(s, u - e)[0]) / (2 * eps)
        assert (fd - Jc[:, :, k]).abs().max() < 1e-6 * max(1.0, float(Jc.abs().max()))
    cot = torch.tensor(rng.normal(size=s.shape))
    _, tape = sim.step(s, u, record=True)
    gs, gc = sim.vjp_tape(tape, cot)
    assert (gs - torch.einsum("ni,nij->nj", cot, Js)).abs().max() < 1e-9 * max(1.0, float(gs.abs().max()))
    assert (gc - torch.einsum("ni,nij->nj", cot, Jc)).abs().max() < 1e-9 * max(1.0, float(gc.abs().max()))


def test_a_batch_takes_the_pool_only_where_a_pool_can_help(monkeypatch):
    """Which instance a launch takes: on the CPU a batch takes Taichi's pool unless the pool has one
    thread (TI_CPU_MAX_NUM_THREADS=1, as in a sweep's point: the worker would only take the loop over
    from the caller) or the kernel's launches are smaller than waking a pool (the chain kernel); one
    env is always serial; on a GPU a batch is never serial (a serial loop there is one GPU thread)."""
    import types

    import taichi as ti

    from mbmix_taichi.physics import articulated as art

    calls = []

    class Fake:
        def __init__(self, kind):
            self.kind = kind

        def __call__(self, *args):
            calls.append((self.kind, args[-1]))

    def chosen(arch, threads, small, n):
        monkeypatch.setattr(art.ti_impl, "current_cfg",
                            lambda: types.SimpleNamespace(arch=arch, cpu_max_num_threads=threads))
        b = art._ByBatch("forward", "f64", fixed=(0, 1), n_at=0, small_launches=small)
        b.parallel, b.serial = Fake("parallel"), Fake("serial")
        calls.clear()
        b(n)
        return calls[0]

    assert chosen(ti.x64, 2, False, 64) == ("parallel", False)
    assert chosen(ti.x64, 2, False, 1) == ("serial", True)
    assert chosen(ti.x64, 1, False, 64) == ("serial", True)
    assert chosen(ti.x64, 8, True, 64) == ("serial", True)
    assert chosen(ti.cuda, 1, True, 64) == ("parallel", False)
    assert chosen(ti.cuda, 1, False, 1) == ("serial", True)


def test_a_one_env_launch_runs_serially_and_gives_the_batched_results_to_the_bit(paths):
    """A launch of one env takes the kernels' serial variant (no thread pool), more envs the parallel
    loop: the same code per env, so the step, VJP and JVP of env k alone equal row k of the batch to
    the bit (and its Jacobian to rounding: torch multiplies the substeps' Jacobians)."""
    from mbmix_taichi.physics.articulated import ContactParams

    sim = ArticulatedSim(load_mjcf(paths["branch"]), dt=0.01, substeps=3, dtype=torch.float64,
                         contact=ContactParams(), limit_ke=100.0)
    g = torch.Generator().manual_seed(7)
    s = torch.tensor(sim.model.qpos0().tolist() + [0.0] * sim.nv, dtype=torch.float64).repeat(3, 1)
    s = s + 0.1 * torch.randn(s.shape, generator=g, dtype=torch.float64)
    c = torch.randn(3, sim.nu, generator=g, dtype=torch.float64)
    u, ts, tc = torch.randn_like(s), torch.randn_like(s), torch.randn_like(c)

    def everything(s, c, u, ts, tc):
        out, tape = sim.step(s, c, record=True)
        return (out, *sim.vjp_tape(tape, u), sim.jvp(s, c, ts, tc), *sim.jacobian(s, c))

    batch = everything(s, c, u, ts, tc)
    kinds = {type(b).__name__ for b in (sim._fwd, sim._adj, sim._tan)}
    assert kinds == {"_ByBatch"}
    for k in range(3):
        alone = everything(*(x[k:k + 1] for x in (s, c, u, ts, tc)))
        for i, (a, b) in enumerate(zip(alone, batch)):
            if i < 4:  # the kernels' outputs: to the bit
                assert torch.equal(a[0], b[k]), (k, i, (a[0] - b[k]).abs().max())
            else:  # the Jacobian's substeps are chained by torch's batched products, whose blocking follows the batch
                assert (a[0] - b[k]).abs().max() <= 1e-12 * b[k].abs().max(), (k, i)
