"""Every MJCF model the installed MuJoCo, Gymnasium and dm_control packages ship, as a new
user would try them: each either loads and agrees with MuJoCo (masses, inertias; trajectories
with contacts and limits off, Euler, to 1e-9; Jacobians to FD noise), or is refused with a
one-line error naming the file and the feature.

MuJoCo's reference runs with contacts, limits and joint frictionloss off: those are constraints
in MuJoCo, and our penalty contact, penalty limits and smoothed friction are documented (and
warned) approximations of them, tested on their own in test_articulated.py.

dm_control is found without importing it (its wheel pins another MuJoCo; install it with
``pip install --no-deps dm_control`` to measure its suite: only its XML files are read).
Trajectories are checked for every accepted model (the articulated kernels are generic, so a
larger model costs run time, not compile time); ``MBMIX_SHIPPED_MAX_NV`` caps their dofs.
"""
import glob
import importlib.util
import os
import warnings

import numpy as np
import pytest
import torch

mujoco = pytest.importorskip("mujoco")

from mbmix_taichi.physics.articulated import ArticulatedSim  # noqa: E402
from mbmix_taichi.physics.articulated_model import quat_to_mat  # noqa: E402
from mbmix_taichi.physics.mjcf import MJCFError, load_mjcf  # noqa: E402


def shipped_models():
    files = []
    try:
        import gymnasium
        files += sorted(glob.glob(os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", "*.xml")))
    except ImportError:
        pass
    files += sorted(glob.glob(os.path.join(os.path.dirname(mujoco.__file__), "**", "*.xml"), recursive=True))
    spec = importlib.util.find_spec("dm_control")
    if spec is not None and spec.submodule_search_locations:
        for where in spec.submodule_search_locations:
            files += sorted(glob.glob(os.path.join(where, "suite", "*.xml")))
    return files


FILES = shipped_models()
MAX_NV = int(os.environ.get("MBMIX_SHIPPED_MAX_NV", "100000"))


def _id(f):
    parts = f.split(os.sep)
    return f"{parts[-4] if 'assets' in parts else parts[-3]}/{parts[-1]}"


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_mjcf(path)


def _euler_no_contact_no_limits(path):
    mm = mujoco.MjModel.from_xml_path(path)
    mm.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER
    D = mujoco.mjtDisableBit
    mm.opt.disableflags |= int(D.mjDSBL_CONTACT) | int(D.mjDSBL_LIMIT) | int(D.mjDSBL_FRICTIONLOSS)
    return mm


def _without_frictionloss(m):
    for j in m.joints:
        j.frictionloss = 0.0
    return m


def _random_state(mm, d, rng, vscale=0.5):
    d.qpos[:] = mm.qpos0 + 0.1 * rng.normal(size=mm.nq)
    for j in range(mm.njnt):
        if mm.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            a = mm.jnt_qposadr[j]
            d.qpos[a + 3:a + 7] /= np.linalg.norm(d.qpos[a + 3:a + 7])
    d.qvel[:] = vscale * rng.normal(size=mm.nv)


def _ctrl(mm, rng):
    lo = np.where(mm.actuator_ctrllimited, mm.actuator_ctrlrange[:, 0], -1.0)
    hi = np.where(mm.actuator_ctrllimited, mm.actuator_ctrlrange[:, 1], 1.0)
    return rng.uniform(lo, hi)


def _mujoco_reference(mm, seed=0, steps=100):
    """(x0, controls, states) of a MuJoCo rollout from a random state, with the largest initial
    velocity scale whose rollout MuJoCo itself keeps stable (dm_control's fish, with its
    explicit fluid drag on milligram fins, diverges from 0.5 rad/s)."""
    for vscale in (0.5, 0.05, 0.005):
        d = mujoco.MjData(mm)
        rng = np.random.default_rng(seed)
        _random_state(mm, d, rng, vscale)
        x0 = np.concatenate([d.qpos, d.qvel])
        us, xs = [], []
        for _ in range(steps):
            us.append(_ctrl(mm, rng))
            d.ctrl[:] = us[-1]
            mujoco.mj_step(mm, d)
            xs.append(np.concatenate([d.qpos, d.qvel]))
        if d.warning[int(mujoco.mjtWarning.mjWARN_BADQACC)].number == 0 and np.all(np.isfinite(xs)):
            return x0, us, xs, vscale, rng
    pytest.fail("MuJoCo's own rollout diverges from every initial state tried")


def test_some_models_are_shipped():
    assert FILES, "no MuJoCo models found in the installed packages"


def _small_enough(path) -> bool:
    """Accepted models up to MAX_NV dofs: the trajectory and Jacobian test compiles a simulator
    per model (decided at collection by the loader alone, no Taichi; refusals are the load test's)."""
    try:
        return _load(path).nv <= MAX_NV
    except MJCFError:
        return False


TRAJ_FILES = [f for f in FILES if _small_enough(f)]


@pytest.mark.parametrize("path", FILES, ids=[_id(f) for f in FILES])
def test_shipped_model_loads_with_mujocos_masses_or_is_refused_clearly(path):
    try:
        m = _load(path)
    except MJCFError as e:
        msg = str(e)
        assert "\n" not in msg and path in msg, msg
        assert any(w in msg for w in ("not simulated", "nothing to simulate", "cannot compile", "limit")), msg
        return
    mm = _euler_no_contact_no_limits(path)
    assert (m.nq, m.nv, m.nu, len(m.bodies)) == (mm.nq, mm.nv, mm.nu, mm.nbody)
    for b in range(1, mm.nbody):
        assert m.bodies[b].mass == pytest.approx(mm.body_mass[b], rel=1e-12, abs=1e-15)
        R = quat_to_mat(mm.body_iquat[b])
        np.testing.assert_allclose(m.bodies[b].inertia, R @ np.diag(mm.body_inertia[b]) @ R.T, atol=1e-12)


@pytest.mark.parametrize("path", TRAJ_FILES, ids=[_id(f) for f in TRAJ_FILES])
def test_shipped_model_trajectories_and_jacobians_agree_with_mujoco(path):
    m = _without_frictionloss(_load(path))
    mm = _euler_no_contact_no_limits(path)
    sim = ArticulatedSim(m, dt=mm.opt.timestep, substeps=1, dtype=torch.float64, contact=None, limit_ke=0.0)
    x0, us, xs, vscale, rng = _mujoco_reference(mm)
    s = torch.tensor(x0)[None]
    err = 0.0
    for u, x in zip(us, xs):
        s, _ = sim.step(s, torch.tensor(u)[None])
        err = max(err, float(np.abs(s[0].numpy() - x).max()))
    assert err < 1e-9, err
    if any(j.type == "free" for j in m.joints):
        return  # mjd_transitionFD differentiates in the tangent space of the quaternion
    d = mujoco.MjData(mm)
    for _ in range(2):
        _random_state(mm, d, rng, vscale)
        u = _ctrl(mm, rng)
        d.ctrl[:] = u
        A = np.zeros((2 * mm.nv, 2 * mm.nv))
        B = np.zeros((2 * mm.nv, mm.nu))
        mujoco.mjd_transitionFD(mm, d, 1e-7, True, A, B, None, None)
        Js, Jc = sim.jacobian(torch.tensor(np.concatenate([d.qpos, d.qvel]))[None], torch.tensor(u)[None])
        assert np.abs(Js[0].numpy() - A).max() < 1e-6 * max(1.0, np.abs(A).max())
        if mm.nu:
            assert np.abs(Jc[0].numpy() - B).max() < 1e-6 * max(1.0, np.abs(B).max())
