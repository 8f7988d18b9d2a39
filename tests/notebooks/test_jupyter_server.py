"""JupyterLab's server: the notebooks are listed and a kernel of the project's kind starts.

Starts a real ``jupyter_server`` on 127.0.0.1 (random port, random token) at the project
root and talks to its REST API, then shuts it down cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

import lmtoolkit as lmt
from lmtoolkit import notebooks as lnb
from lmtoolkit.paths import project_root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base, token, method, path, body=None, timeout=30):
    req = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        text = r.read().decode()
        return r.status, (json.loads(text) if text else None)


async def _run_code(ws_base, token, kernel_id, code, timeout=90) -> str:
    """Execute ``code`` on the kernel through the server's websocket; return its stdout."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    session = uuid.uuid4().hex
    req = HTTPRequest(
        f"{ws_base}/api/kernels/{kernel_id}/channels?session_id={session}",
        headers={"Authorization": f"token {token}"},
    )
    conn = await asyncio.wait_for(websocket_connect(req), timeout)
    msg_id = uuid.uuid4().hex
    conn.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": "test",
                    "session": session,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                },
            }
        )
    )
    out, done, deadline = [], False, time.monotonic() + timeout
    while not done:
        raw = await asyncio.wait_for(conn.read_message(), max(1.0, deadline - time.monotonic()))
        assert raw is not None, "websocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            raise AssertionError(msg["content"]["evalue"])
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            done = True
    conn.close()
    return "".join(out)


@pytest.mark.jupyter
def test_jupyter_server_lists_notebooks_and_starts_the_project_kernel(tmp_path):
    lnb.ensure_kernel()
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={project_root()}",
            f"--ServerApp.runtime_dir={tmp_path / 'runtime'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=project_root(),
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _api(base, token, "GET", "/api/status", timeout=5)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "jupyter_server did not start"
            time.sleep(0.5)
        # a wrong token is refused
        with pytest.raises(urllib.error.HTTPError) as e:
            _api(base, "wrong", "GET", "/api/contents/notebooks")
        assert e.value.code in (401, 403)
        status, listing = _api(base, token, "GET", "/api/contents/notebooks")
        assert status == 200 and listing["type"] == "directory"
        listed = {c["name"] for c in listing["content"] if c["type"] == "notebook"}
        assert {f"{n}.ipynb" for n in lnb.list_notebooks()} <= listed
        status, kernel = _api(base, token, "POST", "/api/kernels", {"name": lnb.KERNEL_NAME})
        assert status == 201 and kernel["name"] == lnb.KERNEL_NAME
        out = asyncio.run(
            _run_code(
                f"ws://127.0.0.1:{port}",
                token,
                kernel["id"],
                "import lmtoolkit, sys; print(lmtoolkit.__version__, sys.executable)",
            )
        )
        version, exe = out.split()
        assert version == lmt.__version__
        assert os.path.realpath(exe) == os.path.realpath(sys.executable)  # the kernel is this env
        _, k = _api(base, token, "GET", f"/api/kernels/{kernel['id']}")
        assert k["execution_state"] in ("idle", "busy")
        _, kernels = _api(base, token, "GET", "/api/kernels")
        assert [k["name"] for k in kernels] == [lnb.KERNEL_NAME]
        assert _api(base, token, "DELETE", f"/api/kernels/{kernel['id']}")[0] == 204
        assert _api(base, token, "GET", "/api/kernels")[1] == []
        _api(base, token, "POST", "/api/shutdown")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
