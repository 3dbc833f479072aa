"""Helpers shared by every subcommand: consistent options and one-line errors."""

from __future__ import annotations

from typing import Any, Callable

import click

from stftblur import __version__

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class CliError(click.ClickException):
    """A one-line error message and exit code 2 (bad input), printed without a traceback."""

    exit_code = 2


def command(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """``click.command`` with the project's context settings and ``--version``."""

    def decorator(f: Callable[..., Any]) -> click.Command:
        f = click.version_option(__version__, "--version", prog_name="stftblur")(f)
        return click.command(name, context_settings=CONTEXT_SETTINGS, **kwargs)(f)

    return decorator


def library_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's input errors (every :class:`stftblur.errors.StftblurError`: a bad run
    directory, data set, checkpoint or image file) into one-line CLI errors with exit code 2;
    anything else keeps its traceback."""
    import functools

    from stftblur.errors import StftblurError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StftblurError as e:
            raise CliError(str(e)) from None

    return wrapper


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda was requested but no CUDA device is available")
    return device
