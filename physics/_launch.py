"""A fast launcher for Taichi kernels whose arguments are contiguous torch tensors and ints.

Taichi 1.7's Python launch path re-inspects every argument on every call (template lookup,
`has_pytorch()` reading os.environ, numpy iinfo, dtype conversion): ~20 us per ndarray
argument, most of a small cloth step's cost at 1 env. `FastKernel` does that work once: the
first call goes through Taichi (which compiles and checks the arguments); later calls with
the same argument kinds (tensor dtype and ndim, or int) fill a launch context directly from
the tensors' data pointers. Anything unusual (another dtype, a non-contiguous tensor, a
tensor needing grad, a different Taichi version) takes Taichi's own path.

A kernel can carry its own Taichi compile options (`FastKernel(k, compile_options={...})`, keys
of Taichi's CompileConfig such as ``advanced_optimization``): they are set around every call that
goes through Taichi (the one that compiles, and each call on Taichi's path) and restored after,
so the rest of the program keeps the process-wide options. Taichi keys its in-memory and offline
caches on the options, so such a kernel is cached as its own entry. Calls through Taichi run
under `_frontend.fast_frontend()`, which makes the compile's (and a warm start's) Python frontend
cheaper without changing what it produces.

Callers must pass what the kernel's annotations say (1-D contiguous tensors of the kernel's
dtype on the device the arch reads, and Python ints); the simulators check shapes before
launching. Set MBMIX_TAICHI_SLOW_LAUNCH=1 to always use Taichi's path.
"""
from __future__ import annotations

import contextlib
import os

import torch

from ._frontend import fast_frontend

_DISABLED = os.environ.get("MBMIX_TAICHI_SLOW_LAUNCH", "") not in ("", "0")

#: Compile options for a kernel whose parallel loop runs one env (or one env's probe) per
#: iteration: a few to a few hundred heavy items. Taichi 1.7's CPU backend splits a loop whose
#: bounds are kernel arguments into one block per thread of at least 512 iterations
#: (its make_cpu_multithreaded_range_for pass), so any batch of up to 512 envs ran on one thread
#: whatever the machine's cores. Without that pass, and with a block of one iteration, each env
#: is a task of the pool's own (per-env results are the same: nothing is summed across envs).
#: ``default_cpu_block_dim`` is also part of Taichi's offline-cache key, so these kernels are
#: cached apart from ones compiled with Taichi's defaults (``make_cpu_multithreading_loop`` is not).
#: tools/check_taichi_threads.py shows the difference; docs/benchmarks_articulated.md, session 22.
PER_ENV_TASKS = {"make_cpu_multithreading_loop": False, "default_cpu_block_dim": 1}


