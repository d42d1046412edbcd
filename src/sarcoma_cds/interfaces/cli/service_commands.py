"""Service CLI commands: ``serve``, ``kb export --fhir DIR``, ``audit-log export``.

Heavy dependencies (FastAPI, SQLAlchemy, fhir.resources) are imported inside the
commands so the core CLI starts fast.
"""

from __future__ import annotations

import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from sarcoma_cds.interfaces.cli.extras import requires
from sarcoma_cds.interfaces.cli.kb_app import kb_app


class ExportFormat(str, Enum):  # noqa: UP042 (typer choices, as in core_commands)
    csv = "csv"
    jsonl = "jsonl"


audit_app = typer.Typer(help="The audit trail of recommendations served.", no_args_is_help=True)


@requires("service", "serve")
def serve(
    host: str | None = typer.Option(
        None, "--host",
        help="Interface to bind (default 127.0.0.1; another only with sign-in or API keys).",
    ),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    workers: int | None = typer.Option(
        None, "--workers", min=1,
        help="Worker processes (default: SARCOMA_CDS_WORKERS, else one per core).",
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        metavar="",
        help="Log start-up details (migrations, uvicorn, settings notes).",
    ),
    kb: Path | None = typer.Option(
        None,
        "--kb",
        help=(
            "Serve this knowledge-base directory instead of the "
            "packaged one (to preview a draft; sets SARCOMA_CDS_KB_DIR for the workers)."
        ),
    ),
) -> None:
    """Run the HTTP service (REST, FHIR, CDS Hooks, web) with uvicorn."""
    import logging.config
    import os

    import uvicorn

    from sarcoma_cds.interfaces.api.settings import Settings

    if kb is not None:
        _check_kb(kb)
        os.environ["SARCOMA_CDS_KB_DIR"] = str(
            kb.resolve()
        )  # (read by every worker's Settings.from_env)
    try:
        settings = Settings.from_env()
    except ValueError as e:  # e.g. SARCOMA_CDS_WORKERS=abc
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(2) from None
    if (
        settings.api_keys_file is not None
    ):  # an unreadable or empty key file stops the start (fail closed)
        from sarcoma_cds.interfaces.api.security import load_api_key_roles, load_api_keys

        try:
            load_api_keys(settings.api_keys_file)
            load_api_key_roles(settings.api_keys_file)  # unknown or conflicting roles too
        except ValueError as e:
            sys.stderr.write(f"error: {e}\n")
            raise typer.Exit(2) from None
    protected = settings.api_keys_file is not None or any((
        settings.oidc_issuer, settings.oidc_client_id, settings.smart_issuers,
        settings.smart_client_id))
    if protected:  # incomplete sign-in settings stop the start, naming the variable
        _check_signin(settings)
    elif host not in (None, "127.0.0.1", "localhost", "::1"):  # (issue 12: refuse, never widen)
        sys.stderr.write(
            f"error: refusing to listen on {host}: nobody would need to sign in. Configure "
            "sign-in (SARCOMA_CDS_OIDC_ISSUER and SARCOMA_CDS_OIDC_CLIENT_ID) or API keys "
            "(SARCOMA_CDS_API_KEYS), or leave --host out to listen on 127.0.0.1 only.\n")
        raise typer.Exit(2)
    log_config = serve_log_config(
        verbose,
        local_only=settings.api_keys_file is None,
        cds_clients=settings.clients_file is not None or settings.dev_mode,
    )
    logging.config.dictConfig(log_config)
    host = host or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.allowed_hosts \
            and not settings.base_url:  # (the Host allow-list: DNS rebinding, issue 12)
        sys.stderr.write("warning: only requests to 127.0.0.1/localhost are answered; set "
                         "SARCOMA_CDS_BASE_URL or SARCOMA_CDS_ALLOWED_HOSTS to the names "
                         "clients use\n")
    # Run migrations once before the workers start.
    from sarcoma_cds.store import AuditStore

    AuditStore.open(settings.db_url).close()
    _make_shared_files(settings)
    from sarcoma_cds.interfaces.api.settings import default_workers

    workers = workers or settings.workers or default_workers()
    sys.stderr.write(serve_line(settings, host, port) + "\n")
    from sarcoma_cds.interfaces.api.http_limits import uvicorn_options

    uvicorn.run("sarcoma_cds.interfaces.api.asgi:app", host=host, port=port, workers=workers,
                access_log=False, log_config=log_config, log_level="info" if verbose else "warning",
                **uvicorn_options())  # request headers limited to 64 KiB (issue 12)


