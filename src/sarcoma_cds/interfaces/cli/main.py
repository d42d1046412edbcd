"""The ``sarcoma-cds`` command line: a thin shell around the core.

Sub-commands owned by other parts of the product live in their own modules
(``service_commands``, ``cohort_commands``). They are always listed; when the optional extra
they need is not installed, running one says which extra to install (``extras.requires``).
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from sarcoma_cds import __version__
from sarcoma_cds.interfaces.cli import core_commands


class _FlagHelp:
    """``--help`` takes no value: show no ``<bool>`` type next to it (Typer shows the type of
    every option, the help flag included)."""

    def get_help_option(self, ctx: Any) -> Any:
        opt = super().get_help_option(ctx)  # type: ignore[misc]
        if opt is not None:
            opt.metavar = ""
        return opt


class Command(_FlagHelp, TyperCommand):
    pass


class Group(_FlagHelp, TyperGroup):
    pass


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sarcoma-cds {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="sarcoma-cds",
    help="Decision support for adult soft-tissue sarcoma and GIST (decision support, not orders).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="",
                                 help="Print the version and exit."),
) -> None:
    """Decision support for adult soft-tissue sarcoma and GIST (decision support, not orders)."""


core_commands.register(app)
for _module in ("service_commands", "cohort_commands", "kb_commands"):
    importlib.import_module(f"sarcoma_cds.interfaces.cli.{_module}").register(app)


def _use_flag_help(t: typer.Typer) -> None:
    """Every command and group of ``t`` built with the classes above (set after registration,
    so the modules that register commands need not know about it)."""
    for c in t.registered_commands:
        if c.cls is TyperCommand or not isinstance(c.cls, type):  # (Typer's default, or unset)
            c.cls = Command
    for g in t.registered_groups:
        if g.typer_instance is not None:
            if g.typer_instance.info.cls is TyperGroup or not isinstance(
                g.typer_instance.info.cls, type
            ):
                g.typer_instance.info.cls = Group
            _use_flag_help(g.typer_instance)


_use_flag_help(app)


def run() -> None:
    app()


if __name__ == "__main__":
    run()
