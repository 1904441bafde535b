"""Our hopper and cheetah against DiffRL's own environments: rollouts of DiffRL's dflex
(CPU, float32; tests/data/dflex_*.npz, written by `tools/compare_dflex.py record` from a stochastic
reset under 200 random actions, contact on) replayed on our simulator from the same state."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from mbmix_taichi.physics.mjcf import load_mjcf
from mbmix_taichi.tasks._legged import dflex_mass_properties

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("_test_compare_dflex", ROOT / "tools" / "compare_dflex.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("task", ["hopper", "cheetah"])
@pytest.mark.parametrize("mm", [1, 16])
def test_rollout_matches_diffrls_dflex(task, mm):
    """Same mass-matrix caching as the recording: states agree to dflex's float32 rounding over 50
    control steps (800 substeps through ground contact and joint limits), and so does the VJP of 8
    steps. The other caching setting is a real dynamics difference, and the comparison sees it
    from the first steps."""
    tool = _tool()
    rec = tool.load(str(ROOT / "tests" / "data" / f"dflex_{task}_mm{mm}.npz"))
    assert str(rec["task"]) == task and int(rec["mm"]) == mm
    rec = {**rec, "states": rec["states"][:51], "actions": rec["actions"][:50], "rewards": rec["rewards"][:50]}
    same = tool.differences(rec, mm)
    assert same[10][0] < 1e-4 and same[50][0] < 2e-4, same
    assert same[50][1] < 1e-4, same
    other = tool.differences(rec, 16 if mm == 1 else 1)
    assert other[10][0] > 5e-3, other
    # and the gradients: dflex's VJP (its tape, through torch) over 8 control steps from step 20
    assert max(tool.vjp_difference(rec, mm)) < 1e-5


def test_ant_needs_dflexs_mass_properties_to_match_diffrls_ant():
    """DiffRL's ant (dflex, MM_caching_frequency 16, recorded like the others): dflex rotates and
    sums shape inertias elementwise, so its ant's legs are other bodies than MuJoCo's; with
    dflex_inertia our ant's first control step agrees to ~1e-3 (the rest is dflex's free-joint
    integration scheme, not reproduced), with MuJoCo's mass properties it is 0.75 off."""
    tool = _tool()
    rec = tool.load(str(ROOT / "tests" / "data" / "dflex_ant_mm16.npz"))
    rec = {**rec, "states": rec["states"][:11], "actions": rec["actions"][:10], "rewards": rec["rewards"][:10]}
    dflex = tool.differences(rec, 16, dflex_inertia=True)
    mujoco = tool.differences(rec, 16, dflex_inertia=False)
    assert dflex[1][0] < 3e-3 and dflex[10][0] < 0.1, dflex
    assert mujoco[1][0] > 0.3, mujoco


def test_dflex_mass_properties_of_a_rotated_capsule(tmp_path):
    """dflex_mass_properties keeps dflex's elementwise rotation: a capsule from (0, 0, 0) to
    (.16, -.16, -.16) gets its along-x inertia diag(Ib, Ia, Ia) multiplied elementwise by R and
    R^T, R dflex's fromto rotation (x onto the capsule's direction, about normalize(d x e_x) by
    -acos(d . e_x)): diag(R_ii^2 I_ii), no off-diagonal, where the true inertia has off-diagonal
    terms; the mass and centre are the true ones."""
    path = tmp_path / "capsule.xml"
    path.write_text("""<mujoco><worldbody><body name="b"><freejoint/>
      <geom type="capsule" fromto="0 0 0 .16 -.16 -.16" size="0.04" density="1000"/></body></worldbody></mujoco>""")
    model = load_mjcf(str(path))
    true_mass, true_I = model.bodies[1].mass, np.array(model.bodies[1].inertia, float)
    dflex_mass_properties(model, 1000.0)
    b = model.bodies[1]
    r, length = 0.04, 0.16 * math.sqrt(3)
    ms, mc = 1000 * 4 / 3 * math.pi * r ** 3, 1000 * math.pi * r * r * length
    ia = mc * (0.25 * r * r + length ** 2 / 12) + ms * (0.4 * r * r + 0.375 * r * length + 0.25 * length ** 2)
    ib = (0.5 * mc + 0.4 * ms) * r * r
    d = np.array([1.0, -1.0, -1.0]) / math.sqrt(3)
    axis = np.cross(d, [1.0, 0.0, 0.0])
    axis /= np.linalg.norm(axis)
    ang = -math.acos(d[0])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    R = np.eye(3) + math.sin(ang) * k + (1 - math.cos(ang)) * k @ k
    assert np.allclose(R @ [1.0, 0.0, 0.0], d)
    assert abs(b.mass - true_mass) < 1e-9 * true_mass and np.allclose(b.ipos, [0.08, -0.08, -0.08])
    assert np.allclose(b.inertia, np.diag(np.diag(R) ** 2 * [ib, ia, ia]), rtol=1e-12)
    assert abs(true_I[0, 1]) > 0.1 * abs(true_I[0, 0])  # the true inertia is not diagonal here
