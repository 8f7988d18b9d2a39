"""Page-granular engine: which pages are dirty, sent, and re-dirtied, pass by pass.

Semantics (a dirty bitmap synced at the start of each pass, pages sent in address order
continuing where the last phase stopped, as QEMU's ``find_dirty_block`` does).  When a
write re-dirties a page depends on when its dirty log is cleared — the policy's
:attr:`~lmtoolkit.policies.base.Policy.dirty_clear` hook:

* ``"send"`` — just before the page is sent: a page written *after* its send in this pass is
  dirty at the next sync, one written *before* it goes out once with its latest content;
* ``"sync"`` — at the sync (QEMU under TCG, Xen's ``SHADOW_OP_CLEAN``): *every* write after
  the sync is dirty at the next sync, also one made before the page was sent in this pass;
* ``"chunk"`` — QEMU/KVM with manual dirty-log protect (``migration/ram.c:
  migration_clear_memory_region_dirty_bitmap``, ``accel/kvm/kvm-all.c:
  kvm_log_clear_one_slot``): the log of a whole chunk of ``policy.clear_chunk_pages`` pages
  is cleared just before the first page of the chunk is sent after a sync, and only for the
  pages whose log bit was set at that sync (the engine keeps the KVM log bits).  A write
  between the sync and the chunk's clear is carried by the send; a write after the clear
  dirties the page for the next round even if the page was sent after it; a write to a
  pending page whose bit was not set at the sync (left over from an earlier phase, not
  written since) is dirty at the next sync whenever it happens;
* ``"skip"`` (Xen classic, ``xc_domain_save.c``: ``to_skip``) — cleared at the sync, and a
  pending page written since the sync is *skipped* when its turn comes (no bytes, no time)
  and sent in the next round; the skip test uses the log as peeked at the start of each
  batch of ``policy.skip_batch_pages`` sent pages (``XEN_DOMCTL_SHADOW_OP_PEEK``);

and in every mode a page that is not in this pass's set and is written becomes dirty at the
next sync; a written page is no longer a zero page; at ``policy.timeout_s`` the migration
stops wherever it is — inside a pass (the pages whose send ended by then count) or inside
the switchover (the pause until then is the downtime; see :class:`Policy <lmtoolkit.policies.base.Policy>` for what the timeout
means, post-copy included).

Writes come from the workload's sampler (:mod:`lmtoolkit.model.workload`), O(written pages)
per phase; the only O(memory) work is the first pass.  Everything is numpy; one migration
per call, deterministic for a given seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ConfigError
from ..model.workload import page_of_rank
from ..policies.base import State
from ..records import REASON_CODE, MigrationRecord, RoundRecord
from ..scenario import Scenario
from .beyond import NOT_STARTED, apply_to_record, disk_copy, memory_policy
from .common import (
    ROUND_DETAIL_LIMIT,
    abandoned_pause_s,
    fault_stall_s,
    postcopy_switchover,
    reason_name,
    sent_by,
    slowdown,
    stalled_count,
    switchover,
    zero_layout,
)
from .rule_checks import checked

_EMPTY = np.empty(0, dtype=np.int64)

#: a page's state, one byte per page (the dirty bitmap and KVM's dirty-log bit in one array):
#: bit 0 pending (in the bitmap), bit 1 its log bit (``dirty_clear: chunk``; a set log bit
#: implies a pending page: a write sets both, and a send clears the page's chunk first);
#: other modes use CLEAN and PENDING only.
CLEAN, PENDING, LOG, LOGGED = 0, 1, 2, 3
#: written pages handled at once (the sampler's batch size): bounds a phase's memory
WRITE_BATCH = 1 << 20


def clear_mode(policy) -> str:
    """The policy's :attr:`~lmtoolkit.policies.base.Policy.dirty_clear` hook as a plain string."""
    return str(policy.dirty_clear)


def clears_at_send(policy) -> bool:
    """False when the policy's dirty log is cleared at the sync (the
    :attr:`~lmtoolkit.policies.base.Policy.dirty_clear` hook is ``"sync"``, e.g. QEMU under
    TCG): then every write after the sync is dirty at the next one, even to a page sent
    later in the same phase (no write is absorbed by the send)."""
    return clear_mode(policy) == "send"


#: pages per block when listing the pending pages (bounds the temporary bool array)
_BLOCK = 1 << 24


def _zero_below_top(nonzero: np.ndarray, z: int, top: int, workload, page_bytes: int) -> None:
    """``vm.zero_layout=linux``: clear ``nonzero`` on the ``z`` highest-addressed pages below the
    top ``top`` pages that the workload never writes (fewer below the top: the highest ones)."""
    n = nonzero.size
    written = workload.written_pages(n, page_bytes)  # each phase's in its own layout, a trace's its own
    left = z
    for hi in range(n - top, 0, -_BLOCK):
        lo = max(hi - _BLOCK, 0)
        free = np.flatnonzero(~written[lo:hi]) + lo
        take = free[max(free.size - left, 0) :]
        nonzero[take] = False
        left -= take.size
        if not left:
            return
    free = np.flatnonzero(~written[n - top :] & nonzero[n - top :]) + (n - top)
    nonzero[free[max(free.size - left, 0) :]] = False


