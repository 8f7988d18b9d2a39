"""Capture the dirty pages of a real Linux process over time → a trace file (``format.py``).

Two mechanisms, chosen by :func:`probe`:

* **userfaultfd write-protect + PAGEMAP_SCAN** (Linux ≥ 6.7): the traced process arms an
  asynchronous write-protecting userfaultfd over its writable private mappings (the
  ``wp_shim.so`` helper, loaded with ``LD_PRELOAD`` for ``lmtk trace -- COMMAND``; or
  :class:`SelfTracker` for a Python process tracing its own buffer); every interval the
  tracer calls ``ioctl(PAGEMAP_SCAN)`` on ``/proc/PID/pagemap`` with
  ``PM_SCAN_WP_MATCHING``: the kernel returns the pages written since the last scan
  (category ``PAGE_IS_WRITTEN`` within ``PAGE_IS_WPALLOWED`` mappings) and write-protects
  them again atomically.
* **soft-dirty** (``CONFIG_MEM_SOFT_DIRTY``): write ``4`` to ``/proc/PID/clear_refs``, read
  bit 55 of ``/proc/PID/pagemap`` for every page of the writable mappings each interval.
  Works on any process without its cooperation, but costs O(mapped pages) per interval.

Page numbers in the trace are dense: each writable mapping gets a base index when first
seen (in order of appearance), page = base + offset within the mapping.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import shutil
import signal
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
HELPER_SRC = Path(__file__).resolve().parent / "helper" / "wp_shim.c"

# <linux/fs.h> (6.7+): PAGEMAP_SCAN
PAGE_IS_WPALLOWED = 1 << 0
PAGE_IS_WRITTEN = 1 << 1
PM_SCAN_WP_MATCHING = 1 << 0
PM_SCAN_CHECK_WPASYNC = 1 << 1


def _iowr(typ: int, nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (typ << 8) | nr


class PmScanArg(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_uint64)
        for n in (
            "size",
            "flags",
            "start",
            "end",
            "walk_end",
            "vec",
            "vec_len",
            "max_pages",
            "category_inverted",
            "category_mask",
            "category_anyof_mask",
            "return_mask",
        )
    ]


class PageRegion(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("categories", ctypes.c_uint64)]


PAGEMAP_SCAN = _iowr(ord("f"), 16, ctypes.sizeof(PmScanArg))
# <linux/userfaultfd.h>
UFFD_API = 0xAA
UFFD_USER_MODE_ONLY = 1
UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFDIO_API = _iowr(0xAA, 0x3F, 24)
UFFDIO_REGISTER = _iowr(0xAA, 0x00, 32)
UFFDIO_WRITEPROTECT = _iowr(0xAA, 0x06, 24)
UFFDIO_REGISTER_MODE_WP = 1 << 1
UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0
SYS_userfaultfd = {"x86_64": 323, "aarch64": 282}.get(os.uname().machine, 323)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


class TraceUnsupported(RuntimeError):
    """The kernel offers neither mechanism; the message says what is missing."""


class NothingTraced(RuntimeError):
    """The process was gone before a first interval could be recorded (or never existed)."""


def _ioctl(fd: int, req: int, arg) -> int:
    r = _libc.ioctl(fd, req, ctypes.cast(ctypes.pointer(arg), ctypes.c_void_p))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


# -- probing -------------------------------------------------------------------------------
def _probe_uffd_wp_async() -> str | None:
    """None if userfaultfd asynchronous write-protect works, else why not."""
    fd = _libc.syscall(SYS_userfaultfd, os.O_CLOEXEC | os.O_NONBLOCK | UFFD_USER_MODE_ONLY)
    if fd < 0:
        fd = _libc.syscall(SYS_userfaultfd, os.O_CLOEXEC | os.O_NONBLOCK)
    if fd < 0:
        e = ctypes.get_errno()
        return (
            f"userfaultfd() failed: {os.strerror(e)} (kernel without CONFIG_USERFAULTFD, or "
            f"vm.unprivileged_userfaultfd=0 for a non-root user)"
        )
    try:
        api = (ctypes.c_uint64 * 3)(UFFD_API, UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, 0)
        try:
            _ioctl(fd, UFFDIO_API, api)
        except OSError as e:
            return f"userfaultfd UFFD_FEATURE_WP_ASYNC not available ({e.strerror}; needs Linux >= 6.7)"
    finally:
        os.close(fd)
    return None


def _probe_pagemap_scan() -> str | None:
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        arg = PmScanArg(size=ctypes.sizeof(PmScanArg), start=0, end=0)
        try:
            _ioctl(fd, PAGEMAP_SCAN, arg)
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EOPNOTSUPP):
                return "ioctl PAGEMAP_SCAN not available on /proc/PID/pagemap (needs Linux >= 6.7)"
    finally:
        os.close(fd)
    return None


def _probe_soft_dirty() -> str | None:
    buf = mmap.mmap(-1, PAGE)
    try:
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        buf[0:1] = b"x"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("4")
        except OSError as e:
            return f"cannot write /proc/self/clear_refs ({e.strerror})"
        buf[0:1] = b"y"
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(addr // PAGE * 8)
            (ent,) = struct.unpack("<Q", f.read(8))
        if not (ent >> 55) & 1:
            return "soft-dirty bit not set after a write (kernel built without CONFIG_MEM_SOFT_DIRTY)"
    finally:
        buf.close()
    return None


def probe() -> tuple[str, dict]:
    """``("uffd-wp", why)``, ``("soft-dirty", why)``; raise :class:`TraceUnsupported` if neither."""
    why = {"uffd-wp": _probe_uffd_wp_async() or _probe_pagemap_scan(), "soft-dirty": None}
    if why["uffd-wp"] is None:
        return "uffd-wp", why
    why["soft-dirty"] = _probe_soft_dirty()
    if why["soft-dirty"] is None:
        return "soft-dirty", why
    raise TraceUnsupported(
        "cannot track dirty pages on this kernel "
        f"({os.uname().release}): userfaultfd write-protect + PAGEMAP_SCAN: {why['uffd-wp']}; "
        f"soft-dirty: {why['soft-dirty']}.  Needs Linux >= 6.7 (UFFD_FEATURE_WP_ASYNC and the "
        "PAGEMAP_SCAN ioctl) or a kernel with CONFIG_MEM_SOFT_DIRTY=y."
    )


# -- the helper library ----------------------------------------------------------------------
def helper_path(build: bool = True) -> Path:
    """``wp_shim.so`` (built with gcc into the testbed cache on first use)."""
    from ..testbed.setup import cache_dir

    out = cache_dir() / "wp_shim.so"
    if out.exists() and out.stat().st_mtime >= HELPER_SRC.stat().st_mtime:
        return out
    if not build:
        raise FileNotFoundError(out)
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise TraceUnsupported("building the tracing helper needs a C compiler (apt-get install gcc)")
    out.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-pthread", "-Wl,-z,now", "-o", str(out), str(HELPER_SRC)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise TraceUnsupported(f"building {HELPER_SRC.name} failed:\n{r.stderr[-1500:]}")
    return out


# -- mappings and page numbering -------------------------------------------------------------
@dataclass
class PageNumbering:
    """Dense page numbers: each mapping (by start address) gets a base when first seen."""

    bases: dict = field(default_factory=dict)  # start -> (base page, n pages)
    next_base: int = 0

    def update(self, maps: list[tuple[int, int]]) -> None:
        for s, e in maps:
            n = (e - s) // PAGE
            cur = self.bases.get(s)
            if cur is None or n > cur[1]:
                # a mapping that grew (heap) keeps its base if the growth fits before the next one
                if (
                    cur is not None
                    and cur[0] + n <= self.next_base
                    and all(b <= cur[0] or b >= cur[0] + n for b, _ in self.bases.values() if b != cur[0])
                ):
                    self.bases[s] = (cur[0], n)
                    continue
                self.bases[s] = (self.next_base, n)
                self.next_base += n

    def number(self, addrs: np.ndarray) -> np.ndarray:
        starts = np.array(sorted(self.bases), dtype=np.uint64)
        if not starts.size or not addrs.size:
            return np.empty(0, np.int64)
        idx = np.searchsorted(starts, addrs, side="right") - 1
        ok = idx >= 0
        s = starts[np.maximum(idx, 0)]
        base = np.array([self.bases[int(x)][0] for x in s], dtype=np.int64)
        n = np.array([self.bases[int(x)][1] for x in s], dtype=np.int64)
        off = ((addrs - s) // PAGE).astype(np.int64)
        ok &= off < n
        return (base + off)[ok]


def writable_mappings(pid) -> list[tuple[int, int]]:
    """The process's private writable mappings (start, end): what the tracers follow."""
    return _writable(pid)["p"]


