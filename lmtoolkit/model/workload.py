"""Workloads: generators of page writes.

Rates are **page-write events per second** (a page written twice counts twice); the
engines derive the distinct dirty pages.  Writes fall into a *working set* of
``wss_mib`` (null = whole memory).  Two views of a workload serve the two engines:

* :meth:`Workload.regions` — disjoint sets of pages with a uniform per-page write rate,
  enough for the closed-form fluid engine;
* :meth:`Workload.sampler` — a stateful sampler for the page engine that returns, for a
  time window, which pages were written and when each was *last* written.

Page layout (shared with the engines, see :func:`page_of_rank`): a workload addresses
pages by *rank* (rank 0 = hottest).  With ``pattern: random`` ranks are scattered over the
whole guest memory by a fixed affine permutation, so hot pages sit all over the address
space as they do in real guests; with ``pattern: sequential`` the working set is the
contiguous block of the first pages and writes sweep through it in address order, from
``sweep_start`` (a fraction of the working set) at the migration's start.  A phased workload
has no layout of its own: at each writer time it is the phase running then
(:meth:`Workload.phase_at`), each phase where its own ``pattern`` puts it; a trace lays out the
pages it recorded.  The engines read a layout only through :meth:`Workload.ranks_of`,
:meth:`~Workload.pages_of` and :meth:`~Workload.written_pages`.

Pacing (``pacing``, issue 12): a writer paced by **guest** time (``guest``, the default: it
runs a fixed amount of work per unit of its own progress) writes at ``rate x speed`` when the
guest is slowed (auto-converge, SDPS, CPU capping) to ``speed`` of its normal pace — one
second of wall time is ``speed`` seconds of guest time.  A writer paced by the **wall
clock** (``wall``: it sleeps until the next write is due, as the testbed's dirtier does)
catches up after a stall, so throttling slows it only once its peak rate,
``max_rate_pages_s`` (null = never), scaled by ``speed``, falls below its target:
``min(rate, max_rate x speed)``.  :meth:`Workload.write_speed` gives the factor both engines
apply to the write rate (the sampler's clock for the page engine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, check_choice, check_range
from .checks import check_fields, refuse_unused
from .vm import MAX_VCPUS, MIB

#: the fastest any guest can dirty pages, pages/s: each page write is at least one store, and
#: the largest VM (vm.vcpus <= 4096) retiring one store per cycle per vCPU at 5 GHz makes
#: 4096 x 5e9 = 2.05e13 stores/s.  Beyond it a rate is no memory's: 1e308 ran into NaN page
#: counts ("rule phase_pages gave pages = nan") or an OverflowError traceback (sequential)
MAX_DIRTY_RATE_PAGES_S = MAX_VCPUS * 5e9
RATE_NOTE = " pages/s: 4096 vCPUs storing once a cycle at 5 GHz"

PATTERNS = ("random", "sequential")
PACINGS = ("guest", "wall")


def pacing_speed(speed, wall, headroom):
    """Write-rate factor at guest ``speed``: ``speed`` for a guest-paced writer, ``min(1,
    speed x headroom)`` for a wall-clock-paced one (``headroom`` = peak / target rate)."""
    speed = np.asarray(speed, dtype=float)
    with np.errstate(invalid="ignore"):
        fast = np.minimum(1.0, np.where(np.isinf(headroom), 1.0, speed * headroom))
    return np.where(wall, fast, speed)


_SCATTER_MULTIPLIER = 2654435761  # Knuth's multiplicative-hash constant (odd, ~2^32 / phi)


def scatter_multiplier(n_pages: int) -> int:
    """An odd multiplier coprime with ``n_pages``: rank -> (rank * a) mod n is a permutation."""
    a = _SCATTER_MULTIPLIER % max(n_pages, 1) or 1
    while math.gcd(a, n_pages) != 1:
        a += 1
    return a


def page_of_rank(ranks: np.ndarray, n_pages: int, scattered: bool = True) -> np.ndarray:
    """Physical page number of each rank (identity when ``scattered`` is false)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    if not scattered or n_pages <= 1:
        return ranks
    out = ranks * scatter_multiplier(n_pages)
    if n_pages & (n_pages - 1) == 0:  # a power of two (most VM sizes): a mask, not a division
        out &= n_pages - 1
        return out
    out %= n_pages
    return out


@dataclass(frozen=True)
class Region:
    """``n_pages`` pages (ranks ``first_rank`` … ``first_rank + n_pages - 1``), each written
    ``rate_per_page`` times per second of guest time; ``sequential`` regions are swept in order,
    their cursor starting ``start`` (a fraction of the region) into it."""

    first_rank: int
    n_pages: int
    rate_per_page: float
    sequential: bool = False
    start: float = 0.0


