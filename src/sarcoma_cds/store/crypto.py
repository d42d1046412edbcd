"""Patient data at rest: encrypted stored facts and a keyed, irreversible facts digest (issue 12).

An audit record keeps what the clinician saw. Read in the clear, its stored facts, its free-text
label (which may name the patient) and the recommendation (which restates most facts) would
disclose the patient to anyone who can read the database or a backup; and an unsalted SHA-256
of the canonical facts is brute-forced in milliseconds from what the recommendation restates.

:class:`DataCipher` holds the data keys (Fernet, from ``cryptography``; ``MultiFernet`` for
rotation: the first key encrypts, every key decrypts):

* JSON values (``raw_facts``, ``recommendation``) are stored as ``{"fernet": "<token>"}``, text
  (``label``) as ``fernet:<token>``; rows written before encryption stay readable as they are;
* the facts digest is ``hmac-sha256:<hex>`` under a key derived (HKDF) from the first data key,
  so without the key it cannot be recomputed, let alone inverted; old ``sha256:`` digests stay
  as they were. Digests made under different first keys differ for the same facts.

Keys come from ``SARCOMA_CDS_DATA_KEYS`` (comma-separated) or, by default, from
``<data_dir>/data-key`` made once with mode 0600 (:func:`load_data_keys`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENV = "SARCOMA_CDS_DATA_KEYS"
TEXT_PREFIX = "fernet:"
JSON_KEY = "fernet"
DIGEST_PREFIX = "hmac-sha256:"


class DataKeyError(ValueError):
    """A data key is unusable, or a stored value cannot be decrypted with the configured keys;
    the message names the variable or the file (never a key)."""


class DataCipher:
    """Encrypts and decrypts stored patient data and makes the keyed facts digest."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise DataKeyError(f"{ENV}: no data key given")
        fernets = []
        for i, k in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(k))
            except (ValueError, TypeError):
                raise DataKeyError(
                    f"{ENV}: key {i} is not a Fernet key (32 url-safe base64-encoded bytes; "
                    "make one with Fernet.generate_key())") from None
        self._fernet = MultiFernet(fernets)
        first = keys[0].encode() if isinstance(keys[0], str) else keys[0]
        self._mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                             info=b"sarcoma-cds facts digest v1").derive(first)

    # ------------------------------------------------------------------ digest
    def digest(self, canonical_json: str) -> str:
        """``hmac-sha256:<hex>`` of the canonical JSON of some facts."""
        mac = hmac.new(self._mac_key, canonical_json.encode(), hashlib.sha256).hexdigest()
        return DIGEST_PREFIX + mac

    # ------------------------------------------------------------------ values
    def seal_json(self, value: Any) -> dict[str, str] | None:
        """A JSON value as ``{"fernet": token}`` (None stays None)."""
        if value is None:
            return None
        blob = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        return {JSON_KEY: self._fernet.encrypt(blob).decode("ascii")}

    def seal_json_bytes(self, blob: bytes) -> dict[str, str]:
        """Already-serialised JSON (e.g. pydantic's ``to_json``) as ``{"fernet": token}``."""
        return {JSON_KEY: self._fernet.encrypt(blob).decode("ascii")}

    def seal_text(self, value: str | None) -> str | None:
        if value is None:
            return None
        return TEXT_PREFIX + self._fernet.encrypt(value.encode()).decode("ascii")

    def open_json(self, stored: Any) -> Any:
        """The value of a stored JSON column (plaintext rows are returned as they are)."""
        if not is_sealed_json(stored):
            return stored
        return json.loads(self._decrypt(stored[JSON_KEY]))

    def open_text(self, stored: str | None) -> str | None:
        if not is_sealed_text(stored):
            return stored
        assert stored is not None
        return self._decrypt(stored[len(TEXT_PREFIX):]).decode()

    def _decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except InvalidToken:
            raise DataKeyError(f"a stored value cannot be decrypted with the keys in {ENV} "
                               "(or <data_dir>/data-key): was its key removed?") from None

    # ------------------------------------------------------------------ rotation
    def reseal_json(self, stored: Any) -> Any:
        """A stored JSON value encrypted with the first key (plaintext rows get encrypted)."""
        if stored is None:
            return None
        if is_sealed_json(stored):
            return {JSON_KEY: self._rotate(stored[JSON_KEY])}
        return self.seal_json(stored)

    def reseal_text(self, stored: str | None) -> str | None:
        if stored is None:
            return None
        if is_sealed_text(stored):
            return TEXT_PREFIX + self._rotate(stored[len(TEXT_PREFIX):])
        return self.seal_text(stored)

    def _rotate(self, token: str) -> str:
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise DataKeyError(f"a stored value cannot be decrypted with the keys in {ENV}; "
                               "keep its old key in the list until rekey has run") from None


def is_sealed_json(stored: Any) -> bool:
    return isinstance(stored, dict) and set(stored) == {JSON_KEY} and isinstance(
        stored[JSON_KEY], str)


def is_sealed_text(stored: Any) -> bool:
    return isinstance(stored, str) and stored.startswith(TEXT_PREFIX)


def load_data_keys(data_dir: Path, keys: Sequence[str] = (), *,
                   create: bool = True) -> list[str]:
    """The configured data keys, else the machine's key file ``<data_dir>/data-key`` (made once,
    0600, unless ``create`` is False: then [] when there is none; when two workers start
    together one writes it and the other reads it)."""
    if keys:
        return list(keys)
    path = data_dir / "data-key"
    if not create and not path.exists():
        return []
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # written whole to a private temporary file, then linked into place: a worker starting
        # at the same time sees either no file or the whole key, never a half-written one
        key = Fernet.generate_key().decode("ascii")
        tmp = data_dir / f".data-key.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    keys = [v.strip() for v in path.read_text(encoding="ascii").split(",") if v.strip()]
    if not keys:
        raise DataKeyError(f"{path}: the data key file is empty")
    return keys
