from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import pg


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_schemas() -> Iterator[None]:
    yield
    pg.drop_schemas()


@pytest.fixture
def postgres_url() -> str:
    """The test server's URL (skips, or fails under CI, when it is down)."""
    return pg.require_postgres()
