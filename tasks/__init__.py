"""Built-in tasks (imported as ``mbmix_taichi.tasks``); one module per task family.

Any public module here that defines a `mbmix_taichi.Task` subclass with a ``name`` is found
by `mt.list_tasks()`; modules starting with ``_`` hold shared helpers.
"""