def _make_shared_files(settings: Any) -> None:
    """Files the workers share, made once before they start (so that two workers starting
    together never make two different ones): the signing secret, the dev-mode key pair."""
    from sarcoma_cds.interfaces.api.secret_key import load_secret_key

    try:
        load_secret_key(settings.data_dir)
    except ValueError as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(2) from None
    if settings.dev_mode:
        from sarcoma_cds.interfaces.api.security import dev_client

        dev_client(settings.data_dir)


def serve_line(settings: Any, host: str, port: int) -> str:
    """The one start-up line: where it listens, which store it uses, and who may call it."""
    from sqlalchemy.engine import make_url

    from sarcoma_cds import __version__

    store = make_url(settings.db_url).render_as_string(hide_password=True)
    signin = bool(getattr(settings, "oidc_issuer", None) or getattr(settings, "smart_issuers", ""))
    if settings.api_keys_file is not None:
        who = "API keys required" + ("; web sign-in" if signin
                                     else "; web pages with patient data closed (no sign-in)")
    elif signin:
        who = "web sign-in; REST API closed (no API keys)"
    else:
        who = "no API keys (SARCOMA_CDS_API_KEYS), so local users only"
    kb = getattr(settings, "kb_dir", None)
    which = f"; knowledge base {kb} (preview)" if kb is not None else ""
    return (f"sarcoma-cds {__version__} listening on http://{host}:{port}/ (API docs /api/docs); "
            f"audit store {store}; {who}{which}")


def _check_signin(settings: Any) -> None:
    """Exit 2 naming the variable when the sign-in settings cannot work (before anything
    starts): both of issuer and client id, a list of who may sign in, valid roles, both SMART
    settings, https URLs."""
    from sarcoma_cds.interfaces.api.identity.oidc import ConfigError
    from sarcoma_cds.interfaces.api.identity.state import build_identity

    try:  # (the same checks as the app's; no store nor secret is touched here)
        build_identity(settings, keyed=settings.api_keys_file is not None, secret=b"-",
                       sessions=object())  # type: ignore[arg-type]
    except ConfigError as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(2) from None


def _check_kb(kb: Path) -> Any:
    """Load a knowledge-base directory or exit 2 listing its problems (before anything starts)."""
    from sarcoma_cds import KnowledgeBaseError, load_kb

    if not kb.is_dir():
        sys.stderr.write(f"error: --kb: {kb} is not a directory\n")
        raise typer.Exit(2)
    try:
        return load_kb(kb)
    except KnowledgeBaseError as e:
        for p in e.problems:
            sys.stderr.write(f"error: knowledge base: {p}\n")
        raise typer.Exit(2) from None


class StartupNotes(logging.Filter):
    """Drops the application's start-up warnings that :func:`serve_line` already says (no API
    keys) or that do not apply (no base URL while no CDS client is configured), so a default
    start prints one line; ``--verbose`` keeps them."""

    def __init__(self, local_only: bool, cds_clients: bool) -> None:
        super().__init__()
        self.prefixes = tuple(
            p
            for p, drop in (
                ("no API keys configured", local_only),
                ("SARCOMA_CDS_BASE_URL is not set", not cds_clients),
            )
            if drop
        )

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "sarcoma_cds.service" and str(record.msg).startswith(self.prefixes)
        )


def serve_log_config(verbose: bool, *, local_only: bool, cds_clients: bool) -> dict[str, Any]:
    """Logging for ``serve``, handed to uvicorn as well so every worker process uses it.

    Quiet by default: warnings and errors, plus the service's own per-request lines (request id,
    route, status, time). ``verbose``: INFO from every library (migrations, uvicorn) too.
    """
    handler: dict[str, Any] = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                               "formatter": "plain"}
    # no patient ids, FHIR queries or credentials in any line, verbose or not (issue 12)
    filters: dict[str, Any] = {"redact": {"()": "sarcoma_cds.interfaces.api.log_privacy."
                                                "RedactFilter"}}
    handler["filters"] = ["redact"]
    if not verbose:
        filters["startup"] = {"()": f"{__name__}.StartupNotes", "local_only": local_only,
                              "cds_clients": cds_clients}
        handler["filters"].append("startup")
    loggers: dict[str, Any] = {"sarcoma_cds": {"level": "INFO"}}
    # the HTTP clients' INFO lines carry every URL fetched (Patient/<id>, user:pw@): never shown
    loggers.update({name: {"level": "WARNING"} for name in ("httpx", "httpcore", "hpack")})
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "filters": filters,
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": "INFO" if verbose else "WARNING"},
        "loggers": loggers,
    }


