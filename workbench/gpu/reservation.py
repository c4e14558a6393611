"""Reservations of VRAM and the requests that wait for them.

A :class:`ReservationRequest` is what :meth:`VramAllocator.reserve` returns: a sync and async
context manager that waits (in priority order) for the memory and yields a
:class:`Reservation`, which gives the memory back exactly once. The decisions themselves are
made by :class:`~workbench.gpu.allocator.VramAllocator` under its lock; these objects hold
state and forward to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.errors import ConflictError

if TYPE_CHECKING:
    from workbench.gpu.allocator import VramAllocator

__all__ = ["AllocatorEvent", "Reservation", "ReservationRequest", "WaitCancelled"]


class WaitCancelled(ConflictError):
    """A queued reservation request was cancelled before it was granted."""

    code = "CANCELLED"


class Reservation:
    """Memory promised to an owner on one device. Release it exactly once (``with`` does).

    Attributes:
        id: Allocator-unique id.
        owner: Who holds it (a worker name, a job id, ``"model:<name>"``).
        device: Device index.
        nbytes: Bytes reserved.
        priority: Priority it was requested with.
        pid: Owning process; :meth:`VramAllocator.collect` releases the reservation when
            that process is gone. ``None``: no process check.
        created_at: Allocator-clock time of the grant.
        lease_s: Length of the lease, renewed by :meth:`renew` (``None``: no lease).
        lease_expires_at: Allocator-clock time the lease ends (``None``: no lease).
        model: Name of the resident model, for residency reservations.
        refs: Current users of a resident model.
        keep_alive_s: Idle time a resident model stays loaded.
        last_used: Allocator-clock time a resident model was last released by a user.
        idle_expires_at: When an idle resident model is unloaded (``None`` while in use).
    """

    __slots__ = (
        "_alloc",
        "_released",
        "created_at",
        "device",
        "id",
        "idle_expires_at",
        "keep_alive_s",
        "last_used",
        "lease_expires_at",
        "lease_s",
        "model",
        "nbytes",
        "owner",
        "pid",
        "priority",
        "refs",
    )

    def __init__(
        self,
        alloc: VramAllocator,
        rid: int,
        owner: str,
        device: int,
        nbytes: int,
        priority: int,
        pid: int | None,
        now: float,
        lease_s: float | None,
    ) -> None:
        self._alloc = alloc
        self._released = False
        self.id = rid
        self.owner = owner
        self.device = device
        self.nbytes = nbytes
        self.priority = priority
        self.pid = pid
        self.created_at = now
        self.lease_s = lease_s
        self.lease_expires_at = None if lease_s is None else now + lease_s
        self.model: str | None = None
        self.refs = 0
        self.keep_alive_s = 0.0
        self.last_used = now
        self.idle_expires_at: float | None = None

    @property
    def released(self) -> bool:
        """Whether the memory went back to the budget."""
        return self._released

    def release(self) -> bool:
        """Give the memory back. Returns False (and changes nothing) if already released."""
        return self._alloc._release(self, "released")

    def renew(self, lease_s: float | None = None) -> float:
        """Extend the lease by ``lease_s`` (default: the original lease) from now.

        Returns:
            The new expiry time on the allocator's clock.

        Raises:
            ConflictError: the reservation was already released.
            InputError: it has no lease and ``lease_s`` is not given.
        """
        return self._alloc._renew(self, lease_s)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "id": self.id,
            "owner": self.owner,
            "device": self.device,
            "nbytes": self.nbytes,
            "priority": self.priority,
            "pid": self.pid,
            "created_at": self.created_at,
            "lease_s": self.lease_s,
            "lease_expires_at": self.lease_expires_at,
            "model": self.model,
            "refs": self.refs,
            "keep_alive_s": self.keep_alive_s,
            "idle_expires_at": self.idle_expires_at,
            "released": self._released,
        }

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        # For a resident model this is one user leaving, not the end of the residency.
        self._alloc._release_model_or_plain(self)

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return (
            f"Reservation(id={self.id}, owner={self.owner!r}, device={self.device}, "
            f"nbytes={self.nbytes}, {state})"
        )


class _Waiter:
    __slots__ = (
        "async_future",
        "cancelled",
        "device",
        "event",
        "fresh",
        "keep_alive_s",
        "lease_s",
        "loop",
        "model",
        "nbytes",
        "owner",
        "pid",
        "priority",
        "result",
        "seq",
    )

    def __init__(self, req: ReservationRequest, seq: int) -> None:
        self.priority = req.priority
        self.seq = seq
        self.nbytes = req.nbytes
        self.device = req.device
        self.owner = req.owner
        self.pid = req.pid
        self.lease_s = req.lease_s
        self.model = req.model
        self.keep_alive_s = req.keep_alive_s
        self.result: Reservation | None = None
        self.fresh = False
        self.cancelled = False
        self.event: threading.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.async_future: asyncio.Future[None] | None = None

    def __lt__(self, other: _Waiter) -> bool:
        if self.priority != other.priority:
            return self.priority > other.priority
        return self.seq < other.seq

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()
        elif self.loop is not None and self.async_future is not None:
            fut = self.async_future
            # A closed loop raises RuntimeError: its waiter is gone with it.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(_set_done, fut)


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ReservationRequest:
    """A pending reservation; a (sync or async) context manager that yields a
    :class:`Reservation` and releases it on exit. Made by :meth:`VramAllocator.reserve`.

    :meth:`cancel` (from any thread) makes a waiting ``__enter__`` raise
    :class:`WaitCancelled`, as does :meth:`VramAllocator.close`.
    """

    __slots__ = (
        "_alloc",
        "_cancelled",
        "_waiter",
        "device",
        "fresh",
        "keep_alive_s",
        "lease_s",
        "model",
        "nbytes",
        "owner",
        "pid",
        "priority",
        "reservation",
        "timeout",
    )

    def __init__(
        self,
        alloc: VramAllocator,
        owner: str,
        nbytes: int,
        priority: int,
        timeout: float | None,
        device: int | None,
        pid: int | None,
        lease_s: float | None,
        model: str | None = None,
        keep_alive_s: float = 0.0,
    ) -> None:
        self._alloc = alloc
        self.owner = owner
        self.nbytes = nbytes
        self.priority = priority
        self.timeout = timeout
        self.device = device
        self.pid = pid
        self.lease_s = lease_s
        self.model = model
        self.keep_alive_s = keep_alive_s
        self.reservation: Reservation | None = None
        #: Whether the grant reserved new memory (False: it shares a resident model).
        self.fresh = False
        self._waiter: _Waiter | None = None
        self._cancelled = False

    def acquire(self) -> Reservation:
        """Block until granted (or time out, or be cancelled) and return the reservation."""
        self.reservation = self._alloc._acquire(self)
        return self.reservation

    async def acquire_async(self) -> Reservation:
        """Like :meth:`acquire` without blocking the event loop."""
        self.reservation = await self._alloc._acquire_async(self)
        return self.reservation

    def cancel(self) -> bool:
        """Cancel the request if it is still waiting; returns whether it was.

        A request cancelled before it started waiting never waits: if it cannot be granted
        at once, its ``acquire`` raises :class:`WaitCancelled`.
        """
        return self._alloc._cancel(self)

    def __enter__(self) -> Reservation:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        if self.reservation is not None:
            self._alloc._release_model_or_plain(self.reservation)

    async def __aenter__(self) -> Reservation:
        return await self.acquire_async()

    async def __aexit__(self, *exc: object) -> None:
        if self.reservation is not None:
            self._alloc._release_model_or_plain(self.reservation)


@dataclass(frozen=True, slots=True)
class AllocatorEvent:
    """Something the allocator did on its own.

    Attributes:
        kind: ``evicted`` (idle model pushed out under pressure), ``expired`` (idle model
            past its keep-alive), ``owner_dead`` (owner process gone), ``lease_expired``, or
            ``released`` (a resident model's reservation released outright by id).
        reservation: The reservation concerned (already released).
        time: Allocator-clock time.
    """

    kind: str
    reservation: Reservation
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "time": self.time, "reservation": self.reservation.to_dict()}
