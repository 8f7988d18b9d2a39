"""What a migration log shows round by round: the observations the fit matches.

From the polls each dirty-bitmap sync ``k`` (``dirty-sync-count`` steps) is bracketed in time
by the two polls around it; when exactly one sync fell between two polls, the pages it added
to the bitmap are measured as what the bitmap grew by plus what was sent meanwhile.  QEMU's
``dirty-pages-rate`` adds, per period of more than 1 s, the pages that period's syncs newly set
in the bitmap (rate x period: :func:`rate_periods`, with the lines of QEMU's ``ram.c`` it
follows): the first pass's (it ends in cheap zero pages, which the bytes do not count) and
those of syncs the polls do not separate; periods of different lengths sample the writes'
saturation curve, which separates the write rate from the working set.  A host stall
(:func:`find_stalls`) is cut out of the time line the fit sees, but the periods count over
QEMU's real clock.  The totals (time, bytes, downtime) and the pre-copy rate between polls
complete :class:`Observed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..errors import ConfigError
from .readers import RUNNING

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
    #: QEMU's dirty-pages-rate periods the log identifies (:func:`rate_periods`): (first sync,
    #: last sync, bytes those syncs newly set in the bitmap = rate x period length, σ); the
    #: first one (syncs 2 … ``period_end``) is also ``period_new``
    periods: list = field(default_factory=list)
    sample_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_remaining: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_transferred: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_syncs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: (time, seconds) the host held the migration, cut out of the times above
    stalls: list = field(default_factory=list)
    #: the log's own total time (``total_time`` is without the stalls: what the fit matches)
    log_total_time: float = math.nan

    @property
    def stall_time(self) -> float:
        """Seconds of host stalls cut out of the time line."""
        return float(sum(cut for _, cut in self.stalls))

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


#: QEMU closes a dirty-pages-rate period at the first sync that ends more than this after the
#: period began (ram.c: ``end_time > rs->time_last_bitmap_sync + 1000``)
PERIOD_S = 1.0


def sync_brackets(t, c, K: int, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Times between which each sync ``k = 1 … K`` (index ``k - 1``) ran: the last poll that had
    not seen it and the first that had (0 and ``end`` where the log has none)."""
    a, b = np.zeros(K), np.full(K, float(end))
    for k in range(1, K + 1):
        before, after = np.flatnonzero(c < k), np.flatnonzero(c >= k)
        if before.size:
            a[k - 1] = t[before[-1]]
        if after.size:
            b[k - 1] = t[after[0]]
    return a, np.maximum(a, b)


