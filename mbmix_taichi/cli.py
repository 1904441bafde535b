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
@click.pass_context
def tasks(ctx):
    """List tasks: name, state/obs/action dims, episode length, description (default options)."""
    from .catalog import BUILTIN_TASKS, format_rows

    extra = bool(ctx.parent.params.get("tasks_dir")) or _has_task_entry_points()
    if not extra:  # the built-in tasks only: no torch, no taichi, no simulator built
        click.echo("\n".join(format_rows([(name, *row) for name, row in sorted(BUILTIN_TASKS.items())])))
        return
    import mbmix_taichi as mt
    from . import _ti
    from .registry import get_task_class

    _ti.check_arch()  # a bad TI_ARCH is an error, not a table of '?'
    rows = []
    for name in mt.list_tasks():
        if name in BUILTIN_TASKS:
            rows.append((name, *BUILTIN_TASKS[name]))
            continue
        cls = get_task_class(name)
        try:
            env = mt.make(name, num_envs=1)
            dims = (env.state_dim, env.obs_dim, env.act_dim, env.episode_length)
        except MbmixError:
            dims = (None,) * 4  # a task that needs options (e.g. model=PATH)
        rows.append((name, *dims, cls.description))
    click.echo("\n".join(format_rows(rows)))


def _has_task_entry_points() -> bool:
    try:
        from importlib.metadata import entry_points

        return bool(list(entry_points(group="mbmix_taichi.tasks")))
    except Exception:
        return True  # let the registry report it


# commands defined in other modules register here (one line each)
from .commands import register as _register_commands  # noqa: E402

_register_commands(main)
