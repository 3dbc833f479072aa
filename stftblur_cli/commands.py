"""The list of subcommands; each lives in its own module."""

from __future__ import annotations

import click

ALL: list[click.Command] = []
