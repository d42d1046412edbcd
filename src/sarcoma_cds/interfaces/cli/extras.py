"""Commands that need an optional extra say which one, instead of dying with a traceback.

``pip install sarcoma-cds`` (no extras) still lists ``serve``, ``concordance``, ``synth`` ... in
``--help``: a new user should see what the tool can do. Running one of them without its extra
prints the ``pip install`` line to run and exits 2. The check looks the modules up
(``importlib.util.find_spec``) without importing them, so the core CLI stays fast.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

#: top-level modules each extra brings (top-level only: looking up ``a.b`` would import ``a``)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "service": ("fastapi", "uvicorn", "sqlalchemy", "alembic", "jwt", "httpx", "jinja2"),
    "cohort": ("polars", "duckdb", "pyarrow", "plotly", "numpy"),
    "spark": ("pyspark", "pandas"),
    "web": ("weasyprint",),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed (empty when the extra is)."""
    return [m for m in EXTRA_MODULES[extra] if not _installed(m)]


def exit_if_missing(extra: str, command: str) -> None:
    """Exit 2 with the install line when ``extra`` is not installed (for checks made at run
    time, such as ``concordance --engine spark``)."""
    missing = missing_modules(extra)
    if missing:
        sys.stderr.write(
            f"error: {command}: needs the '{extra}' extra ({', '.join(missing)} not installed); "
            f"install it with: pip install 'sarcoma-cds[{extra}]'\n")
        raise typer.Exit(2)


def requires(extra: str, command: str) -> Callable[[F], F]:
    """Decorate a command that needs ``extra``: checked before the command runs; its help
    says so when the extra is absent."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            exit_if_missing(extra, command)
            return fn(*args, **kwargs)

        if fn.__doc__ and missing_modules(extra):
            # (no square brackets: the help is Rich markup, which would read them as a style)
            wrapper.__doc__ = f"{fn.__doc__} (not installed: needs the '{extra}' extra)"
        return wrapper  # type: ignore[return-value]

    return deco
