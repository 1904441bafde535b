"""The PyTorch learner: MB-MIX and its baselines (never imports taichi).

    from mbmix_taichi.learner import resolve, Run, load_policy, untrained_policy, evaluate
    cfg = resolve("cloth-fold", "mbmix", overrides={"iterations": 10})
    Run(cfg, "runs/demo").train()

The names are imported on first use (PEP 562), so that `mbmix_taichi.learner.cli` (the
train/eval commands) loads without torch and `mbmix-taichi --help` starts fast.
"""
import importlib as _importlib

_LAZY = {"ALGOS": ".config", "ALL_ALGOS": ".config", "Config": ".config", "RunError": ".config", "resolve": ".config",
         "Run": ".trainer", "evaluate": ".trainer", "load_policy": ".trainer", "read_config": ".trainer",
         "untrained_policy": ".trainer"}

__all__ = ["ALGOS", "ALL_ALGOS", "Config", "RunError", "resolve", "Run", "evaluate", "load_policy", "read_config",
           "untrained_policy"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
