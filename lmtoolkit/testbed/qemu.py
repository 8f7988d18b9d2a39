"""QEMU processes and the guest's serial console — started, watched and always cleaned up.

Every QEMU runs in its own process group (``start_new_session``) and is registered in
:data:`_LIVE`; :func:`cleanup_all` kills the groups and runs on normal exit (``atexit``), on
SIGTERM/SIGHUP (handlers installed by :func:`install_signal_handlers`) and, through
``try/finally`` in :class:`~lmtoolkit.testbed.driver.Testbed`, on any error or Ctrl-C.
"""

from __future__ import annotations

import atexit
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from .qmp import QMP, connect_unix
from .setup import Paths

_LIVE: dict[int, QemuVM] = {}
_handlers_installed = False


def cleanup_all() -> None:
    for vm in list(_LIVE.values()):
        vm.kill()


atexit.register(cleanup_all)


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP: kill our QEMUs, then exit (SIGINT raises KeyboardInterrupt as usual)."""
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        cleanup_all()
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)
    _handlers_installed = True


class ConsoleError(RuntimeError):
    pass


class Console:
    """Line-oriented access to the guest's serial port (a unix socket served by QEMU)."""

    def __init__(self, path: str, log_path: Path | None = None, timeout: float = 20.0):
        self.sock = connect_unix(path, timeout, ConsoleError, "serial socket")
        self.lines: queue.Queue[str] = queue.Queue()
        self.log = open(log_path, "a") if log_path else None
        self._stop = False
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()

    def _reader(self):
        buf = b""
        while not self._stop:
            try:
                chunk = self.sock.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace").strip("\r")
                if self.log:
                    self.log.write(text + "\n")
                    self.log.flush()
                self.lines.put(text)

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConsoleError(f"guest did not print '{prefix}' within {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if "Kernel panic" in line:
                raise ConsoleError(f"guest kernel panic: {line}")
            if line.startswith("LMTK ERROR"):
                raise ConsoleError(line)
            if line.startswith(prefix):
                return line

    def command(self, line: str, reply: str, timeout: float = 30.0) -> dict:
        """Send a command, wait for its reply line, return its key=value fields."""
        while not self.lines.empty():  # drop stale output
            self.lines.get_nowait()
        self.send(line)
        return parse_fields(self.expect(reply, timeout))

    def close(self):
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.log:
            self.log.close()


def parse_fields(line: str) -> dict:
    out = {}
    for tok in line.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            try:
                out[k] = float(v) if any(c in v for c in ".e") else int(v)
            except ValueError:
                out[k] = v
    return out


class QemuVM:
    """One QEMU process (source or ``-incoming defer`` destination) with QMP and console."""

    def __init__(
        self,
        p: Paths,
        workdir: Path,
        name: str,
        memory_mib: int,
        buffer_mib: int,
        seed: int = 1,
        incoming: bool = False,
        extra_args: list[str] | None = None,
    ):
        self.p, self.name, self.incoming = p, name, incoming
        self.workdir = workdir
        self.qmp_path = str(workdir / f"{name}.qmp")
        self.ser_path = str(workdir / f"{name}.ser")
        for s in (self.qmp_path, self.ser_path):
            if os.path.exists(s):
                os.unlink(s)
        cmd = [
            str(p.qemu),
            "-name",
            f"lmtk-{name}",
            "-nodefaults",
            "-no-user-config",
            "-machine",
            "pc",
            "-accel",
            "tcg",
            "-cpu",
            "qemu64",
            "-smp",
            "1",
            "-m",
            str(memory_mib),
            "-display",
            "none",
            "-vga",
            "none",
            "-net",
            "none",
            "-kernel",
            str(p.kernel),
            "-initrd",
            str(p.initramfs),
            "-append",
            f"console=ttyS0 panic=-1 quiet mitigations=off lmtkbuf={buffer_mib} lmtkseed={seed}",
            "-chardev",
            f"socket,id=ser0,path={self.ser_path},server=on,wait=off",
            "-serial",
            "chardev:ser0",
            "-qmp",
            f"unix:{self.qmp_path},server=on,wait=off",
            "-no-reboot",
        ]
        for d in p.firmware_dirs:
            cmd += ["-L", str(d)]
        if incoming:
            cmd += ["-incoming", "defer"]
        cmd += extra_args or []
        self.log_path = workdir / f"{name}.log"
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=p.env(),
            start_new_session=True,
        )
        _LIVE[self.proc.pid] = self
        try:
            self.qmp = QMP(self.qmp_path)
            self.console = Console(self.ser_path, workdir / f"{name}.console.log")
        except Exception:
            self.kill()
            raise

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Terminate the process group (SIGTERM, then SIGKILL after 3 s)."""
        if self.proc.pid not in _LIVE:
            return
        for obj in ("qmp", "console"):
            if hasattr(self, obj):
                getattr(self, obj).close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        _LIVE.pop(self.proc.pid, None)
        self.logf.close()
