"""ASGI entry point for uvicorn workers: ``sarcoma_cds.interfaces.api.asgi:app``."""

import gc

from sarcoma_cds.interfaces.api.app import create_app

app = create_app()

# A serving worker: the knowledge base, the compiled rules and the modules are loaded for good.
# Keep the garbage collector from walking them again and again under load (shorter pauses).
gc.collect()
gc.freeze()
