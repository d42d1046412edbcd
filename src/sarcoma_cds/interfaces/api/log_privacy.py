"""No patient ids, FHIR queries or credentials in any log line (issue 12, privacy).

Two layers:

* the HTTP client libraries' loggers (``httpx``, ``httpcore``) are set to WARNING: at INFO
  httpx writes one line per request with its full URL (``GET http://user:pw@fhir/Patient/123``);
* :class:`RedactFilter`, on the service's log handlers, rewrites whatever reaches them: bearer
  tokens and JWTs, ``user:password@`` in URLs, FHIR resource ids (``Patient/123`` ->
  ``Patient/[id]``) and patient search parameters (``patient=123``), also in tracebacks.

``serve_log_config`` (``interfaces/cli/service_commands.py``) puts the filter on its handler;
:func:`install` (called by ``create_app``) puts it on the handlers already on the root logger,
for servers started another way (gunicorn, a test harness).
"""

from __future__ import annotations

import logging
import re

#: Loggers that log request URLs at INFO or DEBUG.
NOISY_LOGGERS = ("httpx", "httpcore", "hpack", "urllib3")

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization: Bearer/Basic <credential>
    (re.compile(r"\b([Bb]earer|[Bb]asic)\s+[A-Za-z0-9\-._~+/=]{6,}"), r"\1 [redacted]"),
    # a JWT anywhere (header.payload.signature, base64url)
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), "[jwt]"),
    # credentials in a URL: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s:@]*:[^/\s@]*@"), r"\1[redacted]@"),
    # key=secret pairs
    (re.compile(r"(?i)\b(access_token|id_token|refresh_token|client_secret|password|api_key)"
                r"([\"']?\s*[=:]\s*[\"']?)[^\s&\"',}]+"), r"\1\2[redacted]"),
    # FHIR resource references: Patient/123, Observation/abc/_history/2
    (re.compile(r"\b([A-Z][a-z][A-Za-z]{1,40})/(?!\[id\])[A-Za-z0-9\-.]{1,64}"), r"\1/[id]"),
    # patient search parameters: ?patient=123, subject=Patient/123, _id=...
    (re.compile(r"(?i)\b(patient|subject|_id|identifier|patientId)=[^&\s\"']+"), r"\1=[id]"),
    (re.compile(r"(?i)(\"?patientId\"?\s*:\s*\"?)[A-Za-z0-9\-.]{1,64}"), r"\1[id]"),
]


def redact(text: str) -> str:
    """``text`` with credentials and patient identifiers replaced (see the module docstring)."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactFilter(logging.Filter):
    """A handler filter that redacts every record's message (and its traceback) in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: keep its bare format string, redacted
            message = str(record.msg)
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def quiet_http_clients() -> None:
    """The HTTP client libraries log at WARNING and above only (their INFO lines carry URLs)."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def install() -> None:
    """Quiet the HTTP clients and put a :class:`RedactFilter` on every handler of the root,
    ``sarcoma_cds`` and uvicorn loggers (idempotent)."""
    quiet_http_clients()
    for name in (None, "sarcoma_cds", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactFilter) for f in handler.filters):
                handler.addFilter(RedactFilter())
