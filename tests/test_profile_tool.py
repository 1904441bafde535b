"""tools/profile_articulated_derivatives.py builds, for every stage it names, a variant of the
articulated kernels with that stage's call left out: each variant must parse and import, and must
differ from the kernels' source by exactly that call put behind `ti.static(False)`."""
import importlib
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="module")
def tool():
    sys.path.insert(0, str(TOOLS))
    try:
        yield importlib.import_module("profile_articulated_derivatives")
    finally:
        sys.path.remove(str(TOOLS))


@pytest.mark.parametrize("kernel", ["forward", "adjoint", "jacobian", "tangent"])
def test_every_stage_variant_builds(tool, kernel):
    from mbmix_taichi.physics import articulated_kernels as ak

    plain = Path(ak.__file__).read_text()
    for stage, call in tool.STAGES[kernel].items():
        mod = tool.variant_module(kernel, stage)
        src = Path(mod.__file__).read_text()
        assert hasattr(mod, "kernels"), stage
        assert src.count("if ti.static(False):") == plain.count("if ti.static(False):") + 1, stage
        if call is not None:
            assert src.count(call) == plain.count(call), stage  # moved behind the branch, not dropped
            at = src.index("if ti.static(False):")
            assert call in src[at:at + 200].splitlines()[1], stage
