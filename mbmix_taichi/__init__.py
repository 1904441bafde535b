"""mbmix-taichi: differentiable Taichi simulators with exact per-step Jacobians, and MB-MIX."""
from .env import Env, make
from .errors import InputError, MbmixError, OptionError, SimulationError, UnknownTaskError
from .registry import list_tasks, load_tasks_dir
from .task import Task

__version__ = "0.1.0"
__all__ = ["Env", "make", "list_tasks", "load_tasks_dir", "Task", "MbmixError", "InputError",
           "OptionError", "SimulationError", "UnknownTaskError"]
