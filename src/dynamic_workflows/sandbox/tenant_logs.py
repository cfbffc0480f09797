"""What each tenant's code printed or logged outside any workflow run (importing its modules,
``fetch``, RPC calls), kept on the host in a bounded ring per tenant worker.

A run's lines are the instance's, stored with its steps; these belong to no instance, so they
are kept in memory only, the latest :data:`DEFAULT_RING_BYTES` per tenant (the oldest go first,
and are counted), for at most :data:`DEFAULT_MAX_TENANTS` tenants (the least recently written
go first). The admin API serves them (``GET .../workers/:id/logs``). Each Worker Loader has one
:class:`TenantLogs`; a worker process adds what it sends with its calls' results, the in-process
loader what its tenants write.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

from ..core.logs import LogLine, line_size

__all__ = ["DEFAULT_MAX_TENANTS", "DEFAULT_RING_BYTES", "TenantLog", "TenantLogs"]

DEFAULT_RING_BYTES = 64 * 1024
"""Bytes of lines kept per tenant (sizes as :func:`~dynamic_workflows.core.logs.line_size`)."""

DEFAULT_MAX_TENANTS = 1000
"""Tenants whose rings are kept."""


class TenantLog:
    """One tenant's ring: its latest lines, numbered from 1 in the order they came (``seq``),
    so a reader can ask for what came after the last one it saw."""

    __slots__ = ("_lines", "bytes", "dropped", "max_bytes", "seq")

    def __init__(self, max_bytes: int = DEFAULT_RING_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lines: deque[tuple[int, LogLine, int]] = deque()
        self.bytes = 0
        self.seq = 0
        """The number of the last line added."""
        self.dropped = 0
        """Lines that left the ring (or never fitted in it), and drops notes reported."""

    def add(self, lines: Iterable[LogLine]) -> None:
        """Add ``lines`` (the oldest lines leave to make room)."""
        for line in lines:
            self.dropped += line.dropped
            size = line_size(line.text)
            self.seq += 1
            self._lines.append((self.seq, line, size))
            self.bytes += size
            while self.bytes > self.max_bytes and self._lines:
                _, _, old = self._lines.popleft()
                self.bytes -= old
                self.dropped += 1

    def since(self, after: int = 0, limit: int | None = None) -> list[tuple[int, LogLine]]:
        """The lines after number ``after`` still in the ring, oldest first (at most
        ``limit``)."""
        out = [(seq, line) for seq, line, _ in self._lines if seq > after]
        return out if limit is None else out[:limit]


class TenantLogs:
    """The rings of one Worker Loader's tenants, by loader id."""

    def __init__(
        self, ring_bytes: int = DEFAULT_RING_BYTES, max_tenants: int = DEFAULT_MAX_TENANTS
    ) -> None:
        self.ring_bytes = ring_bytes
        self.max_tenants = max_tenants
        self._rings: OrderedDict[str, TenantLog] = OrderedDict()

    def ring(self, tenant: str) -> TenantLog:
        """The ring of ``tenant`` (made on first use)."""
        ring = self._rings.get(tenant)
        if ring is None:
            ring = self._rings[tenant] = TenantLog(self.ring_bytes)
            while len(self._rings) > self.max_tenants:
                self._rings.popitem(last=False)
        else:
            self._rings.move_to_end(tenant)
        return ring

    def get(self, tenant: str) -> TenantLog | None:
        """The ring of ``tenant``, if it has one."""
        return self._rings.get(tenant)

    def tenants(self) -> list[str]:
        """Every tenant with a ring, most recently written last."""
        return list(self._rings)
