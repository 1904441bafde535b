"""Exceptions for mistakes a user can make. The CLI prints them as one line."""


class MbmixError(Exception):
    """Base class: a user-facing error whose message says what was wrong and what is expected."""


class UnknownTaskError(MbmixError, KeyError):
    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OptionError(MbmixError, ValueError):
    """An unknown option or an option value of the wrong kind."""


class InputError(MbmixError, ValueError):
    """A state or action of the wrong shape, dtype or device, or with NaN/Inf."""


class SimulationError(MbmixError, RuntimeError):
    """The simulator produced a non-finite or exploding state."""


class ForkError(MbmixError, RuntimeError):
    """Taichi was initialised in a parent process and this process was forked from it."""


class RenderError(MbmixError):
    """A render request that cannot be carried out (bad output path, no display, a bad render_spec)."""