class FastKernel:
    def __init__(self, kernel, compile_options: dict | None = None):
        self.kernel = kernel
        self.compile_options = dict(compile_options or {})
        self._cache: dict = {}  # argument kinds -> (t_kernel, compiled data, prog, runtime args), or None

    @contextlib.contextmanager
    def _options(self):
        """Taichi's compile config with this kernel's own options, for the duration of a Taichi call."""
        if not self.compile_options:
            yield
            return
        from taichi.lang import impl

        cfg = impl.current_cfg()
        saved = {k: getattr(cfg, k) for k in self.compile_options}
        try:
            for k, v in self.compile_options.items():
                setattr(cfg, k, v)
            yield
        finally:
            for k, v in saved.items():
                setattr(cfg, k, v)

    def _taichi_call(self, args, key=None):
        """Taichi's own launch path (compiles on first use, checks every argument); then, the
        first time for `key`, prepares the fast path for later calls under that key."""
        with self._options(), fast_frontend():
            self.kernel(*args)
            if key is not None and key not in self._cache:
                kinds = self._kinds(args)
                if kinds is not None:  # (a tensor needing grad this time: try again next call)
                    self._cache[key] = self._prepare(kinds, args)

    @staticmethod
    def _kinds(args):
        out = []
        for a in args:
            if type(a) is torch.Tensor:
                if a.requires_grad or not a.is_contiguous() or a.dim() != 1:
                    return None
                out.append((a.dtype, a.device.type))
            elif type(a) is int:
                out.append(int)
            elif type(a) is bool:  # a trailing ti.template() flag: part of the kernel instance
                out.append(("template", a))
            else:
                return None
        return tuple(out)

    def _prepare(self, kinds, args):
        try:
            from taichi.lang import impl
            from taichi.types.annotations import template

            primal = self.kernel._primal
            tmpl = [isinstance(arg.annotation, template) for arg in primal.arguments]
            n_rt = tmpl.index(True) if True in tmpl else len(tmpl)
            if any(tmpl[:n_rt]) or not all(tmpl[n_rt:]):
                return None  # template arguments are supported only at the end (they shift no index)
            if impl.current_cfg().debug:
                return None  # debug mode: let Taichi's path run its checks
            if impl.current_cfg().arch.name not in ("x64", "arm64"):
                return None  # measured and tested on the CPU backends only; GPUs keep Taichi's path
            if any(k is not int and k[0] != "template" and k[1] != "cpu" for k in kinds):
                return None
            instance_id, _ = primal.mapper.lookup(args)
            t_kernel = primal.compiled_kernels[(primal.func, instance_id, primal.autodiff_mode)]
            prog = impl.get_runtime().prog
            compiled = prog.compile_kernel(prog.config(), prog.get_device_caps(), t_kernel)
            return t_kernel, compiled, prog, n_rt
        except Exception:  # another Taichi version: keep using its own launch path
            return None

    def __call__(self, *args):
        kinds = None if _DISABLED else self._kinds(args)
        entry = self._cache.get(kinds) if kinds is not None else None
        if entry is None:
            self._taichi_call(args, kinds)
            return
        self._launch(entry, args)

    def trusted(self, key, *args):
        """Launch with arguments the caller guarantees to be of one fixed kind per `key` (e.g. the
        simulator's dtype and device: 1-D contiguous tensors it made or checked, and ints);
        skips even the per-argument kind check. The first call per key inspects them once."""
        entry = None if _DISABLED else self._cache.get(key)
        if entry is None:
            self._taichi_call(args, None if _DISABLED else key)
            return
        self._launch(entry, args)

    def bind(self, key, fixed):
        # (`key` must also tell apart the values of trailing template arguments: one instance each)
        """A launcher for one caller whose arguments at the indices in `fixed` never change (the
        same tensors, e.g. a simulator's topology): they are set once in a reused launch context
        and later calls set only the others."""
        return _Bound(self, key, frozenset(fixed))

    @staticmethod
    def _launch(entry, args):
        t_kernel, compiled, prog, n_rt = entry
        ctx = t_kernel.make_launch_context()
        for i, a in enumerate(args[:n_rt]):
            _set_arg(ctx, i, a)
        prog.launch_kernel(compiled, ctx)


def _set_arg(ctx, i: int, a) -> None:
    """Argument i of a launch context: a Python int, or a flat tensor passed by pointer."""
    if type(a) is int:
        ctx.set_arg_int((i,), a)
    else:
        ctx.set_arg_external_array_with_shape((i,), a.data_ptr(), a.element_size() * a.numel(), (a.shape[0],), 0)


class _Bound:
    def __init__(self, fast: FastKernel, key, fixed: frozenset):
        self.fast, self.key, self.fixed = fast, key, fixed
        self._ctx = None
        self._pinned = None  # the fixed tensors themselves: kept alive while their pointers are in use

    def __call__(self, *args):
        entry = None if _DISABLED else self.fast._cache.get(self.key)
        if entry is None:
            self.fast.trusted(self.key, *args)
            return
        t_kernel, compiled, prog, n_rt = entry
        ctx = self._ctx
        first = ctx is None
        if first:
            ctx = t_kernel.make_launch_context()
        for i, a in enumerate(args[:n_rt]):
            if first or i not in self.fixed:
                _set_arg(ctx, i, a)
        prog.launch_kernel(compiled, ctx)
        if first:
            self._ctx, self._pinned = ctx, [args[i] for i in self.fixed]
