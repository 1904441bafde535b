"""The `mbmix-taichi` command group. User mistakes print one line and exit non-zero.

The commands live in ``sim`` (tasks, bench, gradcheck), ``train`` (train, eval) and ``viz``
(render, plot); each imports torch, taichi or pyvista only when it runs, so ``--help`` and
``tasks`` start fast.
"""
from __future__ import annotations

import sys

import click

from ..errors import MbmixError
from . import sim, train, viz


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
    """Differentiable simulators with exact Jacobians, and the MB-MIX learner.

    Task options are -o/--task-option KEY=VALUE in every command that takes them; output
    files and run directories are --out.
    """
    if tasks_dir:  # (the registry imports torch: only when there is a folder to load)
        from ..registry import load_tasks_dir

        for d in tasks_dir:
            load_tasks_dir(d)


for _command in (sim.tasks, train.train, train.eval_cmd, viz.render_command, viz.plot_command, sim.gradcheck,
                 sim.bench):
    main.add_command(_command)
