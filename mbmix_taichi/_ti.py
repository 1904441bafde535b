"""Taichi initialisation: one arch per process, chosen without probing OpenGL.

`ti.init(arch=ti.gpu)` probes OpenGL/Vulkan and segfaulted on headless machines, so "auto"
asks torch whether CUDA is there and picks `cuda`, otherwise `x64`/`arm64` (the CPU).
The environment variable TI_ARCH (cuda, x64, arm64, cpu, vulkan, metal) overrides it.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings

import torch

from .errors import ForkError, OptionError

_ARCH = None  # the arch name taichi was initialised with
#: pid of the process that initialised taichi; set in a child forked after that (see check_not_forked)
_FORKED_FROM = None

_ARCHS = ("cpu", "x64", "arm64", "cuda", "vulkan", "metal")


def _after_fork_in_child():
    global _FORKED_FROM
    if _ARCH is not None and _FORKED_FROM is None:
        _FORKED_FROM = os.getppid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def check_not_forked() -> None:
    """Taichi's runtime (its CPU thread pool, a CUDA context) does not survive fork(): a kernel
    launched in a forked child waits forever. Refuse at once instead of hanging."""
    if _FORKED_FROM is not None:
        raise ForkError(
            f"this process was forked from process {_FORKED_FROM} after taichi was initialised there; "
            "taichi cannot run in a forked child (it would hang). Start worker processes with the 'spawn' or "
            "'forkserver' method: multiprocessing.get_context('spawn'), gymnasium AsyncVectorEnv(..., "
            "context='spawn'), stable-baselines3 SubprocVecEnv(..., start_method='spawn')")


def _arch_name(arch: str) -> str:
    env = os.environ.get("TI_ARCH")
    if env:
        arch = env
    if not isinstance(arch, str):
        raise OptionError(f"arch must be a string, got {arch!r}")
    arch = arch.strip().lower()
    if arch == "auto":
        arch = "cuda" if torch.cuda.is_available() else "cpu"
    if arch not in _ARCHS:
        where = f"the environment variable TI_ARCH={env!r}" if env else f"arch {arch!r}"
        raise OptionError(f"unknown taichi arch in {where}; expected one of auto, {', '.join(_ARCHS)}")
    return arch


def started() -> bool:
    """Whether taichi has been initialised in this process (its options, e.g. its thread count, are fixed then)."""
    return _ARCH is not None


def check_arch() -> str:
    """Resolve the arch (TI_ARCH or auto) without initialising taichi; OptionError if unknown."""
    return _arch_name("auto")


def init(arch: str = "auto") -> str:
    """Initialise taichi once; return the arch name. Later calls must agree or say 'auto'."""
    global _ARCH
    check_not_forked()
    want = _arch_name(arch)
    if _ARCH is not None:
        if arch != "auto" and want != _ARCH and not (want == "cpu" and _ARCH in ("x64", "arm64")):
                raise OptionError(
                f"taichi is already running on {_ARCH!r} in this process; cannot switch to {want!r}"
            )
        return _ARCH
    import taichi as ti

    ti_arch = {"cpu": ti.cpu, "x64": ti.x64, "arm64": ti.arm64, "cuda": ti.cuda,
               "vulkan": ti.vulkan, "metal": ti.metal}[want]
    with contextlib.redirect_stdout(io.StringIO()):  # ti.init prints "[Taichi] Starting on arch=..."
        ti.init(arch=ti_arch, default_fp=ti.f32, default_ip=ti.i32, offline_cache=True,
                log_level=os.environ.get("TI_LOG_LEVEL", "warn"),
                # MBMIX_TAICHI_DEBUG=1: taichi's debug mode (bounds-checked array accesses; slow)
                debug=os.environ.get("MBMIX_TAICHI_DEBUG", "") not in ("", "0"))
    _ARCH = ti.lang.impl.current_cfg().arch.name
    if _ARCH != want and not (want == "cpu" and _ARCH in ("x64", "arm64")):
        # taichi falls back to the CPU when it cannot start on a GPU arch (a CPU-only taichi wheel, no
        # driver): asked for explicitly, that is an error, not a silently slower run on another device
        got = _ARCH
        if arch != "auto" or os.environ.get("TI_ARCH"):
            ti.reset()
            _ARCH = None
            raise OptionError(f"taichi could not start on {want!r} (it fell back to {got!r}); see taichi's "
                              "warning above. Set TI_ARCH=cpu to run on the CPU")
        warnings.warn(f"torch sees a GPU but taichi could not start on {want!r}; running on {got!r} (the CPU)",
                      stacklevel=2)
    return _ARCH


def ensure() -> str:
    """Initialise taichi the package's way unless someone already has (a simulator built
    directly, without `mt.make`, calls this); return the arch name."""
    import taichi as ti

    if _ARCH is None and ti.lang.impl.get_runtime().prog is not None:  # initialised by the caller
        return ti.lang.impl.current_cfg().arch.name
    return init("auto")


def current_arch() -> str | None:
    """The arch name taichi was initialised with here (None before `init`)."""
    return _ARCH


def device() -> torch.device:
    """The torch device whose tensors the initialised arch reads in place."""
    return torch_device("cuda" if _ARCH == "cuda" else "cpu")


def torch_device(device) -> torch.device:
    """`device` as a torch.device with its index: tensors made on "cuda" report "cuda:0", and
    torch.device("cuda") != torch.device("cuda:0"), so every device check compares indexed ones."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device
