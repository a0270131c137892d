"""The state backends the store, journal, sessions and plugin-table tests run on: the embedded
SQLite file, and PostgreSQL when ``CADENZA_TEST_POSTGRES_URL`` names a server (``.ci/run``
starts one with ``.ci/postgres``). Each PostgreSQL test gets a schema of its own (its
connections' ``search_path``) and a process name of its own, dropped afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy
from cadenza.state import DB_NAME, Store
from cadenza.state_postgres import PostgresStore, engine_for

ENV = "CADENZA_TEST_POSTGRES_URL"
NAMES = ("sqlite", "postgresql")
SKIP_REASON = (f"PostgreSQL variant: {ENV} is not set (bash .ci/postgres starts a server and "
               "prints its URL; .ci/run does it)")


@dataclass(frozen=True)
class Backend:
    name: str  # "sqlite" or "postgresql"
    url: str = ""  # the PostgreSQL URL, this test's schema on its search_path
    process_name: str = ""

    @property
    def postgres(self) -> bool:
        return self.name == "postgresql"

    def toml(self) -> str:
        """The plugins.toml lines that put a Cadenza on this backend."""
        if not self.postgres:
            return ""
        return f"\n[state]\nurl = {json.dumps(self.url)}\nname = {json.dumps(self.process_name)}\n"

    def open(self, state_dir: Path) -> Store:
        return PostgresStore(self.url) if self.postgres else Store.in_dir(state_dir)

    def rows(self, state_dir: Path, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Run ``sql`` (which both dialects speak) straight on the database, commit, and
        return its rows, if it has any."""
        if self.postgres:
            engine = engine_for(self.url)
        else:
            engine = sqlalchemy.create_engine(f"sqlite:///{state_dir / DB_NAME}")
        try:
            with engine.begin() as connection:
                result = connection.execute(sqlalchemy.text(sql), params)
                return [dict(row._mapping) for row in result] if result.returns_rows else []
        finally:
            engine.dispose()


@contextlib.contextmanager
def backend(name: str) -> Iterator[Backend]:
    if name == "sqlite":
        yield Backend("sqlite")
        return
    server = os.environ.get(ENV)
    if not server:
        pytest.skip(SKIP_REASON)
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = engine_for(server)
    try:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
            connection.commit()
        joiner = "&" if "?" in server else "?"
        url = f"{server}{joiner}options={quote(f'-csearch_path={schema}')}"
        yield Backend("postgresql", url, f"test-{schema}")
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            connection.commit()
        admin.dispose()