def _pending_pages(state: np.ndarray) -> np.ndarray:
    """Sorted numbers of the pages not ``CLEAN``: numpy's fast ``flatnonzero`` path is for
    bool arrays, so blocks of ``state != CLEAN`` are listed one at a time."""
    if state.size <= _BLOCK:
        return np.flatnonzero(state != CLEAN)
    parts = [np.flatnonzero(state[i : i + _BLOCK] != CLEAN) + i for i in range(0, state.size, _BLOCK)]
    return np.concatenate(parts)


def whole_host_pages(pending: np.ndarray, ratio: int) -> np.ndarray:
    """Post-copy's pages over huge pages: every page of each host page holding one of the
    ``pending`` pages (sorted), ``ratio`` pages per host page, sorted.

    QEMU ``migration/ram.c: postcopy_chunk_hostpages_pass`` ("Postcopy requires that all target
    pages in a hostpage are dirty or clean, not a mix"): a host page with any dirty target page
    is marked wholly dirty and discarded on the destination, so all of it is sent again — its
    clean target pages included, each as a page of its own (``ram_save_host_page`` →
    ``ram_save_target_page``: header, and a zero page as a marker)."""
    if ratio <= 1 or not pending.size:
        return pending
    hosts = pending // ratio
    first = np.ones(hosts.size, dtype=bool)
    first[1:] = hosts[1:] != hosts[:-1]
    return (hosts[first][:, None] * ratio + np.arange(ratio)).ravel()


def discard_runs(pages: np.ndarray) -> int:
    """Runs of consecutive numbers in the sorted ``pages``: the ranges post-copy's pause sends
    to the destination (QEMU ``ram.c: postcopy_send_discard_bm_ram``, one per run of set bits
    of the RAMBlock's bitmap; over huge pages of :func:`whole_host_pages`, as
    ``postcopy_chunk_hostpages_pass`` leaves it)."""
    if not pages.size:
        return 0
    return 1 + int(np.count_nonzero(np.diff(pages) != 1))


def _send_order(pending: np.ndarray, cursor: int) -> np.ndarray:
    """The bitmap's pages (sorted) in send order: from ``cursor`` up, then wrapping around."""
    i0 = int(np.searchsorted(pending, cursor))
    if i0 == 0:
        return pending
    return np.concatenate([pending[i0:], pending[:i0]])


class _Sends:
    """Times and bytes of one phase's sends, in send order: uniform per non-zero / zero page,
    or given page by page (``tt``, ``bb``: XBZRLE hits and misses cost differently)."""

    def __init__(self, k, nz, t_nz, t_z, b_nz, b_z, tt=None, bb=None):
        self.k = k
        self.t_nz, self.t_z, self.b_nz, self.b_z = t_nz, t_z, b_nz, b_z
        n_nz = k if nz is None else int(np.count_nonzero(nz))
        self.cnz = None if n_nz == k else np.cumsum(nz, dtype=np.int64)
        self.tt, self.bb = tt, bb
        if tt is None:
            self.T = n_nz * t_nz + (k - n_nz) * t_z
            self.B = n_nz * b_nz + (k - n_nz) * b_z
        else:
            self.ct, self.cb = np.cumsum(tt), np.cumsum(bb)
            self.T, self.B = float(self.ct[-1]), float(self.cb[-1])

    def end(self, i):
        """Seconds from the phase start to the end of send ``i`` (array of positions)."""
        if self.tt is not None:
            return self.ct[i]
        c = i + 1 if self.cnz is None else self.cnz[i]
        return c * self.t_nz + (i + 1 - c) * self.t_z

    def start(self, i):
        if self.tt is not None:
            return self.ct[i] - self.tt[i]
        before = i if self.cnz is None else np.where(i > 0, self.cnz[np.maximum(i - 1, 0)], 0)
        return before * self.t_nz + (i - before) * self.t_z

    def by(self, tau):
        """(whole pages sent, bytes on the link) ``tau`` s into the phase."""
        if self.tt is None:
            return sent_by(tau, self.t_nz, self.t_z, self.b_nz, self.b_z, self.cnz, self.k)
        j = int(np.searchsorted(self.ct, tau, side="right"))
        nbytes = float(self.cb[j - 1]) if j else 0.0
        if j < self.k and self.tt[j] > 0:
            done = tau - (float(self.ct[j - 1]) if j else 0.0)
            nbytes += float(self.bb[j]) * min(1.0, max(0.0, done / float(self.tt[j])))
        return j, nbytes


