"""tools/diffrl_shac.py: a DiffRL SHAC training log becomes a run directory our plots read."""
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from mbmix_taichi.viz.plot import load_run

TOOLS = Path(__file__).resolve().parents[1] / "tools"

LOG = """Setting seed: 0
num_envs =  256
value iter 1/16, loss = 478.258514value iter 2/16, loss = 466.684967
iter 1: ep loss inf, ep discounted loss inf, ep len 0.0, fps total 400.00, value loss 138.11, grad norm before clip 38.71, grad norm after clip 1.00
iter 2: ep loss -17.29, ep discounted loss -20.56, ep len 53.4, fps total 800.00, value loss 190.81, grad norm before clip 40.54, grad norm after clip 1.00
value iter 16/16, loss = 390.141876 save best policy with loss -21.61
iter 3: ep loss -21.61, ep discounted loss -23.32, ep len 60.6, fps total 1600.00, value loss 220.38, grad norm before clip 13.42, grad norm after clip 1.00
"""


@pytest.fixture()
def tool(monkeypatch):
    monkeypatch.syspath_prepend(str(TOOLS))
    sys.modules.pop("diffrl_shac", None)
    return importlib.import_module("diffrl_shac")


def test_log_becomes_a_run_directory(tool, tmp_path):
    (tmp_path / "shac.log").write_text(LOG)
    out = tool.log_to_run(str(tmp_path / "shac.log"), str(tmp_path / "run"), "hopper", 2, envs=256, window=32, mm=16)
    run = load_run(out)
    assert (run.task, run.algo, run.seed) == ("hopper", "diffrl-shac", 2)
    assert run.task_options == {"mass_matrix_every": 16}
    np.testing.assert_array_equal(run.columns["iteration"], [1, 2, 3])
    np.testing.assert_array_equal(run.columns["env_steps"], [8192, 16384, 24576])
    # wall time summed from the printed fps: 8192 steps at 400, 800, 1600 per second
    np.testing.assert_allclose(run.columns["wall_time"], [20.48, 30.72, 35.84])
    # the return is minus DiffRL's loss; no episode had ended at iteration 1
    assert np.isnan(run.columns["return"][0])
    np.testing.assert_allclose(run.columns["return"][1:], [17.29, 21.61])
    np.testing.assert_allclose(run.columns["episode_length"], [0.0, 53.4, 60.6])


def test_a_log_without_epochs_is_refused(tool, tmp_path):
    (tmp_path / "other.log").write_text("Setting seed: 0\nTraceback (most recent call last):\n")
    with pytest.raises(SystemExit, match="DiffRL SHAC log"):
        tool.log_to_run(str(tmp_path / "other.log"), str(tmp_path / "run"), "hopper", 0, envs=256, window=32, mm=16)
    assert not (tmp_path / "run").exists()
