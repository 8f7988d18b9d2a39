"""The dirty-page trace file format (``.npz``, numpy's zip of arrays — never pickle).

Arrays:

``interval_s``   float, shape ()   — capture interval (s)
``counts``       int64, shape (n,) — distinct pages written during interval i
``pages``        int64, shape (sum(counts),) — those pages' numbers, interval after interval
``page_size_kib`` int, shape ()    — page size of the capture (4 on x86-64)

Optional: ``source`` (str): what was traced.  Page numbers are relative to the traced
region; replay wraps them modulo the VM's page count.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import atomic_path

REQUIRED = ("interval_s", "counts", "pages")


def save_trace(path, interval_s: float, counts, pages, page_size_kib: int = 4, source: str = "") -> Path:
    """Write a trace atomically (temporary file + rename)."""
    path = Path(path)
    counts = np.asarray(counts, dtype=np.int64)
    pages = np.asarray(pages, dtype=np.int64)
    if counts.sum() != pages.size:
        raise ValueError(f"trace: sum(counts)={counts.sum()} but {pages.size} page numbers")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, interval_s=np.float64(interval_s), counts=counts, pages=pages,
                            page_size_kib=np.int64(page_size_kib), source=np.str_(source))
    return path


def load_trace(path) -> dict:
    """Read a trace; raises ``FileNotFoundError`` or ``ValueError`` naming what is wrong."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in REQUIRED if k not in z.files]
        if missing:
            raise ValueError(f"trace {path}: missing arrays {missing} (needs {REQUIRED})")
        out = {k: z[k] for k in z.files}
    out["interval_s"] = float(out["interval_s"])
    return out


def synthetic_trace(n_intervals: int = 40, interval_s: float = 0.5, hot_pages: int = 4096,
                    cold_pages: int = 200_000, hot_writes: int = 3000, cold_writes: int = 500,
                    seed: int = 0) -> dict:
    """A small hot/cold trace for examples and tests (distinct pages per interval)."""
    rng = np.random.default_rng(seed)
    counts, pages = [], []
    for _ in range(n_intervals):
        hot = rng.choice(hot_pages, size=min(hot_writes, hot_pages), replace=False)
        cold = hot_pages + rng.choice(cold_pages, size=cold_writes, replace=False)
        p = np.unique(np.concatenate([hot, cold]))
        counts.append(p.size)
        pages.append(p)
    return dict(interval_s=interval_s, counts=np.array(counts), pages=np.concatenate(pages))
