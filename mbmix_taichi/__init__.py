"""mbmix-taichi: differentiable Taichi simulators with exact per-step Jacobians, and MB-MIX.

The package face is lazy (PEP 562): ``import mbmix_taichi`` imports neither torch nor
taichi; ``mt.make``, ``mt.Env``, ``mt.Task``... import what they need on first use, so the
command line starts fast.
"""
import importlib as _importlib
import importlib.abc as _abc
import importlib.util as _util
import os as _os
import sys as _sys

from .errors import ForkError, InputError, MbmixError, OptionError, SimulationError, UnknownTaskError

# taichi prints a banner on import; keep our command output clean (set it to true to see it)
_os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "false")
# torch's OpenMP threads busy-wait after each parallel op; between torch ops (the learner, the
# Jacobian's chained matmuls) the simulators' Taichi threads then share the cores with spinning
# threads: a 64-env hopper Jacobian took 1.6x the CPU time and SHAC on ant ~10% more. Passive
# waiting stops that. It takes effect only if set before torch is first imported (OpenMP reads
# it when torch loads it), so set OMP_WAIT_POLICY yourself if you import torch before this
# package; a value already set is kept. (docs/benchmarks_articulated.md, session 16)
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = ["Env", "make", "list_tasks", "load_tasks_dir", "Task", "MbmixError", "InputError",
           "OptionError", "SimulationError", "UnknownTaskError", "ForkError"]

# -- running from a source checkout ----------------------------------------------------------
# physics/, tasks/ and assets/ sit at the top of the repository and are mapped into this
# package at install time (pyproject.toml, [tool.setuptools.package-dir]). When Python runs
# with the current directory at the clone root, this source folder shadows the installed
# package and has no such subfolders; the finder below maps them from the clone root then.
# An installed wheel has them inside the package, so the finder is not installed there.
_MAPPED = ("physics", "tasks", "assets")
_HERE = _os.path.dirname(_os.path.abspath(__file__))
_ROOT = _os.path.dirname(_HERE)


class _SourceTreeFinder(_abc.MetaPathFinder):
    """Finds mbmix_taichi.{physics,tasks,assets} in ../physics, ../tasks, ../assets."""

    def find_spec(self, fullname, path=None, target=None):
        pkg, _, name = fullname.rpartition(".")
        if pkg != __name__ or name not in _MAPPED:
            return None
        folder = _os.path.join(_ROOT, name)
        init = _os.path.join(folder, "__init__.py")
        if not _os.path.isfile(init):
            return None
        return _util.spec_from_file_location(fullname, init, submodule_search_locations=[folder])


def _in_source_tree() -> bool:
    return (not _os.path.isdir(_os.path.join(_HERE, "physics"))
            and _os.path.isfile(_os.path.join(_ROOT, "pyproject.toml"))
            and all(_os.path.isfile(_os.path.join(_ROOT, n, "__init__.py")) for n in _MAPPED))


if _in_source_tree() and not any(isinstance(f, _SourceTreeFinder) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _SourceTreeFinder())

# -- lazy public names -----------------------------------------------------------------------
_LAZY = {"Env": ".env", "make": ".env", "list_tasks": ".registry", "load_tasks_dir": ".registry",
         "Task": ".task"}
_SUBMODULES = {"physics", "tasks", "assets", "learner", "adapters", "env", "registry", "task", "viz"}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
