"""``lmtk trace [-i S] [-d S] [-o FILE] (-- COMMAND … | --pid PID)``: capture dirty pages."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path


def _bad_option(args) -> str | None:
    """The first option that is not allowed, as the error line (None: all are)."""
    from ..model.workload import TRACE_MIN_INTERVAL_S

    if not (math.isfinite(args.interval) and args.interval >= TRACE_MIN_INTERVAL_S):
        return f"--interval={args.interval:g} is not allowed: a number of seconds >= {TRACE_MIN_INTERVAL_S:g}"
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        return f"--duration={args.duration:g} is not allowed: a number of seconds > 0 (or leave it out)"
    if args.pid is not None and args.pid <= 0:
        return f"--pid={args.pid} is not allowed: a process id > 0"
    return None


#: shared writable memory (bytes) from which lmtk trace warns that writes went untraced
SHARED_WARN_BYTES = 1 << 20


def cmd_trace(args) -> int:
    from .capture import NothingTraced, TraceUnsupported, probe, trace_command, trace_pid

    bad = _bad_option(args)
    if bad:
        print(f"lmtk trace: error: {bad}", file=sys.stderr)
        return 2
    argv = list(args.command or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    if bool(argv) == (args.pid is not None):
        print("lmtk trace: error: give a command after `--` or --pid PID (not both)", file=sys.stderr)
        return 2
    if args.pid is not None and not os.path.exists(f"/proc/{args.pid}"):  # bad input, as a missing
        print(f"lmtk trace: error: --pid {args.pid}: no process {args.pid}", file=sys.stderr)  # program
        return 2
    from ..errors import ConfigError
    from ..io import check_writable

    try:  # before the command runs: a trace that cannot be written is lost
        check_writable(args.output, "-o", (".npz",))
    except ConfigError as e:
        print(f"lmtk trace: error: {e}", file=sys.stderr)
        return 2
    try:
        method, _ = probe()
        if args.pid is not None:
            if method == "uffd-wp":
                print(
                    "lmtk trace: note: --pid with userfaultfd needs a process that armed write-protection "
                    "itself (started with LD_PRELOAD=wp_shim.so, see lmtoolkit.trace.capture)",
                    file=sys.stderr,
                )
            cap = trace_pid(args.pid, args.interval, args.duration, method)
            cap.source = f"pid {args.pid}"
        else:
            cap = trace_command(argv, args.interval, args.duration, method)
    except (TraceUnsupported, NothingTraced) as e:
        print(f"lmtk trace: error: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, PermissionError) as e:  # a command or pid that is not there: bad input
        what = f"pid {args.pid}" if args.pid is not None else f"command {argv[0]!r}"
        print(f"lmtk trace: error: cannot trace {what}: {e}", file=sys.stderr)
        return 2
    out = Path(args.output)
    cap.save(out)
    n, iv = len(cap.counts), cap.saved_interval_s
    if iv != cap.interval_s:
        print(
            f"lmtk trace: warning: the tracer could not keep up with -i {cap.interval_s:g}: its intervals "
            f"averaged {iv * 1000:.3g} ms, which the trace states (a longer -i keeps the asked-for one)",
            file=sys.stderr,
        )
    if cap.shared_bytes >= SHARED_WARN_BYTES:  # its writes look like none (README: private only)
        print(
            f"lmtk trace: warning: {cap.source} had {cap.shared_bytes / 2**20:.3g} MiB of shared writable "
            "memory (mmap.mmap(-1, n), shm, shared file mappings), which is not traced: its writes "
            "are not in the trace (map it MAP_PRIVATE, or trace with SelfTracker)",
            file=sys.stderr,
        )
    rate = sum(cap.counts) / (n * iv) if n else 0.0
    print(
        f"traced {cap.source} with {cap.method}: {n} intervals of {iv * 1000:.3g} ms, "
        f"{sum(cap.counts)} page writes (distinct per interval), {rate:.0f} pages/s"
    )
    print(f"wrote {out}  (replay: lmtk run workload=trace workload.file={out})")
    if cap.failed:  # the trace is kept, but it is of a failed run: said, and the status passed on
        print(
            f"lmtk trace: error: {cap.source} {cap.failed}: the trace in {out} is of a failed run "
            f"(lmtk trace exits with its status, {cap.shell_status})",
            file=sys.stderr,
        )
        return cap.shell_status
    return 0


def add_commands(sub) -> None:
    t = sub.add_parser(
        "trace",
        help="capture a real process's dirty pages into a trace file",
        description="Run COMMAND (or watch --pid) and record which pages it writes, "
        "interval by interval (userfaultfd write-protect + PAGEMAP_SCAN, "
        "or soft-dirty).  A COMMAND that fails (a non-zero exit status, a signal) still "
        "leaves its trace, and lmtk trace says so and exits with its status (128 + N for "
        "signal N), as time and strace do.",
    )
    t.add_argument("-i", "--interval", type=float, default=0.1, help="capture interval in seconds (0.1)")
    t.add_argument("-d", "--duration", type=float, default=None, help="stop after this many seconds")
    t.add_argument("-o", "--output", default="trace.npz", help="trace file to write (trace.npz)")
    t.add_argument("--pid", type=int, default=None, help="trace a running (cooperating) process")
    t.add_argument("command", nargs="*", help="-- COMMAND [ARGS…]")
    t.set_defaults(func=cmd_trace)