class _Run:
    """State of one page-engine migration."""

    def __init__(self, scn: Scenario, snapshot=None, round_detail: int = ROUND_DETAIL_LIMIT):
        self.scn = scn
        self.round_detail = int(round_detail)  # pre-copy rounds whose detail is kept
        # Optional observer: snapshot(round, dirty_bitmap) at every sync (teaching plots).
        self.snapshot = snapshot
        self.vm = scn.vm
        self.pol = checked(scn.policy)  # its rules' answers checked (rule_checks)
        self.ctx = scn.context()
        self.n = self.vm.pages
        rng = np.random.default_rng(scn.seed)
        # which pages hold data (a written page is no longer a zero page); None while the
        # VM has no zero pages at all (saves a byte per page and a scatter per phase)
        self.nonzero = None
        z = self.vm.zero_pages
        self.layout = zero_layout(scn)
        self._scan_left = True  # zero pages may still be pending (scan_profile)
        if z:
            self.nonzero = np.ones(self.n, dtype=bool)
            if self.layout == "linux":
                _zero_below_top(self.nonzero, z, self.vm.top_nonzero_pages, scn.workload, self.vm.page_bytes)
            else:
                self.nonzero[page_of_rank(np.arange(self.n - z, self.n), self.n)] = False
        self.sampler = scn.workload.sampler(self.n, self.vm.page_bytes, rng)
        # every page pending, its log bit set (KVM_DIRTY_LOG_INITIALLY_SET, which QEMU
        # enables with manual protect)
        self.state = np.full(self.n, LOGGED, dtype=np.uint8)
        self._slot_arr = None  # page -> position in this phase's sends (allocated on first use)
        self._written_arr = None  # pages written since the sync (dirty_clear: skip)
        # XBZRLE (QEMU): a direct-mapped cache of page contents, and which pages changed since sent
        self._xb_slots = int(self.pol.xbzrle_slots(self.ctx))
        if self._xb_slots:
            self._xb_addr = np.full(self._xb_slots, -1, dtype=np.int64)
            self._xb_age = np.zeros(self._xb_slots, dtype=np.int64)
        self._xb_started = False
        self._changed = np.ones(self.n, dtype=bool) if self._xb_slots else None
        self.cursor = 0
        self._pending_list = None  # the pending pages (sorted) until the next phase changes them
        self.st = State(())
        self.st.pending = np.float64(self.n)
        self.pol.init_state(self.st, self.ctx)
        self.detail: list[RoundRecord] = []
        self.rounds = 0

    # -- pre-copy ------------------------------------------------------------------------------
    def _slot(self) -> np.ndarray:
        if self._slot_arr is None:
            self._slot_arr = np.full(self.n, -1, dtype=np.int64)
        return self._slot_arr

    def _next_sends(self, k: int):
        """(k, first page, contiguous?, page array or None, pages pending) for this phase."""
        listed, self._pending_list = self._pending_list, None  # the phase changes the state
        pending = int(np.count_nonzero(self.state)) if listed is None else listed.size
        k = int(min(max(k, 1), pending))
        if pending == self.n and self.cursor + k <= self.n:
            # Whole memory dirty (a first pass): the sends are a range, no index array needed.
            return k, self.cursor, True, None, pending
        order = _send_order(_pending_pages(self.state) if listed is None else listed, self.cursor)
        sent = order[:k]
        s0 = int(sent[0])
        if int(sent[-1]) - s0 == k - 1:
            return k, s0, True, None, pending
        return k, s0, False, sent, pending

    def _pending(self) -> np.ndarray:
        """The pending pages, sorted (listed once between two phases: for the zero-page scan
        profile, the next phase's sends and the switchover)."""
        if self._pending_list is None:
            self._pending_list = _pending_pages(self.state)
        return self._pending_list

    def scan_profile(self) -> None:
        """``vm.zero_layout`` other than ``spread``: put the cumulative pages and seconds
        along the send order in ``st.extra`` for the policy
        (:meth:`lmtoolkit.policies.base.Policy.scan_profile`).  Once no zero page is pending
        the profile is two points (every pending page non-zero): the policy's mean cost per
        page would otherwise take the first pass's unsent pages for ``zero_fraction`` zero
        pages, which under this layout they are not (the data tail at the top of RAM)."""
        ex = self.st.extra
        if self.nonzero is None or self.layout == "spread":
            return
        lk = self.pol.link(self.st, self.ctx)
        if self._scan_left:
            order = _send_order(self._pending(), self.cursor)
            nz = self.nonzero[order]
            if not nz.all():
                cost = np.where(nz, float(lk.t_nz), float(lk.t_z))
                ex["scan_cp"] = np.arange(order.size + 1, dtype=float)
                ex["scan_ct"] = np.concatenate([[0.0], np.cumsum(cost)])
                ex["scan_on"] = np.True_
                return
            self._scan_left = False  # a written page never becomes zero again
        pending = float(self.st.pending)
        ex["scan_cp"] = np.array([0.0, pending])
        ex["scan_ct"] = np.array([0.0, pending * float(lk.t_nz)])
        ex["scan_on"] = np.True_

    def _nonzero_of(self, pages):
        """Non-zero flags of ``pages`` (index array or slice), or None: all non-zero."""
        return None if self.nonzero is None else self.nonzero[pages]

    def _cum_nonzero(self, pages):
        """Running count of non-zero pages along ``pages`` (for :func:`sent_by`), or None."""
        return None if self.nonzero is None else np.cumsum(self.nonzero[pages], dtype=np.int64)

    def _write_speed(self) -> float:
        """The writer's pace under the guest's current speed (workload ``pacing``)."""
        return float(self.scn.workload.write_speed(float(self.st.speed)))

    def _positions(self, wp, k, s0, contiguous, sent) -> np.ndarray:
        """Position of each page of ``wp`` among this phase's sends (-1: not sent)."""
        if contiguous:
            return np.where((wp >= s0) & (wp < s0 + k), wp - s0, -1)
        slot = self._slot()
        slot[sent] = np.arange(k)
        p = slot[wp]
        slot[sent] = -1
        return p

    def _xbzrle(self, s0, k, contiguous, sent, nz, t_nz, t_z, b_nz, b_z, stop=False):
        """Per-send time and bytes with XBZRLE (``ram.c: save_xbzrle_page``,
        ``page_cache.c``), or (None, None) before it starts.  It starts once the scan has
        wrapped past the end of RAM (``find_dirty_block``: ``xbzrle_started``).  A non-zero
        page looks up its slot (page number mod slots, ``cache_get_cache_pos``): a hit sends a
        delta — nothing if the page did not change since it was sent (``encoded_len == 0``) —
        and refreshes the entry's age; a miss sends the full page and takes the slot unless
        its entry is younger than two syncs (``CACHED_PAGE_LIFETIME``); in the last stage
        (``stop``) misses are not inserted."""
        order = np.arange(s0, s0 + k, dtype=np.int64) if contiguous else sent
        start = 0
        if not self._xb_started:
            wraps = np.flatnonzero(np.diff(order) < 0)
            if not wraps.size:
                return None, None
            start = int(wraps[0]) + 1
        if nz is None:
            nz = np.ones(k, dtype=bool)
        tt = np.where(nz, t_nz, t_z).astype(float)
        bb = np.where(nz, b_nz, b_z).astype(float)
        pos = start + np.flatnonzero(nz[start:])
        if not pos.size:
            return tt, bb
        pages = order[pos]
        slot = pages & (self._xb_slots - 1)
        first = np.zeros(pos.size, dtype=bool)
        first[np.unique(slot, return_index=True)[1]] = True
        addr0, age0 = self._xb_addr[slot], self._xb_age[slot]
        cur = int(self.st.round)
        fresh = (addr0 >= 0) & (age0 + 2 > cur)
        hit = (pages == addr0) & (fresh | first)
        self._xb_age[slot[hit]] = cur
        if not stop:
            ins = first & ~fresh & ~hit
            self._xb_addr[slot[ins]] = pages[ins]
            self._xb_age[slot[ins]] = cur
        same = hit & ~self._changed[pages]
        c = self.pol.xbzrle_costs(self.st, self.ctx, stop)
        t_hit, b_hit, t_same = float(c[0]), float(c[1]), float(c[2])
        tt[pos[hit]], bb[pos[hit]] = t_hit, b_hit
        tt[pos[same]], bb[pos[same]] = t_same, 0.0
        return tt, bb

    @property
    def dirty(self) -> np.ndarray:
        """The dirty bitmap (a bool copy: pages pending)."""
        return self.state != CLEAN

    def _chunk_clear_times(self, k, s0, contiguous, sent, sends, t0):
        """Chunk clears of this phase (``dirty_clear: chunk``): (pages per chunk, clear time per
        chunk — -inf where no page of the chunk was sent, so every write there counts).  The
        clear happens just before the chunk's first send after the sync (``ram.c:
        migration_bitmap_clear_dirty``)."""
        cp = int(self.pol.clear_chunk_pages(self.ctx))
        n_chunks = -(-self.n // cp)
        clear_t = np.full(n_chunks, -np.inf)
        if contiguous:
            first = np.arange(s0 // cp, (s0 + k - 1) // cp + 1) * cp
            idx = np.maximum(first, s0) - s0
        else:
            # sends go in address order from the cursor (one wrap): a chunk's first send is where
            # the chunk number changes; the cursor's chunk may come round again at the end
            ch = sent // cp
            idx = np.concatenate([[0], np.flatnonzero(ch[1:] != ch[:-1]) + 1])
            _, first = np.unique(ch[idx], return_index=True)
            idx = idx[first]
        pages = (s0 + idx) if contiguous else sent[idx]
        clear_t[pages // cp] = t0 + sends.start(idx)
        return cp, clear_t

    def _clear_chunks(self, cp, clear_t, k, s0, contiguous):
        """Drop the log bits the sync saw in the chunks cleared this phase
        (``kvm_log_clear_one_slot`` clears only bits set in the slot's bitmap of the last sync;
        a write later in the phase sets them again).  Pages of a contiguous send have no bits
        left: only the chunk's pages outside it are visited."""
        keep = np.uint8(0xFF ^ LOG)
        for c in np.flatnonzero(np.isfinite(clear_t)):
            lo, hi = c * cp, min((c + 1) * cp, self.n)
            parts = ((lo, min(hi, s0)), (max(lo, s0 + k), hi)) if contiguous else ((lo, hi),)
            for a, b in parts:
                if a < b:
                    np.bitwise_and(self.state[a:b], keep, out=self.state[a:b])

    def phase(self, k: int) -> bool:
        """Send ``k`` pending pages, then sync.  False when the timeout cut the phase short
        (the migration ends there: :meth:`_cut`).

        The phase's writes come in batches of disjoint pages (:data:`WRITE_BATCH`); each is
        judged against the state the sync left (the log bits it saw) and the pages it
        re-dirties are marked; then the sends and the chunk clears are applied, and the marked
        pages join the bitmap."""
        st, pol = self.st, self.pol
        if self.snapshot is not None:
            self.snapshot(self.rounds, self.dirty)
        k, s0, contiguous, sent, pending = self._next_sends(k)
        if clear_mode(pol) == "skip":
            return self._phase_skip(k, s0, contiguous, sent, pending)
        # Contiguous sends (most of a first pass) use slices instead of fancy indexing.
        span = slice(s0, s0 + k) if contiguous else sent
        lk = pol.link(st, self.ctx)
        t_nz, t_z, b_nz, b_z = (float(v) for v in (lk.t_nz, lk.t_z, lk.b_nz, lk.b_z))
        nz = self._nonzero_of(span)
        tt = bb = None
        if self._xb_slots:
            tt, bb = self._xbzrle(s0, k, contiguous, sent, nz, t_nz, t_z, b_nz, b_z)
        sends = _Sends(k, nz, t_nz, t_z, b_nz, b_z, tt, bb)
        T, B = sends.T, sends.B
        t0 = float(st.t)
        if t0 + T > float(pol.timeout_s):
            self._cut(t0, sends, pending)
            return False
        mode = clear_mode(pol)
        if mode == "chunk":
            chunk_of, clear_t = self._chunk_clear_times(k, s0, contiguous, sent, sends, t0)
            chunk_shift = chunk_of.bit_length() - 1 if chunk_of & (chunk_of - 1) == 0 else -1
        if self._changed is not None:
            self._changed[span] = False
        marked = []
        for wp, wt in self.sampler.sample_batches(t0, t0 + T, self._write_speed(), WRITE_BATCH):
            if not wp.size:
                continue
            # which writes re-dirty their page (see the module doc for each mode)
            if mode == "send" or self._changed is not None:
                p = self._positions(wp, k, s0, contiguous, sent)
                ins = p >= 0
                send_t = t0 + sends.end(p[ins])
            if mode == "chunk":
                # unless the sync saw its bit and the write came before its chunk's clear
                # (an absorbed write's log bit goes with that clear)
                cached = (self.state[wp] & LOGGED) == LOGGED
                ct = clear_t[wp >> chunk_shift if chunk_shift >= 0 else wp // chunk_of]
                dirt = ~(cached & (wt <= ct))
            else:  # sync: every write after the sync; send: unless made before the page's send
                dirt = np.ones(wp.size, dtype=bool)
                if mode == "send":
                    dirt[ins] = wt[ins] > send_t
            if self._changed is not None:
                # content differs from the destination's copy: written after its send (or not sent)
                after = np.ones(wp.size, dtype=bool)
                after[ins] = wt[ins] > send_t
                self._changed[wp] |= after
            dirtied = wp[dirt]
            marked.append(dirtied if self.n >= 2**31 else dirtied.astype(np.int32))  # half the memory
            if self.nonzero is not None:
                self.nonzero[wp] = True
        # the sends, then the chunk clears; then the pages the writes re-dirtied join the bitmap
        # (whatever the sends and clears did to them: the batches' pages are disjoint, and no
        # step between reads a page's pending bit for them but the count of the new ones)
        self.state[span] = CLEAN
        if mode == "chunk":
            self._clear_chunks(chunk_of, clear_t, k, s0, contiguous)
        while marked:
            self.state[marked.pop()] = LOGGED if mode == "chunk" else PENDING
        last = s0 + k - 1 if contiguous else int(sent[-1])
        self.cursor = (last + 1) % self.n
        if self._xb_slots and (self.cursor == 0 or (not contiguous and np.any(np.diff(sent) < 0))):
            self._xb_started = True
        rest = pending - k
        # the bitmap now: the unsent rest (a page's pending bit survives the chunk clears) and
        # the re-dirtied pages that were not among them
        newly = int(np.count_nonzero(self.state)) - rest

        self.detail_append("precopy", t0, T, k, B, float(st.pending), float(st.bw_est), float(st.throttle))
        st.lost_guest_time = st.lost_guest_time + st.throttle * T
        st.t = st.t + T
        st.phase_time, st.phase_bytes, st.phase_pages = np.float64(T), np.float64(B), np.float64(k)
        st.phase_scanned = np.float64(k)
        st.sent_bytes = st.sent_bytes + B
        st.sent_pages = st.sent_pages + k
        st.dirty_new = np.float64(newly)
        st.pending = np.float64(rest + newly)
        st.round = st.round + 1
        self.rounds += 1
        pol.after_sync(st, self.ctx)
        st.throttle_max = np.maximum(st.throttle_max, st.throttle)
        return True

    def _phase_skip(self, k, s0, contiguous, sent, pending) -> bool:
        """``dirty_clear: skip`` (Xen classic, ``xc_domain_save.c``): scan the ``k`` pending
        pages in order; before each batch of ``policy.skip_batch_pages`` pages to send, peek
        the dirty log (``XEN_DOMCTL_SHADOW_OP_PEEK`` into ``to_skip``) and skip the pending
        pages written since the sync (they stay in the bitmap); the log was cleared at the sync
        (``SHADOW_OP_CLEAN``), so every page written during the pass is pending at the next
        one.  ``st.phase_pages`` counts the pages sent, ``st.phase_scanned`` those scanned
        (``sent_this_iter + skip_this_iter``).  False when the timeout cut the pass."""
        st, pol = self.st, self.pol
        order = np.arange(s0, s0 + k, dtype=np.int64) if contiguous else sent
        lk = pol.link(st, self.ctx)
        t_nz, t_z, b_nz, b_z = (float(v) for v in (lk.t_nz, lk.t_z, lk.b_nz, lk.b_z))
        batch = int(pol.skip_batch_pages)
        t0 = float(st.t)
        tmax = float(pol.timeout_s)
        speed = self._write_speed()
        if self._written_arr is None:
            self._written_arr = np.zeros(self.n, dtype=bool)
        written = self._written_arr
        wlists = []
        tau, i, n_sent, nbytes = t0, 0, 0, 0.0
        timed_out = False
        while i < k:
            width = 4 * batch
            while True:
                window = order[i : i + width]
                cs = np.cumsum(~written[window])
                if cs.size == 0 or cs[-1] >= batch or i + width >= k:
                    break
                width *= 4
            end = int(np.searchsorted(cs, batch)) + 1 if cs.size and cs[-1] >= batch else window.size
            scan = window[:end]
            go = scan[~written[scan]]
            nz = self._nonzero_of(go)
            c_nz = go.size if nz is None else int(np.count_nonzero(nz))
            dt = c_nz * t_nz + (go.size - c_nz) * t_z
            if tau + dt > tmax:
                cum = None if nz is None else np.cumsum(nz, dtype=np.int64)
                j, b = sent_by(tmax - tau, t_nz, t_z, b_nz, b_z, cum, go.size)
                self.state[go[:j]] = CLEAN
                n_sent += j
                nbytes += b
                timed_out = True
                break
            wp, _ = self.sampler.sample(tau, tau + dt, speed)
            self.state[go] = CLEAN
            written[wp] = True
            if self.nonzero is not None:
                self.nonzero[wp] = True
            wlists.append(wp)
            n_sent += go.size
            nbytes += c_nz * b_nz + (go.size - c_nz) * b_z
            tau += dt
            i += end
        wp = np.concatenate(wlists) if wlists else _EMPTY
        written[wp] = False
        newly = 0
        if not timed_out:
            newly = int(np.count_nonzero(self.state[wp] == CLEAN))
            self.state[wp] = PENDING
            scanned_last = order[i - 1] if i else order[0]
            self.cursor = (int(scanned_last) + 1) % self.n
        T = (tmax if timed_out else tau) - t0
        self.detail_append(
            "precopy", t0, T, n_sent, nbytes, float(st.pending), float(st.bw_est), float(st.throttle)
        )
        st.lost_guest_time = st.lost_guest_time + st.throttle * T
        st.t = np.float64(t0 + T)
        st.sent_bytes = st.sent_bytes + nbytes
        st.sent_pages = st.sent_pages + n_sent
        st.round = st.round + 1
        self.rounds += 1
        if timed_out:
            return False
        st.phase_time, st.phase_bytes, st.phase_pages = np.float64(T), np.float64(nbytes), np.float64(n_sent)
        st.phase_scanned = np.float64(i)
        st.dirty_new = np.float64(newly)
        st.pending = np.float64(np.count_nonzero(self.state))
        pol.after_sync(st, self.ctx)
        st.throttle_max = np.maximum(st.throttle_max, st.throttle)
        return True

    def _cut(self, t0, sends, pending) -> None:
        """The phase reaches the timeout: count what was sent by then, stop the clock there.

        The interrupted pass is a round (in ``rounds`` and the detail) with the time, the
        whole pages and the bytes on the link up to the timeout; no sync follows, so the
        bitmap and the policy's state are left as they were (the migration is abandoned)."""
        st = self.st
        tau = float(self.pol.timeout_s) - t0
        j, B = sends.by(tau)
        self.detail_append("precopy", t0, tau, j, B, float(st.pending), float(st.bw_est), float(st.throttle))
        st.lost_guest_time = st.lost_guest_time + st.throttle * tau
        st.t = np.float64(float(self.pol.timeout_s))
        st.sent_bytes = st.sent_bytes + B
        st.sent_pages = st.sent_pages + j
        st.round = st.round + 1
        self.rounds += 1

    def detail_append(self, kind, start, dur, pages, nbytes, dirty, bw, thr):
        if kind != "precopy" or len(self.detail) < self.round_detail:
            self.detail.append(RoundRecord(len(self.detail), kind, start, dur, pages, nbytes, dirty, bw, thr))

    # -- after pre-copy ----------------------------------------------------------------------------
    def finish(self, code: int) -> MigrationRecord:
        # The guest is paused from here on, then runs on the destination: no mirrored disk
        # writes on the link (Context.paused; the pause, the switchover and post-copy's push).
        self.ctx = self.ctx.paused()
        st, pol, ctx = self.st, self.pol, self.ctx
        rec = dict(
            policy=pol.name,
            engine="page",
            rounds=self.rounds,
            converged=code == REASON_CODE["converged"],
            stop_reason=reason_name(code),
            memory_bytes=float(self.vm.memory_bytes),
            precopy_bytes=float(st.sent_bytes),
        )
        if code == REASON_CODE["timeout"]:
            t = float(st.t)
            return self._record(
                rec,
                total=t,
                down=np.nan,
                nbytes=float(st.sent_bytes),
                completed=False,
                stop_bytes=0.0,
                lost=float(st.lost_guest_time),
            )
        if self.snapshot is not None:
            self.snapshot(self.rounds, self.dirty)
        self.pending = self._pending()
        nz = self._nonzero_of(self.pending)
        n_nz = self.pending.size if nz is None else int(np.count_nonzero(nz))
        n_z = self.pending.size - n_nz
        if bool(pol.goes_postcopy(code)):
            return self._postcopy(rec, n_nz, n_z)
        sw = switchover(pol, st, ctx, n_nz, n_z)
        if self._xb_slots and self._xb_started and self.pending.size:
            # the last stage goes through the cache too (hits as deltas, no inserts)
            order = _send_order(self.pending, self.cursor)
            lk = pol.link(st, ctx, stop=True)
            tt, bb = self._xbzrle(
                0,
                order.size,
                False,
                order,
                self._nonzero_of(order),
                float(lk.t_nz),
                float(lk.t_z),
                float(lk.b_nz),
                float(lk.b_z),
                stop=True,
            )
            sw = sw.with_pages(float(tt.sum()), float(bb.sum()))
        down = float(sw.downtime_s)
        if float(st.t) + down > float(pol.timeout_s):
            return self._switchover_timeout(rec, sw)
        self.detail_append(
            "stop",
            float(st.t),
            down,
            self.pending.size,
            float(sw.bytes),
            self.pending.size,
            float(pol.stop_rate_bytes_s(st, ctx)),
            1.0,
        )
        total = float(st.t) + down
        return self._record(
            rec,
            total=total,
            down=down,
            nbytes=float(st.sent_bytes + sw.bytes),
            completed=True,
            stop_bytes=float(sw.bytes),
            lost=float(st.lost_guest_time),
        )

    def _postcopy(self, rec, n_nz, n_z):
        """Switch now (discard ranges and device state, :func:`~.common.postcopy_switchover`), then
        push the rest while demand faults pull pages, at post-copy's costs (``postcopy_link``).

        Over huge pages (``vm.pages_per_host_page`` > 1) the unit is the host page: every page of
        a host page holding a pending page is pushed (:func:`whole_host_pages`), in host pages,
        and a fault is on a host page — the guest's first touch of any of its pages before the
        host page is placed, stalling the vCPU for the whole host page
        (:func:`~lmtoolkit.engine.common.fault_stall_s`)."""
        st, pol, ctx = self.st, self.pol, self.ctx
        # huge pages move whole: every page of a host page with a pending page (whole_host_pages)
        r = self.vm.pages_per_host_page
        pend = whole_host_pages(self.pending, r)
        if pend.size != self.pending.size:
            nz = self._nonzero_of(pend)
            n_nz = pend.size if nz is None else int(np.count_nonzero(nz))
            n_z = pend.size - n_nz
        sw = postcopy_switchover(pol, st, ctx, discard_runs(pend))
        down = float(sw.downtime_s)
        if float(st.t) + down > float(pol.timeout_s):
            return self._switchover_timeout(rec, sw, send_pages=False)
        # From here the VM runs on the destination: the timeout no longer applies.
        t1 = float(st.t) + down
        lk = pol.postcopy_link(st, ctx)
        t_nz, t_z, b_nz, b_z = (float(v) for v in (lk.t_nz, lk.t_z, lk.b_nz, lk.b_z))
        if bool(pol.prepaging_enabled()):
            # Hot pages first, in the layout of the phase writing at the switch (the sampler's
            # writer time: Workload.ranks_of, PhasedWorkload.phase_at); a huge page goes at the
            # rank of its hottest page, its pages together
            ranks = self.scn.workload.ranks_of(pend, self.n, self.vm.page_bytes, self.sampler.guest_time)
            hosts = np.argsort(ranks.reshape(-1, r).min(axis=1), kind="stable")
            order = (hosts[:, None] * r + np.arange(r)).ravel() if r > 1 else hosts
        else:
            # from address 0: at the switch QEMU restarts the scan (ram.c,
            # ram_postcopy_send_discard_bitmap: last_seen_block = NULL; last_page = 0)
            order = np.arange(pend.size)
        pushed = pend[order]
        cnz = self._cum_nonzero(pushed)
        if cnz is None:
            cnz = np.arange(1, pushed.size + 1, dtype=np.int64)
        T = n_nz * t_nz + n_z * t_z
        per_fault = float(fault_stall_s(pol, ctx, t_nz))
        faults = 0
        if pend.size and T > 0:
            # each page's first access in the push at full speed (a sweep reaches a page once,
            # at a set time: its last write mirrored, right for Poisson writes only, had put a
            # sequential writer's accesses to the pages just behind it, the pending ones, early)
            wp, first = self.sampler.sample(t1, t1 + T, float(pol.fault_access_factor()), first=True)
            slot = self._slot()
            slot[pushed] = np.arange(pushed.size)
            pos_all = slot[wp]
            slot[pushed] = -1
            ok = pos_all >= 0
            pos, first = pos_all[ok], first[ok]
            if r > 1:
                # a huge page faults at the first access to any of its pages and is placed when
                # its last page has arrived (postcopy-ram.c: postcopy_request_page asks for the
                # host page; ram.c: ram_load_postcopy places it, postcopy_place_page, once all its
                # target pages are in)
                host, inv = np.unique(pos // r, return_inverse=True)
                soonest = np.full(host.size, np.inf)
                np.minimum.at(soonest, inv.ravel(), first)
                pos, first = host * r + (r - 1), soonest
            c = cnz[pos]
            pushed_at = t1 + c * t_nz + (pos + 1 - c) * t_z
            # a vCPU waiting for a page does not run: each fault taken holds the guest's later
            # accesses back, and a page faults where its access still comes before its push
            # (common.stalled_count, the clock of common.stalled_faults)
            faults = stalled_count(first - t1, pushed_at - t1, T, per_fault, self.vm.vcpus)
        stall = faults * per_fault / self.vm.vcpus
        pc_bytes = n_nz * b_nz + n_z * b_z
        rate = float(pol.postcopy_rate_bytes_s(st, ctx))
        self.detail_append("stop", float(st.t), down, 0, float(sw.bytes), pend.size, rate, 1.0)
        self.detail_append("postcopy", t1, T, pend.size, pc_bytes, self.pending.size, rate, 0.0)
        rec.update(postcopy_faults=float(faults), postcopy_time_s=T)
        total = t1 + T
        return self._record(
            rec,
            total=total,
            down=down,
            nbytes=float(st.sent_bytes + sw.bytes + pc_bytes),
            completed=True,
            stop_bytes=float(sw.bytes),
            lost=float(st.lost_guest_time) + stall,
        )

    def _switchover_timeout(self, rec, sw, send_pages=True):
        """The timeout falls inside the pause: the migration is abandoned there (the VM
        resumes on the source), and the guest was paused from the stop until then: that is
        its downtime (:func:`~lmtoolkit.engine.common.abandoned_pause_s`).  Counts the pages
        whose send ended by then (in send order from the cursor, the one in flight pro rata)
        and the share of the discard ranges (post-copy) and the device state sent."""
        st, pol, ctx = self.st, self.pol, self.ctx
        tau = float(abandoned_pause_s(st.t, pol.timeout_s))
        j = 0
        page_b = 0.0
        if send_pages and self.pending.size:
            lk = pol.link(st, ctx, stop=True)
            t_nz, t_z, b_nz, b_z = (float(v) for v in (lk.t_nz, lk.t_z, lk.b_nz, lk.b_z))
            order = _send_order(self.pending, self.cursor)
            j, page_b = sent_by(tau, t_nz, t_z, b_nz, b_z, self._cum_nonzero(order), order.size)
        sent = float(sw.sent_by(tau, page_bytes=page_b))
        rate = pol.stop_rate_bytes_s(st, ctx) if send_pages else pol.postcopy_rate_bytes_s(st, ctx)
        self.detail_append("stop", float(st.t), tau, j, sent, self.pending.size, float(rate), 1.0)
        rec.update(converged=False, stop_reason="timeout")
        return self._record(
            rec,
            total=float(pol.timeout_s),
            down=tau,
            nbytes=float(st.sent_bytes) + sent,
            completed=False,
            stop_bytes=sent,
            lost=float(st.lost_guest_time),
        )

    def _record(self, rec, total, down, nbytes, completed, stop_bytes, lost):
        rec.update(
            total_time_s=total,
            downtime_s=down,
            transferred_bytes=nbytes,
            completed=completed,
            stop_bytes=stop_bytes,
            throttle_max=float(self.st.throttle_max),
            guest_slowdown=float(slowdown(lost, total, down)),
        )
        return MigrationRecord(**rec, round_detail=self.detail)


#: bytes per guest page the page engine needs at the least: its state byte and a phase's
#: temporaries (measured peak 1.8 bytes per page on 512 GiB, README *Performance*)
MIN_BYTES_PER_PAGE = 2


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (bytes), or None where there is none."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(scn: Scenario) -> None:
    """Refuse a VM whose page bitmap cannot fit in this machine's available memory, before
    allocating it (a 64 TiB VM asked for 16 GiB at once: a MemoryError traceback, or the
    kernel's OOM killer taking the user's session with it).  The bitmap is of the tracked pages
    (:attr:`VM.pages <lmtoolkit.model.vm.VM.pages>`): a VM of huge pages needs as much as one of
    4 KiB pages."""
    need = MIN_BYTES_PER_PAGE * int(scn.vm.pages)
    avail = available_memory_bytes()
    if avail is not None and need > avail:
        raise ConfigError(
            "vm.memory_gib",
            scn.vm.memory_gib,
            "",
            message=(
                f"engine=page keeps a byte per guest page and its phases need as much again: a "
                f"{scn.vm.memory_gib:g} GiB VM of {scn.vm.page_size_kib:g} KiB pages needs at least "
                f"{need / 2**30:.1f} GiB, and this machine has {avail / 2**30:.1f} GiB available; use "
                f"engine=fluid (or larger base pages, vm.page_size_kib up to 64: huge pages are "
                f"tracked in 4 KiB pages, as KVM's dirty log sees them)"
            ),
        )


def simulate_page(scn: Scenario, snapshot=None, round_detail: int = ROUND_DETAIL_LIMIT) -> MigrationRecord:
    """Run one migration page by page and return its record.

    ``snapshot(round, dirty)``, if given, sees the dirty bitmap (bool array, read-only use) at
    every sync and at the switchover (see :func:`lmtoolkit.teaching.dirty_bitmap_rounds`).
    ``round_detail``: pre-copy rounds whose detail the record keeps (the fit of a log of more
    syncs than :data:`ROUND_DETAIL_LIMIT` compares every one of them).
    Raises :class:`ConfigError` where the bitmap cannot fit in memory (:func:`check_memory`).
    """
    check_memory(scn)
    disk = disk_copy(scn)
    if not disk.ready:  # the disk copy took the whole timeout: memory never starts
        rec = MigrationRecord(
            policy=scn.policy.name, engine="page", memory_bytes=float(scn.vm.memory_bytes), **NOT_STARTED
        )
        return apply_to_record(rec, scn, live_s=0.0)
    pol = memory_policy(scn, disk)  # the timeout the disk copy left to memory
    memory = scn if pol is scn.policy else dataclasses.replace(scn, policy=pol)
    run = _Run(memory, snapshot, round_detail)
    pol, st, ctx = run.pol, run.st, run.ctx
    while True:
        code = int(pol.decide(st, ctx))
        if code != 0:
            break
        run.scan_profile()
        k = int(pol.phase_pages(st, ctx))
        pol.drop_scan_profile(st)
        if not run.phase(k):
            code = REASON_CODE["timeout"]
            break
    return apply_to_record(run.finish(code), scn, live_s=float(run.st.t))