def shared_bytes(maps: dict) -> int:
    """Bytes of the shared writable mappings of :func:`_writable`'s ``maps`` (``mmap.mmap(-1,
    n)``, shm, a file mapped shared): the tracers do not follow them (README: private
    mappings), so writes there are not in the trace."""
    return sum(e - s for s, e in maps["s"])


def _writable(pid) -> dict[str, list[tuple[int, int]]]:
    """The process's writable mappings (start, end), private (``"p"``) and shared (``"s"``),
    from one read of ``/proc/PID/maps``."""
    out: dict[str, list[tuple[int, int]]] = {"p": [], "s": []}
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            perms = parts[1]
            if perms[1] != "w" or perms[3] not in out:
                continue
            if len(parts) > 5 and parts[5] in ("[vvar]", "[vdso]", "[vsyscall]"):
                continue
            s, e = (int(x, 16) for x in parts[0].split("-"))
            out[perms[3]].append((s, e))
    return out


# -- scanners --------------------------------------------------------------------------------
class PagemapScanner:
    """Written pages since the last call, via PAGEMAP_SCAN with PM_SCAN_WP_MATCHING."""

    def __init__(self, pid, start: int = 0, end: int = (1 << 47) - PAGE, vec_len: int = 65536):
        self.fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        self.start, self.end = start, end
        self.vec = (PageRegion * vec_len)()
        self.vec_len = vec_len

    def written_addresses(self) -> np.ndarray:
        out = []
        start = self.start
        while start < self.end:
            arg = PmScanArg(
                size=ctypes.sizeof(PmScanArg),
                flags=PM_SCAN_WP_MATCHING,
                start=start,
                end=self.end,
                vec=ctypes.addressof(self.vec),
                vec_len=self.vec_len,
                category_mask=PAGE_IS_WPALLOWED | PAGE_IS_WRITTEN,
                return_mask=PAGE_IS_WRITTEN,
            )
            n = _ioctl(self.fd, PAGEMAP_SCAN, arg)
            if n:
                reg = np.frombuffer(self.vec, dtype=np.uint64, count=3 * n).reshape(n, 3)
                for s, e in reg[:, :2]:
                    out.append(np.arange(int(s), int(e), PAGE, dtype=np.uint64))
            if arg.walk_end >= self.end or n < self.vec_len:
                break
            start = int(arg.walk_end)
        return np.concatenate(out) if out else np.empty(0, np.uint64)

    def close(self):
        os.close(self.fd)


