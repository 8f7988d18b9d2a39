"""The dirty-page trace file format (``.npz``, numpy's zip of arrays — never pickle).

Arrays:

``interval_s``   float, shape ()   — capture interval (s)
``counts``       int64, shape (n,) — distinct pages written during interval i
``pages``        int64, shape (sum(counts),) — those pages' numbers, interval after interval
``page_size_kib`` int, shape ()    — page size of the capture (4 on x86-64)

Optional: ``source`` (str): what was traced.  Page numbers are relative to the traced
region; replay wraps them modulo the VM's tracked page count (4 KiB pages on a VM backed by
huge pages: :class:`~lmtoolkit.model.workload.TraceWorkload`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..io import atomic_path
from ..model.workload import TRACE_MIN_INTERVAL_S

REQUIRED = ("interval_s", "counts", "pages")


def save_trace(path, interval_s: float, counts, pages, page_size_kib: int = 4, source: str = "") -> Path:
    """Write a trace atomically (temporary file + rename)."""
    path = Path(path)
    counts = np.asarray(counts, dtype=np.int64)
    pages = np.asarray(pages, dtype=np.int64)
    if counts.sum() != pages.size:
        raise ValueError(f"trace: sum(counts)={counts.sum()} but {pages.size} page numbers")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            interval_s=np.float64(interval_s),
            counts=counts,
            pages=pages,
            page_size_kib=np.int64(page_size_kib),
            source=np.str_(source),
        )
    return path


#: what a bad trace file is reported against (the runner's ``workload.file``)
KEY = "workload.file"
_ZIP_MAGIC, _NPY_MAGIC = (b"PK\x03\x04", b"PK\x05\x06"), b"\x93NUMPY"  # zip (or empty zip), .npy


def _bad(key: str, path: Path, what: str):
    from ..errors import ConfigError

    return ConfigError(
        key,
        str(path),
        "",
        message=(
            f"{key}={str(path)!r} is not a usable trace file: {what} (a trace is an .npz of numeric "
            f"arrays {', '.join(REQUIRED)}, written by `lmtk trace`)"
        ),
    )


def load_trace(path, key: str = KEY, data: bytes | None = None) -> dict:
    """Read a trace (never unpickling anything); with ``data``, from those bytes (the file's
    content as the driver of a sweep read it: ``path`` then only names it in errors).

    Raises ``FileNotFoundError`` if ``path`` does not exist, and
    :class:`lmtoolkit.errors.ConfigError` (a ``ValueError``) for ``key`` naming the path and
    what is wrong for anything else: not an .npz (garbage, a single .npy, a pickle), a damaged
    zip, missing arrays, object (pickled) arrays, wrong types or shapes, no interval, or
    ``sum(counts)`` not matching the page numbers.
    """
    path = Path(path)
    if data is not None:
        head, source = data[:8], io.BytesIO(data)
    else:
        if not path.exists():
            raise FileNotFoundError(path)
        if path.is_dir():
            raise _bad(key, path, "it is a directory")
        with open(path, "rb") as fh:
            head = fh.read(8)
        source = path
    if not head.startswith(_ZIP_MAGIC):
        what = (
            "a single .npy array, not an .npz of arrays"
            if head.startswith(_NPY_MAGIC)
            else "empty file"
            if not head
            else f"not an .npz (zip) file: it starts with {head!r}"
        )
        raise _bad(key, path, what)
    out = {}
    try:
        with np.load(source, allow_pickle=False) as z:
            missing = [k for k in REQUIRED if k not in z.files]
            if missing:
                raise _bad(
                    key,
                    path,
                    f"missing array(s) {', '.join(missing)} (it has: {', '.join(z.files) or 'none'})",
                )
            for k in z.files:
                try:
                    out[k] = z[k]
                    if not isinstance(out[k], np.ndarray):  # a member that is not a .npy array
                        raise _bad(key, path, f"member {k!r} is not a .npy array")
                except ValueError as e:
                    if "allow_pickle" in str(e) or "Object arrays" in str(e):
                        raise _bad(
                            key, path, f"array {k!r} holds Python objects (pickled); traces hold numbers only"
                        ) from None
                    raise
    except ValueError as e:
        from ..errors import ConfigError

        if isinstance(e, ConfigError):
            raise
        raise _bad(key, path, f"cannot read it ({type(e).__name__}: {_one_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError, OSError…: a damaged file
        raise _bad(key, path, f"damaged file ({type(e).__name__}: {_one_line(e)})") from None
    iv, counts, pages = out["interval_s"], out["counts"], out["pages"]
    if iv.shape != () or iv.dtype.kind not in "iuf":
        raise _bad(key, path, f"interval_s must be one number, not {iv.dtype} of shape {iv.shape}")
    if not (np.isfinite(iv) and float(iv) > 0):
        raise _bad(key, path, f"interval_s={iv.item()!r} is not a positive number of seconds")
    if float(iv) < TRACE_MIN_INTERVAL_S:
        raise _bad(
            key,
            path,
            f"interval_s={iv.item()!r} is below {TRACE_MIN_INTERVAL_S:g} s (no capture samples faster)",
        )
    for name, a in (("counts", counts), ("pages", pages)):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise _bad(key, path, f"{name} must be a 1-d integer array, not {a.dtype} of shape {a.shape}")
        if a.size and a.min() < 0:
            raise _bad(key, path, f"{name} has negative entries")
    if counts.size == 0:  # refused by the workload too, which could not name the file
        raise _bad(key, path, "no interval (counts is empty): a trace needs at least one")
    if int(counts.sum()) != pages.size:
        raise _bad(key, path, f"sum(counts)={int(counts.sum())} but {pages.size} page numbers")
    if "page_size_kib" in out:
        ps = out["page_size_kib"]
        if ps.shape != () or ps.dtype.kind not in "iu" or int(ps) < 1:
            raise _bad(key, path, f"page_size_kib={ps.tolist()!r} is not a positive whole number of KiB")
        out["page_size_kib"] = int(ps)
    out["interval_s"] = float(iv)
    out["counts"] = counts.astype(np.int64, copy=False)
    out["pages"] = pages.astype(np.int64, copy=False)
    return out


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]