def bernoulli_positions(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    """Sorted indices in ``range(n)`` each kept independently with probability ``p``.

    Cost is O(n·p) for small ``p`` (geometric skips), O(n) for large ``p``.
    """
    if n <= 0 or p <= 0.0:
        return np.empty(0, dtype=np.int64)
    if p >= 0.2:
        return np.flatnonzero(rng.random(n) < p).astype(np.int64)
    if p < 1e-9:
        # Geometric gaps would overflow; the count is Binomial(n, p) and almost always 0.
        k = int(rng.binomial(n, p))
        return (
            np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
            if k
            else np.empty(0, dtype=np.int64)
        )
    expected = n * p
    size = int(expected + 6.0 * math.sqrt(expected) + 16)
    chunks, pos = [], -1
    while True:
        c = pos + np.cumsum(rng.geometric(p, size), dtype=np.int64)
        if c[-1] >= n:
            chunks.append(c[c < n])
            break
        chunks.append(c)
        pos = int(c[-1])
    return np.concatenate(chunks)


def merge_last(
    pages: Sequence[np.ndarray], times: Sequence[np.ndarray], first: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate write lists, keep each page once with its latest time (``first``: its
    earliest), sorted by page."""
    if not pages:
        return np.empty(0, np.int64), np.empty(0, float)
    p = np.concatenate(pages)
    t = np.concatenate(times)
    if p.size == 0:
        return p.astype(np.int64), t
    order = np.lexsort((-t if first else t, p))
    p, t = p[order], t[order]
    last = np.ones(p.size, dtype=bool)
    last[:-1] = p[1:] != p[:-1]
    return p[last], t[last]


class WriteSampler:
    """Stateful page-write sampler for one migration (page engine).

    :meth:`sample` turns a wall-clock window and the guest's speed into a guest-time window
    and asks :meth:`_sample_guest` for the pages written in it.
    """

    def __init__(self, n_pages: int, rng: np.random.Generator):
        self.n_pages = n_pages
        self.rng = rng
        self.guest_time = 0.0

    def sample(
        self, t0: float, t1: float, speed: float = 1.0, first: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pages written in wall-clock ``[t0, t1)`` (each once, any order) and their last write
        time (s); ``first``: their first write time instead (when post-copy's guest first
        touches a page not yet pushed)."""
        for pages, times in self.sample_batches(t0, t1, speed, batch_writes=math.inf, first=first):
            return pages, times  # an unbounded batch: the whole window at once
        return np.empty(0, np.int64), np.empty(0, float)

    def sample_batches(
        self, t0: float, t1: float, speed: float = 1.0, batch_writes: int = 1 << 21, first: bool = False
    ):
        """:meth:`sample` as batches of about ``batch_writes`` written pages each (disjoint page
        sets; together the same distribution as one sample), so that a long window of a large
        guest is never held in memory at once.  A window expected to write fewer pages comes
        as one batch, drawn exactly as :meth:`sample` draws it."""
        dt = (t1 - t0) * speed
        if dt <= 0.0:
            return
        g0 = self.guest_time
        self.guest_time = g0 + dt
        for pages, gtimes in self._sample_guest_batches(g0, g0 + dt, batch_writes, first):
            gtimes -= g0
            gtimes /= speed
            gtimes += t0
            yield pages, gtimes

    def _sample_guest_batches(self, g0: float, g1: float, batch_writes: int, first: bool = False):
        yield self._sample_guest(g0, g1, first)

    def _sample_guest(self, g0: float, g1: float, first: bool = False) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class RegionSampler(WriteSampler):
    """Poisson writes over :class:`Region` s (random) or a sweeping cursor (sequential)."""

    def __init__(self, regions: Sequence[Region], n_pages: int, rng: np.random.Generator, scattered: bool):
        super().__init__(n_pages, rng)
        self.regions = [r for r in regions if r.n_pages > 0 and r.rate_per_page > 0]
        self.scattered = scattered
        self.cursor = {i: r.start * r.n_pages for i, r in enumerate(self.regions) if r.sequential}

    def _sample_guest(self, g0, g1, first=False):
        pages, times = [], []
        for p, t in self._region_samples(g0, g1, None, first):
            pages.append(p)
            times.append(t)
        if not pages:
            return np.empty(0, np.int64), np.empty(0, float)
        # Regions are disjoint and each yields distinct pages: no de-duplication needed.
        return np.concatenate(pages), np.concatenate(times)

    def _sample_guest_batches(self, g0, g1, batch_writes, first=False):
        T = g1 - g0
        expected = sum(
            min(r.n_pages, r.rate_per_page * r.n_pages * T)
            if r.sequential
            else -r.n_pages * math.expm1(-r.rate_per_page * T)
            for r in self.regions
        )
        if expected <= batch_writes:
            yield self._sample_guest(g0, g1, first)
            return
        yield from self._region_samples(g0, g1, batch_writes, first)

    def _region_samples(self, g0, g1, batch_writes, first=False):
        """(pages, last write times) per region — per block of ranks of a random region whose
        expected writes exceed ``batch_writes`` (None: never split); ``first``: first write
        times (random writes: the same draw read forwards, Poisson writes being the same run
        backwards in time)."""
        T = g1 - g0
        for i, r in enumerate(self.regions):
            if r.sequential:
                yield self._sweep(i, r, g0, T, first)
                continue
            lam = r.rate_per_page
            p_hit = -math.expm1(-lam * T)
            blocks = 1 if batch_writes is None else max(1, math.ceil(r.n_pages * p_hit / batch_writes))
            width = -(-r.n_pages // blocks)
            for lo in range(0, r.n_pages, width):
                pos = bernoulli_positions(self.rng, min(width, r.n_pages - lo), p_hit)
                # Time back from g1 to the last write, conditioned on at least one write in T:
                # back = -log1p(-u p_hit) / lam, t = g1 - back (in place: one array per write)
                t = self.rng.random(pos.size)
                t *= -p_hit
                np.log1p(t, out=t)
                t /= -lam
                if first:
                    t += g0
                else:
                    np.subtract(g1, t, out=t)
                pos += r.first_rank + lo
                yield page_of_rank(pos, self.n_pages, self.scattered), t

    def _sweep(self, i: int, r: Region, g0: float, T: float, first: bool = False):
        speed_pages = r.rate_per_page * r.n_pages  # pages per guest second
        u0 = self.cursor[i]
        u1 = u0 + speed_pages * T
        k_lo = math.floor(u0) + 1
        k_hi = math.floor(u1)
        if k_hi < k_lo:
            self.cursor[i] = u1
            return np.empty(0, np.int64), np.empty(0, float)
        # each page once: its last pass (or, ``first``, its first)
        if first:
            k_hi = min(k_hi, k_lo + r.n_pages - 1)
        else:
            k_lo = max(k_lo, k_hi - r.n_pages + 1)
        k = np.arange(k_lo, k_hi + 1, dtype=np.int64)
        t = g0 + (k - u0) / speed_pages
        p = (k % r.n_pages) + r.first_rank
        # Keep the cursor small to preserve float precision.
        wrap = math.floor(u1 / r.n_pages) * r.n_pages
        self.cursor[i] = u1 - wrap
        return p, t


@dataclass(frozen=True)
class Workload:
    """Base: a workload writing ``dirty_rate_pages_s`` pages/s into ``wss_mib`` of memory."""

    dirty_rate_pages_s: float = 0.0
    wss_mib: float | None = None
    pattern: str = "random"
    pacing: str = "guest"  # guest | wall: what the writer's rate is paced by
    max_rate_pages_s: float | None = None  # wall pacing: peak rate at full speed (null = unbounded)
    #: sequential pattern: where the write cursor stands in the working set when the migration
    #: starts (fraction, [0, 1)); a real writer has usually been sweeping for a while
    sweep_start: float = 0.0

    name = "base"

    def __post_init__(self):
        check_fields(self)
        check_range("dirty_rate_pages_s", self.dirty_rate_pages_s, 0, MAX_DIRTY_RATE_PAGES_S, note=RATE_NOTE)
        if self.wss_mib is not None:
            check_range("wss_mib", self.wss_mib, 0, None, lo_open=True, finite=True)  # must fit the VM
        check_choice("pattern", self.pattern, PATTERNS)
        self._check_pacing()
        check_range("sweep_start", self.sweep_start, 0, 1, hi_open=True)
        self._refuse_unused()

    def unused_keys(self) -> dict[str, str]:
        """Keys this workload's writes never read, given its other keys: key -> why.  Refused
        away from their defaults (:func:`~lmtoolkit.model.checks.refuse_unused`, the rule of
        :attr:`Policy.unused_fields <lmtoolkit.policies.base.Policy.unused_fields>`):
        ``workload=uniform workload.sweep_start=0.5`` ran as 0, and ``workload.pacing=guest
        workload.max_rate_pages_s=6000`` as no peak."""
        out = {}
        if not self.sequential:
            out["sweep_start"] = (
                f"only a sequential writer (pattern=sequential) has a write cursor to place; "
                f"pattern={self.pattern} writes pages at random"
            )
        if self.pacing != "wall":
            out["max_rate_pages_s"] = (
                f"only a clock-paced writer (pacing=wall) catches up to a peak rate; pacing={self.pacing} "
                "writes at rate x (1 - throttle)"
            )
        return out

    def _refuse_unused(self) -> None:
        refuse_unused(self, self.unused_keys(), f"workload {self.name}")

    def _refuse_own_rate(self, why: str) -> None:
        """A workload whose writes are stated elsewhere (its phases, its trace file) refuses a
        rate or working set of its own, which nothing would read."""
        if self.dirty_rate_pages_s != 0:
            raise ConfigError(
                "dirty_rate_pages_s",
                self.dirty_rate_pages_s,
                "",
                message=f"dirty_rate_pages_s={self.dirty_rate_pages_s} would have no effect: {why}",
            )
        if self.wss_mib is not None:
            raise ConfigError(
                "wss_mib", self.wss_mib, "", message=f"wss_mib={self.wss_mib} would have no effect: {why}"
            )

    def _check_pacing(self):
        check_choice("pacing", self.pacing, PACINGS)
        if self.max_rate_pages_s is not None:
            hi = MAX_DIRTY_RATE_PAGES_S
            check_range(
                "max_rate_pages_s", self.max_rate_pages_s, self.dirty_rate_pages_s, hi, note=RATE_NOTE
            )

    def write_speed(self, speed):
        """Factor on the write rate when the guest runs at ``speed`` (1 = unthrottled)."""
        return pacing_speed(speed, self.pacing == "wall", self.headroom())

    def headroom(self) -> float:
        """Peak rate over target rate (inf: unbounded or no writes)."""
        if self.max_rate_pages_s is None or self.dirty_rate_pages_s <= 0:
            return float("inf")
        return float(self.max_rate_pages_s) / float(self.dirty_rate_pages_s)

    # -- sizes ---------------------------------------------------------------------------
    def wss_pages(self, n_pages: int, page_bytes: int) -> int:
        if self.wss_mib is None:
            return n_pages
        return max(1, min(n_pages, int(self.wss_mib * MIB) // page_bytes))

    def check_page_size(self, page_size_kib: int) -> None:
        """Raise if the workload cannot run on pages of ``page_size_kib`` (a trace can not on
        pages smaller than its capture's)."""

    def check_fits(self, memory_mib: float) -> None:
        """Raise if the working set is larger than the VM's memory."""
        if self.wss_mib is not None and self.wss_mib > memory_mib + 1e-9:
            raise ConfigError(
                "wss_mib",
                self.wss_mib,
                f"the working set must fit in the VM's memory (<= {memory_mib:g} MiB)",
            )

    # -- views for the engines -----------------------------------------------------------
    def regions(self, n_pages: int, page_bytes: int) -> list[Region]:
        """Disjoint regions with uniform per-page rates (for the fluid engine)."""
        raise NotImplementedError

    def sampler(self, n_pages: int, page_bytes: int, rng: np.random.Generator) -> WriteSampler:
        """A fresh write sampler for one migration (for the page engine)."""
        return RegionSampler(self.regions(n_pages, page_bytes), n_pages, rng, scattered=self.scattered)

    # -- layout: where the ranks lie, at a writer time ------------------------------------
    # The one answer to "which pages does this workload write, hottest first" that the engines
    # read (post-copy's pre-paging order, the Linux zero layout, the fluid engine's XBZRLE
    # slots, the teaching plots): a workload that writes (uniform, hot/cold, Zipf) lays its
    # ranks out by its own ``pattern`` (:attr:`scattered`, as its sampler does); a phased one
    # is, at each writer time, the phase running then (:meth:`phase_at`); a trace lays out the
    # pages it recorded.  Never a phased or trace workload's own ``pattern`` (refused: its
    # phases and its file state the writes).
    def phase_at(self, g: float) -> Workload:
        """The workload whose writes fall at writer time ``g`` (s of guest time, the page
        engine's ``WriteSampler.guest_time``): itself; a phased workload's phase running then,
        followed down nested phases (:meth:`PhasedWorkload.phase_at`)."""
        return self

    def leaves(self, key: str = "workload") -> tuple[tuple[str, Workload], ...]:
        """The workloads that write, each with its config key (``key`` is this workload's):
        itself; a phased workload's phases, nested ones flattened (``workload.phases[0]``,
        ``workload.phases[1].phases[0]``, ...)."""
        return ((key, self),)

    @property
    def scattered(self) -> bool:
        """A writer's ranks lie scattered over the address space (``pattern: random``,
        :func:`page_of_rank`), or at their own addresses (``sequential``)."""
        return self.pattern == "random"

    def pages_of(self, ranks, n_pages: int, page_bytes: int, g: float) -> np.ndarray:
        """Page number of each rank (rank 0 = hottest) in the layout of the workload writing at
        writer time ``g`` (:meth:`phase_at`) — the inverse of :meth:`ranks_of`."""
        return self.phase_at(g)._leaf_pages(np.asarray(ranks, dtype=np.int64), n_pages, page_bytes)

    def ranks_of(self, pages, n_pages: int, page_bytes: int, g: float) -> np.ndarray:
        """Rank of each page (0 = hottest) in the layout of the workload writing at writer time
        ``g`` (:meth:`phase_at`): the order in which idealised pre-paging pushes pages."""
        return self.phase_at(g)._leaf_ranks(np.asarray(pages, dtype=np.int64), n_pages, page_bytes)

    def _leaf_pages(self, ranks: np.ndarray, n_pages: int, page_bytes: int) -> np.ndarray:
        return page_of_rank(ranks, n_pages, self.scattered)

    def _leaf_ranks(self, pages: np.ndarray, n_pages: int, page_bytes: int) -> np.ndarray:
        if not self.scattered or n_pages <= 1:
            return pages
        return (pages * pow(scatter_multiplier(n_pages), -1, n_pages)) % n_pages

    def written_pages(self, n_pages: int, page_bytes: int) -> np.ndarray:
        """(n_pages,) bool: the pages this workload ever writes, each in its own layout (a
        phased workload: any phase's)."""
        written = np.zeros(n_pages, dtype=bool)
        for r in self.regions(n_pages, page_bytes):
            if r.rate_per_page > 0 and r.n_pages > 0:
                ranks = np.arange(r.first_rank, r.first_rank + r.n_pages)
                written[self._leaf_pages(ranks, n_pages, page_bytes)] = True
        return written

    @property
    def sequential(self) -> bool:
        return self.pattern == "sequential"

    @property
    def sweep(self) -> tuple[bool, float]:
        """(sequential, cursor start) of this workload's regions (:class:`Region`)."""
        return self.sequential, float(self.sweep_start) if self.sequential else 0.0


@dataclass(frozen=True)
class IdleWorkload(Workload):
    """A guest that writes nothing: the migration is one pass (the analytic baseline)."""

    name = "idle"

    def __post_init__(self):
        super().__post_init__()
        if self.dirty_rate_pages_s != 0:
            # a rate here would be ignored: the migration would silently be an idle one
            raise ConfigError(
                "dirty_rate_pages_s",
                self.dirty_rate_pages_s,
                "the idle workload writes nothing (0); for writes choose workload=uniform, hotcold, "
                "zipf, sequential, phased or a preset such as web_server",
            )

    def unused_keys(self):
        why = "the idle workload writes nothing (for writes choose workload=uniform, hotcold, zipf, ...)"
        # (not pattern: the engines lay out a random writer's ranks by it, post-copy's
        # pre-paging order and the fluid engine's XBZRLE slots included)
        return dict.fromkeys(("wss_mib", "pacing", "max_rate_pages_s", "sweep_start"), why)

    def regions(self, n_pages, page_bytes):
        return []


@dataclass(frozen=True)
class UniformWorkload(Workload):
    """Writes spread uniformly over the working set."""

    name = "uniform"

    def regions(self, n_pages, page_bytes):
        w = self.wss_pages(n_pages, page_bytes)
        if self.dirty_rate_pages_s <= 0:
            return []
        return [Region(0, w, self.dirty_rate_pages_s / w, *self.sweep)]


@dataclass(frozen=True)
class HotColdWorkload(Workload):
    """A hot set of ``hot_mib`` takes ``hot_fraction`` of the writes; the rest of the
    working set shares the remainder uniformly (the classic "writable working set" shape of
    Clark et al., NSDI 2005)."""

    hot_mib: float = 256.0
    hot_fraction: float = 0.9

    name = "hotcold"

    def __post_init__(self):
        super().__post_init__()
        check_range("hot_mib", self.hot_mib, 0, None, lo_open=True, finite=True)  # must fit the VM
        check_range("hot_fraction", self.hot_fraction, 0, 1)
        if self.wss_mib is not None and self.hot_mib > self.wss_mib:
            raise ConfigError("hot_mib", self.hot_mib, f"must not exceed wss_mib ({self.wss_mib:g})")

    def check_fits(self, memory_mib):
        super().check_fits(memory_mib)
        if self.hot_mib > memory_mib + 1e-9:
            raise ConfigError(
                "hot_mib", self.hot_mib, f"the hot set must fit in the VM's memory (<= {memory_mib:g} MiB)"
            )

    def regions(self, n_pages, page_bytes):
        w = self.wss_pages(n_pages, page_bytes)
        h = max(1, min(w, int(self.hot_mib * MIB) // page_bytes))
        r = self.dirty_rate_pages_s
        out = []
        if r > 0:
            out.append(Region(0, h, r * self.hot_fraction / h, *self.sweep))
            if w > h:
                out.append(Region(h, w - h, r * (1 - self.hot_fraction) / (w - h), *self.sweep))
        return out


#: exact Zipf partial sums up to this rank; beyond it Euler-Maclaurin (error < 1e-15 relative)
_ZIPF_EXACT = 1 << 20


def _zipf_cumsum(upto, s: float) -> np.ndarray:
    """``sum(k ** -s for k in 1..m)`` for each ``m`` in ``upto`` (sorted), without O(m) arrays
    for large ``m``: exact below :data:`_ZIPF_EXACT`, Euler-Maclaurin above it."""
    upto = np.asarray(upto, dtype=np.int64)
    m_exact = int(min(upto.max(initial=0), _ZIPF_EXACT))
    cum = np.concatenate([[0.0], np.cumsum(np.arange(1, m_exact + 1, dtype=float) ** (-s))])
    out = np.empty(upto.size)
    for i, m in enumerate(upto):
        if m <= m_exact:
            out[i] = cum[m]
            continue
        a, b = float(m_exact), float(m)  # sum over k in (a, b] = f(b) + integral + corrections
        integral = np.log(b / a) if s == 1 else (b ** (1 - s) - a ** (1 - s)) / (1 - s)
        tail = integral + (b**-s - a**-s) / 2 + s / 12 * (a ** (-s - 1) - b ** (-s - 1))
        out[i] = cum[m_exact] + tail
    return out


@dataclass(frozen=True)
class ZipfWorkload(Workload):
    """Page popularity follows Zipf's law with exponent ``zipf_s`` over the working set.

    Ranks are grouped into ``buckets`` log-spaced bands, each with the mean rate of its
    ranks (an exact Zipf sampler per page would cost O(pages) per pass).
    """

    zipf_s: float = 1.0
    buckets: int = 48

    name = "zipf"

    def __post_init__(self):
        super().__post_init__()
        check_range("zipf_s", self.zipf_s, 0, 10)
        check_range("buckets", self.buckets, 1, 4096)

    def regions(self, n_pages, page_bytes):
        w = self.wss_pages(n_pages, page_bytes)
        if self.dirty_rate_pages_s <= 0:
            return []
        edges = np.unique(np.round(np.geomspace(1, w + 1, self.buckets + 1)).astype(np.int64))
        cum = _zipf_cumsum(edges - 1, self.zipf_s)  # cum[i] = sum of k^-s for k < edges[i]
        total = cum[-1]
        out = []
        for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            n = int(hi - lo)
            share = (cum[i + 1] - cum[i]) / total
            out.append(Region(int(lo - 1), n, self.dirty_rate_pages_s * share / n, *self.sweep))
        return out


@dataclass(frozen=True)
class PhasedWorkload(Workload):
    """A cycle of workloads, each active for ``durations_s[i]`` seconds of guest time."""

    phases: tuple = ()
    durations_s: tuple = ()

    name = "phased"

    def __post_init__(self):
        check_fields(self)
        self._check_pacing()
        self._refuse_own_rate(
            "a phased workload's write rate and working set are its phases' "
            "(phases[i].dirty_rate_pages_s, phases[i].wss_mib)"
        )
        if not self.phases:
            raise ConfigError("phases", self.phases, "a non-empty list of workloads")
        for p in self.phases:
            if not isinstance(p, Workload):
                raise ConfigError("phases", p, "workloads (UniformWorkload(...), HotColdWorkload(...), ...)")
        if len(self.phases) != len(self.durations_s):
            raise ConfigError("durations_s", self.durations_s, "one duration per phase")
        for d in self.durations_s:
            check_range("durations_s", d, 0, None, lo_open=True)
        self._refuse_unused()
        for i, p in enumerate(self.phases):
            why = f"the phased workload's pacing (pacing={self.pacing}) paces every phase's writes"
            try:
                refuse_unused(
                    p, dict.fromkeys(("pacing", "max_rate_pages_s"), why), f"a phase of workload {self.name}"
                )
            except ConfigError as e:
                raise e.with_prefix(f"phases[{i}]") from None

    def unused_keys(self):
        return {
            "pattern": "each phase writes in its own pattern (phases[i].pattern; the config's "
            "workload.pattern is the phases' default)",
            "sweep_start": "each sequential phase places its own write cursor (phases[i].sweep_start)",
            "max_rate_pages_s": "a peak rate is read against the workload's own write rate (headroom = "
            "peak / rate), and a phased workload has none (its phases' rates are theirs; with "
            "pacing=wall it is never slowed)",
        }

    def check_fits(self, memory_mib):
        for p in self.phases:
            p.check_fits(memory_mib)

    def check_page_size(self, page_size_kib):
        for p in self.phases:
            p.check_page_size(page_size_kib)

    @property
    def cycle_s(self) -> float:
        return float(sum(self.durations_s))

    def phase_index(self, g: float) -> tuple[int, float]:
        """The phase running at writer time ``g`` and where it started in the cycle: phase ``i``
        runs over ``[start_i, start_i + durations_s[i])`` of each cycle (a time on a phase's
        end is the next phase's), as the page engine's sampler steps them."""
        pos = g % self.cycle_s
        i, acc = 0, 0.0
        while i < len(self.durations_s) - 1 and acc + self.durations_s[i] <= pos:
            acc += self.durations_s[i]
            i += 1
        return i, acc

    def phase_at(self, g):
        """The phase running at writer time ``g`` (:meth:`phase_index`), followed down a nested
        phased workload on the same clock (its sampler is handed the same writer times).

        The engines read a phased workload's layout here, at the time in question, never from
        the phased workload itself: its phases write where their own ``pattern`` puts them (a
        sequential phase on the contiguous block of its first pages, a random one scattered).
        Post-copy's idealised pre-paging (Hines & Gopalan, VEE 2009: pre-paging around the
        faults the running guest takes) ranks the pages by the phase running at the switch:
        QEMU's source serves the destination's requests — the faults of the guest as it runs
        after the switch — before its background scan (``migration/ram.c: get_queued_page``,
        ``unqueue_page``, ahead of ``find_dirty_block``), so what goes first is what the
        running phase touches.  Before, the phased workload's own default ``pattern: random``
        was read: phases all sequential were pushed in scattered order (a 1 GiB post-copy on
        1 GbE, a 256 MiB sweep of 40,000 writes/s: 32,999 faults where the same sweep alone
        takes 11,443)."""
        i, _ = self.phase_index(g)
        return self.phases[i].phase_at(g)

    def leaves(self, key="workload"):
        return tuple(leaf for i, p in enumerate(self.phases) for leaf in p.leaves(f"{key}.phases[{i}]"))

    def written_pages(self, n_pages, page_bytes):
        out = np.zeros(n_pages, dtype=bool)
        for p in self.phases:
            out |= p.written_pages(n_pages, page_bytes)
        return out

    def regions(self, n_pages, page_bytes):
        """Time-weighted average rate per page over one cycle, on the bounds of every phase's
        regions (the fluid engine's partition; :meth:`phase_rates` gives each phase's rates)."""
        per_rank: dict[int, float] = {}
        bounds = {0, n_pages}
        phase_regions = []
        for w, d in zip(self.phases, self.durations_s):
            regs = w.regions(n_pages, page_bytes)
            phase_regions.append((regs, d / self.cycle_s))
            for r in regs:
                bounds.update((r.first_rank, r.first_rank + r.n_pages))
        edges = sorted(bounds)
        for lo in edges[:-1]:
            per_rank[lo] = 0.0
        for regs, share in phase_regions:
            for r in regs:
                for lo in edges[:-1]:
                    if r.first_rank <= lo < r.first_rank + r.n_pages:
                        per_rank[lo] += r.rate_per_page * share
        return [
            Region(lo, hi - lo, per_rank[lo]) for lo, hi in zip(edges[:-1], edges[1:]) if per_rank[lo] > 0
        ]

    def phase_rates(self, n_pages, page_bytes) -> np.ndarray:
        """(phases, regions) writes per page per second in each phase, over :meth:`regions`
        (the fluid engine follows the phases in time with them)."""
        avg = self.regions(n_pages, page_bytes)
        out = np.zeros((len(self.phases), len(avg)))
        for i, w in enumerate(self.phases):
            for r in w.regions(n_pages, page_bytes):
                for j, a in enumerate(avg):
                    if r.first_rank <= a.first_rank < r.first_rank + r.n_pages:
                        out[i, j] += r.rate_per_page
        return out

    @property
    def dirty_rate_pages_s_mean(self) -> float:
        return sum(w.dirty_rate_pages_s * d for w, d in zip(self.phases, self.durations_s)) / self.cycle_s

    def sampler(self, n_pages, page_bytes, rng):
        return _PhasedSampler(self, n_pages, page_bytes, rng)


class _PhasedSampler(WriteSampler):
    """Each phase's writes in the guest-time intervals it is active, merged.

    A window spanning more than :attr:`FAST_INTERVALS` phase intervals (phases far shorter than
    the window: ``durations_s=[1e-7, 1e-7]`` made 250,000 of them per 50 ms pass, and a 2 GiB
    migration ran past 60 s in the page engine where the fluid engine took 2.4 s) is sampled with
    one call per phase, on the phase's own clock (the guest time it has been active), and the
    write times are mapped back to the intervals they fall in (:meth:`_at`).  That is the same
    draw whenever every phase is a :class:`RegionSampler`, whose writes depend only on how long
    it has been active: Poisson writes restricted to a union of intervals and laid end to end
    are Poisson writes over their total length, and a sequential cursor moves only while its
    phase is active either way.  A phase keeping its own clock (a trace, a nested phased
    workload) is sampled interval by interval, as are windows of fewer intervals (every setting
    sampled so before keeps its draws).
    """

    #: phase intervals in a window above which each phase is sampled at once
    FAST_INTERVALS = 64

    def __init__(self, wl: PhasedWorkload, n_pages, page_bytes, rng):
        super().__init__(n_pages, rng)
        self.wl = wl
        self.subs = [w.sampler(n_pages, page_bytes, rng) for w in wl.phases]
        self.durations = list(wl.durations_s)
        self.cycle = wl.cycle_s
        self.starts = [sum(self.durations[:i]) for i in range(len(self.durations))]
        self.own_clock = all(type(s) is RegionSampler for s in self.subs)

    def _active(self, i: int, g: float) -> float:
        """Guest time phase ``i`` has been active in ``[0, g)``."""
        k, pos = divmod(g, self.cycle)
        return k * self.durations[i] + min(max(pos - self.starts[i], 0.0), self.durations[i])

    def _at(self, i: int, s: np.ndarray) -> np.ndarray:
        """Guest time at which phase ``i`` has been active for ``s`` (inverse of :meth:`_active`;
        an ``s`` at the end of an interval is that end, as the interval-by-interval draw has it)."""
        d = self.durations[i]
        k = np.maximum(np.ceil(s / d) - 1.0, 0.0)
        return k * self.cycle + self.starts[i] + (s - k * d)

    def _sample_guest(self, g0, g1, first=False):
        K = len(self.durations)
        if self.own_clock and (g1 - g0) * K > self.FAST_INTERVALS * self.cycle:
            pages, times = [], []
            for i, sub in enumerate(self.subs):
                s0, s1 = self._active(i, g0), self._active(i, g1)
                if s1 > s0:
                    p, t = sub._sample_guest(s0, s1, first)
                    pages.append(p)
                    times.append(np.clip(self._at(i, t), g0, g1))
            return merge_last(pages, times, first)
        pages, times = [], []
        g = g0
        while g < g1:
            pos = g % self.cycle
            i, acc = self.wl.phase_index(g)
            left = acc + self.durations[i] - pos
            if g + left <= g:
                # at a phase's end up to rounding (g = 12.766... for phases of 1.697... s and
                # 1.069... s: 8.9e-16 s left, below g's last bit): this loop made no progress
                # and filled memory with empty samples until the OOM killer came; the next phase
                i = (i + 1) % K
                left = self.durations[i]
            end = min(g1, g + left)
            sub = self.subs[i]
            p, t = sub._sample_guest(g, end, first)
            pages.append(p)
            times.append(t)
            g = end
        return merge_last(pages, times, first)


#: the shortest interval a trace may state (s): no capture samples faster, and the page engine
#: replays a trace interval by interval (the file reader and ``lmtk trace -i`` hold to it too)
TRACE_MIN_INTERVAL_S = 1e-6


@dataclass(frozen=True)
class TraceWorkload(Workload):
    """Replay of a recorded dirty-page trace (see :mod:`lmtoolkit.trace.format`).

    ``interval_s`` is the capture interval; ``counts[i]`` pages were written during interval
    ``i`` and are listed in ``pages`` (concatenated).  The trace loops.  Within an interval a
    page's last write time is drawn uniformly (the capture only knows the interval).

    ``page_size_kib`` is the capture's page size, replayed on the pages the migration tracks
    (:attr:`VM.page_bytes <lmtoolkit.model.vm.VM.page_bytes>`: the VM's pages, or 4 KiB ones
    for a VM backed by huge pages, whose writes the dirty log sees 4 KiB at a time).  Tracked
    pages larger than the capture's (64 KiB pages from a 4 KiB capture) are written in an
    interval when any of their captured pages is; captured pages larger than the tracked ones
    (a 2 MiB capture on a VM of 2 MiB huge pages) write all the tracked pages in them (the
    capture does not say which of its 4 KiB were written).  A VM whose own pages
    (``vm.page_size_kib``) are smaller than the capture's cannot be told which of them were
    written, and is refused (:meth:`check_page_size`).  Page numbers then wrap modulo the
    tracked page count, and a page listed more than once in an interval counts once, in both
    engines (:meth:`intervals`).
    """

    interval_s: float = 1.0
    counts: tuple = ()
    pages: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), compare=False)
    source: str = ""
    page_size_kib: int = 4

    name = "trace"

    def __post_init__(self):
        check_fields(self)
        self._refuse_own_rate("a trace replays the writes its file recorded")
        check_range("interval_s", self.interval_s, TRACE_MIN_INTERVAL_S, None)
        if len(self.counts) == 0:
            raise ConfigError("counts", self.counts, "a trace with at least one interval")
        if int(np.sum(self.counts)) != len(self.pages):
            raise ConfigError("pages", len(self.pages), "sum(counts) page numbers")
        check_range("page_size_kib", self.page_size_kib, 1, None, finite=True)  # an integer
        self._refuse_unused()

    def unused_keys(self):
        why = "a trace replays the writes its file recorded"
        return {
            "pattern": why + " (where they fell included)",
            "sweep_start": why,
            "max_rate_pages_s": why + " (a peak rate is read against a write rate, which a trace has none "
            "of; with pacing=wall it is never slowed)",
        }

    @property
    def duration_s(self) -> float:
        return self.interval_s * len(self.counts)

    def check_fits(self, memory_mib):
        return None

    def check_page_size(self, page_size_kib: int) -> None:
        if page_size_kib % self.page_size_kib:
            raise ConfigError(
                "page_size_kib",
                page_size_kib,
                "",
                message=(
                    f"vm.page_size_kib={page_size_kib} is not allowed with this trace: it was captured "
                    f"with {self.page_size_kib} KiB pages ({self.source or 'the trace file'}), which "
                    f"cannot be split into smaller ones; use a multiple of {self.page_size_kib}"
                ),
            )

    def intervals(self, n_pages: int, page_bytes: int) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, pages)`` in the tracked pages of ``page_bytes``: the captured pages grouped
        into them (``page_bytes`` a multiple of the capture's) or each split into all of them
        (the capture's a multiple of ``page_bytes``: a huge-page capture on a VM of huge pages,
        whose dirty log is 4 KiB), wrapped modulo ``n_pages``, each page once per interval, in
        the order first listed."""
        counts = np.asarray(self.counts, dtype=np.int64)
        pages = np.asarray(self.pages, dtype=np.int64)
        cap, pb = self.page_size_kib * 1024, int(page_bytes)
        if pb >= cap:
            pages = pages // (pb // cap)
        else:
            k = cap // pb
            pages = (pages[:, None] * k + np.arange(k)).ravel()
            counts = counts * k
        pages %= n_pages
        iv = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        _, first = np.unique(iv * n_pages + pages, return_index=True)
        if first.size == pages.size:
            return counts, pages
        first.sort()
        return np.bincount(iv[first], minlength=counts.size), pages[first]

    def regions(self, n_pages, page_bytes):
        """Pages grouped by how many intervals they appear in: rate = appearances / duration."""
        _, pages = self.intervals(n_pages, page_bytes)
        uniq, freq = np.unique(pages, return_counts=True)
        out, first = [], 0
        for f, n in zip(*np.unique(freq, return_counts=True)):
            out.append(Region(first, int(n), float(f) / self.duration_s))
            first += int(n)
        return out

    def _rank_order(self, n_pages: int, page_bytes: int) -> np.ndarray:
        """(n_pages,) the VM's pages hottest first: by how many of the trace's intervals write
        them (the rates of :meth:`regions`), the most first, ties (and the pages it never
        writes, last) in address order."""
        _, pages = self.intervals(n_pages, page_bytes)
        return np.argsort(-np.bincount(pages, minlength=n_pages), kind="stable")

    def _leaf_pages(self, ranks, n_pages, page_bytes):
        return self._rank_order(n_pages, page_bytes)[ranks]

    def _leaf_ranks(self, pages, n_pages, page_bytes):
        rank = np.empty(n_pages, dtype=np.int64)
        rank[self._rank_order(n_pages, page_bytes)] = np.arange(n_pages)
        return rank[pages]

    def written_pages(self, n_pages, page_bytes):
        out = np.zeros(n_pages, dtype=bool)
        out[self.intervals(n_pages, page_bytes)[1]] = True
        return out

    def sampler(self, n_pages, page_bytes, rng):
        return _TraceSampler(self, n_pages, page_bytes, rng)


class _TraceSampler(WriteSampler):
    def __init__(self, wl: TraceWorkload, n_pages, page_bytes, rng):
        super().__init__(n_pages, rng)
        self.wl = wl
        counts, self.pages = wl.intervals(n_pages, page_bytes)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def _sample_guest(self, g0, g1, first=False):
        """The intervals of ``[g0, g1)`` at once (a part of an interval writes each of its pages
        with the chance of its share).  Every interval's pages recur each loop of the trace: of a
        window longer than a loop and an interval, only the last (``first``: the first) such span
        can hold a page's last (first) write — a trace of 1 µs intervals replayed over seconds
        had looped over millions of intervals one by one, without end in sight."""
        dt = self.wl.interval_s
        n = len(self.wl.counts)
        span = (n + 1) * dt
        if g1 - g0 > span:
            g0, g1 = (g0, g0 + span) if first else (g1 - span, g1)
        i = np.arange(math.floor(g0 / dt), max(math.floor(g0 / dt) + 1, math.ceil(g1 / dt)))
        lo, hi = np.maximum(g0, i * dt), np.minimum(g1, (i + 1) * dt)
        i, lo, hi = i[hi > lo], lo[hi > lo], hi[hi > lo]
        j = i % n
        cnt = self.offsets[j + 1] - self.offsets[j]
        which = np.repeat(np.arange(i.size), cnt)
        idx = np.repeat(self.offsets[j] - (np.cumsum(cnt) - cnt), cnt) + np.arange(which.size)
        pages = self.pages[idx]
        frac = (hi - lo) / dt
        if (frac < 1.0).any():
            keep = self.rng.random(which.size) < frac[which]
            pages, which = pages[keep], which[keep]
        times = lo[which] + self.rng.random(which.size) * (hi - lo)[which]
        return merge_last([pages], [times], first)


WORKLOADS = {
    cls.name: cls
    for cls in (IdleWorkload, UniformWorkload, HotColdWorkload, ZipfWorkload, PhasedWorkload, TraceWorkload)
}
