"""Task discovery: built-in modules of ``tasks/``, a user's ``--tasks-dir`` folder, and the
``mbmix_taichi.tasks`` entry-point group of other installed packages."""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

from .errors import MbmixError, UnknownTaskError

_TASKS: dict = {}
_LOADED = False


def _register(cls) -> None:
    _TASKS[cls.name] = cls


def _load_builtin() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import tasks as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="mbmix_taichi.tasks"):
            obj = ep.load()  # a Task subclass or a module defining some; either registers itself
            if isinstance(obj, type) and getattr(obj, "name", ""):
                _register(obj)
    except Exception as exc:  # a broken third-party package must not hide the built-in tasks
        print(f"warning: could not load task entry points: {exc}", file=sys.stderr)


def load_tasks_dir(path) -> list[str]:
    """Import every ``*.py`` in ``path``; return the names of the tasks they registered."""
    path = Path(path)
    if not path.is_dir():
        raise MbmixError(f"tasks dir {str(path)!r} is not a folder")
    _load_builtin()
    before = set(_TASKS)
    for file in sorted(path.glob("*.py")):
        name = f"mbmix_user_tasks_{file.stem}"
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise MbmixError(f"could not import task file {file}: {exc}") from exc
    return sorted(set(_TASKS) - before)


def list_tasks() -> list[str]:
    _load_builtin()
    return sorted(_TASKS)


def get_task_class(name: str):
    _load_builtin()
    if name not in _TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; available tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]
