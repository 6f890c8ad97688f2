"""Fixtures of the cluster tests: one PostgreSQL server for the session (skipped, with the
reason, when PostgreSQL or psycopg is missing), a fresh database per test, certificates."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from conformance.harness import Certificates

from .postgres import Postgres, Unavailable

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[test]' brings it)")
    try:
        server = Postgres()
        server.start()
    except Unavailable as exc:
        pytest.skip(f"no PostgreSQL for the cluster tests: {exc}")
    yield server
    server.stop()


@pytest.fixture
def dsn(postgres: Postgres) -> str:
    """A fresh database of its own for one test."""
    return postgres.create(f"jackrabbit_{next(_databases)}")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.make(tmp_path_factory.mktemp("cluster-certs"))