class SoftDirtyScanner:
    """Written pages since the last call, via clear_refs + pagemap bit 55 (soft-dirty)."""

    def __init__(self, pid):
        self.pid = pid
        self._clear()

    def _clear(self):
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("4")

    def written_addresses(self) -> np.ndarray:
        out = []
        with open(f"/proc/{self.pid}/pagemap", "rb") as f:
            for s, e in writable_mappings(self.pid):
                f.seek(s // PAGE * 8)
                ent = np.frombuffer(f.read((e - s) // PAGE * 8), dtype="<u8")
                hit = np.flatnonzero((ent >> np.uint64(55)) & np.uint64(1))
                if hit.size:
                    out.append(np.uint64(s) + hit.astype(np.uint64) * np.uint64(PAGE))
        self._clear()
        return np.concatenate(out) if out else np.empty(0, np.uint64)

    def close(self):
        pass


# -- tracing ---------------------------------------------------------------------------------
@dataclass
class Capture:
    """What :func:`trace_pid` saw: per interval the distinct pages written (``counts``,
    ``pages``) and when the interval ended (``times``: monotonic seconds since the first scan,
    which discards what happened before it; intervals last ``interval_s`` unless the tracer
    was late)."""

    interval_s: float
    counts: list = field(default_factory=list)
    pages: list = field(default_factory=list)
    method: str = ""
    source: str = ""
    times: list = field(default_factory=list)
    #: the most shared writable memory the process had at a scan (bytes): not traced
    shared_bytes: int = 0
    #: how a traced command ended (:func:`trace_command`; None for ``--pid``): its return code
    #: (negative: the signal that ended it), and whether the tracer stopped it (``--duration``)
    exit_status: int | None = None
    stopped: bool = False

    @property
    def failed(self) -> str:
        """How the traced command failed, in words ('' when it exited 0, was stopped by the
        tracer at ``--duration``, or is not a child of the tracer)."""
        code = self.exit_status
        if code is None or code == 0 or self.stopped:
            return ""
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by signal {-code} ({name})"
        return f"exited with status {code}"

    @property
    def shell_status(self) -> int:
        """The traced command's exit status as a shell reports it (128 + N for signal N)."""
        code = self.exit_status or 0
        return 128 - code if code < 0 else code

    #: a tracer whose intervals averaged more than this off ``interval_s`` (it could not keep
    #: up: its scans took longer) saves the measured mean instead
    LATE = 0.02

    @property
    def measured_interval_s(self) -> float:
        """The intervals' mean length as measured (the first began at the first scan)."""
        return self.times[-1] / len(self.times) if self.times and self.times[-1] > 0 else self.interval_s

    @property
    def saved_interval_s(self) -> float:
        """What the file states: ``interval_s``, or the measured mean where the tracer fell
        behind (:attr:`LATE`): the asked-for interval would make every replayed rate too high."""
        m = self.measured_interval_s
        return m if abs(m / self.interval_s - 1.0) > self.LATE else self.interval_s

    def save(self, path) -> Path:
        from .format import save_trace

        pages = np.concatenate(self.pages) if self.pages else np.empty(0, np.int64)
        return save_trace(
            path,
            self.saved_interval_s,
            self.counts,
            pages,
            page_size_kib=PAGE // 1024,
            source=f"{self.source} ({self.method}" + (f"; it {self.failed})" if self.failed else ")"),
        )


def trace_pid(
    pid: int,
    interval_s: float = 0.1,
    duration_s: float | None = None,
    method: str | None = None,
    alive=None,
    on_interval=None,
) -> Capture:
    """Sample the written pages of process ``pid`` every ``interval_s`` until it exits (or
    ``duration_s``).  With ``uffd-wp`` the process must have armed write-protection (the
    shim, or :class:`SelfTracker`)."""
    method = method or probe()[0]
    try:
        scanner = PagemapScanner(pid) if method == "uffd-wp" else SoftDirtyScanner(pid)
    except (ProcessLookupError, FileNotFoundError):
        raise NothingTraced(f"no process {pid} to trace (it has exited, or never existed)") from None
    numbering = PageNumbering()
    cap = Capture(interval_s, method=method, source=f"pid {pid}")
    alive = alive or (lambda: os.path.exists(f"/proc/{pid}"))
    t0 = time.monotonic()
    nxt = t0 + interval_s
    try:
        t_first = time.monotonic()
        scanner.written_addresses()  # discard what happened before the first interval
        while alive() and (duration_s is None or time.monotonic() - t0 < duration_s):
            time.sleep(max(0.0, nxt - time.monotonic()))
            nxt += interval_s
            try:
                maps = _writable(pid)  # one read of /proc/PID/maps per interval
                numbering.update(maps["p"])
                cap.shared_bytes = max(cap.shared_bytes, shared_bytes(maps))
                t_scan = time.monotonic()
                addrs = scanner.written_addresses()
            except (FileNotFoundError, ProcessLookupError, OSError) as e:
                if not alive() or getattr(e, "errno", None) in (errno.ESRCH, errno.ENOENT):
                    break
                raise
            pages = np.unique(numbering.number(addrs))
            cap.counts.append(int(pages.size))
            cap.pages.append(pages)
            cap.times.append(t_scan - t_first)
            if on_interval:
                on_interval(len(cap.counts), pages.size)
    finally:
        scanner.close()
    return cap


def trace_command(
    argv: list[str],
    interval_s: float = 0.1,
    duration_s: float | None = None,
    method: str | None = None,
    log=None,
) -> Capture:
    """Run ``argv`` with the write-protect helper preloaded and trace it until it exits."""
    method = method or probe()[0]
    env = dict(os.environ)
    if method == "uffd-wp":
        shim = str(helper_path())
        env["LD_PRELOAD"] = shim + (":" + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    stopped = False  # the tracer ended it (--duration ran out): not the program's failure
    try:
        time.sleep(0.05)  # let the helper arm itself
        try:
            cap = trace_pid(proc.pid, interval_s, duration_s, method, alive=lambda: proc.poll() is None)
        except NothingTraced:
            raise NothingTraced(
                f"{' '.join(argv)} exited (status {proc.poll()}) before tracing began: nothing to record"
            ) from None
        if not cap.counts:
            status = proc.poll()  # None: still running, the --duration ran out first
            why = f"{' '.join(argv)} exited (status {status})" if status is not None else "--duration ran out"
            raise NothingTraced(
                f"{why} before a first interval of {interval_s:g} s ended: nothing to record "
                f"(a shorter -i, a longer -d, or a longer-running command)"
            )
    except BaseException:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        raise
    finally:
        if duration_s is not None and proc.poll() is None:
            stopped = True
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    cap.source = " ".join(argv)
    cap.exit_status, cap.stopped = proc.returncode, stopped
    return cap


def _page_buffer(buf) -> tuple[int, int]:
    """(address, bytes) of a writable buffer of whole pages starting on a page boundary —
    what ``UFFDIO_REGISTER`` accepts (it fails with EINVAL otherwise); ValueError naming the
    buffer's offset and length where it is not."""
    hint = "use mmap.mmap(-1, n * 4096) (numpy arrays and bytearrays are not page-aligned)"
    try:
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    except TypeError as e:  # read-only (bytes) or not a buffer at all
        raise ValueError(f"SelfTracker needs a writable buffer ({e}); {hint}") from None
    size = memoryview(buf).nbytes
    if addr % PAGE or size % PAGE or size == 0:
        raise ValueError(
            f"SelfTracker needs a buffer of whole {PAGE}-byte pages starting on a page boundary; "
            f"got {size} bytes at offset {addr % PAGE} into its first page; {hint}"
        )
    return addr, size


class SelfTracker:
    """A process that cooperates: track writes to one of its own buffers (uffd-wp only).

    >>> buf = mmap.mmap(-1, 64 * PAGE); tr = SelfTracker(buf)
    >>> buf[0:1] = b"x"; tr.written()      # -> array([0])
    """

    def __init__(self, buf):
        self.addr, self.len = _page_buffer(buf)
        why = _probe_uffd_wp_async() or _probe_pagemap_scan()
        if why:
            raise TraceUnsupported(why)
        self._buf = buf
        self.uffd = _libc.syscall(SYS_userfaultfd, os.O_CLOEXEC | os.O_NONBLOCK | UFFD_USER_MODE_ONLY)
        api = (ctypes.c_uint64 * 3)(UFFD_API, UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, 0)
        _ioctl(self.uffd, UFFDIO_API, api)
        reg = (ctypes.c_uint64 * 4)(self.addr, self.len, UFFDIO_REGISTER_MODE_WP, 0)
        _ioctl(self.uffd, UFFDIO_REGISTER, reg)
        wp = (ctypes.c_uint64 * 3)(self.addr, self.len, UFFDIO_WRITEPROTECT_MODE_WP)
        _ioctl(self.uffd, UFFDIO_WRITEPROTECT, wp)
        self.scanner = PagemapScanner("self", self.addr, self.addr + self.len)

    def written(self) -> np.ndarray:
        """Buffer page indices written since the last call (and re-protect them)."""
        a = self.scanner.written_addresses()
        return ((a - np.uint64(self.addr)) // np.uint64(PAGE)).astype(np.int64)

    def close(self):
        self.scanner.close()
        os.close(self.uffd)
