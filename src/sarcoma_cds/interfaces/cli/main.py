"""The ``sarcoma-cds`` command line: a thin shell around the core.

Sub-commands owned by other parts of the product live in their own modules
(``service_commands``, ``cohort_commands``) and are registered here only if their
optional dependencies are installed, so the core CLI works on a lean install.
"""

from __future__ import annotations

import importlib

import typer

from sarcoma_cds.interfaces.cli import core_commands

app = typer.Typer(
    name="sarcoma-cds",
    help="Decision support for adult soft-tissue sarcoma and GIST (decision support, not orders).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
core_commands.register(app)

for _module in ("service_commands", "cohort_commands"):
    try:
        mod = importlib.import_module(f"sarcoma_cds.interfaces.cli.{_module}")
    except ModuleNotFoundError as e:  # an optional extra is not installed: its commands are absent
        if (e.name or "").startswith("sarcoma_cds"):
            raise
        continue
    mod.register(app)


def run() -> None:
    app()


if __name__ == "__main__":
    run()
