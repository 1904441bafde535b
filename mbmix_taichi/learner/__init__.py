"""The PyTorch learner: MB-MIX and its baselines (never imports taichi).

    from mbmix_taichi.learner import resolve, Run, load_policy, untrained_policy, evaluate
    cfg = resolve("cloth-fold", "mbmix", overrides={"iterations": 10})
    Run(cfg, "runs/demo").train()
"""
from .config import ALGOS, Config, RunError, resolve
from .trainer import Run, evaluate, load_policy, read_config, untrained_policy

__all__ = ["ALGOS", "Config", "RunError", "resolve", "Run", "evaluate", "load_policy", "read_config",
           "untrained_policy"]
