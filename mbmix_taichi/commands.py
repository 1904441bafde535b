"""Registers the CLI commands that live in other modules (each adds its line here)."""


def register(main):
    from .bench import bench
    from .gradcheck import gradcheck

    main.add_command(gradcheck)
    main.add_command(bench)
