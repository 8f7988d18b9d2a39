"""What a migration log shows round by round: the observations the fit matches.

From the polls each dirty-bitmap sync ``k`` (``dirty-sync-count`` steps) is bracketed in time
by the two polls around it; when exactly one sync fell between two polls, the pages it added
to the bitmap are measured as what the bitmap grew by plus what was sent meanwhile; the first
pass's (it ends in cheap zero pages) come from QEMU's first ``dirty-pages-rate`` (``ram.c:
migration_update_rates``: pages the syncs of a period added, over the period).  The totals
(time, bytes, downtime) and the pre-copy rate between polls complete :class:`Observed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..errors import ConfigError

GIB = 1024**3
MIB = 1024**2
HEADER = 8.0  # QEMU save_page_header: 8-byte offset|flags word per page
ZERO_PAGE = 9.0  # header + one byte per zero page
#: statuses of a running migration that ship pages
ACTIVE = ("active", "postcopy-active", "device", "pre-switchover")


@dataclass
class Observed:
    """What the fit matches: per sync ``k = 2 … K`` (index ``k - 2``) and the totals."""

    syncs: int  # K: dirty-sync-count at the end
    lo: np.ndarray  # sync time bracket (s)
    hi: np.ndarray
    dirty: np.ndarray  # bytes the sync added to the bitmap (NaN: not measurable)
    dirty_sigma: np.ndarray
    total_time: float
    transferred: float
    downtime: float  # NaN unless completed
    completed: bool
    converged: bool
    setup_time: float
    precopy_rate: float  # bytes/s while pre-copying (median over polls)
    page_size: float
    memory_bytes: float
    end_precopy: float  # when the VM stopped (total_time − downtime)
    period_end: int = 0  # sync at which QEMU first reported dirty-pages-rate (0: none)
    period_new: float = math.nan  # bytes the syncs 2 … period_end added (rate x period)
    period_sigma: float = math.nan
    sample_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_remaining: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_transferred: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_syncs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: (time, seconds) the host held the migration, cut out of the times above
    stalls: list = field(default_factory=list)

    @property
    def mid(self):
        return 0.5 * (self.lo + self.hi)


def log_value(ds, k, default=math.nan) -> float:
    return float(ds[k].item()) if k in ds else default


#: a poll interval is a stall when the migration moved less than this share of its usual rate
STALL_SHARE = 0.5
#: ... and lost at least this long (s) and twice the usual poll interval
STALL_MIN_S = 0.25


def find_stalls(t, st, tr, rem, c) -> list[tuple[float, float]]:
    """Where the host stopped the migration: poll intervals (same sync, both running) in which
    neither the bytes sent nor the pages taken off the bitmap (zero pages cost no bytes)
    reached :data:`STALL_SHARE` of the usual pre-copy rate.  Returns (time the interval
    began, seconds lost: the interval minus what its bytes need at the usual rate)."""
    act = np.flatnonzero(np.isin(st, ("active",)) & np.isfinite(tr) & np.isfinite(rem))
    pairs = [(i, j) for i, j in zip(act[:-1], act[1:]) if j == i + 1 and t[j] > t[i] and c[i] == c[j]]
    if len(pairs) < 4:
        return []
    dts = np.array([t[j] - t[i] for i, j in pairs])
    sent = np.array([tr[j] - tr[i] for i, j in pairs])
    taken = np.array([rem[i] - rem[j] for i, j in pairs])
    rate = float(np.median(sent / dts))
    usual_dt = float(np.median(dts))
    if not rate > 0:
        return []
    out = []
    for (i, _), dt, b, p in zip(pairs, dts, sent, taken):
        lost = dt - b / rate
        if max(b, p) < STALL_SHARE * rate * dt and lost >= max(STALL_MIN_S, usual_dt):
            out.append((float(t[i]), float(lost)))
    return out


def observe(log: xr.Dataset, delta_pages: bool = False) -> Observed:
    """The per-round observations of a MigrationLog (:mod:`.readers`).

    ``delta_pages``: XBZRLE was on, so from the third phase on (once the cache holds pages) a
    page costs fewer bytes than a page: the bytes sent no longer count pages, and the pages
    those syncs add are not measured."""
    src = log.attrs.get("source", "log")
    t = np.asarray(log.sample_time.values, float)
    st = np.asarray(log.sample_status.values).astype(str)
    tr = np.asarray(log.sample_transferred.values, float)
    rem = np.asarray(log.sample_remaining.values, float)
    c = np.asarray(log.sample_dirty_sync_count.values, float)
    if not np.isfinite(c).any():
        raise ConfigError(
            "LOG",
            src,
            "",
            message=f"{src}: the log has no dirty-sync-count "
            "(ram.dirty-sync-count / memory_iteration, QEMU >= 2.1): the rounds "
            "cannot be told apart, nothing to fit",
        )
    # forward-fill missing counts (a poll without RAM statistics)
    c = np.maximum.accumulate(np.where(np.isfinite(c), c, 0.0))
    completed = bool(log.completed.item())
    postcopy = bool(log.postcopy.item()) if "postcopy" in log else False
    K = int(log_value(log, "dirty_sync_count", c.max()))
    K = max(K, int(c.max()))
    total = log_value(log, "total_time")
    stalls = find_stalls(t, st, tr, rem, c)
    for at, cut in reversed(stalls):  # the time the host held the migration (and guest): cut out
        t = np.where(t > at, t - cut, t)
        total -= cut
    down = log_value(log, "downtime") if completed else math.nan
    setup = log_value(log, "setup_time", 0.0)
    setup = setup if np.isfinite(setup) else 0.0
    end_pre = total - (down if np.isfinite(down) else 0.0)
    page = log_value(log, "page_size", 4096.0)
    lo, hi, dirty, dsig = [], [], [], []
    for k in range(2, K + 1):
        before = np.flatnonzero(c < k)
        after = np.flatnonzero(c >= k)
        a = t[before[-1]] if before.size else 0.0
        b = t[after[0]] if after.size else total
        if completed and not postcopy and k == K:
            a, b = end_pre - 0.005, end_pre + 0.005  # the switchover sync
        elif completed and not postcopy:
            b = min(b, end_pre)
            a = min(a, b)
        lo.append(a)
        hi.append(b)
        d, s = math.nan, math.nan
        if before.size and after.size and k < K and not (delta_pages and k >= 4):
            i, j = before[-1], after[0]
            one = (
                c[j] == k
                and st[j] in ACTIVE
                and st[i] in ACTIVE + ("setup",)
                and np.isfinite(rem[j])
                and np.isfinite(rem[i])
                and np.isfinite(tr[j] - tr[i])
            )
            if one and rem[j] > 0:
                # pages the sync added to the bitmap: what the bitmap grew by plus what was
                # sent meanwhile (exact when the pages sent are normal pages)
                sent = max(tr[j] - tr[i], 0.0) * page / (page + HEADER)
                d = rem[j] - rem[i] + sent
                s2 = (0.03 * d) ** 2 + (0.5 * MIB) ** 2
                if k == 2:
                    # the first pass ends in zero pages, which cost almost no bytes: the
                    # leftover before the sync is only known to lie in [0, remaining]
                    d = rem[j] + 0.5 * sent - 0.5 * rem[i]
                    s2 += (rem[i] / math.sqrt(12)) ** 2 + (sent / math.sqrt(12)) ** 2
                s = math.sqrt(s2)
        dirty.append(d)
        dsig.append(s)
    # pre-copy rate: the median over consecutive polls of a running migration (robust to the
    # counter's jitter around syncs and to the zero-page stretches of the first pass)
    act = np.flatnonzero(np.isin(st, ACTIVE))
    rates = [
        (tr[j] - tr[i]) / (t[j] - t[i])
        for i, j in zip(act[:-1], act[1:])
        if j == i + 1 and t[j] > t[i] and np.isfinite(tr[j] - tr[i])
    ]
    rate = float(np.median(rates)) if len(rates) >= 3 else math.nan
    if not np.isfinite(rate) or rate <= 0:
        pre_bytes = log_value(log, "transferred") - np.nan_to_num(log_value(log, "downtime_bytes"))
        rate = pre_bytes / max(end_pre - setup, 1e-3)
    # QEMU's dirty-pages-rate (ram.c: migration_update_rates) is the pages the syncs of a
    # period of >= 1 s added to the bitmap over the period's length; the first period runs
    # from the setup sync, so rate x (sync time - setup) counts the first pass's new pages
    # exactly, where the remaining bytes cannot (the pass ends in cheap zero pages)
    period_end, period_new, period_sigma = 0, math.nan, math.nan
    dpr = np.asarray(log.sample_dirty_pages_rate.values, float) if "sample_dirty_pages_rate" in log else None
    if dpr is not None and np.isfinite(dpr).any():
        nz = np.flatnonzero(np.isfinite(dpr) & (dpr > 0))
        if nz.size and nz[0] > 0:
            j = nz[0]
            kb = int(c[j])
            if c[j] - c[j - 1] == 1 and 2 <= kb < K and st[j] in ACTIVE:
                i = kb - 2
                w = hi[i] - lo[i]
                span = 0.5 * (lo[i] + hi[i]) - setup
                if span > 0:
                    period_end = kb
                    period_new = dpr[j] * span * page
                    # where the working set lies against the send cursor is not known: the
                    # engines scatter it, so the share of it still pending at the sync (not
                    # counted: its bits were set) is about the share of memory pending then;
                    # a real one lies anywhere in [0, 2 x that]
                    ram = log_value(log, "ram_total")
                    pend = rem[j - 1] if np.isfinite(rem[j - 1]) else 0.0
                    layout = period_new * min(max(pend / ram, 0.0), 1.0) if ram > 0 else 0.0
                    period_sigma = math.sqrt(
                        (dpr[j] * page * w) ** 2 / 12
                        + (0.01 * period_new) ** 2
                        + (0.25 * MIB) ** 2
                        + layout**2 / 3.0
                    )
                    if kb == 2:
                        dirty[0], dsig[0] = math.nan, math.nan  # measured better here
    conv = completed and not postcopy
    shown = np.isin(st, ACTIVE + ("completed",))  # setup polls report nothing yet
    return Observed(
        syncs=K,
        lo=np.array(lo),
        hi=np.array(hi),
        dirty=np.array(dirty),
        dirty_sigma=np.array(dsig),
        total_time=total,
        transferred=log_value(log, "transferred"),
        downtime=down,
        completed=completed,
        converged=conv,
        setup_time=setup,
        precopy_rate=rate,
        page_size=page,
        memory_bytes=log_value(log, "ram_total"),
        end_precopy=end_pre,
        period_end=period_end,
        period_new=period_new,
        period_sigma=period_sigma,
        sample_time=t[shown],
        sample_remaining=rem[shown],
        sample_transferred=tr[shown],
        sample_syncs=c[shown],
        stalls=stalls,
    )
