"""Trace files (lmtoolkit/trace/format.py): round trip, and one clear error for a bad file —
never numpy's pickle error, never unpickling."""

from __future__ import annotations

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
