"""What `mbmix-taichi tasks` prints for the built-in tasks, without importing torch or taichi
or building a simulator (the command must start in well under 2 s).

The rows are the dims and episode length of each task on its default options;
tests/test_cli_start.py checks every row against the env that `mt.make(name)` builds, so a
change of a task's defaults that changes its dims must update this table.
"""
from __future__ import annotations

#: name -> (state_dim, obs_dim, act_dim, episode_length, description); None where the task
#: needs an option to say (mjcf: model=PATH)
BUILTIN_TASKS: dict[str, tuple] = {
    "ant": (37, 37, 8, 1000, "DiffRL ant: run forward on four legs (1000 steps)"),
    "cartpole-swingup": (4, 5, 1, 240, "DiffRL cart-pole swing-up: swing the pole up and balance it (240 steps)"),
    "cheetah": (18, 17, 6, 1000, "DiffRL half-cheetah: run forward (1000 steps)"),
    "cloth-fold": (606, 606, 6, 50, "fold a flat cloth in half with two pickers holding the corners of one edge; `train` uses a 6 x 6 cloth and 30 steps (--task-option resolution=6 --task-option episode_length=30)"),
    "cloth-fold-pnp": (603, 603, 4, 3, "cloth-fold with DaXBench's pick-and-place macro actions (pick x-y, place x-y); 3 pick-and-places per episode; reward exp(-10 chamfer)"),
    "cloth-unfold": (606, 606, 6, 50, "unfold a cloth folded in half back to flat with two pickers; `train` uses a 6 x 6 cloth and 30 steps (--task-option resolution=6 --task-option episode_length=30)"),
    "cloth-unfold-pnp": (603, 603, 4, 3, "cloth-unfold with DaXBench's pick-and-place macro actions (pick x-y, place x-y); 3 pick-and-places per episode; reward exp(-10 chamfer)"),
    "hopper": (12, 11, 3, 1000, "DiffRL hopper: hop forward on one leg (1000 steps)"),
    "humanoid": (76, 76, 21, 1000, "DiffRL humanoid: run forward without falling (1000 steps)"),
    "mjcf": (None, None, None, None,
             "any MJCF model (compiled by MuJoCo; hinge/slide/free joints, motors, tendons); model=PATH; reward 0"),
}


def format_rows(rows) -> list[str]:
    """rows of (name, state, obs, act, T, description) -> aligned lines with a header."""
    head = ("task", "state", "obs", "act", "T", "description")
    rows = [tuple("-" if c is None else c for c in r) for r in rows]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r[:5], widths)) + "  " + str(r[5]) for r in [head] + rows]
