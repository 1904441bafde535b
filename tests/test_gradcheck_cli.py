"""`mbmix-taichi gradcheck`: passes on a small cloth, exits 1 beyond its tolerance, refuses
steps that are not positive numbers."""
import pytest
from click.testing import CliRunner

from mbmix_taichi.cli import main

SMALL = ["-o", "resolution=4", "-o", "substeps=4", "--eps", "1e-6,1e-7,1e-8"]


def _invoke(*args):
    return CliRunner().invoke(main, ["gradcheck", "cloth-fold", *args])


def test_passes_and_fails_by_its_tolerance():
    res = _invoke(*SMALL)
    assert res.exit_code == 0, res.output
    assert "OK" in res.output and "LARGE" not in res.output and "Jacobian (14 columns)" in res.output
    res = _invoke(*SMALL, "--tol", "1e-30")
    assert res.exit_code == 1, res.output
    assert "LARGE ERRORS" in res.output and "OK" not in res.output


@pytest.mark.parametrize("eps", ["0", "-1e-7", "1e-7,0", "nan", "abc", ","])
def test_rejects_bad_steps(eps):
    res = _invoke("--eps", eps)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: --eps must be") and "Traceback" not in res.output
    assert "nan" not in res.output.split("got")[0]


def test_rejects_bad_tolerance():
    res = _invoke("--tol", "0")
    assert res.exit_code == 2 and res.output.startswith("error: --tol"), res.output
