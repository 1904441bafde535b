"""Our hopper and cheetah against DiffRL's own environments: rollouts of DiffRL's dflex
(CPU, float32; tests/data/dflex_*.npz, written by `tools/compare_dflex.py record` from a stochastic
reset under 200 random actions, contact on) replayed on our simulator from the same state."""
import importlib.util
from pathlib import Path

import pytest

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
    control steps (800 substeps through ground contact and joint limits). The other caching setting
    is a real dynamics difference, and the comparison sees it from the first steps."""
    tool = _tool()
    rec = tool.load(str(ROOT / "tests" / "data" / f"dflex_{task}_mm{mm}.npz"))
    assert str(rec["task"]) == task and int(rec["mm"]) == mm
    rec = {**rec, "states": rec["states"][:51], "actions": rec["actions"][:50], "rewards": rec["rewards"][:50]}
    same = tool.differences(rec, mm)
    assert same[10][0] < 1e-4 and same[50][0] < 2e-4, same
    assert same[50][1] < 1e-4, same
    other = tool.differences(rec, 16 if mm == 1 else 1)
    assert other[10][0] > 5e-3, other
