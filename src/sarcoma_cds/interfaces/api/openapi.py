"""The OpenAPI document: shared request schemas and the components FastAPI cannot derive.

Routes read their bodies with :func:`~sarcoma_cds.interfaces.api.deps.json_body` (so that a
body error is a problem document, not FastAPI's), which leaves FastAPI no model to describe;
the routes name the schemas here and :func:`install_openapi` adds the contract models
(patient facts, recommendation) to the document's components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from sarcoma_cds import PatientFacts

#: Any JSON object (FHIR Bundles, CDS Hooks requests).
JSON_OBJECT = {"type": "object", "additionalProperties": True}


def _facts_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    schema = PatientFacts.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return schema, defs


#: The facts contract as a request body schema; its ``$defs`` go to the components.
FACTS_SCHEMA, FACTS_DEFS = _facts_schema()


def json_request_body(*media_types: str, schema: dict[str, Any] = JSON_OBJECT) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON body of ``schema`` in each media type."""
    content = {m: {"schema": schema} for m in media_types or ("application/json",)}
    return {"requestBody": {"required": True, "content": content}}


def install_openapi(app: FastAPI) -> None:
    """Build the document once, on first request, with the contract models as components."""

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        from sarcoma_cds import Recommendation

        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        comps.update(FACTS_DEFS)
        rec_schema = Recommendation.model_json_schema(ref_template="#/components/schemas/{model}")
        comps.update(rec_schema.pop("$defs", {}))
        comps["Recommendation"] = rec_schema
        comps["PatientFacts"] = FACTS_SCHEMA
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
