"""RFC 9457 problem details: every error is ``application/problem+json``, never a stack trace."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_TYPE = "https://sarcoma-cds.org/problems/"
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 409: "Conflict", 412: "Precondition failed",
          413: "Content too large", 415: "Unsupported media type",
          422: "Invalid input", 500: "Internal server error", 503: "Service unavailable"}
SLUGS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
         405: "method-not-allowed", 409: "conflict", 412: "precondition-failed",
         413: "content-too-large", 415: "unsupported-media-type", 422: "invalid-input",
         500: "internal-error", 503: "unavailable"}


def problem(status: int, detail: str, *, request_id: str | None = None,
            errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + SLUGS.get(status, str(status)),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if request_id:
        body["instance"] = f"urn:request:{request_id}"
    if errors is not None:
        body["errors"] = errors
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}},
    },
    "required": ["type", "title", "status"],
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"description": TITLES.get(c, "Error"),
                "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}} for c in codes}
