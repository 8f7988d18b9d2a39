"""Trace files (lmtoolkit/trace/format.py): round trip, and one clear error for a bad file —
never numpy's pickle error, never unpickling."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from lmtoolkit.errors import ConfigError
from lmtoolkit.trace.format import load_trace, save_trace


def _npz(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


GOOD = dict(interval_s=np.float64(0.5), counts=np.array([2, 1]), pages=np.array([3, 4, 3]))


def test_round_trip(tmp_path):
    p = save_trace(tmp_path / "t.npz", 0.25, [2, 1], [5, 6, 5], source="x")
    tr = load_trace(p)
    assert tr["interval_s"] == 0.25 and tr["counts"].tolist() == [2, 1] and tr["pages"].tolist() == [5, 6, 5]


class _Boom:
    def __reduce__(self):  # unpickling this would raise: proves nothing is unpickled
        return (RuntimeError, ("unpickled!",))


@pytest.mark.parametrize(
    "case, what",
    [
        ("garbage", "not an .npz"),
        ("empty", "empty file"),
        ("pickle", "not an .npz"),
        ("npy", "single .npy array"),
        ("truncated", "damaged file"),
        ("missing", "missing array(s) pages"),
        ("object", "holds Python objects"),
        ("float_pages", "pages must be a 1-d integer array"),
        ("bad_interval", "interval_s=0.0 is not a positive"),
        ("sum", "sum(counts)=3 but 2 page numbers"),
        ("page_size", "page_size_kib=0 is not a positive whole number"),
        # members named .npy that are not .npy arrays came back as bytes: an AttributeError
        ("not_npy_members", "member 'interval_s' is not a .npy array"),
        # an interval of 1e-300 s overflowed the page engine's interval count
        ("tiny_interval", "below 1e-06 s"),
        # no interval: the workload's "workload.counts=() is not allowed" named no file
        ("no_interval", "no interval (counts is empty)"),
    ],
)
def test_bad_file_is_one_config_error_naming_the_key_and_path(tmp_path, case, what):
    p = tmp_path / "bad.npz"
    if case == "garbage":
        p.write_bytes(b"this is not a trace\x00\x01\x02" * 10)
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "pickle":
        p.write_bytes(pickle.dumps(_Boom()))
    elif case == "npy":
        with open(p, "wb") as fh:
            np.save(fh, np.arange(3))
    elif case == "truncated":
        _npz(p, **GOOD)
        p.write_bytes(p.read_bytes()[:60])
    elif case == "missing":
        _npz(p, interval_s=GOOD["interval_s"], counts=GOOD["counts"])
    elif case == "object":
        _npz(p, **{**GOOD, "pages": np.array([_Boom(), 1, 2], dtype=object)})
    elif case == "float_pages":
        _npz(p, **{**GOOD, "pages": np.array([3.0, 4.0, 3.0])})
    elif case == "bad_interval":
        _npz(p, **{**GOOD, "interval_s": np.float64(0.0)})
    elif case == "sum":
        _npz(p, **{**GOOD, "pages": np.array([1, 2])})
    elif case == "page_size":
        _npz(p, **{**GOOD, "page_size_kib": np.int64(0)})
    elif case == "not_npy_members":
        import zipfile

        with zipfile.ZipFile(p, "w") as z:
            for k in ("interval_s", "counts", "pages"):
                z.writestr(k + ".npy", b"junkjunk")
    elif case == "tiny_interval":
        _npz(p, **{**GOOD, "interval_s": np.float64(1e-300)})
    elif case == "no_interval":
        _npz(p, **{**GOOD, "counts": np.zeros(0, np.int64), "pages": np.zeros(0, np.int64)})
    with pytest.raises(ConfigError) as e:
        load_trace(p)
    msg = str(e.value)
    assert e.value.key == "workload.file" and msg.startswith("workload.file=")
    assert str(p) in msg and what in msg and "\n" not in msg
    assert "allow_pickle" not in msg and "unpickled" not in msg


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_trace(tmp_path / "nope.npz")


@pytest.mark.parametrize("content", [b"garbage" * 20, None])
def test_cli_run_with_a_bad_trace_exits_2_with_one_line(tmp_path, capsys, content):
    from lmtoolkit.cli import main

    p = tmp_path / "bad.npz"
    if content is None:  # an npz holding an object array
        _npz(p, **{**GOOD, "counts": np.array([[1], [2]], dtype=object)})
    else:
        p.write_bytes(content)
    assert main(["run", "workload=trace", f"workload.file={p}", "vm.memory_gib=0.25"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("lmtk: error: workload.file=") and str(p) in err[0]
    assert "allow_pickle" not in err[0] and "Traceback" not in err[0]


# -- the capture's page size and repeated pages (both engines replay the same writes) ------------
def _trace(counts, pages, page_size_kib=4):
    from lmtoolkit.model import TraceWorkload

    return TraceWorkload(
        interval_s=0.5, counts=tuple(counts), pages=np.asarray(pages), page_size_kib=page_size_kib
    )


def _scenario(wl, engine, page_size_kib=4):
    from tests.conftest import scenario

    return scenario(memory_gib=0.25, workload=wl, gbit=0.1, engine=engine, page_size_kib=page_size_kib)


def test_a_page_listed_twice_in_an_interval_counts_once_in_both_engines():
    """A repeated page used to count twice in the fluid engine's rate (appearances) while the
    page engine wrote it twice to no effect: the engines disagreed on the same trace."""
    from tests.conftest import run

    rng = np.random.default_rng(1)
    ivs = [rng.choice(60_000, 6_000, replace=False) for _ in range(4)]
    plain = _trace([len(i) for i in ivs], np.concatenate(ivs))
    doubled = _trace([2 * len(i) for i in ivs], np.concatenate([np.concatenate([i, i[::-1]]) for i in ivs]))
    assert doubled.regions(65_536, 4096) == plain.regions(65_536, 4096)
    a, b = run(_scenario(plain, "page")), run(_scenario(doubled, "page"))
    assert (a.total_time_s, a.transferred_bytes, a.rounds) == (b.total_time_s, b.transferred_bytes, b.rounds)


def test_a_4k_capture_on_larger_tracked_pages_writes_each_page_once_per_interval():
    wl = _trace([17, 1], list(range(17)) + [5])  # 4 KiB pages 0..16, then page 5
    counts, pages = wl.intervals(n_pages=4096, page_bytes=64 * 1024)
    assert counts.tolist() == [2, 1] and pages.tolist() == [0, 1, 0]  # page 16 is 64 KiB page 1
    counts4, pages4 = wl.intervals(n_pages=65_536, page_bytes=4096)
    assert counts4.tolist() == [17, 1] and pages4.tolist() == list(range(17)) + [5]
    # the same as a trace captured at 64 KiB
    from tests.conftest import run

    direct = _trace([2, 1], [0, 1, 0], page_size_kib=64)
    a = run(_scenario(wl, "page", page_size_kib=64))
    b = run(_scenario(direct, "page", page_size_kib=64))
    assert (a.total_time_s, a.transferred_bytes) == (b.total_time_s, b.transferred_bytes)


def test_a_trace_on_huge_pages_writes_the_4k_pages_the_dirty_log_sees():
    """A VM backed by 2 MiB pages tracks 4 KiB pages in pre-copy (KVM logs them, QEMU sends
    them: VM.page_bytes): a 4 KiB capture writes its 4 KiB pages, as on a 4 KiB VM, where it had
    written each huge page whole (a 4 KiB write resent 2 MiB); a 2 MiB capture, which does not
    say which of its 4 KiB pages were written, writes all 512 of each huge page it lists."""
    from tests.conftest import run

    wl = _trace([513, 1], list(range(513)) + [5])  # 4 KiB pages 0..512, then page 5
    huge, small = run(_scenario(wl, "page", page_size_kib=2048)), run(_scenario(wl, "page"))
    assert (huge.total_time_s, huge.transferred_bytes, huge.rounds) == (
        small.total_time_s,
        small.transferred_bytes,
        small.rounds,
    )
    direct = _trace([2, 1], [0, 1, 0], page_size_kib=2048)
    counts, pages = direct.intervals(n_pages=65_536, page_bytes=4096)
    assert counts.tolist() == [1024, 512] and pages.tolist() == list(range(1024)) + list(range(512))
    every = _trace([1024, 512], list(range(1024)) + list(range(512)))
    a, b = run(_scenario(direct, "page", page_size_kib=2048)), run(_scenario(every, "page"))
    assert (a.total_time_s, a.transferred_bytes) == (b.total_time_s, b.transferred_bytes)
    assert a.transferred_bytes > huge.transferred_bytes


def test_the_fluid_engine_refuses_a_trace_whose_timing_it_would_lose():
    """The fluid engine spread a trace's writes evenly over the trace: a 2 s burst at the start
    of a 20 s trace (1 GiB, 1 GbE) ran to the 600 s timeout where the page engine, which
    replays the trace in time, converged in 17.3 s."""
    from tests.conftest import run

    rng = np.random.default_rng(0)
    n = 262_144
    burst = _trace(
        [30_000] * 20 + [0] * 180, np.concatenate([rng.choice(n, 30_000, replace=False) for _ in range(20)])
    )
    burst = dataclasses.replace(burst, interval_s=0.1)
    from tests.conftest import scenario

    page = run(scenario(memory_gib=1.0, workload=burst, gbit=1.0, engine="page"))
    assert page.converged and page.total_time_s < 30
    with pytest.raises(ConfigError, match=r"engine=fluid cannot replay workload=trace.*engine=page"):
        run(scenario(memory_gib=1.0, workload=burst, gbit=1.0, engine="fluid"))


def test_a_trace_on_pages_smaller_than_its_capture_is_refused(tmp_path):
    """A 2 MiB capture replayed on 4 KiB pages used to run, each huge page read as one small one."""
    from lmtoolkit.cli import main

    with pytest.raises(ConfigError, match=r"vm.page_size_kib=4 is not allowed with this trace.*2048 KiB"):
        _scenario(_trace([2], [0, 1], page_size_kib=2048), "page")
    p = save_trace(tmp_path / "huge.npz", 0.5, [2], [0, 1], page_size_kib=2048)
    assert main(["run", "workload=trace", f"workload.file={p}", "vm.memory_gib=0.25"]) == 2
    assert load_trace(save_trace(tmp_path / "t.npz", 0.5, [1], [0]))["page_size_kib"] == 4


def test_a_window_of_many_loops_samples_each_page_once_in_its_last_or_first_loop():
    """A trace of 1 µs intervals replayed over a second had the page engine step through a
    million intervals one by one (a 1e-5 s trace took 8.5 s, 1e-6 s did not end in a minute):
    only the last (first) loop of a window can hold a page's last (first) write."""
    from lmtoolkit.model.workload import _TraceSampler

    wl = _trace([2, 1, 3], [0, 1, 2, 3, 4, 5])
    wl = dataclasses.replace(wl, interval_s=1e-6)
    sam = _TraceSampler(wl, 1024, 4096, np.random.default_rng(0))
    pages, times = sam.sample(0.0, 1.0)
    assert sorted(pages.tolist()) == [0, 1, 2, 3, 4, 5]
    assert (times > 1.0 - 4e-6).all() and (times <= 1.0).all()
    pages, times = sam.sample(1.0, 2.0, first=True)
    assert sorted(pages.tolist()) == [0, 1, 2, 3, 4, 5] and (times < 1.0 + 4e-6).all()
    # a window inside one interval writes its pages with the chance of its share
    hits = sum(int(sam.sample(k * 1e-6, k * 1e-6 + 0.25e-6)[0].size) for k in range(0, 3000, 3))
    assert hits == pytest.approx(1000 * 2 * 0.25, rel=0.15)
