"""Taichi initialisation: one arch per process, chosen without probing OpenGL.

`ti.init(arch=ti.gpu)` probes OpenGL/Vulkan and segfaulted on headless machines, so "auto"
asks torch whether CUDA is there and picks `cuda`, otherwise `x64`/`arm64` (the CPU).
The environment variable TI_ARCH (cuda, x64, arm64, cpu, vulkan, metal) overrides it.
"""
from __future__ import annotations

import contextlib
import io
import os

import torch

_ARCH = None  # the arch name taichi was initialised with


def _resolve(arch: str) -> str:
    env = os.environ.get("TI_ARCH")
    if env:
        arch = env
    arch = arch.lower()
    if arch == "auto":
        arch = "cuda" if torch.cuda.is_available() else "cpu"
    if arch not in ("cpu", "x64", "arm64", "cuda", "vulkan", "metal"):
        from .errors import OptionError

        raise OptionError(f"unknown arch {arch!r}; expected one of auto, cpu, cuda, vulkan, metal")
    return arch


def init(arch: str = "auto") -> str:
    """Initialise taichi once; return the arch name. Later calls must agree or say 'auto'."""
    global _ARCH
    want = _resolve(arch)
    if _ARCH is not None:
        if arch != "auto" and want != _ARCH and not (want == "cpu" and _ARCH in ("x64", "arm64")):
            from .errors import OptionError

            raise OptionError(
                f"taichi is already running on {_ARCH!r} in this process; cannot switch to {want!r}"
            )
        return _ARCH
    import taichi as ti

    ti_arch = {"cpu": ti.cpu, "x64": ti.x64, "arm64": ti.arm64, "cuda": ti.cuda,
               "vulkan": ti.vulkan, "metal": ti.metal}[want]
    with contextlib.redirect_stdout(io.StringIO()):  # ti.init prints "[Taichi] Starting on arch=..."
        ti.init(arch=ti_arch, default_fp=ti.f32, default_ip=ti.i32, offline_cache=True,
                log_level=os.environ.get("TI_LOG_LEVEL", "warn"))
    _ARCH = ti.lang.impl.current_cfg().arch.name
    return _ARCH


def device() -> torch.device:
    """The torch device whose tensors the initialised arch reads in place."""
    return torch.device("cuda" if _ARCH == "cuda" else "cpu")
