"""The browser tier (``-m browser``): a real JupyterLab and a real headless Chromium.

One JupyterLab server for the session (127.0.0.1, random port and token) serves a copy of the
teaching notebooks (JupyterLab may save what it opens; the tracked files are never touched)
on the project's ``lmtoolkit`` kernel.  Chromium is Debian's (``apt-get install chromium``),
driven by Playwright's Python package with ``executable_path`` — Playwright's own browser
downloads are never used.  Screenshots go to ``results/browser/`` (kept after the run).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lmtoolkit import notebooks as lnb
from lmtoolkit.paths import notebook_dir, project_root

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
#: JupyterLab settings for a quiet, deterministic session: no news or update checks, no
#: autosave, every cell rendered (no windowing), so the DOM holds the whole notebook
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


def chromium_executable() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (``results/browser/``, or ``$LMT_BROWSER_ARTIFACTS``)."""
    out = Path(os.environ.get("LMT_BROWSER_ARTIFACTS") or project_root() / "results" / "browser")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium (Debian's binary) driven by Playwright; a fresh profile.

    Module-scoped on purpose: Playwright's sync API runs an asyncio loop in this thread while
    it is open, and later tests that call ``asyncio.run`` (the Jupyter server test) need it
    closed — so it closes with each browser test module."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' (playwright)")
    exe = chromium_executable()
    if exe is None:
        pytest.skip("no chromium: apt-get install chromium (the browser tier drives Debian's Chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=exe,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield ctx
        finally:
            ctx.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab: ``url(path)``, ``api(method, path)``."""

    def __init__(self, base: str, token: str, root: Path, results: Path, proc):
        self.base, self.token, self.root, self.results, self.proc = base, token, root, results, proc

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}{'&' if '?' in path else '?'}token={self.token}"

    def api(self, method: str, path: str, body=None, timeout: float = 30):
        req = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read().decode()
            return json.loads(text) if text else None

    def shutdown_kernels(self) -> None:
        for k in self.api("GET", "/api/kernels") or []:
            self.api("DELETE", f"/api/kernels/{k['id']}")


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 serving a copy of the teaching notebooks, kernels on ``lmtoolkit``."""
    pytest.importorskip("jupyterlab")
    lnb.ensure_kernel()
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    for stem in lnb.list_notebooks():
        if lnb.is_teaching(stem):
            shutil.copy2(notebook_dir() / f"{stem}.ipynb", root)
    settings = tmp / "settings"
    for plugin, body in LAB_SETTINGS.items():
        p = settings / f"{plugin}.jupyterlab-settings"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(body))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, LMT_RESULTS_DIR=str(tmp / "results"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    env.pop(lnb.ENV_NAME, None)
    log = open(tmp / "lab.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
            "--LabApp.expose_app_in_browser=True",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=root,
        start_new_session=True,
    )
    lab = Lab(f"http://127.0.0.1:{port}", token, root, tmp / "results", proc)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                lab.api("GET", "/api/status", timeout=3)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                assert proc.poll() is None, (tmp / "lab.log").read_text()
                assert time.monotonic() < deadline, "JupyterLab did not start"
                time.sleep(0.3)
        yield lab
    finally:
        with_timeout_kill(proc)
        log.close()


def with_timeout_kill(proc, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
