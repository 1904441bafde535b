"""What the commands share: the one KEY=VALUE parser and the ``-o/--task-option`` flag.

``-o`` means ``--task-option KEY=VALUE`` in every command that takes task options; output
paths are always ``--out``. A value without ``=`` (``-o rollout.gif``) is refused with a
message that says so.
"""
from __future__ import annotations

import json

import click

from ..errors import OptionError


def parse_value(text: str):
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, 'none' -> None, '[1,2]' -> [1, 2], else the string."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(pairs, what: str = "task option") -> dict:
    """Repeated KEY=VALUE strings -> {key: value}; keys have '-' read as '_', values go through
    `parse_value`."""
    out = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise OptionError(f"{what} {pair!r} must look like KEY=VALUE (-o is --task-option; an output "
                              "file is given with --out)")
        k, v = pair.split("=", 1)
        if not k.strip():
            raise OptionError(f"{what} {pair!r} has an empty key")
        out[k.strip().replace("-", "_")] = parse_value(v)
    return out


def parse_task_options(pairs) -> dict:
    """Parse repeated KEY=VALUE strings into a dict of task options."""
    return parse_pairs(pairs, "task option")


def task_option(help: str = "A task option (repeatable), e.g. -o resolution=6 -o mesh=tshirt."):
    """The shared ``-o/--task-option KEY=VALUE`` flag; the command receives a dict ``task_options``."""
    return click.option("--task-option", "-o", "task_options", multiple=True, metavar="KEY=VALUE", help=help,
                        callback=lambda ctx, param, value: parse_task_options(value))


def no_task_option(command: str):
    """A hidden ``-o`` for a command without task options: an honest error instead of click's
    'no such option' (``-o`` is never an output path here)."""
    def refuse(ctx, param, value):
        if value:
            raise OptionError(f"`{command}` takes no task options (-o is --task-option in every command that "
                              "takes them; output files are given with --out)")
        return value

    return click.option("-o", "_no_task_option", multiple=True, hidden=True, expose_value=False, callback=refuse)
