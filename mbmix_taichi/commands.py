"""Registers the CLI commands that live in other modules (each adds its line here)."""


def register(main):
    from .gradcheck import gradcheck

    main.add_command(gradcheck)
