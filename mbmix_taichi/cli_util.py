"""Small helpers shared by CLI commands."""
from __future__ import annotations

import json

from .errors import OptionError


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


def parse_task_options(pairs) -> dict:
    """Parse repeated KEY=VALUE strings into a dict of task options."""
    out = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise OptionError(f"task option {pair!r} must look like KEY=VALUE")
        k, v = pair.split("=", 1)
        if not k.strip():
            raise OptionError(f"task option {pair!r} has an empty key")
        out[k.strip().replace("-", "_")] = parse_value(v)
    return out
