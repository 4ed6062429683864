"""base follows Cassandra to a new address, as when its pod is replaced, with no restart.

A real Cassandra node sits behind a TCP forwarder on one loopback address (the "pod"); the
forwarder is closed, as a killed pod's address stops answering, and another opens on a new
loopback address (the replacement pod). The contact point is a name whose answer the test
controls, as a headless Service's is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable

import msgspec
import pytest

from kubescaler.adapters.cassandra import CassandraRepository
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.models import User
from kubescaler_dev.cassandra import CassandraNode, provision

pytestmark = pytest.mark.integration


class Forwarder:
    """A TCP forwarder from (host, port) to 127.0.0.1:port; ``close`` drops every connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.transport.abort()
        await self._server.wait_closed()


async def _answers(repo: CassandraRepository) -> bool:
    try:
        await repo.ping()
    except DependencyUnavailable:
        return False
    return True


async def _until(repo: CassandraRepository, want: bool, timeout: float) -> float:
    start = time.monotonic()
    while await _answers(repo) != want:
        assert time.monotonic() - start < timeout, f"cassandra answering != {want} in {timeout}s"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def test_base_follows_a_replaced_cassandra_to_its_new_address(
    cassandra_node: CassandraNode,
) -> None:
    """The old address goes dark and the store answers at a new one: the driver alone stays on
    the dead address; base's repository re-resolves the name and answers again within seconds,
    with its data."""
    dns, port = {"cassandra.test": "127.0.0.2"}, cassandra_node.native_port

    def resolver(hosts: Iterable[str], _port: int) -> set[str]:
        return {dns[h] for h in hosts if h in dns}

    settings = msgspec.structs.replace(
        provision(cassandra_node, "kubescaler_moved"),  # base's role, granted this keyspace
        hosts=["cassandra.test"],
        request_timeout_s=2.0,
        reresolve_interval_s=0.2,
    )
    old = Forwarder("127.0.0.2", port)
    await old.start()
    repo = CassandraRepository(settings, resolver=resolver)
    runner = asyncio.create_task(repo.run())
    new = Forwarder("127.0.0.3", port)
    try:
        await _until(repo, True, timeout=120)
        user = User(id=uuid.uuid4(), name="moved")
        assert await repo.create_user(user)

        await old.close()  # the pod is killed: its address stops answering
        await _until(repo, False, timeout=30)
        await new.start()  # the replacement listens at a new address ...
        await asyncio.sleep(3)  # ... which the name does not name yet: the driver stays put
        assert not await _answers(repo)
        assert repo.sessions.replacements == 0

        dns["cassandra.test"] = "127.0.0.3"  # the headless Service now names the new pod
        took = await _until(repo, True, timeout=10)
        assert repo.sessions.replacements == 1
        assert await repo.get_user(user.id) == user
        print(f"base answered again {took:.2f}s after the name moved")
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        with contextlib.suppress(Exception):
            await repo.drop_all()
        await repo.close()
        with contextlib.suppress(AssertionError):
            await new.close()
