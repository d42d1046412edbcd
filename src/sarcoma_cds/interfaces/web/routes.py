"""Routes of the web application (server-rendered Jinja2 pages), by page group.

``router`` includes, in this order, the browse pages (``routes_browse``), the patient form and
its result (``routes_patient``), saved cases and decisions (``routes_cases``) and the case
downloads (``routes_exports``). They share :class:`~sarcoma_cds.interfaces.web.pages.Pages`
through a dependency; ``mount`` puts one on the app.
"""

from __future__ import annotations

from fastapi import APIRouter

from sarcoma_cds.interfaces.web import routes_browse, routes_cases, routes_exports, routes_patient
from sarcoma_cds.interfaces.web.pages import STATIC, TEMPLATES, UI_PREFIX, chosen_label

__all__ = ["STATIC", "TEMPLATES", "UI_PREFIX", "chosen_label", "router"]

router = APIRouter(include_in_schema=False)
for _pages in (routes_browse, routes_patient, routes_cases, routes_exports):
    router.include_router(_pages.router)
