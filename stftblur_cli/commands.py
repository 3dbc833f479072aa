"""The list of subcommands; each lives in its own module."""

from __future__ import annotations

import click

ALL: list[click.Command] = []

from stftblur_cli.eval_cmd import eval_command  # noqa: E402

ALL.append(eval_command)

from stftblur_cli.compare_cmd import compare_command  # noqa: E402

ALL.append(compare_command)

from stftblur_cli.vae_cmd import COMMANDS as _VAE_COMMANDS  # noqa: E402

ALL.extend(_VAE_COMMANDS)
