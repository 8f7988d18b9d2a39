"""Pieces both engines share: write probabilities, the switchover, result assembly.

Write probabilities for a page with write rate ``lam`` (1/s) over a window of ``x`` seconds:

* random (Poisson) writes: ``f(x) = 1 - exp(-lam x)``;
* sequential sweep (each page written every ``1/lam`` s): ``f(x) = min(1, lam x)``;

and their integrals ``F(x) = ∫0^x f`` give the share of pages sent (or pushed) uniformly over
a window that are written after their send: ``F(T) / T``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..policies.base import none_to
from ..records import (
    REASON_CODE,
    ROUND_FIELDS,
    ROUND_KINDS,
    SCALAR_FIELDS,
    STOP_REASONS,
    MigrationRecord,
    RoundRecord,
)

#: Per-round detail kept for at most this many pre-copy rounds (plus the final round);
#: the scalar ``rounds`` still counts them all.
ROUND_DETAIL_LIMIT = 64


def zero_layout(scn) -> str:
    """The zero-page layout both engines apply (:attr:`lmtoolkit.model.vm.VM.zero_layout`):
    ``linux`` puts the zero pages on pages the workload never writes, so it holds only where
    the workload leaves at least that many untouched (a hot/cold workload writes every page:
    its zero pages stay ``spread``, as they would after its first cold writes)."""
    vm = scn.vm
    if vm.zero_layout == "spread" or vm.zero_pages <= 0:
        return "spread"
    written = sum(
        r.n_pages
        for r in scn.workload.regions(vm.pages, vm.page_bytes)
        if r.rate_per_page > 0 and r.n_pages > 0
    )
    return vm.zero_layout if vm.pages - written >= vm.zero_pages else "spread"


def unique_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(table, axis=0, return_inverse=True)`` for a 2-D numeric table (rows sorted
    the same way, the inverse flat), by a lexicographic sort of the columns: over 10× faster on
    100,000 rows than numpy's structured-row sort."""
    table = np.asarray(table)
    if table.shape[1] == 1:
        u, inv = np.unique(table[:, 0], return_inverse=True)
        return u[:, None], inv.reshape(-1)
    order = np.lexsort(table.T[::-1])  # the first column is the primary key
    rows = table[order]
    new = np.ones(len(rows), dtype=bool)
    new[1:] = (rows[1:] != rows[:-1]).any(axis=1)
    inverse = np.empty(len(rows), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return rows[new], inverse


def f_written(lam, x, sequential):
    """Probability that a page is written at least once in a window of ``x`` s."""
    lx = lam * x
    return np.where(sequential, np.minimum(1.0, lx), -np.expm1(-lx))


def F_written(lam, x, sequential):
    """``∫0^x f_written(lam, s) ds`` (seconds)."""
    lam = np.asarray(lam, dtype=float)
    safe = np.where(lam > 1e-200, lam, 1.0)
    lx = lam * x
    rnd = np.where(lam > 0, x + np.expm1(-lx) / safe, 0.0)
    seq = np.where(lx <= 1.0, lam * x * x / 2.0, x - 1.0 / (2.0 * safe))
    return np.where(sequential, seq, rnd)


def mean_written_after(lam, a, b, sequential):
    """Mean of ``f_written(lam, s)`` for ``s`` uniform in ``[a, b]``."""
    width = np.maximum(b - a, 1e-300)
    out = (F_written(lam, b, sequential) - F_written(lam, a, sequential)) / width
    return np.where(b - a > 0, out, f_written(lam, a, sequential))


def _share(t, duration):
    """Share of a transfer of ``duration`` s done after ``t`` s (1 for an empty one)."""
    duration = np.asarray(duration, dtype=float)
    some = duration > 0
    with np.errstate(over="ignore"):  # a subnormal duration: t / it is inf, clipped to 1 (done)
        done = np.asarray(t, dtype=float) / np.where(some, duration, 1.0)
    return np.where(some, np.clip(done, 0.0, 1.0), 1.0)


@dataclass
class Switchover:
    """Cost of the switchover: downtime (s) and bytes sent while the VM is paused.

    The pause sends the pages (``page_time_s``, ``page_bytes``; none for post-copy), post-copy's
    discard ranges (``discard_time_s``, ``discard_bytes``: :func:`postcopy_switchover`), then
    the device state (``device_time_s``, ``device_bytes``); the fixed ``stop_overhead_ms``
    (``overhead_s``) and the link's propagation to the destination (``latency_s``,
    :func:`switchover_latency_s`) come last: they carry no bytes.
    """

    downtime_s: object
    bytes: object
    page_time_s: object
    page_bytes: object = 0.0
    device_time_s: object = 0.0
    device_bytes: object = 0.0
    overhead_s: object = 0.0
    latency_s: object = 0.0
    discard_time_s: object = 0.0
    discard_bytes: object = 0.0

    def with_pages(self, page_time_s, page_bytes) -> Switchover:
        """The same pause with the pages costing ``page_time_s`` / ``page_bytes`` instead
        (XBZRLE's last stage): the rest unchanged."""
        rest_s = self.discard_time_s + self.device_time_s + self.overhead_s + self.latency_s
        return dataclasses.replace(
            self,
            downtime_s=page_time_s + rest_s,
            bytes=page_bytes + self.discard_bytes + self.device_bytes,
            page_time_s=page_time_s,
            page_bytes=page_bytes,
        )

    def sent_by(self, tau, page_bytes=None):
        """Bytes on the link in the first ``tau`` s of the pause (a switchover cut by the
        timeout).  ``page_bytes``: what the pages sent by then weigh (the page engine counts
        whole pages); default pro rata of the page time (the fluid engine).  The discard
        ranges and the device state count pro rata of their times."""
        if page_bytes is None:
            page_bytes = self.page_bytes * _share(tau, self.page_time_s)
        t = np.asarray(tau) - self.page_time_s
        disc = self.discard_bytes * _share(t, self.discard_time_s)
        return page_bytes + disc + self.device_bytes * _share(t - self.discard_time_s, self.device_time_s)


def switchover(policy, st, ctx, n_nz, n_z) -> Switchover:
    """Pause the VM and send ``n_nz`` non-zero and ``n_z`` zero pages plus device state."""
    lk = policy.link(st, ctx, stop=True)
    page_t = n_nz * lk.t_nz + n_z * lk.t_z + first_touch_s(policy, st, ctx, n_nz, n_z, lk.t_nz)
    page_b = n_nz * lk.b_nz + n_z * lk.b_z
    return _pause(policy, ctx, policy.stop_rate_bytes_s(st, ctx), page_t, page_b)


def postcopy_switchover(policy, st, ctx, runs) -> Switchover:
    """Post-copy's pause: no page, the discard ranges of the ``runs`` runs of pages still dirty
    (``policy.discard_bytes``; QEMU ``ram.c: ram_postcopy_send_discard_bitmap``, sent by
    ``migration.c: postcopy_start`` before the device state) and the device state, at the rate
    post-copy's channel carries (``policy.postcopy_rate_bytes_s``: QEMU's main channel, one
    stream, also with multifd on; :mod:`lmtoolkit.policies.postcopy`)."""
    rate = policy.postcopy_rate_bytes_s(st, ctx)
    disc_b = policy.discard_bytes(runs)
    return _pause(policy, ctx, rate, 0.0 * disc_b, 0.0 * disc_b, disc_b / rate, disc_b)


def _pause(policy, ctx, rate, page_t, page_b, disc_t=0.0, disc_b=0.0) -> Switchover:
    """The pause: pages, discard ranges, the device state at ``rate``, overhead, latency."""
    dev_t = ctx.device_state_bytes / rate
    overhead = policy.stop_overhead_ms / 1000.0
    lat = switchover_latency_s(policy, ctx)
    down = page_t + disc_t + dev_t + overhead + lat
    dev_b = ctx.device_state_bytes
    return Switchover(
        down, page_b + disc_b + dev_b, page_t, page_b, dev_t, dev_b, overhead, lat, disc_t, disc_b
    )


def abandoned_pause_s(pause_start_s, timeout_s):
    """Downtime (s) of a switchover abandoned at the timeout: the guest was paused from the
    stop (``pause_start_s``) until the abandonment resumes it on the source (``timeout_s``).

    QEMU 10.1.0 ``migration/migration.c``: ``migration_stop_vm`` stops the VM (and starts the
    downtime clock) before ``migration_completion_precopy`` sends the rest; ``migrate_cancel``
    in the pause (``migration_cancel``: state CANCELLING, ``qemu_file_shutdown`` of the stream)
    makes the completion fail (``migration_completion`` → ``fail``), which never reaches
    ``migration_completion_end``, so QEMU itself reports no ``downtime`` — but
    ``migration_iteration_finish`` then calls ``vm_start()`` on the source (the VM was running
    before, ``runstate_is_live(s->vm_old_state)``): the guest was stopped all that while.  The engines' ``downtime`` is the guest's pause (README *Dataset*), so it
    is reported: without it a 30 s stop-and-copy cut at 30 s read as no pause at all, and the
    guest's running time (:func:`slowdown`, the energy model's lost work) as the whole 30 s.
    The resume itself is taken as instantaneous (nothing crosses the link: the VM stays)."""
    return np.asarray(timeout_s, dtype=float) - np.asarray(pause_start_s, dtype=float)


def switchover_latency_s(policy, ctx):
    """Propagation the pause waits for after its last byte is sent (s):
    ``Policy.switchover_trips`` one-way crossings of the link (``network.latency_ms``,
    ``ctx.rtt_s / 2``).  ``downtime`` and ``total_time`` are the guest's (README *Dataset*:
    "start of migration to VM running on the destination"), so they end when the destination
    has the last byte and resumes the VM, not when the source has written it:

    * QEMU pre-copy: the source's pause ends once ``migration_completion`` →
      ``qemu_savevm_state_complete_precopy`` has flushed the stream into its socket
      (``migration/migration.c``: ``migration_completion_end`` → ``migration_downtime_end``,
      ``s->downtime = now - s->downtime_start``, a source-side figure); the destination starts
      the guest only after ``qemu_loadvm_state`` has read the stream to its end
      (``process_incoming_migration_co``, trace "dst-precopy-loadvm-completed", then
      ``process_incoming_migration_bh`` → ``vm_start``), and waits for no message of the
      source after it: one crossing.  (With a return path the source's figure also waits for
      the destination's ``MIG_RP_MSG_SHUT``, sent after ``vm_start`` — ``close_return_path_on_source``
      in ``migration_completion`` — so QEMU's own ``downtime`` is then >= a round trip.)
    * QEMU post-copy: ``postcopy_start`` stops the VM and sends the device state as one
      package ending in ``MIG_CMD_POSTCOPY_RUN``; the destination starts the guest on it
      (``savevm.c: loadvm_postcopy_handle_run`` → ``loadvm_postcopy_handle_run_bh`` →
      ``vm_start``) without a reply: one crossing (the preempt channel is set up before the
      stop).
    * Xen ``xl migrate`` (``tools/xl/xl_migrate.c``, ``migrate_domain`` /
      ``migrate_receive``): after the stream the receiver sends "domain received, ready to
      unpause", the sender answers "domain is yours, you are cleared to unpause", and only then
      does the receiver unpause the domain: three crossings (``XenPolicy.switchover_trips``).

    At ``latency_ms = 0`` (the testbed, on localhost) this adds exactly 0.0: nothing moves.
    Pre-copy passes are pipelined on one stream (no per-pass handshake), so the latency enters
    once, here; post-copy's pushed pages arrive in the destination's time from the resume on.
    """
    return policy.switchover_trips * (ctx.rtt_s / 2.0)


def first_touch_s(policy, st, ctx, n_nz, n_z, t_nz):
    """Extra pause (s) for the non-zero pages of the stop-and-copy the destination never
    received (``Policy.dst_populate_mib_s``: its guest RAM is populated on first write).

    Every page is sent once by the end of the first pass (the setup sync marks them all
    dirty), so the pages never sent are ``pages - sent_pages`` while that is positive, and
    the pages pending at the switchover include them all; they are taken non-zero in the
    pending pages' proportion.  Each goes at the slower of the wire (``t_nz``) and the
    destination's populate rate.
    """
    rate = none_to(policy.dst_populate_mib_s, np.inf) * 2.0**20
    pending = np.asarray(n_nz, dtype=float) + np.asarray(n_z, dtype=float)
    never = np.minimum(policy.never_sent_pages(st, ctx), pending)
    share = np.where(pending > 0, np.asarray(n_nz, dtype=float) / np.maximum(pending, 1e-300), 0.0)
    per_page = np.maximum(np.asarray(ctx.page_bytes, dtype=float) / rate - t_nz, 0.0)
    return never * share * per_page


def sent_by(tau, t_nz, t_z, b_nz, b_z, cum_nonzero=None, n=None):
    """(whole pages sent, bytes on the link) ``tau`` s into a phase (page engine).

    Pages go one after another, a non-zero page taking ``t_nz`` s and ``b_nz`` bytes, a zero
    page ``t_z`` s and ``b_z`` bytes; ``cum_nonzero[i]`` counts the non-zero pages among the
    first ``i + 1`` (None: all ``n`` pages are non-zero).  The page in flight at ``tau``
    counts in the bytes pro rata (its bytes are on the link), not in the pages.
    """
    if cum_nonzero is None:
        j = int(min(n, max(0.0, np.floor(tau / t_nz)))) if t_nz > 0 else int(n)
        while j < n and (j + 1) * t_nz <= tau:
            j += 1
        while j > 0 and j * t_nz > tau:
            j -= 1
        j_nz, n, flying_nz = j, int(n), True
    else:
        n = cum_nonzero.size
        ends = cum_nonzero * t_nz + (np.arange(1, n + 1) - cum_nonzero) * t_z
        j = int(np.searchsorted(ends, tau, side="right"))
        j_nz = int(cum_nonzero[j - 1]) if j else 0
        flying_nz = j < n and int(cum_nonzero[j]) > j_nz
    nbytes = j_nz * b_nz + (j - j_nz) * b_z
    if j < n:
        t_page, b_page = (t_nz, b_nz) if flying_nz else (t_z, b_z)
        done = tau - (j_nz * t_nz + (j - j_nz) * t_z)
        nbytes += b_page * min(1.0, max(0.0, done / t_page)) if t_page > 0 else 0.0
    return j, nbytes


def fault_stall_s(policy, ctx, t_nz):
    """Seconds one post-copy demand fault blocks the vCPU that took it: the request and the
    page cross the link (a round trip, ``ctx.rtt_s``), the page's transfer and the
    destination's handling (``policy.fault_overhead_s()``).

    The page is the host page (``ctx.host_ratio`` pages of ``t_nz`` s each; 1 but for a guest
    backed by huge pages): QEMU's destination asks for the host page holding the faulting
    address (``migration/postcopy-ram.c: postcopy_request_page`` rounds it down to
    ``qemu_ram_pagesize``), the source sends all its target pages (``ram.c:
    ram_save_host_page``; post-copy marks them all dirty, ``postcopy_chunk_hostpages_pass``),
    and the destination places the huge page, waking the vCPU, once the last has arrived
    (``ram_load_postcopy`` → ``postcopy_place_page``, one ``UFFDIO_COPY`` of the host page).
    Its pages are taken as data: a zero 4 KiB page in it goes as a 9-byte marker, so a huge
    page holding zero pages arrives up to ``host_ratio x (t_nz - t_z)`` sooner."""
    return ctx.rtt_s + np.asarray(ctx.host_ratio, dtype=float) * t_nz + policy.fault_overhead_s()


#: windows of the push over which the fluid engine's guest clock is taken linear at first
#: (:func:`stalled_faults`; Chebyshev-spaced, denser at both ends where the speed turns)
STALL_WINDOWS = 8
#: a window is halved (or the last one redone halved) where the speed turns between them: by
#: more than this share of the guest's lost time (one speed's: its upper bound) over the
#: longer window, down to :data:`STALL_FINEST` of the push.  Where the speed turns sharply (a
#: sequential writer overtaken by the push or tracking it to the end of its pending pages, a
#: phase change) a linear clock across the turn counts too many faults (up to 12 % and 23 %
#: on the cases of ``test_postcopy_stalls.py`` with 8 windows alone)
STALL_JUMP = 0.01
#: :data:`STALL_JUMP` for a push whose clock turns at a corner (``stalled_faults(sharp=...)``:
#: a sequential writer the push overtakes, its speed jumping from ``1 / (1 + v s / vcpus)``
#: to 1): the window across the corner holds about this share of the lost time, so the count
#: is off by about as much (at 0.01: 1.2 % and 1.1 % above the closed form of
#: ``test_policies_vendor.py`` on 10 and 2 GbE; at 0.001: 0.07 %, for twice such a row's cost)
STALL_JUMP_SHARP = 0.001
STALL_FINEST = 1.0 / 1024
#: a window's balance is solved to this share of its faults (or a millionth of a fault)
STALL_TOL = 1e-7


def stalled_faults(new_faults, push_s, stall_s, vcpus, windows: int = STALL_WINDOWS, sharp=False):
    """Post-copy demand faults ``(S,)`` and the guest's mean speed ``(S,)`` over a push of
    ``push_s`` s (T), where each fault stalls the guest (the fluid engine's expected counts; the
    page engine's :func:`stalled_count` follows the same clock on its sampled accesses).

    A guest access to a page the destination does not have yet blocks the vCPU that made it
    until the page is placed: QEMU's destination traps the access in ``userfaultfd``, its fault
    thread requests the page from the source (``migration/postcopy-ram.c``:
    ``postcopy_ram_fault_thread`` → ``postcopy_request_page``) and the vCPU thread sleeps in the
    fault until ``postcopy_place_page`` copies the page in (``UFFDIO_COPY`` wakes it); QEMU
    itself accounts that wait per vCPU as its "blocktime" (``mark_postcopy_blocktime_begin``,
    the ``postcopy-blocktime`` capability).  Hines & Gopalan (VEE 2009, post-copy with demand
    paging) describe the same: a network fault holds the faulting VCPU until the page arrives.
    A blocked vCPU neither writes nor reads, so each fault holds the guest's progress back by
    ``c = stall_s / vcpus`` (one of its ``vcpus`` for ``stall_s``, :func:`fault_stall_s`): its
    clock ``tau`` (guest seconds of progress, at full speed 1 per second) ``t`` s into the push is

        tau(t) = t - c N(t),     N(t) the faults taken by then,

    and a page pushed at ``p`` faults where the guest's first access to it comes at a guest
    time before ``tau(p)``.  The faults come as fast as the guest reaches pages still missing:
    many early in the push, few late, so the guest runs slowly early and faster as the push
    goes on.  A guest cannot take more faults than its vCPUs have time to wait for: ``N(T) <=
    vcpus T / stall_s``.

    Here the clock is linear over each window ``[u0, u1]`` of the push (speed ``sigma``):
    ``windows`` Chebyshev-spaced ones, a window halved (or the last one redone halved) where
    the speed turns between them (:data:`STALL_JUMP`; :data:`STALL_JUMP_SHARP` on the rows
    ``sharp`` (S,) bool, whose clock turns at a corner).  A window's faults are ``new_faults(x0, k, u0, u1,
    rows)`` (S,): the pages pushed at ``p >= u0`` whose first access falls in guest time ``[x0,
    x0 + k (min(p, u1) - u0))`` — those pushed in the window while the clock runs, those
    pushed later once the guest reached ``tau(u1)`` — for the rows ``rows`` (an index array,
    or None: all); its balance ``sigma (u1 - u0) + c n(sigma) = u1 - u0``
    (:func:`_window_balance`) gives ``tau(u1)``.  One speed for the whole push (the former
    model) counted 8-14 % too many faults for uniform writers, 18 % for a hot/cold one on 8
    vCPUs and up to twice as many for sequential writers (README *Migration energy*).
    """
    T = np.asarray(push_s, dtype=float)
    c = np.asarray(stall_s, dtype=float) / np.asarray(vcpus, dtype=float)
    T, c = (np.array(v, dtype=float).reshape(-1) for v in np.broadcast_arrays(T, c))
    zero = np.zeros(T.shape)

    def whole(k, rows):
        r = slice(None) if rows is None else rows
        return new_faults(zero[r], k, zero[r], T[r], rows)

    # the guest's lost time with one speed over the push (more than it loses): a turn's scale
    ref = c * _window_balance(whole, T, c)[0]
    jump = np.where(np.broadcast_to(sharp, T.shape), STALL_JUMP_SHARP, STALL_JUMP)
    clock = _Windows(T, windows, jump)
    clock.st["tau"][ref <= 0.0] = T[ref <= 0.0]  # no fault at all: full speed
    live = np.flatnonzero((T > 0) & (ref > 0.0))
    while live.size:
        st = clock.st
        u0, u1, x0 = st["u"][live], clock.end[live], st["tau"][live]

        def window(k, rows, x0=x0, u0=u0, u1=u1, live=live):
            if rows is None:
                return new_faults(x0, k, u0, u1, live)
            return new_faults(x0[rows], k, u0[rows], u1[rows], live[rows])

        slope = st["slope"][live] * (u1 - u0)
        n, _, slope = _window_balance(window, u1 - u0, c[live], clock.guess(live), slope)
        live = clock.step(live, n, slope, c[live], ref[live])
    with np.errstate(divide="ignore", invalid="ignore"):
        return clock.st["N"], np.where(T > 0, clock.st["tau"] / np.where(T > 0, T, 1.0), 1.0)


class _Windows:
    """:func:`stalled_faults`'s windows, per row: where the guest's clock stands (``st``: ``u``
    s into the push, ``tau`` guest s, ``N`` faults, the last window's ``speed``, ``span`` and
    balance ``slope`` per s of window, the next grid ``edge``), the same before the last window
    (``before``, to redo it halved) and the end of the window tried next (``end``)."""

    def __init__(self, T, windows: int, jump):
        self.T, self.windows, self.jump = T, windows, jump
        self.grid = 0.5 * (1.0 - np.cos(np.pi * np.arange(windows + 1) / windows))
        self.grid[-1] = 1.0
        self.st = {k: np.zeros(T.shape) for k in ("u", "tau", "N", "span")}
        self.st.update(speed=np.full(T.shape, np.nan), slope=np.full(T.shape, np.nan), edge=np.ones(T.shape))
        self.before = {k: v.copy() for k, v in self.st.items()}
        self.end = T * self.grid[1]

    def guess(self, live):
        """The speed's trend over the last two windows carried to the next one's middle (NaN
        without a last window)."""
        st, bf = self.st, self.before
        last, span, new = st["speed"][live], st["span"][live], self.end[live] - st["u"][live]
        with np.errstate(divide="ignore", invalid="ignore"):
            trend = (last - bf["speed"][live]) / (0.5 * (span + bf["span"][live]))
        ahead = np.where(np.isfinite(trend), last + trend * 0.5 * (span + new), last)
        return np.where(np.isfinite(last), np.clip(ahead, 1e-6, 1.0 - 1e-6), np.nan)

    def step(self, live, n, slope, c, ref):
        """Take the window of the rows ``live`` (``n`` faults, the balance's ``slope``), or
        halve it, or redo the last one halved, where the speed turns between them (by more
        than ``jump`` (:data:`STALL_JUMP`) of ``ref``, the lost time, over the longer window); returns the
        rows still to go."""
        st, bf, T = self.st, self.before, self.T[live]
        u0, u1, x0 = st["u"][live], self.end[live], st["tau"][live]
        after = np.clip(u1 - c * (st["N"][live] + n), x0, u1)  # the balance: tau = t - c N(t)
        span = u1 - u0
        speed = (after - x0) / span
        longer = np.maximum(st["span"][live], span)
        turn = np.abs(speed - st["speed"][live]) * longer > self.jump[live] * ref  # no last: NaN, False
        fine = STALL_FINEST * T
        halve = turn & (span >= st["span"][live]) & (span > fine)
        redo = turn & ~halve & (st["span"][live] > fine)
        ok = ~(redo | halve)
        r, h, a = live[redo], live[halve], live[ok]
        self.end[r] = 0.5 * (bf["u"][r] + st["u"][r])
        for key in st:
            st[key][r] = bf[key][r]
            bf[key][a] = st[key][a]
        st["span"][r] = 0.0  # not redone twice in a row
        self.end[h] = 0.5 * (st["u"][h] + self.end[h])
        st["N"][a] += n[ok]
        st["tau"][a], st["u"][a], st["speed"][a], st["span"][a] = after[ok], u1[ok], speed[ok], span[ok]
        st["slope"][a] = np.where(np.isfinite(slope[ok]), slope[ok] / span[ok], st["slope"][a])
        edge = st["edge"][a].astype(np.int64)
        edge += st["u"][a] >= self.T[a] * self.grid[np.minimum(edge, self.windows)]
        st["edge"][a] = edge
        # the next window: to the next grid edge, at most twice this one (after a halving)
        nxt = self.T[a] * self.grid[np.minimum(edge, self.windows)]
        self.end[a] = np.minimum(nxt, st["u"][a] + 2.0 * st["span"][a])
        return live[~ok | (u1 < T)]


def _window_balance(faults_at, span_s, c, guess=None, slope=None, max_iter: int = 120):
    """One window of :func:`stalled_faults`: the guest's speed ``sigma`` (S,) over a window of
    ``span_s`` s (D) where ``faults_at(sigma, rows)`` (N, non-decreasing, 0 at 0) faults each
    hold it back ``c`` s (``stall_s / vcpus``):

        sigma D + N(sigma) c = D,

    one root in [0, 1] (the left side grows with ``sigma``, from 0 to at least D), and the
    faults are ``N = (1 - sigma) D / c``.  Where stalls are rare (``N(1) c << D``) ``sigma`` is
    close to 1 and N the unslowed count.  Where N jumps (a sequential writer that the push
    overtakes below some speed and that faults on every page it reaches above it) the balance
    has no root: the guest settles at the jump, its stalls filling the window, and the faults
    are again ``(1 - sigma) D / c``.

    Arrays in (``(S,)``); ``faults_at(sigma, rows)`` gets the speeds of the rows ``rows`` (an
    index array, or None: all rows) still searched.  With the last window's speed ``guess``
    and the balance's slope there ``slope`` (s per unit of speed; NaN: none) it tries that
    speed, then a Newton step from it; then regula falsi with the Illinois step (a bracket that
    keeps a sign change) and a bisection every eighth step, to a billionth of the count (or a
    millionth of a fault).  ``sigma`` is the bracket's low end (its balance <= 0), or a point
    within the tolerance above.  Returns (faults, sigma, the balance's slope near the root).
    """
    T = np.asarray(span_s, dtype=float)
    S = T.shape
    lo, hi = np.zeros(S), np.ones(S)
    g_lo, g_hi, n_hi = -T.copy(), np.full(S, np.nan), np.full(S, np.nan)
    done = T <= 0.0
    lo[done] = 1.0
    scale = np.zeros(S)  # the largest count seen: the tolerance's scale
    seen_lo = np.zeros(S, dtype=bool)  # a point below the root tried
    # the last two points tried (x, balance): the slope near the root
    x0, g0, x1, g1 = (np.full(S, np.nan) for _ in range(4))
    slope = np.full(S, np.nan) if slope is None else slope

    def tol_s(run):
        """The tolerance on the balance (s): :data:`STALL_TOL` of the largest count seen, or a
        millionth of a fault, times ``c``."""
        return c[run] * np.maximum(STALL_TOL * scale[run], 1e-6)

    def width(run):
        """The tolerance on the speed: a bracket this narrow is solved."""
        return tol_s(run) / T[run]

    def tried(x, run):
        n_x = np.asarray(faults_at(x, run), dtype=float)
        g_x = x * T[run] + n_x * c[run] - T[run]
        x0[run], g0[run], x1[run], g1[run] = x1[run], g1[run], x, g_x
        scale[run] = np.maximum(scale[run], n_x)
        low = g_x <= 0.0
        seen_lo[run[low]] = True
        up = low & (x > lo[run])
        lo[run[up]], g_lo[run[up]] = x[up], g_x[up]
        down = ~low & ((x < hi[run]) | np.isnan(g_hi[run]))
        hi[run[down]], g_hi[run[down]], n_hi[run[down]] = x[down], g_x[down], n_x[down]
        close = np.abs(g_x) <= tol_s(run)
        lo[run[close & ~low]] = x[close & ~low]  # the balance met from above, within the tolerance
        done[run[close]] = True
        return g_x, low

    if guess is not None:  # the last window's speed, then a Newton step with its slope
        run = np.flatnonzero(~done & (guess > 0.0) & (guess < 1.0))
        x = guess[run]
        for _ in range(2):
            if not run.size:
                break
            g_x, _ = tried(x, run)
            keep = ~done[run] & np.isfinite(slope[run]) & (slope[run] > 0.0)
            run, x = run[keep], (x - g_x / np.where(keep, slope[run], 1.0))[keep]
            inside = (x > lo[run]) & (x < hi[run])
            run, x = run[inside], x[inside]
        # the root on one side only: past it along the last two points' secant (twice its
        # step, at least a tolerance), a few times; a steep rise (a sequential writer's jump)
        # is bracketed this way within a few tolerances, not from full speed or a standstill
        for _ in range(3):
            run = np.flatnonzero(~done & (np.isnan(g_hi) | ~seen_lo) & np.isfinite(g1))
            if not run.size:
                break
            with np.errstate(divide="ignore", invalid="ignore"):
                step = -g1[run] * (x1[run] - x0[run]) / (g1[run] - g0[run])
            up = np.isnan(g_hi[run])
            # twice the secant's step, but at most four times the last move (a flat stretch
            # before a jump sends the secant far off)
            reach = np.fmin(2.0 * np.abs(step), 4.0 * np.abs(x1[run] - x0[run]))
            x = x1[run] + np.where(up, 1.0, -1.0) * np.fmax(reach, 2.0 * width(run))
            ok = (x > lo[run]) & (x < hi[run])
            if not ok.any():
                break
            tried(x[ok], run[ok])
    # the bracket's top: full speed, where no point above the root is known yet
    top = np.flatnonzero(~done & np.isnan(g_hi))
    if top.size:
        g_top, _ = tried(np.ones(top.size), top)
        free = top[g_top <= 0.0]  # no fault at full speed: full speed
        lo[free], done[free] = 1.0, True
    side = np.zeros(S, dtype=np.int8)  # which end the last step kept (Illinois)
    for it in range(max_iter):
        run = np.flatnonzero(~done)
        if not run.size:
            break
        l, h, gl, gh = lo[run], hi[run], g_lo[run], g_hi[run]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = h - gh * (h - l) / (gh - gl)
            # the secant through the last two points where it falls inside the bracket
            sec = x1[run] - g1[run] * (x1[run] - x0[run]) / (g1[run] - g0[run])
        x = np.where(np.isfinite(sec) & (sec > l) & (sec < h), sec, x)
        bisect = (it % 8 == 7) | ~np.isfinite(x) | (x <= l) | (x >= h)
        x = np.where(bisect, 0.5 * (l + h), x)
        # at least half the tolerance inside the bracket (Brent's rule): a root within it of an
        # end is closed in by the next point, and a jump's bracket shrinks by half a tolerance
        # at least, not by the ever smaller steps regula falsi takes towards it
        x = _inside(x, l, h, np.minimum(width(run), 1e-6 * l))  # a millionth of a low speed
        g_x, low = tried(x, run)
        # Illinois: an end kept twice in a row has its value halved (its partner moves)
        sd = side[run]
        g_hi[run] = np.where(low & (sd == 1), 0.5 * g_hi[run], g_hi[run])
        g_lo[run] = np.where(~low & (sd == -1), 0.5 * g_lo[run], g_lo[run])
        side[run] = np.where(low, 1, -1)  # low: hi kept; else lo kept
        tight = (hi[run] - lo[run]) * T[run] <= tol_s(run)
        done[run[tight]] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        slope_near = (g1 - g0) / (x1 - x0)
        faults = np.where(T > 0, np.fmin((1.0 - lo) * T / np.where(c > 0, c, 1.0), n_hi), 0.0)
    return np.where(lo >= 1.0, 0.0, faults), lo, slope_near


def _inside(x, lo, hi, width):
    """``x`` moved to at least ``0.45 width`` inside ``[lo, hi]`` where the bracket is wider than
    ``0.9 width`` (a point that close to an end closes the bracket below ``width``)."""
    gap = 0.45 * width
    return np.where(hi - lo > 2.0 * gap, np.clip(x, lo + gap, hi - gap), x)


#: accesses decided at once by :func:`stalled_count` (a block's sure faults and sure misses
#: in numpy; only the accesses in between one by one)
COUNT_BLOCK = 2048


def stalled_count(first_s, pushed_s, push_s, stall_s, vcpus) -> int:
    """:func:`stalled_faults`'s clock on sampled accesses (page engine), exactly: page ``i``,
    first accessed ``first_s[i]`` guest seconds into the push (at full speed) and pushed
    ``pushed_s[i]`` s into it, faults where the guest reaches that access before the push
    places it.  In the order of the accesses, the ``k`` faults taken before access ``i`` have
    held the guest back ``k c`` (``c = stall_s / vcpus``), so it comes at ``first_s[i] + k c``
    and faults iff ``k < (pushed_s[i] - first_s[i]) / c`` (its slack).

    Exact by blocks: in a block of :data:`COUNT_BLOCK` accesses starting at ``k`` faults, an
    access whose slack exceeds ``k`` plus its place in the block faults whatever came before,
    one whose slack is at most ``k`` does not; only those in between are walked one by one.
    The last fault may come so late that its stall outlasts the push; the count is held to the
    ``vcpus x push_s / stall_s`` faults the vCPUs have time to wait for, as in
    :func:`stalled_faults` (at most one fewer)."""
    f = np.asarray(first_s, dtype=float)
    p = np.asarray(pushed_s, dtype=float)
    c = float(stall_s) / float(vcpus)
    reach = f < p
    if c <= 0.0 or not reach.any():
        return int(np.count_nonzero(reach))
    order = np.argsort(f[reach])
    slack = (p[reach] - f[reach])[order] / c
    k = 0
    for i in range(0, slack.size, COUNT_BLOCK):
        s = slack[i : i + COUNT_BLOCK]
        # bounds on the faults before each access, narrowed in turn: at least k plus the sure
        # faults before it, at most k plus the accesses before it that may fault
        least, most = k, k + np.arange(s.size)
        for _ in range(4):
            sure, never = s > most, s <= least
            least = k + np.cumsum(sure) - sure
            most = k + np.cumsum(~never) - ~never
        maybe = np.flatnonzero(~sure & ~never)
        before = least  # k plus the sure faults before each access
        extra = 0
        for b, x in zip(before[maybe].tolist(), s[maybe].tolist(), strict=True):
            if b + extra < x:
                extra += 1
        k += int(np.count_nonzero(sure)) + extra
    return min(k, int(np.floor(float(push_s) / c)))


def slowdown(lost_s, total_s, downtime_s):
    """Share of guest progress lost while it runs during the migration (0..1).

    ``lost_s`` is guest time lost to throttling and post-copy fault stalls; the downtime
    (the guest does not run at all) is reported separately and not counted here.  Each part
    is at most the time it applies to (a throttle is in [0, 1], fault stalls are held to the
    push by :func:`stalled_faults`), so the share is at most 1 by construction: one above 1
    beyond rounding is an engine error, raised, not capped (a post-copy guest had lost more
    vCPU time to its faults than it had, and the cap hid it).
    """
    running = total_s - np.nan_to_num(downtime_s)
    share = np.where(running > 0, lost_s / np.maximum(running, 1e-300), 0.0)
    if np.any(share > 1.0 + 1e-9):
        raise RuntimeError(f"guest time lost {lost_s} exceeds the time it ran {running}")
    return np.minimum(share, 1.0)  # rounding only


class BatchResult:
    """Results of many migrations as arrays: scalars ``(S,)``, per-round ``(S, R)``.

    This is what :mod:`lmtoolkit.dataset` consumes; :meth:`records` gives plain records.
    """

    def __init__(self, n: int, n_rounds: int):
        self.n = n
        self.scalars: dict[str, np.ndarray] = {}
        for name in SCALAR_FIELDS:
            if name in ("policy", "engine", "stop_reason"):
                self.scalars[name] = np.full(n, "", dtype=object)
            elif name in ("converged", "completed", "numa_compatible"):
                self.scalars[name] = np.zeros(n, dtype=bool)
            elif name == "rounds":
                self.scalars[name] = np.zeros(n, dtype=np.int64)
            else:
                self.scalars[name] = np.full(n, np.nan)
        self.round = {k: np.full((n, n_rounds), np.nan) for k in ROUND_FIELDS}
        self.round_kind = np.full((n, n_rounds), -1, dtype=np.int8)

    @property
    def n_rounds(self) -> int:
        return self.round_kind.shape[1]

    @classmethod
    def from_records(cls, records: list[MigrationRecord]) -> BatchResult:
        width = max([len(r.round_detail) for r in records] + [1])
        out = cls(len(records), width)
        for i, rec in enumerate(records):
            for k, v in rec.scalars().items():
                out.scalars[k][i] = v
            for j, rr in enumerate(rec.round_detail):
                out.set_round(i, j, rr)
        return out

    def set_round(self, i, j, rr: RoundRecord):
        self.round["round_start"][i, j] = rr.start_s
        self.round["round_duration"][i, j] = rr.duration_s
        self.round["round_pages"][i, j] = rr.pages
        self.round["round_bytes"][i, j] = rr.bytes
        self.round["round_dirty_pages"][i, j] = rr.dirty_pages
        self.round["round_bandwidth"][i, j] = rr.bandwidth_bytes_s
        self.round["round_throttle"][i, j] = rr.throttle
        self.round_kind[i, j] = ROUND_KINDS.index(rr.kind)

    def records(self) -> list[MigrationRecord]:
        out = []
        for i in range(self.n):
            kw = {k: _py(v[i]) for k, v in self.scalars.items()}
            detail = []
            for j in range(self.n_rounds):
                kind = int(self.round_kind[i, j])
                if kind < 0:
                    continue
                detail.append(
                    RoundRecord(j, ROUND_KINDS[kind], *(float(self.round[k][i, j]) for k in ROUND_FIELDS))
                )
            out.append(MigrationRecord(**kw, round_detail=detail))
        return out

    @staticmethod
    def concat(parts: list[BatchResult]) -> BatchResult:
        width = max(p.n_rounds for p in parts)
        out = BatchResult(sum(p.n for p in parts), width)
        i = 0
        for p in parts:
            sl = slice(i, i + p.n)
            for k in out.scalars:
                out.scalars[k][sl] = p.scalars[k]
            for k in out.round:
                out.round[k][sl, : p.n_rounds] = p.round[k]
            out.round_kind[sl, : p.n_rounds] = p.round_kind
            i += p.n
        return out

    def take(self, order) -> BatchResult:
        out = BatchResult(len(order), self.n_rounds)
        for k in out.scalars:
            out.scalars[k] = self.scalars[k][order]
        for k in out.round:
            out.round[k] = self.round[k][order]
        out.round_kind = self.round_kind[order]
        return out


def _py(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


def reason_name(code) -> str:
    return STOP_REASONS[int(code)]


__all__ = [
    "unique_rows",
    "f_written",
    "F_written",
    "mean_written_after",
    "switchover",
    "postcopy_switchover",
    "switchover_latency_s",
    "abandoned_pause_s",
    "sent_by",
    "fault_stall_s",
    "stalled_faults",
    "stalled_count",
    "STALL_WINDOWS",
    "STALL_JUMP",
    "STALL_JUMP_SHARP",
    "STALL_FINEST",
    "BatchResult",
    "ROUND_DETAIL_LIMIT",
    "REASON_CODE",
]
