"""Reconciliation of the VRAM ledger with measured memory.

:func:`reconcile_ledger` compares what the allocator promised with what the driver measures:
per device (measured - baseline - reserved, beyond a tolerance) and, where the driver reports
per-process memory and reservations carry a pid, per process. It flags memory that is
reserved but unused (a worker that asked for too much, or already freed), and memory that is
used but not reserved (a leak, or a process that never reserved). Where the driver reports
pids of another namespace (a container) that cannot be matched with the reservations' pids,
the per-process comparison is skipped for that device (``per_process: False``) rather than
reporting every worker as both unreserved and unused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.gpu.types import GIB, DeviceReading

if TYPE_CHECKING:
    from workbench.gpu.reservation import Reservation

__all__ = ["ReconcileFinding", "ReconcileReport", "reconcile_ledger"]


@dataclass(frozen=True, slots=True)
class ReconcileFinding:
    """A mismatch between the ledger and measured memory.

    Attributes:
        kind: ``reserved_unused`` (promised but not used), ``used_unreserved`` (used without
            a reservation), ``over_reservation`` (a process uses more than it reserved).
        device: Device index.
        nbytes: Size of the mismatch in bytes.
        pid: Process concerned, if known.
        owner: Owner of the reservation concerned, if any.
        message: Human-readable explanation.
    """

    kind: str
    device: int
    nbytes: int
    pid: int | None
    owner: str | None
    message: str


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """Ledger against measurement for every device.

    Attributes:
        devices: Per device: ``device``, ``reserved_bytes``, ``measured_used_bytes`` (None if
            unreadable), ``baseline_bytes`` (memory in use before the allocator promised
            anything), ``unaccounted_bytes`` (measured - baseline - reserved).
        findings: The mismatches beyond the tolerance.
        tolerance_bytes: Differences up to this size are not reported.
    """

    devices: list[dict[str, Any]]
    findings: list[ReconcileFinding] = field(default_factory=list)
    tolerance_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tolerance_bytes": self.tolerance_bytes,
            "devices": self.devices,
            "findings": [asdict(f) for f in self.findings],
        }


def reconcile_ledger(
    readings: Iterable[DeviceReading],
    held: Sequence[Reservation],
    used: Sequence[int],
    baseline: Sequence[int],
    tolerance_bytes: int,
) -> ReconcileReport:
    """Compare live reservations ``held`` and per-device ``used`` ledger bytes with
    ``readings`` (see :meth:`VramAllocator.reconcile`)."""
    devices: list[dict[str, Any]] = []
    findings: list[ReconcileFinding] = []
    for rd in readings:
        d = rd.index
        measured = rd.memory_used_bytes if rd.available else None
        unaccounted = None if measured is None else measured - baseline[d] - used[d]
        devices.append(
            {
                "device": d,
                "reserved_bytes": used[d],
                "measured_used_bytes": measured,
                "baseline_bytes": baseline[d],
                "unaccounted_bytes": unaccounted,
            }
        )
        if unaccounted is not None and unaccounted > tolerance_bytes:
            findings.append(
                ReconcileFinding(
                    "used_unreserved",
                    d,
                    unaccounted,
                    None,
                    None,
                    f"device {d}: {unaccounted / GIB:.2f} GiB in use beyond reservations "
                    "and baseline (a leak, or a process that did not reserve)",
                )
            )
        elif unaccounted is not None and unaccounted < -tolerance_bytes:
            findings.append(
                ReconcileFinding(
                    "reserved_unused",
                    d,
                    -unaccounted,
                    None,
                    None,
                    f"device {d}: {-unaccounted / GIB:.2f} GiB reserved but not in use",
                )
            )
        by_pid: dict[int, list[Reservation]] = {}
        for r in held:
            if r.device == d and r.pid is not None:
                by_pid.setdefault(r.pid, []).append(r)
        reported = {p.pid for p in rd.processes}
        foreign = any(not p.visible for p in rd.processes)
        # Inside a container the driver reports host pids: if some are foreign and a
        # reservation's pid is not among them, pids cannot be matched; the device-level
        # comparison above still holds.
        per_process = not (foreign and any(pid not in reported for pid in by_pid))
        devices[-1]["per_process"] = per_process
        if not per_process:
            continue
        seen: set[int] = set()
        for p in rd.processes:
            if p.used_bytes is None:
                continue
            seen.add(p.pid)
            rs = by_pid.get(p.pid)
            if not rs:
                if p.used_bytes > tolerance_bytes:
                    where = "" if p.visible else " (pid from another namespace)"
                    findings.append(
                        ReconcileFinding(
                            "used_unreserved",
                            d,
                            p.used_bytes,
                            p.pid,
                            None,
                            f"pid {p.pid}{where} uses {p.used_bytes / GIB:.2f} GiB on device "
                            f"{d} without a reservation",
                        )
                    )
                continue
            promised = sum(r.nbytes for r in rs)
            if p.used_bytes > promised + tolerance_bytes:
                findings.append(
                    ReconcileFinding(
                        "over_reservation",
                        d,
                        p.used_bytes - promised,
                        p.pid,
                        rs[0].owner,
                        f"pid {p.pid} ({rs[0].owner}) uses {p.used_bytes / GIB:.2f} GiB, "
                        f"{(p.used_bytes - promised) / GIB:.2f} GiB more than reserved",
                    )
                )
            elif p.used_bytes + tolerance_bytes < promised:
                findings.append(
                    ReconcileFinding(
                        "reserved_unused",
                        d,
                        promised - p.used_bytes,
                        p.pid,
                        rs[0].owner,
                        f"pid {p.pid} ({rs[0].owner}) reserved {promised / GIB:.2f} GiB "
                        f"but uses {p.used_bytes / GIB:.2f} GiB",
                    )
                )
        if rd.processes:
            for pid, rs in by_pid.items():
                promised = sum(r.nbytes for r in rs)
                if pid not in seen and promised > tolerance_bytes:
                    findings.append(
                        ReconcileFinding(
                            "reserved_unused",
                            d,
                            promised,
                            pid,
                            rs[0].owner,
                            f"pid {pid} ({rs[0].owner}) reserved {promised / GIB:.2f} GiB on "
                            f"device {d} and uses none",
                        )
                    )
    return ReconcileReport(devices, findings, tolerance_bytes)
