"""Errors of the HTTP service as exceptions, answered in one place.

A route or a dependency raises :class:`ApiError` (usually a :class:`Problem` such as
:class:`NotFound`) instead of building a response; :func:`install_error_handlers` registers
the handlers that turn it, and every other failure (invalid facts, request validation,
Starlette's own HTTP errors, anything unexpected), into a response. RFC 9457 problem
documents are written only by :func:`~sarcoma_cds.interfaces.api.problems.problem`, called
from here and from the body-size middleware, so every error carries the request id the
same way.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sarcoma_cds import InvalidFacts
from sarcoma_cds.interfaces.api.problems import problem
from sarcoma_cds.store.group_commit import AuditWriteFailed

log = logging.getLogger("sarcoma_cds.service")

INTERNAL_ERROR = "internal error; quote the request id to the operators"
STORAGE_ERROR = ("the audit store cannot record this request (database unavailable, read-only or "
                 "full); nothing was answered or recorded: retry later")
STORAGE_PAGE_TEXT = ("The service cannot save or record anything right now (its database is "
                     "unavailable). Nothing was saved. Try again in a minute; if it persists, "
                     "tell the operators and quote this code: {rid}.")
RETRY_AFTER = "30"


def request_id(request: Request) -> str:
    """The id given to this request by the request-context middleware ("-" outside it)."""
    return getattr(request.state, "request_id", "-")


class ApiError(Exception):
    """An error a route wants answered; :meth:`response` builds the answer."""

    def response(self, rid: str) -> Response:
        raise NotImplementedError


class Problem(ApiError):
    """An error answered with an RFC 9457 problem document (``status`` set by subclasses)."""

    status: ClassVar[int] = 500

    def __init__(self, detail: str, *, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.extra = extra

    def response(self, rid: str) -> Response:
        return problem(self.status, self.detail, request_id=rid, errors=self.errors,
                       headers=self.headers, **self.extra)


class BadRequest(Problem):
    status = 400


class Unauthorized(Problem):
    """401 with ``WWW-Authenticate: Bearer`` (an API key is missing or unknown)."""

    status = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class NotFound(Problem):
    status = 404


class PreconditionFailed(Problem):
    status = 412


class InvalidInput(Problem):
    status = 422


class Unavailable(Problem):
    status = 503


class TokenRefused(ApiError):
    """A CDS Hooks client's JWT was refused: a bare 401, as CDS clients expect, with no reason
    (the reason goes to the log only, see ``security``)."""

    def response(self, rid: str) -> Response:
        return JSONResponse({"error": "unauthorized"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})


def invalid_facts_errors(exc: InvalidFacts) -> list[dict[str, str]]:
    """The problems of invalid facts as the ``errors`` member of a problem document."""
    return [{"field": f, "message": m} for f, m in exc.problems]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response(request_id(request))


async def _invalid_facts(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidFacts)
    return problem(422, "the patient facts are invalid: " + "; ".join(f for f, _ in exc.problems),
                   request_id=request_id(request), errors=invalid_facts_errors(exc))


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        errors.append({"field": ".".join(loc) or "body", "message": str(e.get("msg", "invalid"))})
    return problem(422, "invalid request", request_id=request_id(request), errors=errors)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), request_id=request_id(request),
                   headers=getattr(exc, "headers", None))


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _unavailable(request: Request, detail: str, retry_after: str) -> Response:
    """503 for a storage failure: the error page for a browser, else a problem document."""
    rid = request_id(request)
    headers = {"Retry-After": retry_after}
    pages = getattr(request.app.state, "web_pages", None)
    if _wants_html(request) and pages is not None:
        resp: Response = pages.render(request, "error.html", 503,
                                      title="Service unavailable",
                                      message=STORAGE_PAGE_TEXT.format(rid=rid))
        resp.headers.update(headers)
        return resp
    return problem(503, detail, request_id=rid, headers=headers)


async def _storage(request: Request, exc: Exception) -> Response:
    """A database failure (unreachable, read-only, disk full, a refused write): 503, never 500.
    Only the exception's type is logged: its text can carry the statement's parameters."""
    log.error("storage failure %s (request %s)", type(exc).__name__, request_id(request))
    return _unavailable(request, STORAGE_ERROR, RETRY_AFTER)


async def _audit_failed(request: Request, exc: Exception) -> Response:
    # the transaction holding this request's audit record did not commit: nothing is answered
    # as served without its record (issue 13); the caller may try again
    return _unavailable(request, "the audit record could not be written, so the recommendation "
                        "is not served; try again", "1")


async def _any(request: Request, exc: Exception) -> Response:
    log.error("unhandled %s (request %s)", type(exc).__name__, request_id(request))
    return problem(500, INTERNAL_ERROR, request_id=request_id(request))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error raised by a route or a dependency (see the module docstring)."""
    app.add_exception_handler(InvalidFacts, _invalid_facts)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    try:  # (the service extra brings SQLAlchemy; the handler is there whenever a store can be)
        from sqlalchemy.exc import SQLAlchemyError
    except ModuleNotFoundError:  # pragma: no cover
        pass
    else:
        app.add_exception_handler(SQLAlchemyError, _storage)
    app.add_exception_handler(Exception, _any)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(AuditWriteFailed, _audit_failed)
