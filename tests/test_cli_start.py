"""Running from a source checkout, the lazy package face and the `tasks` table.

* The README's API snippet runs with the current directory at the clone root. After
  `pip install .` the source folder `mbmix_taichi/` shadows the installed package there and
  has no physics/tasks/assets; the subprocess below reproduces that without an install:
  `python -S` skips the .pth files (so no editable-install finder) and the source root is
  first on sys.path, as '' is for `python` started in the clone root.
* An installed wheel's layout (physics/ etc. inside the package) imports from elsewhere.
* `--help` and `tasks` import neither torch nor taichi; `tasks` prints the dims and episode
  length of the env that `mt.make` builds.
"""
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"## The API in ten lines\s+```python\n(.*?)```", text, re.S)
    assert m, "README has no API snippet"
    return m.group(1).replace("num_envs=16", "num_envs=2").replace("torch.zeros(16,", "torch.zeros(2,")


def _run_isolated(code: str, cwd: Path, first: Path | None = None) -> subprocess.CompletedProcess:
    """python -S (no .pth files, so no editable finder) with the site-packages dirs appended
    and `first` (default: '' = cwd) at the front of sys.path."""
    dirs = [d for d in site.getsitepackages() if Path(d).is_dir()]
    head = repr(str(first)) if first else "''"
    prelude = f"import sys; sys.path[:] = [{head}] + [p for p in sys.path if p] + {dirs!r}\n"
    return subprocess.run([sys.executable, "-S", "-c", prelude + code], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_readme_snippet_from_clone_root():
    code = _readme_snippet() + (
        "\nassert mt.__file__.startswith(%r), mt.__file__\n"
        "assert g_s.shape == s.shape and J_a.shape[-1] == env.act_dim\n"
        "import mbmix_taichi.physics.cloth, mbmix_taichi.assets\n"
        "print('ok', sorted(mt.list_tasks()))\n" % str(ROOT / "mbmix_taichi"))
    res = _run_isolated(code, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ok" in res.stdout and "cloth-fold" in res.stdout


def test_installed_wheel_layout(tmp_path):
    site_dir = tmp_path / "site"
    pkg = site_dir / "mbmix_taichi"
    shutil.copytree(ROOT / "mbmix_taichi", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("physics", "tasks", "assets"):
        shutil.copytree(ROOT / name, pkg / name, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys, mbmix_taichi as mt\n"
            "import mbmix_taichi.tasks, mbmix_taichi.physics\n"
            "assert mbmix_taichi.tasks.__file__.startswith(%r), mbmix_taichi.tasks.__file__\n"
            "assert not any(type(f).__name__ == '_SourceTreeFinder' for f in sys.meta_path)\n"
            "print('ok', len(mt.list_tasks()))\n" % str(pkg))
    res = _run_isolated(code, cwd=tmp_path, first=site_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ok 10" in res.stdout


@pytest.mark.parametrize("args", [["--help"], ["tasks"], ["train", "--help"]])
def test_cli_starts_without_torch_or_taichi(args):
    code = ("import sys\nfrom mbmix_taichi.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "heavy = [m for m in ('torch', 'taichi', 'numpy') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tests", capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_import_sets_passive_openmp_waiting_before_torch_loads(preset):
    """Importing the package asks OpenMP for passive waiting (torch's spinning threads otherwise
    share the cores with the simulators' between torch ops); a value the user set is kept, and
    torch, imported after, runs with it."""
    import os
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = ("import os, sys\nimport mbmix_taichi\nassert 'torch' not in sys.modules\n"
            "import torch\nprint(os.environ['OMP_WAIT_POLICY'], torch.ones(3).sum().item())\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tests", capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == [preset or "PASSIVE", "3.0"]


def test_tasks_table_matches_built_envs():
    import mbmix_taichi as mt
    from mbmix_taichi.catalog import BUILTIN_TASKS
    from mbmix_taichi.registry import get_task_class

    builtin = [n for n in mt.list_tasks() if get_task_class(n).__module__.startswith("mbmix_taichi.tasks.")]
    assert sorted(builtin) == sorted(BUILTIN_TASKS)
    for name, (sd, od, ad, T, desc) in BUILTIN_TASKS.items():
        assert desc == get_task_class(name).description, name
        if sd is None:
            with pytest.raises(mt.MbmixError):
                mt.make(name, num_envs=1)
            continue
        env = mt.make(name, num_envs=1)
        assert (env.state_dim, env.obs_dim, env.act_dim, env.episode_length) == (sd, od, ad, T), name
