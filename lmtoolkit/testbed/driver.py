"""Drive real QEMU live migrations on 127.0.0.1 and measure them.

A :class:`Testbed` boots the guest once and migrates it back and forth between two QEMU
processes (the old source quits after each migration and a fresh ``-incoming defer``
destination is started in its place), which saves the ~6 s TCG boot per run.  For each
migration (:meth:`Testbed.migrate`):

1. the guest's workload is set over the serial console and its achieved write rate
   measured for ``settle_s``;
2. the destination gets its capabilities and ``migrate-incoming``; the source gets
   capabilities (``events``, ``xbzrle``, ``auto-converge``, ``multifd``, ``postcopy-ram``) and
   parameters (``max-bandwidth``, ``downtime-limit``, …), then ``migrate``;
3. ``query-migrate`` is polled every 100 ms and ``MIGRATION_PASS`` events are recorded;
   with post-copy, ``migrate-start-postcopy`` is issued after ``postcopy_after_passes`` syncs
   (libvirt's ``--postcopy-after-precopy`` does this after the first pass) or, with
   ``postcopy_after_s``, that many seconds after ``migrate``;
4. a migration still running after ``timeout_s`` is cancelled (not converged);
5. on completion the guest checks its whole buffer on the destination (``verify``).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError, check_choice, check_range
from ..model.checks import check_fields
from .qemu import QemuVM, install_signal_handlers
from .setup import Paths, SetupError, paths

MIB = 1024**2
PAGE = 4096


@dataclass
class GuestSpec:
    memory_mib: int = 512
    buffer_mib: int = 192
    seed: int = 1
    wbytes: int = 64  # bytes each page write rewrites (fixed per boot)

    def __post_init__(self):
        check_fields(self)
        check_range("memory_mib", self.memory_mib, 0, None, lo_open=True, finite=True)
        check_range("buffer_mib", self.buffer_mib, 0, self.memory_mib, lo_open=True, hi_open=True)
        check_range("seed", self.seed, 0, None, finite=True)
        check_range("wbytes", self.wbytes, 1, 4096)


@dataclass
class RunSpec:
    """One migration's inputs (names follow the simulator's config keys)."""

    dirty_rate_pages_s: float = 0.0
    hot_mib: float | None = None  # null: the whole buffer
    pattern: str = "random"  # random | sequential
    max_bandwidth_mib_s: float = 64.0
    downtime_limit_ms: float = 300.0
    auto_converge: bool = False
    xbzrle: bool = False
    xbzrle_cache_mib: float = 64.0
    multifd_channels: int = 0  # 0: multifd off
    postcopy: bool = False
    postcopy_after_passes: int = 1
    postcopy_after_s: float | None = None  # start post-copy at this time instead (seconds)
    pacing: str = ""  # "" (the writer catches up <= 20 ms after a stall), "guest", "wall"
    memory_mib: int | None = None  # guest RAM for this run (None: the matrix's guest)
    buffer_mib: int | None = None  # the dirtier's buffer for this run (None: the matrix's guest)
    timeout_s: float = 60.0
    settle_s: float = 1.5
    repeat: int = 0
    tag: str = ""

    def __post_init__(self):
        """Types and ranges, each error naming its field (:func:`.matrix.expand` adds where the
        value came from: ``run.`` or ``matrix.runs[i].``)."""
        check_fields(self)
        check_range("dirty_rate_pages_s", self.dirty_rate_pages_s, 0, None, finite=True)
        check_choice("pattern", self.pattern, ("random", "sequential"))
        if self.pacing not in CATCHUP_MS:
            raise ConfigError("pacing", self.pacing, "'' (the default: catch up <= 20 ms), guest or wall")
        # finite: QMP takes integers (int(inf) raises), an infinite timeout never cancels
        for k in ("max_bandwidth_mib_s", "downtime_limit_ms", "xbzrle_cache_mib", "timeout_s"):
            check_range(k, getattr(self, k), 0, None, lo_open=True, finite=True)
        for k in ("hot_mib", "postcopy_after_s", "memory_mib", "buffer_mib"):
            if getattr(self, k) is not None:
                # an infinite postcopy_after_s is "never"; the others are sizes
                check_range(k, getattr(self, k), 0, None, lo_open=True, finite=k != "postcopy_after_s")
        check_range("multifd_channels", self.multifd_channels, 0, 255)  # QEMU: multifd-channels 1-255
        check_range("postcopy_after_passes", self.postcopy_after_passes, 1, None, finite=True)
        check_range("settle_s", self.settle_s, 0, None, finite=True)  # measured for that long
        check_range("repeat", self.repeat, 0, None, finite=True)
        if not isinstance(self.tag, str):
            raise ConfigError("tag", self.tag, "a string")
        if self.xbzrle and self.multifd_channels:
            raise ConfigError(
                "multifd_channels",
                self.multifd_channels,
                "0 with xbzrle: QEMU refuses xbzrle together with multifd",
            )


#: the dirtier's ``catchup_ms`` per ``RunSpec.pacing``: how much of a stall the writer makes up
#: ("guest": a throttled vCPU's writes are lost, as ``workload.pacing=guest``; "wall": every
#: stall is made up while the vCPU has time to spare, as ``workload.pacing=wall``)
CATCHUP_MS = {"": 20, "guest": 2, "wall": 10000}


def guest_for(spec: RunSpec, guest: GuestSpec) -> GuestSpec:
    """The guest a run needs: the matrix's, with the run's ``memory_mib``/``buffer_mib``."""
    d = asdict(guest)
    if spec.memory_mib is not None:
        d["memory_mib"] = int(spec.memory_mib)
    if spec.buffer_mib is not None:
        d["buffer_mib"] = int(spec.buffer_mib)
    return GuestSpec(**d)


def event_time(ev: dict, wall0: float, t0: float) -> float:
    """Seconds from the ``migrate`` command to a QMP event: QEMU's own ``timestamp`` (seconds
    and microseconds of the host's real-time clock when it emitted the event: for
    ``MIGRATION_PASS``, the end of the bitmap sync, ``migration/ram.c: migration_bitmap_sync``)
    against ``wall0`` (that clock at the command), else when the event was read (``_recv_t``,
    the monotonic clock, against ``t0``)."""
    ts = ev.get("timestamp") or {}
    if "seconds" in ts and "microseconds" in ts:
        return float(ts["seconds"]) + float(ts["microseconds"]) / 1e6 - wall0
    return float(ev["_recv_t"]) - t0


def writer_phase(stats: dict, rate: float, lag_s: float, pattern: str) -> float:
    """Where the guest's sequential writer stands in its hot set when the migration starts, as
    a fraction of the hot set (``workload.sweep_start``): its cursor in the ``stats`` reply
    moved on by ``rate`` pages/s for the ``lag_s`` seconds until the ``migrate`` command (the
    destination's start-up).  NaN for random writes, or a guest without the cursor field."""
    hot = float(stats.get("hot", 0) or 0)
    if pattern != "sequential" or "cursor" not in stats or hot <= 0:
        return float("nan")
    return float(math.fmod(float(stats["cursor"]) + max(rate, 0.0) * max(lag_s, 0.0), hot) / hot)


class MigrationFailed(RuntimeError):
    pass


class Testbed:
    """Two QEMU processes on 127.0.0.1 and one guest migrated between them."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        guest: GuestSpec | None = None,
        p: Paths | None = None,
        workdir: Path | None = None,
        log=print,
        port: int = 0,
    ):
        self.guest = guest or GuestSpec()
        self.p = p or paths()
        if not self.p.ready():
            raise SetupError(f"testbed not set up under {self.p.root}: run `lmtk testbed setup`")
        self.log = log
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="lmtk-testbed-"))
        self.port = port or _free_port()
        self.src: QemuVM | None = None
        self.dst: QemuVM | None = None
        self._names = ["a", "b"]
        self.boot_s = float("nan")
        self.migrations = 0

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self):
        install_signal_handlers()
        try:
            self.boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(keep_logs=exc_type is not None and not issubclass(exc_type, KeyboardInterrupt))
        return False

    def close(self, keep_logs: bool = False):
        """Kill both QEMUs; remove the work directory unless ``keep_logs`` (after a failure)."""
        for vm in (self.src, self.dst):
            if vm is not None:
                vm.kill()
        self.src = self.dst = None
        if self._own_dir and not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for f in sorted(self.workdir.glob("*.log")):
            txt = f.read_text(errors="replace").splitlines()[-lines:]
            if txt:
                out.append(f"--- {f}\n" + "\n".join(txt))
        return "\n".join(out)

    def _vm(self, name, incoming):
        g = self.guest
        return QemuVM(self.p, self.workdir, name, g.memory_mib, g.buffer_mib, g.seed, incoming=incoming)

    def boot(self) -> float:
        t0 = time.monotonic()
        self.src = self._vm(self._names[0], incoming=False)
        line = self.src.console.expect("LMTK READY", timeout=180)
        self.boot_s = time.monotonic() - t0
        self.src.console.command(f"set wbytes={self.guest.wbytes} rate=0", "LMTK OK")
        self.log(f"guest booted in {self.boot_s:.1f} s ({line})")
        return self.boot_s

    # -- one migration ---------------------------------------------------------------------
    def guest_rate(self, vm: QemuVM, seconds: float) -> tuple[float, dict]:
        a = vm.console.command("stats", "LMTK STATS")
        time.sleep(seconds)
        b = vm.console.command("stats", "LMTK STATS")
        dt = b["t"] - a["t"]
        return ((b["writes"] - a["writes"]) / dt if dt > 0 else 0.0), b

    def migrate(self, spec: RunSpec) -> dict:
        """Migrate the guest once with ``spec``; returns the measurements (a flat dict + series)."""
        src = self.src
        hot_pages = 0 if spec.hot_mib is None else int(spec.hot_mib * MIB // PAGE)
        pattern = "seq" if spec.pattern == "sequential" else "rand"
        catchup = CATCHUP_MS[spec.pacing]
        max_rate = float("nan")
        if spec.pacing == "wall" and spec.dirty_rate_pages_s > 0:
            # how fast the guest can write at all: what a clock-paced writer catches up with
            src.console.command(
                f"set rate=10000000 hot={hot_pages} pattern={pattern} catchup_ms=0", "LMTK OK"
            )
            max_rate, _ = self.guest_rate(src, 1.0)
        src.console.command(
            f"set rate={spec.dirty_rate_pages_s:.0f} hot={hot_pages} pattern={pattern} catchup_ms={catchup}",
            "LMTK OK",
        )
        rate_before, st0 = self.guest_rate(src, spec.settle_s)
        t_stats = time.monotonic()  # (the reply's arrival: its cursor is a few ms old then)

        dst_name = self._names[1]
        self.dst = dst = self._vm(dst_name, incoming=True)
        caps_dst = {"postcopy-ram": spec.postcopy, "multifd": spec.multifd_channels > 0}
        dst.qmp.cmd(
            "migrate-set-capabilities",
            capabilities=[{"capability": k, "state": v} for k, v in caps_dst.items()],
        )
        if spec.multifd_channels > 0:
            dst.qmp.cmd("migrate-set-parameters", **{"multifd-channels": spec.multifd_channels})
        uri = f"tcp:127.0.0.1:{self.port}"
        dst.qmp.cmd("migrate-incoming", uri=uri)

        caps = {
            "events": True,
            "xbzrle": spec.xbzrle,
            "auto-converge": spec.auto_converge,
            "multifd": spec.multifd_channels > 0,
            "postcopy-ram": spec.postcopy,
        }
        src.qmp.cmd(
            "migrate-set-capabilities", capabilities=[{"capability": k, "state": v} for k, v in caps.items()]
        )
        params = {
            "max-bandwidth": int(spec.max_bandwidth_mib_s * MIB),
            "downtime-limit": int(spec.downtime_limit_ms),
        }
        if spec.xbzrle:
            params["xbzrle-cache-size"] = int(spec.xbzrle_cache_mib * MIB)
        if spec.multifd_channels > 0:
            params["multifd-channels"] = spec.multifd_channels
        src.qmp.cmd("migrate-set-parameters", **params)
        src.qmp.poll_events()

        samples, passes = [], []
        t0 = time.monotonic()
        wall0 = time.time()  # QEMU stamps events with the host's real-time clock
        stamped = True  # every MIGRATION_PASS carried QEMU's timestamp
        src.qmp.cmd("migrate", uri=uri)
        sweep_start = writer_phase(st0, rate_before, t0 - t_stats, spec.pattern)
        status, info, postcopy_started, cancelled = "setup", {}, False, False
        last_active = {}
        while True:
            info = src.qmp.cmd("query-migrate")
            if info.get("status") in ("active", "postcopy-active", "device"):
                last_active = info
            now = time.monotonic() - t0
            status = info.get("status", "?")
            ram = info.get("ram", {})
            samples.append(
                (
                    now,
                    status,
                    ram.get("transferred", 0),
                    ram.get("remaining", 0),
                    ram.get("dirty-sync-count", 0),
                    info.get("cpu-throttle-percentage", 0),
                    ram.get("dirty-pages-rate", 0),
                )
            )
            for ev in src.qmp.poll_events():
                if ev.get("event") == "MIGRATION_PASS":
                    passes.append((event_time(ev, wall0, t0), ev["data"]["pass"]))
                    stamped = stamped and "seconds" in (ev.get("timestamp") or {})
            if status in ("completed", "failed", "cancelled"):
                break
            if (
                spec.postcopy
                and not postcopy_started
                and status == "active"
                and (
                    now >= spec.postcopy_after_s
                    if spec.postcopy_after_s is not None
                    else ram.get("dirty-sync-count", 0) >= 1 + spec.postcopy_after_passes
                )
            ):
                src.qmp.cmd("migrate-start-postcopy")
                postcopy_started = True
            if now > spec.timeout_s and not cancelled and status == "active":
                src.qmp.cmd("migrate_cancel")
                cancelled = True
            if not (src.alive() and dst.alive()):
                raise MigrationFailed(f"a QEMU process died during the migration (logs in {self.workdir})")
            time.sleep(0.1)
        wall = time.monotonic() - t0
        if status == "failed":
            raise MigrationFailed(f"migration failed: {info.get('error-desc', info)}")
        if status == "cancelled" and last_active:
            # a cancelled migration reports no RAM statistics: keep the last ones seen running
            info = {**last_active, "status": "cancelled"}
        out = self._measure(spec, info, samples, passes, rate_before, wall)
        out["postcopy_started"] = postcopy_started
        out["max_rate_measured"] = max_rate
        out["sweep_start"] = sweep_start
        # pass_time: when QEMU emitted each MIGRATION_PASS ("qemu") or when it was read
        out["pass_clock"] = "qemu" if stamped else "received"
        if status == "completed":
            # the guest runs on the destination now: its achieved rate and its memory check
            run = dst.qmp.cmd("query-status")
            if run.get("status") != "running":
                raise MigrationFailed(f"destination not running after migration: {run}")
            st1 = dst.console.command("stats", "LMTK STATS", timeout=60)
            dt = st1["t"] - st0["t"]
            out["dirty_rate_during"] = (st1["writes"] - st0["writes"]) / dt if dt > 0 else 0.0
            dst.console.command("set rate=0", "LMTK OK")
            v = dst.console.command("verify", "LMTK VERIFY", timeout=300)
            out["verify_pages"], out["verify_bad_pages"] = int(v["pages"]), int(v["bad"])
            src.qmp.cmd("quit") if src.alive() else None
            src.kill()
            self.src, self.dst = dst, None
            self._names.reverse()
        else:
            out["dirty_rate_during"] = float("nan")
            out["verify_pages"], out["verify_bad_pages"] = 0, -1
            src.console.command("set rate=0", "LMTK OK")
            dst.kill()
            self.dst = None
        self.migrations += 1
        return out

    def _measure(self, spec, info, samples, passes, rate_before, wall) -> dict:
        ram = info.get("ram", {})
        xb = info.get("xbzrle-cache", {})
        g = self.guest
        thr = [s[5] for s in samples]
        completed = info.get("status") == "completed"
        d = dict(asdict(spec))
        d.update(
            memory_mib=g.memory_mib,
            buffer_mib=g.buffer_mib,
            wbytes=g.wbytes,
            hot_pages=(g.buffer_mib * MIB // PAGE)
            if spec.hot_mib is None
            else int(spec.hot_mib * MIB // PAGE),
            dirty_rate_measured=rate_before,
            status=info.get("status"),
            completed=completed,
            total_time=info.get("total-time", float("nan")) / 1000.0 if completed else samples[-1][0],
            downtime=info.get("downtime", float("nan")) / 1000.0 if completed else float("nan"),
            setup_time=info.get("setup-time", float("nan")) / 1000.0,
            transferred=float(ram.get("transferred", 0)),
            ram_total=float(ram.get("total", 0)),
            ram_normal=float(ram.get("normal", 0)),
            ram_duplicate=float(ram.get("duplicate", 0)),
            ram_normal_bytes=float(ram.get("normal-bytes", 0)),
            precopy_bytes=float(ram.get("precopy-bytes", 0)),
            downtime_bytes=float(ram.get("downtime-bytes", 0)),
            postcopy_bytes=float(ram.get("postcopy-bytes", 0)),
            postcopy_requests=float(ram.get("postcopy-requests", 0)),
            dirty_sync_count=int(ram.get("dirty-sync-count", 0)),
            dirty_pages_rate=float(max([s[6] for s in samples] + [ram.get("dirty-pages-rate", 0)])),
            throttle=float(max(thr + [info.get("cpu-throttle-percentage", 0)])) / 100.0,
            mbps=float(ram.get("mbps", 0)),
            wall_time=wall,
            xbzrle_bytes=float(xb.get("bytes", 0)),
            xbzrle_pages=float(xb.get("pages", 0)),
            xbzrle_cache_miss=float(xb.get("cache-miss", 0)),
            xbzrle_overflow=float(xb.get("overflow", 0)),
        )
        d["samples"] = samples
        d["passes"] = passes
        return d


def _free_port() -> int:
    import socket

    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
