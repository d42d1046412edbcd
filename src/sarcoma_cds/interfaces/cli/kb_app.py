"""The shared ``sarcoma-cds kb`` command group (export, diff, ... are added by their owners)."""

from __future__ import annotations

import typer

kb_app = typer.Typer(help="Knowledge-base tools (export, diff, archive).", no_args_is_help=True)