@requires("service", "kb export")
def kb_export(
    fhir: Path = typer.Option(..., "--fhir", help="Directory to write the FHIR resources into."),
    kb: Path | None = typer.Option(
        None, "--kb", help="Knowledge-base directory (default: the packaged one)."
    ),
) -> None:
    """Export the algorithm as CPG PlanDefinitions and ActivityDefinitions (FHIR R4 JSON)."""
    import json

    from sarcoma_cds import load_kb
    from sarcoma_cds.adapters.fhir import kb_to_fhir, validate_resource

    resources = kb_to_fhir(_check_kb(kb) if kb is not None else load_kb())
    fhir.mkdir(parents=True, exist_ok=True)
    problems = []
    for res in resources:
        try:
            validate_resource(res)
        except Exception as e:  # report all, write none that is invalid
            problems.append(f"{res['resourceType']}/{res['id']}: {str(e).splitlines()[0]}")
            continue
        (fhir / f"{res['resourceType']}-{res['id']}.json").write_text(
            json.dumps(res, indent=2) + "\n"
        )
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": r["url"], "resource": r} for r in resources]}
    (fhir / "Bundle-sts-treatment-definitions.json").write_text(json.dumps(bundle, indent=2) + "\n")
    for p in problems:
        sys.stderr.write(f"error: {p}\n")
    if problems:
        raise typer.Exit(1)
    typer.echo(f"wrote {len(resources)} resources to {fhir}")


@requires("service", "audit-log export")
def audit_export(
    format: ExportFormat = typer.Option(ExportFormat.jsonl, "--format", help="csv or jsonl."),
    out: Path | None = typer.Option(None, "--out", help="Output file (default: standard output)."),
) -> None:
    """Write every audit record (CSV or JSONL) from the configured database."""
    store = _open_store()
    try:
        if out is None:
            n = store.export(sys.stdout, format.value)
        else:
            # decrypted patient data: the file is the owner's only, like the database (an
            # existing file keeps its name but loses any wider mode)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                n = store.export(fh, format.value)
    finally:
        store.close()
    sys.stderr.write(f"{n} records\n")


def _open_store(*, keys_required: bool = False) -> Any:
    """The configured audit store with its data keys (stored patient data is encrypted). A
    command never makes a new key: without one, encrypted values read as null (with a warning),
    or the command stops when ``keys_required``."""
    from sarcoma_cds.interfaces.api.settings import Settings
    from sarcoma_cds.store import AuditStore
    from sarcoma_cds.store.crypto import DataCipher, DataKeyError, load_data_keys

    settings = Settings.from_env()
    try:
        keys = load_data_keys(settings.data_dir, settings.data_keys, create=False)
        cipher = DataCipher(keys) if keys else None
    except DataKeyError as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(2) from None
    if cipher is None:
        where = f"SARCOMA_CDS_DATA_KEYS or {settings.data_dir / 'data-key'}"
        if keys_required:
            sys.stderr.write(f"error: no data key found ({where})\n")
            raise typer.Exit(2)
        sys.stderr.write(f"warning: no data key found ({where}): encrypted values are "
                         "written as null\n")
    return AuditStore.open(settings.db_url, cipher=cipher)


store_app = typer.Typer(help="The audit store's data keys.", no_args_is_help=True)


@requires("service", "store rekey")
def store_rekey() -> None:
    """Re-encrypt every stored patient value with the first key of SARCOMA_CDS_DATA_KEYS
    (rotation: put the new key first, run this, then drop the old key)."""
    from sarcoma_cds.store.crypto import DataKeyError

    store = _open_store(keys_required=True)
    try:
        n = store.rekey()
    except DataKeyError as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(2) from None
    finally:
        store.close()
    sys.stderr.write(f"{n} rows re-encrypted with the first data key\n")


def register(app: typer.Typer) -> None:
    kb_app.command("export")(kb_export)
    if not any(g.name == "kb" for g in app.registered_groups):
        app.add_typer(kb_app, name="kb")
    app.command("serve")(serve)
    audit_app.command("export")(audit_export)
    app.add_typer(audit_app, name="audit-log")
    store_app.command("rekey")(store_rekey)
    app.add_typer(store_app, name="store")
