"""The `mbmix-taichi` command line (click). Library modules never import from here.

``main`` groups the commands; ``options`` holds the one KEY=VALUE parser and the shared
``-o/--task-option`` flag; ``train`` (train, eval), ``viz`` (render, plot) and ``sim`` (tasks,
bench, gradcheck) hold the commands, each a thin layer over a library function.
"""
from .main import main

__all__ = ["main"]
