"""The engine's pool on real PostgreSQL: a pooled connection that died while it sat in
the pool — its backend terminated, or its peer gone silent — is replaced as it is
checked out, and the caller's query runs as if nothing had happened."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from stayops_kit import db
from stayops_kit.testing import ProbeDb, eventually

pytestmark = pytest.mark.stack

BACKEND_PID = sa.select(sa.func.pg_backend_pid())


async def pooled_backend(engine: AsyncEngine) -> int:
    """Open the engine's one connection, note its backend, and give it back to the pool."""
    async with engine.connect() as conn:
        return int((await conn.execute(BACKEND_PID)).scalar_one())


async def backend_gone(probe: ProbeDb, pid: int) -> bool:
    async with probe.engine.connect() as conn:
        query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
        return (await conn.execute(query, {"pid": pid})).scalar_one() == 0


async def test_a_pooled_connection_whose_backend_was_terminated_is_replaced_on_checkout(probe: ProbeDb) -> None:
    engine = db.create_engine(probe.url, pool_size=1)
    try:
        old = await pooled_backend(engine)
        async with probe.engine.connect() as admin:  # as a restart or an operator would
            query = sa.text("SELECT pg_terminate_backend(:pid, 10000)")
            assert (await admin.execute(query, {"pid": old})).scalar_one() is True
        await eventually(lambda: backend_gone(probe, old), what=f"backend {old} ended")

        async with engine.begin() as conn:  # no error reaches the caller
            new = (await conn.execute(BACKEND_PID)).scalar_one()
        assert new != old
    finally:
        await engine.dispose()


@dataclass
class _Carried:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    silent: bool = False


@dataclass
class SilencingProxy:
    """A TCP proxy to PostgreSQL that can go silent on the connections it carries, as a
    peer that vanished does (a dead host, a dropped route): the client's socket stays
    open and nothing comes back, no FIN, no RST. New connections are carried as usual."""

    host: str
    port: int
    carried: list[_Carried] = field(default_factory=list)

    async def serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection(self.host, self.port)
        carried = _Carried(client_out, server_out)
        self.carried.append(carried)
        await asyncio.gather(self._pipe(client_in, server_out, carried), self._pipe(server_in, client_out, carried))

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, carried: _Carried) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if not carried.silent:
                    sink.write(data)
                    await sink.drain()
            if not carried.silent:
                sink.close()

    def go_silent(self) -> None:
        """Every connection carried so far: its server side closed, its client side mute."""
        for carried in self.carried:
            carried.silent = True
            carried.server.close()


@contextlib.asynccontextmanager
async def silencing_proxy(database_url: str) -> AsyncIterator[tuple[SilencingProxy, str]]:
    url = make_url(database_url)
    proxy = SilencingProxy(url.host or "127.0.0.1", url.port or 5432)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield proxy, url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        for carried in proxy.carried:
            carried.client.close()
        server.close()


async def test_a_pooled_connection_idle_past_the_limit_is_pinged_and_replaced_when_its_peer_vanished(
    probe: ProbeDb, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)  # every checkout has been idle long enough
    monkeypatch.setattr(db, "PING_TIMEOUT_S", 0.5)
    async with silencing_proxy(probe.url) as (proxy, url):
        engine = db.create_engine(url, pool_size=1)
        try:
            old = await pooled_backend(engine)
            proxy.go_silent()
            await eventually(lambda: backend_gone(probe, old), what=f"backend {old} ended")

            async with asyncio.timeout(20), engine.begin() as conn:  # no error reaches the caller
                new = (await conn.execute(BACKEND_PID)).scalar_one()
            assert new != old
        finally:
            await engine.dispose()
