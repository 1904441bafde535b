"""The `mbmix-taichi` command line. User mistakes print one line and exit non-zero."""
from __future__ import annotations

import sys

import click

from .errors import MbmixError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MbmixError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--tasks-dir", type=click.Path(exists=True, file_okay=False), multiple=True,
              help="A folder of task modules of your own (repeatable).")
@click.version_option(package_name="mbmix-taichi")
def main(tasks_dir):
    """Differentiable simulators with exact Jacobians, and the MB-MIX learner."""
    from .registry import load_tasks_dir

    for d in tasks_dir:
        load_tasks_dir(d)


@main.command()
def tasks():
    """List tasks: name, state/obs/action dims, episode length, description."""
    import mbmix_taichi as mt
    from . import _ti
    from .registry import get_task_class

    _ti.check_arch()  # a bad TI_ARCH is an error, not a table of '?'
    rows = []
    for name in mt.list_tasks():
        cls = get_task_class(name)
        try:
            env = mt.make(name, num_envs=1)
            dims = (env.state_dim, env.obs_dim, env.act_dim, env.episode_length)
        except MbmixError:
            dims = ("?", "?", "?", "?")  # a task that needs options (e.g. mjcf model=PATH)
        rows.append((name, *dims, cls.description))
    head = ("task", "state", "obs", "act", "T", "description")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    for r in [head] + rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r[:5], widths)) + "  " + str(r[5]))


# commands defined in other modules register here (one line each)
from .commands import register as _register_commands  # noqa: E402

_register_commands(main)
