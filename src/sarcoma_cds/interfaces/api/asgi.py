"""ASGI entry point for uvicorn workers: ``sarcoma_cds.interfaces.api.asgi:app``."""

from sarcoma_cds.interfaces.api.app import create_app

app = create_app()
