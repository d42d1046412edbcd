"""The HTTP service: REST API, FHIR endpoint, CDS Hooks 2.0.1, audit (``create_app``)."""

from sarcoma_cds.interfaces.api.app import create_app
from sarcoma_cds.interfaces.api.settings import Settings

__all__ = ["Settings", "create_app"]
