"""mbmix-taichi: differentiable Taichi simulators with exact per-step Jacobians, and MB-MIX."""
import os as _os

# taichi prints a banner on import; keep our command output clean (set it to true to see it)
_os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "false")
from .env import Env, make
from .errors import ForkError, InputError, MbmixError, OptionError, SimulationError, UnknownTaskError
from .registry import list_tasks, load_tasks_dir
from .task import Task

__version__ = "0.1.0"
__all__ = ["Env", "make", "list_tasks", "load_tasks_dir", "Task", "MbmixError", "InputError",
           "OptionError", "SimulationError", "UnknownTaskError", "ForkError"]
