"""Dirty-page capture from a real process (lmtoolkit/trace/capture.py)."""
from __future__ import annotations

import mmap
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lmtoolkit.trace import capture
from lmtoolkit.trace.format import load_trace

WRITER = Path(__file__).resolve().parent.parent / "data" / "page_writer.c"


def _supported():
    try:
        return capture.probe()[0]
    except capture.TraceUnsupported:
        return None


METHOD = _supported()
needs_tracking = pytest.mark.skipif(METHOD is None, reason="kernel has neither uffd-wp+PAGEMAP_SCAN nor soft-dirty")


@pytest.fixture(scope="module")
def writer(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        pytest.skip("needs a C compiler for the test program")
    exe = tmp_path_factory.mktemp("writer") / "page_writer"
    subprocess.run([cc, "-O2", "-o", str(exe), str(WRITER)], check=True)
    return exe


@needs_tracking
def test_traced_program_writes_the_known_number_of_pages(writer, tmp_path):
    # 4000 distinct pages per second in bursts of 400 every 100 ms, for 3 s.
    cap = capture.trace_command([str(writer), "4000", "3"], interval_s=0.5)
    full = np.array(cap.counts[:-1])          # the last interval is cut short by the exit
    assert len(full) >= 4
    # each 0.5 s interval sees 5 bursts of 400 pages (+ a few pages of stack and libc data)
    assert np.all(np.abs(full - 2000) <= 2000 * 0.05 + 40), cap.counts
    out = cap.save(tmp_path / "t.npz")
    tr = load_trace(out)
    assert tr["interval_s"] == 0.5 and tr["counts"].sum() == tr["pages"].size
    # sequential cycling: the buffer pages of one interval are one contiguous run
    first = np.sort(tr["pages"][: tr["counts"][0]])
    assert np.count_nonzero(np.diff(first) == 1) >= 2000 * 0.95


@needs_tracking
def test_trace_replays_as_a_workload(writer, tmp_path):
    import lmtoolkit as lmt
    cap = capture.trace_command([str(writer), "3000", "2"], interval_s=0.25)
    f = cap.save(tmp_path / "w.npz")
    ds = lmt.simulate(["workload=trace", f"workload.file={f}", "vm.memory_gib=0.25", "network=1gbe"])
    assert bool(ds.completed.item())


@pytest.mark.skipif(METHOD != "uffd-wp", reason="needs userfaultfd write-protect + PAGEMAP_SCAN")
def test_self_tracker_reports_exactly_the_written_pages():
    buf = mmap.mmap(-1, 128 * capture.PAGE)
    tr = capture.SelfTracker(buf)
    try:
        assert tr.written().size == 0
        for p in (1, 7, 100):
            buf[p * capture.PAGE] = 1
        assert tr.written().tolist() == [1, 7, 100]
        assert tr.written().size == 0            # re-protected by the scan
        buf[7 * capture.PAGE + 9] = 2
        assert tr.written().tolist() == [7]
    finally:
        tr.close()


def test_unsupported_kernel_error_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(capture, "_probe_uffd_wp_async", lambda: "userfaultfd UFFD_FEATURE_WP_ASYNC not available")
    monkeypatch.setattr(capture, "_probe_soft_dirty", lambda: "kernel built without CONFIG_MEM_SOFT_DIRTY")
    with pytest.raises(capture.TraceUnsupported) as e:
        capture.probe()
    msg = str(e.value)
    assert "Linux >= 6.7" in msg and "CONFIG_MEM_SOFT_DIRTY" in msg and "PAGEMAP_SCAN" in msg


def test_cli_reports_unsupported_kernel(monkeypatch, capsys):
    from lmtoolkit import cli
    def nope():
        raise capture.TraceUnsupported("cannot track dirty pages on this kernel: needs Linux >= 6.7")
    monkeypatch.setattr(capture, "probe", nope)
    assert cli.main(["trace", "--", "true"]) == 1
    assert "Linux >= 6.7" in capsys.readouterr().err
