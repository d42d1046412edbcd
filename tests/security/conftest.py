"""Fixtures of the attack tests: a real OpenID provider (node, ``tests/oidc``) for the whole
session, and apps configured to sign in with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.oidc_provider import Provider, running_provider


@pytest.fixture(scope="session")
def oidc() -> Iterator[Provider]:
    with running_provider() as p:
        yield p
