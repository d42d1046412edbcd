"""The server's signing secret (session cookies, CSRF tokens, OpenID Connect state; issue 12).

``SARCOMA_CDS_SECRET_KEY`` (at least 32 characters) when set: every replica behind a load
balancer must share it. Otherwise a random key is made once in ``<data_dir>/secret-key``
(mode 0600) and shared by the workers of one machine. Rotating it signs every user out.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ENV = "SARCOMA_CDS_SECRET_KEY"
MIN_LENGTH = 32


class SecretKeyError(ValueError):
    """The configured secret is unusable (too short); the message names the variable."""


def load_secret_key(data_dir: Path, env: dict[str, str] | None = None) -> bytes:
    """The signing secret: from the environment, else the machine's key file (made once)."""
    given = (os.environ if env is None else env).get(ENV, "").strip()
    if given:
        if len(given) < MIN_LENGTH:
            raise SecretKeyError(f"{ENV} must be at least {MIN_LENGTH} characters long")
        return given.encode()
    path = data_dir / "secret-key"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: when two workers start together, one writes and the other reads
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
        if len(key) >= MIN_LENGTH:
            return key.encode()
        raise SecretKeyError(f"{path}: the secret key file is empty or too short") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    return key.encode()
