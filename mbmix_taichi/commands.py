"""Registers the CLI commands that live in other modules (each adds its line here)."""


def register(main):
    from .bench import bench
    from .gradcheck import gradcheck
    from .learner.cli import eval_cmd, train
    from .render_cli import plot_command, render_command

    main.add_command(gradcheck)
    main.add_command(bench)
    main.add_command(train)
    main.add_command(eval_cmd)
    main.add_command(render_command)
    main.add_command(plot_command)
