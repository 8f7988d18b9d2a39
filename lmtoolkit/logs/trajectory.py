"""The simulated trajectory the fit compares with the log: per scenario of a batch, the time
of each dirty-bitmap sync and the pages it added, and the dirty bytes left over time."""

from __future__ import annotations

import math

import numpy as np


def trajectories(batch, offset: float = 0.0, durations: bool = False):
    """Per scenario: (sync times, pages each sync added to the bitmap) from a
    :class:`~lmtoolkit.engine.common.BatchResult` (syncs ``k = 2 …``; setup offset added)."""
    from ..records import ROUND_KINDS

    pre, stop = ROUND_KINDS.index("precopy"), ROUND_KINDS.index("stop")
    kinds = batch.round_kind
    start, dur = batch.round["round_start"], batch.round["round_duration"]
    pad = np.full((batch.n, 1), np.nan)  # a record may end in a pre-copy round
    dirty = np.hstack([batch.round["round_dirty_pages"], pad])
    pages = np.hstack([batch.round["round_pages"], pad])
    out = []
    for s in range(batch.n):
        kd = kinds[s]
        p = np.flatnonzero(kd == pre)
        stops = np.flatnonzero(kd == stop)
        ends = start[s, p] + dur[s, p]
        comp = bool(batch.scalars["completed"][s])
        # pages the sync at the end of phase j added: bitmap after it minus pages still pending
        nxt = dirty[s, p + 1] - (dirty[s, p] - pages[s, p]) if p.size else np.zeros(0)
        du = dur[s, p]
        if not comp:
            # the phase cut by the timeout ends in no sync
            tmo = float(batch.scalars["total_time_s"][s])
            keep = ends < tmo - 1e-9
            ends, nxt, du = ends[keep], nxt[keep], du[keep]
        times = list(ends + offset)
        d = list(nxt)
        if comp and stops.size:
            times.append(float(start[s, stops[0]]) + offset)
            d.append(math.nan)
        if durations:
            out.append((np.array(times), np.array(d, float), np.asarray(du, float)))
        else:
            out.append((np.array(times), np.array(d, float)))
    return out


def remaining_curve(batch, offset, page):
    """The fitted dirty bytes left over time (piecewise linear through each phase)."""
    from ..records import ROUND_KINDS

    kd = batch.round_kind[0]
    t, y = [], []
    for j in np.flatnonzero(kd >= 0):
        s = float(batch.round["round_start"][0, j]) + offset
        d = float(batch.round["round_duration"][0, j])
        p0 = float(batch.round["round_dirty_pages"][0, j])
        k = float(batch.round["round_pages"][0, j])
        if not np.isfinite(s) or not np.isfinite(d):
            continue
        if ROUND_KINDS[kd[j]] == "postcopy":
            continue
        t += [s, s + d]
        y += [p0 * page, max(p0 - k, 0.0) * page]
    return t, y
