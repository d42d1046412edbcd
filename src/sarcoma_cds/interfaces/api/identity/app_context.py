"""The CDS card's ``smart`` link and its ``appContext`` (issue 12): open the record the card was
made from after a SMART launch, but never another patient's record.

A CDS card's ``smart`` link carries ``appContext`` = ``{"case": <audit id>, "client": <the CDS
client's issuer>, "sig": <signature>}``; the EHR gives it back to the app in the launch's token
response (CDS Hooks 2.0, "appContext"). The audit record itself does not name the patient (it
keeps no patient id: privacy), so the binding is made when the card is served: ``sig`` is an
HMAC (itsdangerous, the server's secret from ``load_secret_key``, its own salt) over the audit
id, the client and the ``context.patientId`` the card was made for. After a launch the record is
opened only when

* the signature holds for the **launched** patient (the token response's ``patient``): an
  ``appContext`` copied from another patient's card, or altered, fails;
* the client is a configured CDS client whose ``fhir_servers`` cover the FHIR server that
  launched the app (the card was served to **that EHR**); and
* the audit record exists, came from CDS Hooks, and names that client as its caller.

Otherwise the launched patient's record is read afresh (as a launch without ``appContext``) and
the page says why the card's record was not opened.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, Signer

SALT = "sarcoma-cds.smart-app-context"
MAX_LEN = 2000
_AUDIT_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _signer(secret: bytes) -> Signer:
    return Signer(secret, salt=SALT, digest_method=hashlib.sha256)


def _message(case: str, client: str, patient: str) -> bytes:
    return json.dumps([case, client, patient], separators=(",", ":")).encode()


def bind_cards(answer: dict[str, Any], secret: bytes, client: str, patient: str) -> None:
    """Sign the ``appContext`` of every ``smart`` link of the cards in ``answer`` (in place) for
    the CDS client that receives them and the patient they were made for."""
    sign = _signer(secret)
    for card in answer.get("cards") or []:
        for link in card.get("links") or []:
            if link.get("type") != "smart" or not isinstance(link.get("appContext"), str):
                continue
            try:
                ctx = json.loads(link["appContext"])
            except ValueError:
                continue
            case = ctx.get("case") if isinstance(ctx, dict) else None
            if not isinstance(case, str):
                continue
            sig = sign.get_signature(_message(case, client, patient)).decode("ascii")
            link["appContext"] = json.dumps({"case": case, "client": client, "sig": sig},
                                            separators=(",", ":"))


@dataclass(frozen=True)
class CardContext:
    """An ``appContext`` as received: the audit id, the CDS client and the signature."""

    case: str
    client: str
    sig: str


class Refused(Exception):
    """The ``appContext`` cannot open a record; ``str(e)`` says why (shown to the user: it
    names no other patient and no record)."""


def parse(value: Any) -> CardContext | None:
    """The card context of a token response's ``appContext`` (None when there is none; raises
    :class:`Refused` when it is not one of this service's cards)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_LEN:
        raise Refused("the card's context is not one this service made")
    try:
        d = json.loads(value)
    except ValueError:
        raise Refused("the card's context is not one this service made") from None
    if not isinstance(d, dict) or not all(isinstance(d.get(k), str) for k in ("case", "client",
                                                                               "sig")):
        raise Refused("the card's context is not one this service made")
    if not _AUDIT_ID.fullmatch(d["case"]):
        raise Refused("the card's context is not one this service made")
    return CardContext(case=d["case"], client=d["client"][:300], sig=d["sig"][:200])


def verify(ctx: CardContext, secret: bytes, patient: str) -> None:
    """Raise :class:`Refused` unless ``ctx`` was signed for ``patient``."""
    try:
        ok = _signer(secret).verify_signature(_message(ctx.case, ctx.client, patient),
                                              ctx.sig.encode("ascii"))
    except (BadSignature, UnicodeEncodeError):
        ok = False
    if not ok:
        raise Refused("the card was made for another patient than the one opened in the EHR, "
                      "or its context was altered")
