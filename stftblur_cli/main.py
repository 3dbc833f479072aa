"""Entry point of the ``stftblur`` command."""

from __future__ import annotations

import click

from stftblur import __version__

from stftblur_cli._common import CONTEXT_SETTINGS


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="stftblur")
def cli() -> None:
    """Local-phase (STFT) losses and blur metrics for generated and restored images."""


def _register() -> None:
    from stftblur_cli import commands

    for command in commands.ALL:
        cli.add_command(command)


_register()