def rate_periods(t, st, c, dpr, rem, K, setup, page, ram, switched_over) -> list[tuple]:
    """QEMU's ``dirty-pages-rate`` as counts: the pages each period's syncs newly set in the
    migration bitmap.

    QEMU (``migration/ram.c``, e.g. qemu/qemu@033be66d; the same in 10.0): each sync adds to
    ``num_dirty_pages_period`` the pages it *newly* sets in the migration bitmap
    (``ramblock_sync_dirty_bitmap``: ``new_dirty_pages = cpu_physical_memory_sync_dirty_bitmap
    (…); rs->num_dirty_pages_period += new_dirty_pages`` — a page still pending from before is
    not counted; before QEMU 5.1 every dirty-log bit was counted, "migration: Count new_dirty
    instead of real_dirty"); ``migration_bitmap_sync`` closes the period only at a sync that ends
    more than 1 s after the period began (``if (end_time > rs->time_last_bitmap_sync + 1000)``,
    then resets ``time_last_bitmap_sync = end_time`` and ``num_dirty_pages_period = 0``), and
    ``migration_update_rates`` reports ``dirty_pages_rate = num_dirty_pages_period * 1000 /
    (end_time - rs->time_last_bitmap_sync)``.  The first period begins at the setup sync (sync
    1: ``if (!rs->time_last_bitmap_sync) rs->time_last_bitmap_sync = now``).  So rate x length
    is the pages syncs ``first … last`` newly set, and periods of different lengths sample the
    writes' saturation curve (distinct pages ``W (1 - exp(-r t / W))``), which separates the
    write rate from the working set.

    A sync closes a period when the polls show it: it surely ended more than
    :data:`PERIOD_S` after the period began (the brackets of both), or the reported rate changed
    at the first poll after it with no other sync in between.  A sync that may or may not have
    closed one (the rate unchanged, brackets straddling 1 s) breaks the chain until the next
    surely identified close.  Each period's value is read at the first poll after its last sync
    when no later sync could have closed another period before that poll.  Times are QEMU's
    (real, stalls included).  Returns (first sync, last sync, bytes, σ): σ from the brackets of
    both ends (uniform) and, for the first period, where the working set lay against the first
    pass's cursor (see :func:`observe`)."""
    a, b = sync_brackets(t, c, K, t[-1] if t.size else 0.0)
    if np.isfinite(setup) and setup >= 0:
        # the setup sync ends the setup phase, which began before the last poll that still saw
        # it (or at the migrate command): it ran within setup-time of that poll
        b[0] = max(a[0], min(b[0], a[0] + setup + 0.005))
    active = np.isin(st, ACTIVE)
    out = []
    start = 1  # the sync that began the current period (None: unknown)
    k = 2
    while k <= K:
        j_after = np.flatnonzero(c >= k)
        if not j_after.size:
            break
        j = j_after[0]
        if start is None:
            # re-anchor at a sync whose poll shows a surely new period: rate changed, one sync
            if (
                j > 0
                and c[j] == k
                and c[j - 1] == k - 1
                and active[j]
                and active[j - 1]
                and dpr[j] != dpr[j - 1]
            ):
                start = k
            k += 1
            continue
        sure = a[k - 1] - b[start - 1] > PERIOD_S
        never = b[k - 1] - a[start - 1] <= PERIOD_S
        one = j > 0 and c[j] == k and c[j - 1] == k - 1
        seen = one and active[j] and active[j - 1] and np.isfinite(dpr[j]) and np.isfinite(dpr[j - 1])
        if never:
            k += 1
            continue
        if not sure and not (seen and dpr[j] != dpr[j - 1]):
            if seen and dpr[j] == dpr[j - 1] and dpr[j] > 0:
                k += 1  # same nonzero rate: this sync did not close the period
                continue
            start = None  # cannot tell: the next period's start is unknown
            k += 1
            continue
        # sync k closed the period start+1 … k; its rate is at poll j unless another sync
        # before that poll could have closed a further period
        if (
            active[j]
            and np.isfinite(dpr[j])
            and (c[j] == k or b[int(c[j]) - 1] - a[k - 1] <= PERIOD_S)
            and not (switched_over and k == K)
        ):
            length = 0.5 * (a[k - 1] + b[k - 1]) - 0.5 * (a[start - 1] + b[start - 1])
            if length > 0:
                new = float(dpr[j]) * length * page
                var = (
                    (float(dpr[j]) * page) ** 2
                    * ((b[k - 1] - a[k - 1]) ** 2 + (b[start - 1] - a[start - 1]) ** 2)
                    / 12
                )
                var += (0.01 * new) ** 2 + (0.25 * MIB) ** 2
                if start == 1 and ram > 0:
                    # the first pass: where the working set lay against the send cursor is not
                    # known; the engines scatter it, so the share of it still pending at the
                    # sync (its bits already set: not counted) is about the share of memory
                    # pending then; a real one lies anywhere in [0, 2 x that]
                    pend = rem[j - 1] if j > 0 and np.isfinite(rem[j - 1]) else 0.0
                    var += (new * min(max(pend / ram, 0.0), 1.0)) ** 2 / 3.0
                out.append((start + 1, k, new, math.sqrt(var)))
        start = k
        k += 1
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
    running = int(np.isin(st, [r for r in RUNNING if r != "setup"]).sum())
    if running < 2:
        raise ConfigError(
            "LOG",
            src,
            "",
            message=f"{src}: the log holds {running} poll(s) of the running migration: the fit "
            "matches its round-by-round trajectory (sync times, dirty pages per sync), so it needs "
            "the query-migrate replies (or job statistics) polled while it ran, not only its end",
        )
    # forward-fill missing counts (a poll without RAM statistics)
    c = np.maximum.accumulate(np.where(np.isfinite(c), c, 0.0))
    completed = bool(log.completed.item())
    postcopy = bool(log.postcopy.item()) if "postcopy" in log else False
    K = int(log_value(log, "dirty_sync_count", c.max()))
    K = max(K, int(c.max()))
    total = log_total = log_value(log, "total_time")
    stalls = find_stalls(t, st, tr, rem, c)
    t_real = t.copy()  # QEMU's own clock (dirty-pages-rate periods) runs through a stall
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
    # QEMU's dirty-pages-rate, one number per *period* of >= 1 s (see :func:`rate_periods`):
    # the pages the period's syncs newly set in the migration bitmap, over the period's length
    # in real time (a host stall cut out of the time line still passed on QEMU's clock)
    dpr = np.asarray(log.sample_dirty_pages_rate.values, float) if "sample_dirty_pages_rate" in log else None
    periods = []
    if dpr is not None and np.isfinite(dpr).any():
        ram = log_value(log, "ram_total")
        periods = rate_periods(t_real, st, c, dpr, rem, K, setup, page, ram, completed and not postcopy)
    for first, last, _, sig in periods:
        if first == last and np.isfinite(dirty[first - 2]):
            # one sync, also measured from the polls: keep the sharper of the two
            if dsig[first - 2] <= sig:
                continue
            dirty[first - 2], dsig[first - 2] = math.nan, math.nan
    periods = [
        p
        for p in periods
        if not all(np.isfinite(dirty[k - 2]) for k in range(p[0], p[1] + 1))  # all measured: no news
    ]
    period_end, period_new, period_sigma = 0, math.nan, math.nan
    if periods and periods[0][0] == 2:
        period_end, period_new, period_sigma = periods[0][1], periods[0][2], periods[0][3]
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
        periods=[tuple(p) for p in periods],
        sample_time=t[shown],
        sample_remaining=rem[shown],
        sample_transferred=tr[shown],
        sample_syncs=c[shown],
        stalls=stalls,
        log_total_time=log_total,
    )
