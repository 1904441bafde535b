"""Task discovery: which Task classes exist, by name.

A task is any subclass of :class:`~mbmix_taichi.task.Task` that declares a ``name`` of its
own, defined in a built-in module of ``tasks/``, in a ``--tasks-dir`` folder, in a package of
the ``mbmix_taichi.tasks`` entry-point group, or in your own code before it is looked up. The
registry imports those modules and then reads the class tree (``Task.__subclasses__``); the
Task base class knows nothing of the registry. A name declared by two classes resolves to the
one found last (classes of one parent in definition order, subclasses after their parents).
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

from .errors import MbmixError, UnknownTaskError
from .task import Task

_LOADED = False
_EXTRA: dict = {}  # entry points that name a class of another base (duck-typed tasks)


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
            obj = ep.load()  # a Task subclass or a module defining some
            if isinstance(obj, type) and getattr(obj, "name", "") and not issubclass(obj, Task):
                _EXTRA[obj.name] = obj
    except Exception as exc:  # a broken third-party package must not hide the built-in tasks
        print(f"warning: could not load task entry points: {exc}", file=sys.stderr)


def _tasks() -> dict:
    """name -> class of every named Task subclass defined so far."""
    _load_builtin()
    found = dict(_EXTRA)
    stack = list(reversed(Task.__subclasses__()))
    while stack:
        cls = stack.pop()
        if cls.__dict__.get("name"):
            found[cls.name] = cls
        stack.extend(reversed(cls.__subclasses__()))
    return found


def load_tasks_dir(path) -> list[str]:
    """Import every ``*.py`` in ``path``; return the names of the tasks they added."""
    path = Path(path)
    if not path.is_dir():
        raise MbmixError(f"tasks dir {str(path)!r} is not a folder")
    before = set(_tasks())
    for file in sorted(path.glob("*.py")):
        name = f"mbmix_user_tasks_{file.stem}"
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise MbmixError(f"could not import task file {file}: {exc}") from exc
    return sorted(set(_tasks()) - before)


def list_tasks() -> list[str]:
    return sorted(_tasks())


def get_task_class(name: str):
    tasks = _tasks()
    if name not in tasks:
        raise UnknownTaskError(f"unknown task {name!r}; available tasks: {', '.join(sorted(tasks))}")
    return tasks[name]
