"""The layers import downwards only: assets -> physics -> tasks -> env -> learner -> viz/cli.

* Importing the simulators (``mbmix_taichi.physics``) or the task modules loads neither the
  env API, the registry, the learner, the adapters, the visualisation nor the CLI.
* No library module imports the CLI package (checked in the source text).
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UPPER = ("mbmix_taichi.env", "mbmix_taichi.registry", "mbmix_taichi.learner", "mbmix_taichi.adapters",
         "mbmix_taichi.viz", "mbmix_taichi.cli")


def _loaded_after(module: str) -> list:
    code = ("import importlib, json, sys\n"
            f"importlib.import_module({module!r})\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('mbmix_taichi'))))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tests", capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    import json

    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["mbmix_taichi.physics", "mbmix_taichi.physics.cloth",
                                    "mbmix_taichi.physics.articulated", "mbmix_taichi.tasks",
                                    "mbmix_taichi.tasks.cloth_fold", "mbmix_taichi.tasks.hopper"])
def test_lower_layers_import_alone(module):
    loaded = _loaded_after(module)
    upper = [m for m in loaded if m.startswith(UPPER)]
    assert not upper, f"importing {module} imported {upper}"
    if module.startswith("mbmix_taichi.physics"):
        # physics needs only physics, the errors, Taichi's initialisation and the bundled assets
        allowed = ("mbmix_taichi.physics", "mbmix_taichi.errors", "mbmix_taichi._ti", "mbmix_taichi.assets")
        others = [m for m in loaded if m != "mbmix_taichi" and not m.startswith(allowed)]
        assert not others, f"importing {module} imported {others}"


def test_no_library_module_imports_the_cli():
    pattern = re.compile(r"^\s*(from\s+(mbmix_taichi\.cli|\.+cli)\b|import\s+mbmix_taichi\.cli\b)", re.M)
    library = [p for folder in ("mbmix_taichi", "physics", "tasks", "assets") for p in (ROOT / folder).rglob("*.py")
               if "cli" not in p.relative_to(ROOT).parts]
    assert library
    offenders = [str(p.relative_to(ROOT)) for p in library if pattern.search(p.read_text())]
    assert not offenders, offenders
