"""``workbench gpu <verb>``: look at the GPUs and check the GPU subsystem.

- ``status [--json]``: one reading of every device, its VRAM budget and health;
- ``watch [--hz H] [--count N | --duration S]``: a live terminal view (rich) that ends after
  N samples or S seconds (or Ctrl-C);
- ``check [--simulated] [--out PATH]``: the end-to-end check of :mod:`workbench.gpu.check`;
  it exits non-zero when a step failed or the check could not start (no GPU and no
  ``--simulated``).

``--simulated`` (or ``[gpu] backend = "simulated"``) uses a simulated 24 GiB device instead of
NVML; ``--scenario`` scripts it (thermal, leak, ecc, fall_off, steady).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

__all__ = ["register"]


def _backend(args: argparse.Namespace) -> Any:
    from workbench.config import load_settings
    from workbench.gpu.service import VisionConfig, make_backend
    from workbench.gpu.simulated import SimulatedBackend

    config = VisionConfig.from_section(load_settings().section("gpu"))
    if args.simulated or args.scenario:
        return SimulatedBackend(
            devices=config.devices, memory_gib=config.memory_gib, scenario=args.scenario
        ), config
    return make_backend(config), config


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024**3:.2f}"


def _num(value: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _snapshot(args: argparse.Namespace) -> dict[str, Any]:
    from workbench.gpu.health import HealthTracker

    backend, config = _backend(args)
    try:
        health = HealthTracker()
        readings = [backend.read(i) for i in range(backend.device_count())]
        health.update(readings)
        devices = []
        for rd in readings:
            info = backend.device_info(rd.index).to_dict()
            info["budget_bytes"] = int(info["memory_total_bytes"] * config.budget_fraction)
            info["reading"] = rd.to_dict()
            devices.append(info)
        return {"backend": backend.name, "devices": devices, "health": health.status()}
    finally:
        backend.close()


def _table(readings: list[Any], infos: list[Any], title: str) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("gpu", justify="right")
    table.add_column("name", max_width=12, overflow="ellipsis", no_wrap=True)
    for col in ("used", "total", "util%", "°C", "W", "SM MHz"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("throttle", max_width=10, overflow="ellipsis", no_wrap=True)
    table.add_column("ECC", justify="right", no_wrap=True)
    table.add_column("procs", justify="right", no_wrap=True)
    for rd, info in zip(readings, infos, strict=True):
        if not rd.available:
            table.add_row(str(rd.index), info.name, f"[red]{rd.error}[/]", *[""] * 8)
            continue
        ecc = f"{_num(rd.ecc_corrected)}/{_num(rd.ecc_uncorrected)}"
        table.add_row(
            str(rd.index),
            info.name,
            _gib(rd.memory_used_bytes),
            _gib(rd.memory_total_bytes),
            _num(rd.utilization_pct),
            _num(rd.temperature_c),
            _num(rd.power_w, "{:.1f}"),
            _num(rd.sm_clock_mhz),
            ",".join(rd.throttle_reasons) or "-",
            ecc,
            str(len(rd.processes)),
        )
    return table


def _cmd_status(args: argparse.Namespace) -> int:
    snap = _snapshot(args)
    if args.json:
        print(json.dumps(snap, indent=2))
        return 0
    from rich.console import Console

    from workbench.gpu.types import DeviceInfo, DeviceReading

    readings = [DeviceReading(**_reading_fields(d["reading"])) for d in snap["devices"]]
    infos = [
        DeviceInfo(d["index"], d["name"], d["uuid"], d["memory_total_bytes"])
        for d in snap["devices"]
    ]
    console = Console()
    console.print(_table(readings, infos, f"GPUs ({snap['backend']}; memory in GiB)"))
    health = snap["health"]
    console.print(f"health: {health['status']}")
    for reason in health["reasons"]:
        console.print(f"  - {reason}")
    return 0


def _reading_fields(d: dict[str, Any]) -> dict[str, Any]:
    from workbench.gpu.types import ProcessUsage

    out = dict(d)
    out["throttle_reasons"] = tuple(out["throttle_reasons"])
    out["processes"] = tuple(ProcessUsage(**p) for p in out["processes"])
    return out


def _cmd_watch(args: argparse.Namespace) -> int:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    from workbench.gpu.health import HealthTracker
    from workbench.gpu.monitor import GpuMonitor

    backend, _ = _backend(args)
    health = HealthTracker()
    monitor = GpuMonitor(backend, hz=args.hz, health=health)
    infos = [backend.device_info(i) for i in range(backend.device_count())]
    period = 1.0 / args.hz
    deadline = None if args.duration is None else time.monotonic() + args.duration
    shown = 0
    console = Console()
    try:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                readings = monitor.sample()
                shown += 1
                status = health.status()
                footer = Text(
                    f"health: {status['status']}  "
                    + "; ".join(status["reasons"])
                    + f"   sample {shown}{'' if args.count is None else '/' + str(args.count)}"
                )
                title = f"GPUs ({backend.name}; memory in GiB)"
                live.update(Group(_table(readings, infos, title), footer))
                live.refresh()
                if args.count is not None and shown >= args.count:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(period)
    except KeyboardInterrupt:
        pass
    finally:
        backend.close()
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from workbench.config import load_settings
    from workbench.gpu.check import main
    from workbench.gpu.service import VisionConfig

    # The check's exit status is the command's: 1 when a step failed or the check could not
    # start (no NVML and no --simulated), 0 only when every step that could run passed.
    config = VisionConfig.from_section(load_settings().section("gpu"))
    argv = ["--seconds", str(args.seconds)]
    if args.simulated or config.backend == "simulated":
        argv.append("--simulated")
    if args.out:
        argv += ["--out", args.out]
    return main(argv)


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def register(subparsers: Any) -> None:
    """Add ``workbench gpu status|watch|check``."""
    gpu = subparsers.add_parser("gpu", help="GPU devices, VRAM and health")
    verbs = gpu.add_subparsers(dest="gpu_command", metavar="VERB")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--simulated", action="store_true", help="use a simulated 24 GiB GPU")
        p.add_argument(
            "--scenario",
            default=None,
            help="scripted simulated scenario: steady, leak, thermal, ecc, fall_off",
        )

    p = verbs.add_parser("status", help="one reading of every device, with health")
    p.add_argument("--json", action="store_true", help="print JSON")
    common(p)
    p.set_defaults(func=_cmd_status)

    p = verbs.add_parser("watch", help="live view of the devices (rich)")
    p.add_argument("--hz", type=_positive(float), default=2.0, help="refresh rate (default 2)")
    p.add_argument("--count", type=_positive(int), default=None, help="stop after N samples")
    p.add_argument("--duration", type=_positive(float), default=None, help="stop after S seconds")
    common(p)
    p.set_defaults(func=_cmd_watch)

    p = verbs.add_parser("check", help="end-to-end check of monitor, allocator and scheduler")
    p.add_argument("--simulated", action="store_true", help="use the simulated backend")
    p.add_argument("--out", default=None, help="write JSON results here")
    p.add_argument("--seconds", type=_positive(float), default=5.0, help="monitor duration")
    p.set_defaults(func=_cmd_check)

    gpu.set_defaults(func=lambda args: (gpu.print_help(), 0)[1])
