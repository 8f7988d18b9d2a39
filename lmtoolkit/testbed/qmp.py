"""A small QMP client (plain sockets + json) — enough to drive a migration.

QMP is line-delimited JSON over a socket: a greeting, ``qmp_capabilities``, then commands
``{"execute": …, "arguments": …}`` answered by ``{"return": …}`` or ``{"error": …}``;
asynchronous ``{"event": …}`` messages may come in between and are queued.
"""

from __future__ import annotations

import json
import socket
import time


class QMPError(RuntimeError):
    pass


def connect_unix(path: str, timeout: float, error: type[Exception], what: str) -> socket.socket:
    """Connect to the unix socket ``path`` that QEMU is still creating, retrying every 50 ms;
    raise ``error`` naming ``what`` if it is not up within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() > deadline:
                raise error(f"{what} {path} did not come up within {timeout:.0f} s") from None
            time.sleep(0.05)


class QMP:
    def __init__(self, path: str, timeout: float = 30.0):
        self.sock = connect_unix(path, timeout, QMPError, "QMP socket")
        self.sock.settimeout(timeout)
        self._buf = b""
        self.events: list[dict] = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"unexpected QMP greeting {greeting}")
        self.cmd("qmp_capabilities")

    def _read(self) -> dict:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QMPError("QMP connection closed")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name: str, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                r["_recv_t"] = time.monotonic()
                self.events.append(r)
                continue
            if "error" in r:
                raise QMPError(f"{name}: {r['error'].get('desc', r['error'])}")
            return r.get("return")

    def poll_events(self) -> list[dict]:
        """Read events already waiting on the socket (non-blocking); return and clear the queue."""
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                if not chunk:
                    break
                self._buf += chunk
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(30.0)
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            r = json.loads(line)
            if "event" in r:
                r["_recv_t"] = time.monotonic()
                self.events.append(r)
        ev, self.events = self.events, []
        return ev

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
