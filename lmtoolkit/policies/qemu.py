"""QEMU-like pre-copy, mirroring QEMU's ``migration/`` code (read at QEMU 8.2–10.x).

Rules and their sources:

* **Switchover test** — ``migration/migration.c: migration_update_counters`` measures the
  bandwidth over windows of at least ``BUFFER_DELAY`` = 100 ms (bytes that reached the
  wire / elapsed) and sets ``threshold_size = bandwidth * downtime_limit``;
  ``migration_iteration_run`` compares the pending size with it: first the estimate
  (``ram.c: ram_state_pending_estimate`` = dirty pages x ``TARGET_PAGE_SIZE``, zero pages
  counted at full size), and only when that is below the threshold the exact size, which
  **syncs the dirty bitmap** (``ram_state_pending_exact`` -> ``migration_bitmap_sync``).  If
  the exact size is still below the threshold the migration completes.  So a sync — the end
  of a "pass" as ``dirty-sync-count`` counts it — happens when the remaining dirty bytes fall
  below the threshold, which can be inside the first pass, and the scan then continues from
  where it was (``find_dirty_block``).  ``threshold_size`` is 0 until the first window has
  been measured (``migrate_init``), so the checks of the first 100 ms never switch over, even
  for a guest that fits the limit whole (:meth:`QemuPolicy.threshold_bytes`).  Default
  ``downtime-limit`` 300 ms (``options.c: DEFAULT_MIGRATE_SET_DOWNTIME``).
* **Iteration granularity** — ``ram.c: ram_save_iterate`` returns after ``MAX_WAIT`` = 50 ms
  or when the rate-limit budget of the current ``BUFFER_DELAY`` = 100 ms window is spent
  (``migration_rate_exceeded``); ``migration.c: migration_thread`` then sleeps to the end of
  the window (``migration_rate_limit``) and runs ``migration_iteration_run`` — the switchover
  check — only at the start of the next one; while the budget lasts it checks after each
  ``ram_save_iterate``.  So the checks come every 100 ms while ``max-bandwidth`` binds at
  most half the line (the budget is spent before ``MAX_WAIT``), every 50 ms otherwise
  (:meth:`QemuPolicy.check_period_s`), and a phase lasts a whole number of check periods:
  the sync happens when the estimate is first seen below the threshold, not when it
  crosses it.
* **Bandwidth cap** — ``max-bandwidth`` limits pre-copy (``migration_rate_exceeded``, a
  budget per 100 ms window).  QEMU's own default is ``MAX_THROTTLE`` = 128 MiB/s; libvirt
  lifts it, and here ``max_bandwidth_mib_s: null`` means line rate.  The final stop-and-copy
  is **not** capped: ``migration_rate_set(RATE_LIMIT_DISABLED)`` once the VM is stopped
  (``migration_switchover_start`` in 10.x; ``migration_completion_precopy`` in 8.2 and 9.2).
* **Zero pages** — ``save_zero_page``: ``buffer_is_zero`` then an 8-byte header plus one
  byte; normal pages carry an 8-byte header (``save_page_header``).  Who scans is QEMU's
  ``zero-page-detection`` parameter (``zero_page_detection``; ``qapi/migration.json``:
  enum ``ZeroPageDetection`` ``none``, ``legacy``, ``multifd``, "Since: 9.0"; default
  ``multifd``, 9.0.0 and 10.1.0 ``options.c``: ``DEFINE_PROP_ZERO_PAGE_DETECTION(...,
  ZERO_PAGE_DETECTION_MULTIFD)``).  Read in 9.0.0 and 10.1.0 ``ram.c``:

  - ``legacy``: the migration thread tests each page (``save_zero_page``) and sends a zero
    one on the main channel as header + byte (9 B), multifd on or off (9.0.0
    ``ram_save_target_page_multifd``: "we still need to handle zero page checking on the
    migration main thread"; 10.1.0 ``ram_save_target_page``: ``!migrate_multifd() ||
    ... == ZERO_PAGE_DETECTION_LEGACY``);
  - ``multifd`` with multifd on: the migration thread only queues the page
    (``ram_save_multifd_page``); each channel's sender thread tests the pages of its packet
    (``multifd-zero-page.c: multifd_send_zero_page_detect``, called from the channel's
    ``send_prepare``: 9.0.0 ``multifd.c``, 10.1.0 ``multifd-nocomp.c:
    multifd_nocomp_send_prepare``), so the ``multifd-channels`` threads scan in parallel:
    ``channels x host.zero_scan_gib_s`` (:meth:`QemuPolicy.zero_scan_bytes_s`; the CPU work,
    and so the energy, is the same).  A zero page sends no data, only its 8-byte entry in
    the packet's ``offset[]`` (``multifd.h: MultiFDPacket_t``, ``zero_pages`` entries after
    the ``normal_pages`` ones; ``multifd_ram_fill_packet``): 8 B
    (:data:`MULTIFD_ZERO_PAGE_BYTES`);
  - ``multifd`` with multifd off: nothing refuses it (it is the default): ``save_zero_page``
    turns away only ``none``, so the migration thread scans as ``legacy`` (9.0.0
    ``ram_save_target_page_legacy``, 10.1.0 ``ram_save_target_page``);
  - ``none``: ``save_zero_page`` returns 0 at once, and ``multifd_send_zero_page_detect``
    marks every page normal: a zero page goes whole, header and 4 KiB, and nothing scans.

  Before 9.0 the parameter does not exist and the migration thread scans (``legacy``); a
  value other than ``legacy`` there is refused, as QEMU 8.2's QMP refuses an unknown
  parameter.  (QEMU >= 9.0 with a machine type <= 8.2 also runs ``legacy``:
  ``hw/core/machine.c: hw_compat_8_2`` sets ``zero-page-detection=legacy``; set it so.)
* **Auto-converge** — ``ram.c: migration_bitmap_sync`` evaluates, at a sync at least 1 s
  after the last evaluation, ``migration_trigger_throttle``: if the bytes dirtied in the
  period exceed ``throttle-trigger-threshold`` (50 %) of the bytes transferred in it and
  this has happened twice (``++dirty_rate_high_cnt >= 2``; the counter is not reset by a
  calm period), ``mig_throttle_guest_down`` sets the throttle to ``cpu-throttle-initial``
  (20 %) or raises it by ``cpu-throttle-increment`` (10 %) up to ``max-cpu-throttle`` (99 %).
  ``cpu_throttle_thread`` (``system/cpu-throttle.c`` up to 9.1, ``migration/cpu-throttle.c``
  since 9.2) makes each vCPU sleep pct/(1-pct) x 10 ms
  per 10 ms run, i.e. the guest runs ``1 - pct`` of the time: its write rate scales by that.
  Since QEMU 9.2 (``qemu_version``) ``migration/cpu-throttle.c`` also runs a timer every
  ``CPU_THROTTLE_DIRTY_SYNC_TIMESLICE_MS`` = 5000 ms while auto-converge is on
  (``cpu_throttle_dirty_sync_timer``, started in ``migration_thread``):
  ``cpu_throttle_dirty_sync_timer_tick`` forces a bitmap sync
  (``migration_bitmap_sync_precopy``) when no sync happened since the previous tick and
  ``dirty_sync_count > 1`` (not during the first pass), so the throttle can step up inside
  long passes.  Here a phase ends at the tick that forces a sync: ticks every 5 s from the
  start, a sync at ``t`` is followed by a forced one at the second tick after ``t`` (the
  first tick sees the count changed), a forced sync by one at the next tick.
* **XBZRLE** — ``ram.c: save_xbzrle_page`` with ``page_cache.c``, run page by page by the
  engines (:mod:`lmtoolkit.engine.page`): it starts once the page scan has wrapped past the
  end of RAM (``find_dirty_block`` sets ``xbzrle_started``).  The cache is direct-mapped:
  ``xbzrle-cache-size`` / page entries (a power of two, ``cache_init``; QEMU refuses any
  other size, and so do we: ``options.c: migrate_params_check``), a page's slot is its page
  number mod the entries (``cache_get_cache_pos``).  A
  non-zero page found in its slot (``cache_is_cached``, which refreshes the entry's age to
  the current ``dirty_sync_count``) is encoded against the cached copy: nothing is sent if
  it did not change since (``encoded_len == 0``, "skipping"), else a delta — header, the
  ``ENCODING_FLAG_XBZRLE`` byte, a 16-bit length and ``xbzrle_delta_ratio`` of a page (our
  assumption: how much of a page a write changes is workload-specific); a miss sends the
  full page and inserts it (``cache_insert``), unless the slot holds another page younger
  than two syncs (``CACHED_PAGE_LIFETIME`` 2: "the page in cache will not be replaced in
  two cycles").  In the last stage misses are not inserted.  Encoding costs CPU at
  ``xbzrle_encode_gib_s`` (ours), on hits only.  XBZRLE together with multifd is refused,
  as QEMU does (``options.c: migrate_caps_check``: "Multifd is not compatible with xbzrle").
* **Dirty-log clearing** (``dirty_clear``, ``clear_bitmap_shift``) — with KVM's manual
  dirty-log protect (the default since Linux 5.8, ``KVM_DIRTY_LOG_INITIALLY_SET`` too) the
  sync only *reads* KVM's log; ``ram.c: migration_bitmap_clear_dirty`` clears it per chunk,
  just before the first page of a chunk is sent after a sync
  (``clear_bmap_test_and_clear`` → ``migration_clear_memory_region_dirty_bitmap`` →
  ``memory_region_clear_dirty_bitmap`` → ``KVM_CLEAR_DIRTY_LOG``).  A chunk is
  ``2^clear_bitmap_shift`` target pages (``migration.h: CLEAR_BITMAP_SHIFT_DEFAULT`` 18 →
  1 GiB of 4 KiB pages; ``CLEAR_BITMAP_SHIFT_MIN`` 6, ``_MAX`` 31; the ``x-clear-bitmap-shift``
  property), and ``accel/kvm/kvm-all.c: kvm_log_clear_one_slot`` clears only the bits that
  were set at the last sync ("we must guarantee that we won't clear any unknown dirty
  bits").  So a write between the sync and its chunk's clear is carried by the send, a
  write after the clear dirties the page for the next round even if the page is sent
  later in the pass, and a write to a pending page whose bit the sync did not see is dirty
  at the next sync (``dirty_clear: chunk``, the default).  A guest of at most one chunk
  (≤ 1 GiB) thus behaves as ``sync``; larger ones lie between ``sync`` and the idealised
  per-page ``send``.  Under TCG there is no ``log_clear`` listener: ``memory_global_dirty_log_sync`` →
  ``physmem.c: cpu_physical_memory_sync_dirty_bitmap`` fetches *and clears* the global
  ``DIRTY_MEMORY_MIGRATION`` bitmap at the sync and resets the TLB dirty state
  (``tlb_reset_dirty_range_all``, made coherent by commit 03bfc2188f, QEMU 9.0), so every
  write after the sync is dirty at the next one, even to a page sent later in the same
  pass (``dirty_clear: sync``; KVM without manual protect behaves the same way).
  ``dirty_clear: send`` (cleared page by page at its send) is kept for comparisons.
* **Multifd** — ``multifd-channels`` (QEMU default 2 when the capability is on) parallel
  TCP streams and sender threads: lifts the per-stream limit.  The RAM goes over them, not
  over the migration channel (``ram.c: ram_save_target_page``); without multifd it goes over
  that one channel, one stream (:meth:`QemuPolicy.streams`), so ``network.streams`` is not
  QEMU's to read and is refused.  ``max-bandwidth`` is
  overshot by the packets in flight: ``multifd.c: multifd_send_thread`` adds a packet's bytes
  to ``mig_stats.multifd_bytes`` only after ``qio_channel_writev_full_all`` has written it,
  while ``migration_rate_exceeded`` compares ``migration_transferred_bytes()``
  (``migration-stats.c``: the main stream plus ``multifd_bytes``) with the window's budget
  and ``migration_update_counters`` restarts the budget from the bytes counted by then.
  Each channel holds one packet of ``MULTIFD_PACKET_SIZE`` = 512 KiB (``multifd.h``), so
  a capped window carries up to ``channels x 512 KiB`` beyond its budget: the cap becomes
  ``max-bandwidth + channels x 512 KiB / BUFFER_DELAY`` (testbed, QEMU 10.0, 128 MiB/s
  cap: 2, 4, 8 channels ran +9, +11, +25 % faster than the cap allows).  So do 8.1 and 8.2
  (read in 8.1.0: ``multifd_send_thread`` adds ``next_packet_size`` to ``multifd_bytes``
  after ``qio_channel_writev_full_all``, ``multifd_send_pages`` charges nothing, and
  ``migration-stats.c: migration_rate_exceeded`` compares ``migration_transferred_bytes()``;
  the queue-time charge went with commit bd7ceaf6d5, "migration: We don't need the field
  rate_limit_used anymore", May 2023).  8.0 charged a packet when it was queued
  (8.0.0 ``multifd_send_pages``: ``qemu_file_acct_rate_limit(f, transferred)``): no overshoot
  there (``qemu_version`` < 8.1; it had said < 8.2, so 8.1 ran multifd under a binding cap
  ~18 % long: 17.73 s where 8.1 runs 15.04 s, 2 GiB at 128 MiB/s with 4 channels).  The switchover's pages go out on the channels too
  (``ram_save_complete``: ``ram_find_and_save_block`` → ``ram_save_multifd_page``, then
  ``multifd_ram_flush_and_sync``), uncapped: the pause is sent at
  ``min(line, channels x one stream)`` (``network.stream_gbit_s``) like pre-copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, check_choice, check_range
from .base import GIB, MIB, bitmap_empty, none_to
from .precopy import PrecopyPolicy

BUFFER_DELAY_S = 0.100  # migration-stats.h: BUFFER_DELAY (ms)
MULTIFD_PACKET_BYTES = 512 * 1024  # multifd.h: MULTIFD_PACKET_SIZE
MULTIFD_LATE_ACCOUNTING_SINCE = (8, 1)  # multifd bytes charged after the write (8.1.0: multifd_send_thread)
MAX_WAIT_S = 0.050  # ram.c: MAX_WAIT (ms)
MAX_MIGRATE_DOWNTIME_MS = 2000 * 1000  # options.c: MAX_MIGRATE_DOWNTIME (2000 s)
XBZRLE_MIN_CACHE_BYTES = 4096  # options.c: xbzrle-cache-size >= qemu_target_page_size() (x86: 4 KiB)
THROTTLE_PERIOD_S = 1.0  # ram.c: migration_bitmap_sync, "more than 1 second"
DIRTY_SYNC_TIMESLICE_S = 5.0  # cpu-throttle.c: CPU_THROTTLE_DIRTY_SYNC_TIMESLICE_MS
PERIODIC_SYNC_SINCE = (9, 2)  # QEMU release that added the auto-converge sync timer
ZERO_PAGE_DETECTION_SINCE = (9, 0)  # qapi/migration.json: zero-page-detection "(since 9.0)"
ZERO_PAGE_DETECTIONS = ("legacy", "multifd", "none")  # qapi/migration.json: ZeroPageDetection
MULTIFD_ZERO_PAGE_BYTES = 8.0  # multifd.h: MultiFDPacket_t, one uint64_t offset[] entry per zero page


def _release(version) -> np.ndarray:
    """``"major.minor"`` (scalar or array) -> major * 1000 + minor, for comparisons."""

    def one(v):
        major, _, rest = str(v).partition(".")
        return int(major) * 1000 + int(rest.partition(".")[0] or 0)

    v = np.asarray(version)
    if v.ndim == 0:
        return np.float64(one(v.item()))
    if v.size and (v == v.flat[0]).all():  # one version for every scenario (the usual case)
        return np.full(v.shape, float(one(v.flat[0])))
    uniq, inv = np.unique(v, return_inverse=True)
    return np.array([one(u) for u in uniq], dtype=float)[inv.reshape(v.shape)]


def released_since(version, since: tuple[int, int]):
    """``version`` (scalar or array of ``"major.minor"``) is release ``since`` or later."""
    return _release(version) >= since[0] * 1000 + since[1]


@dataclass(frozen=True)
class QemuPolicy(PrecopyPolicy):
    """QEMU/KVM pre-copy: switchover when the dirty bytes fit bandwidth x downtime limit."""

    # downtime_limit_ms (inherited, 300): QEMU's downtime-limit (DEFAULT_MIGRATE_SET_DOWNTIME)
    max_rounds: int = 1000000000  # QEMU has no pass cap: only timeout_s ends it
    max_bandwidth_mib_s: float | None = None  # max-bandwidth; null = line rate (QEMU's own default 128)
    auto_converge: bool = False  # auto-converge capability
    throttle_trigger_threshold: float = 50.0  # throttle-trigger-threshold (%)
    cpu_throttle_initial: float = 20.0  # cpu-throttle-initial (%)
    cpu_throttle_increment: float = 10.0  # cpu-throttle-increment (%)
    max_cpu_throttle: float = 99.0  # max-cpu-throttle (%)
    xbzrle: bool = False  # xbzrle capability
    xbzrle_cache_mib: float = 64.0  # xbzrle-cache-size
    xbzrle_delta_ratio: float = 0.25  # ours: delta size / page size for a cache hit
    xbzrle_encode_gib_s: float = 2.0  # ours: XBZRLE encoder throughput
    multifd_channels: int = 0  # multifd-channels; 0: multifd capability off (one stream)
    iteration_ms: float = MAX_WAIT_S * 1000  # ram_save_iterate's MAX_WAIT
    qemu_version: str = "10.1"  # QEMU release ("major.minor"): >= 9.2 syncs every 5 s under auto-converge
    dirty_clear: str = "chunk"  # the Policy.dirty_clear hook: chunk (KVM manual protect) | sync (TCG) | send
    clear_bitmap_shift: int = (
        18  # x-clear-bitmap-shift: 2^shift target pages per clear (CLEAR_BITMAP_SHIFT_DEFAULT)
    )
    #: zero-page-detection: legacy (migration thread) | multifd (the channels' threads, with
    #: multifd on) | none (zero pages sent whole); null = QEMU's default for qemu_version:
    #: multifd from 9.0, legacy before (module doc, *Zero pages*)
    zero_page_detection: str | None = None

    name = "qemu"
    #: options.c, migrate_params_check: downtime-limit "in the range of 0 to 2000000" ms
    DOWNTIME_LIMIT_MAX_MS = MAX_MIGRATE_DOWNTIME_MS
    full_passes = False  # a phase ends when the estimate drops below the threshold

    def __post_init__(self):
        super().__post_init__()
        if self.max_bandwidth_mib_s is not None:
            try:
                check_range("max_bandwidth_mib_s", self.max_bandwidth_mib_s, 0, None, lo_open=True)
            except ConfigError as e:  # QEMU's max-bandwidth 0 is "no limit" (migration-stats.c:
                # migration_rate_exceeded tests rate_limit_max > 0): here that is null
                raise ConfigError(
                    e.key, e.value, e.allowed + "; null for no cap (QEMU's max-bandwidth 0)"
                ) from None
        check_range("throttle_trigger_threshold", self.throttle_trigger_threshold, 1, 100)
        check_range("cpu_throttle_initial", self.cpu_throttle_initial, 1, 99)
        check_range("cpu_throttle_increment", self.cpu_throttle_increment, 1, 99)
        # options.c, migrate_params_check: max-cpu-throttle "in the range of
        # cpu_throttle_initial to 99" (downtime-limit's bound: DOWNTIME_LIMIT_MAX_MS)
        check_range("max_cpu_throttle", self.max_cpu_throttle, float(self.cpu_throttle_initial), 99)
        # qapi/migration.json: xbzrle-cache-size is a 'size' (uint64 bytes): below 2^64 B = 2^44 MiB
        check_range("xbzrle_cache_mib", self.xbzrle_cache_mib, 0, 2.0**44, lo_open=True, hi_open=True)
        cache = float(self.xbzrle_cache_mib) * MIB
        if not (
            cache >= XBZRLE_MIN_CACHE_BYTES and cache == int(cache) and int(cache) & (int(cache) - 1) == 0
        ):
            # migration/options.c, migrate_params_check: "Option xbzrle_cache_size expects a
            # power of two no less than the target page size" (was rounded down here: a 48 MiB
            # cache silently ran as 32, a cache under a page as XBZRLE off)
            raise ConfigError(
                "xbzrle_cache_mib",
                self.xbzrle_cache_mib,
                "a power of two of at least one 4 KiB target page, as QEMU requires (e.g. 8, 16, 64)",
            )
        check_range("xbzrle_delta_ratio", self.xbzrle_delta_ratio, 0, 1)
        check_range("xbzrle_encode_gib_s", self.xbzrle_encode_gib_s, 0, None, lo_open=True)
        check_range("multifd_channels", self.multifd_channels, 0, 255)
        # an iteration is the time between two switchover checks, which also come at each
        # pass's end: one beyond the timeout checks only there, as one of timeout_s does (10 or
        # 35 rounds alike at 600000 and 1e9 ms), and 1e308 ran into NaN pages ("rule
        # phase_pages gave pages = nan").  QEMU's 50 ms passes under a shorter timeout.
        check_range(
            "iteration_ms",
            self.iteration_ms,
            0,
            max(self.timeout_s, MAX_WAIT_S) * 1000.0,
            lo_open=True,
            note=" ms: at most timeout_s (or QEMU's 50); a longer one checks only at each pass's end, as that does",
        )
        check_choice("dirty_clear", self.dirty_clear, ("chunk", "sync", "send"))
        parts = str(self.qemu_version).split(".")
        if not (1 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):
            raise ConfigError(
                "qemu_version", self.qemu_version, 'a QEMU release as "major.minor", e.g. "10.1"'
            )
        self._resolve_zero_page_detection()
        if self.xbzrle and self.multifd_channels > 0:
            # options.c: migrate_caps_check refuses the pair
            raise ConfigError(
                "xbzrle",
                self.xbzrle,
                f"false while policy.multifd_channels={self.multifd_channels} "
                '(QEMU refuses xbzrle with multifd: "Multifd is not compatible with '
                'xbzrle"); turn one of them off',
            )
        try:  # migration.h: CLEAR_BITMAP_SHIFT_MIN / _MAX
            check_range("clear_bitmap_shift", self.clear_bitmap_shift, 6, 31)
        except ConfigError as e:
            # QEMU (10.1.0 ram.c: ram_list_init_bitmaps) clamps an out-of-range
            # x-clear-bitmap-shift to the nearer bound with an error_report; refused here
            # rather than run silently as another value, the bound QEMU would use named
            raise ConfigError(
                "clear_bitmap_shift",
                self.clear_bitmap_shift,
                e.allowed + " (QEMU clamps it to the nearer bound with a warning, ram.c: "
                "ram_list_init_bitmaps: set that bound to run what QEMU runs)",
            ) from None

    def _resolve_zero_page_detection(self):
        """``zero_page_detection`` null -> QEMU's default for ``qemu_version``; checked against
        the version (module doc, *Zero pages*)."""
        since = bool(released_since(self.qemu_version, ZERO_PAGE_DETECTION_SINCE))
        if self.zero_page_detection is None:
            object.__setattr__(self, "zero_page_detection", "multifd" if since else "legacy")
        check_choice("zero_page_detection", self.zero_page_detection, ZERO_PAGE_DETECTIONS)
        if not since and self.zero_page_detection != "legacy":
            # qapi/migration.json: zero-page-detection "(since 9.0)"; 8.2's QMP has no such
            # parameter and its ram.c always tests pages in the migration thread
            raise ConfigError(
                "zero_page_detection",
                self.zero_page_detection,
                f"legacy or null with qemu_version={self.qemu_version} (QEMU added "
                "zero-page-detection in 9.0; before, the migration thread always scans); "
                f"{self.zero_page_detection} needs qemu_version=9.0 or later",
            )

    @property
    def detects_zero_pages(self):
        """Zero pages are found (``zero_page_detection`` other than ``none``); a bool array on a
        stacked policy."""
        return np.asarray(self.zero_page_detection) != "none"

    def multifd_scans(self):
        """The channels' sender threads test the pages (``zero_page_detection=multifd`` with
        multifd on); else the migration thread does (module doc, *Zero pages*)."""
        return (np.asarray(self.zero_page_detection) == "multifd") & (np.asarray(self.multifd_channels) > 0)

    def zero_scan_bytes_s(self, ctx):
        """One thread's rate, times ``multifd-channels`` where the channels' threads scan
        (``multifd_send_zero_page_detect``, one per channel, in parallel)."""
        threads = np.where(self.multifd_scans(), np.asarray(self.multifd_channels, dtype=float), 1.0)
        return ctx.zero_scan_bytes_s * threads

    def zero_wire_bytes(self, st, ctx):
        """``zero_page_bytes`` (header + byte on the main channel), or the page's 8-byte
        ``offset[]`` entry in a multifd packet where the channels scan."""
        return np.where(self.multifd_scans(), MULTIFD_ZERO_PAGE_BYTES, super().zero_wire_bytes(st, ctx))

    def clear_chunk_pages(self, ctx):
        """Pages per dirty-log clear: ``2^clear_bitmap_shift`` target pages (4 KiB)."""
        target = 2.0 ** (np.asarray(self.clear_bitmap_shift, dtype=float) + 12)
        return np.maximum(1.0, np.floor(target / ctx.page_bytes))

    # -- link --------------------------------------------------------------------------------
    def streams(self, ctx):
        """RAM streams: the one migration channel, or the ``multifd-channels`` channels with
        multifd on (module doc, *Multifd*).

        ``ram.c: ram_save_target_page`` sends a page with ``ram_save_page`` on the migration
        channel unless ``migrate_multifd()``, and then with ``ram_save_multifd_page`` ->
        ``multifd_queue_page``, whose packets ``multifd.c: multifd_send`` hands to whichever
        of the channels is free; ``multifd_send_setup`` opens ``migrate_multifd_channels()``
        of them (``options.c``: ``multifd-channels``, ``DEFAULT_MIGRATE_MULTIFD_CHANNELS``
        2), each a socket and a sender thread.  The main channel then carries the sync
        flags and the device state, not the pages.  ``network.streams`` is refused
        (:meth:`network_streams_unused`): it had made a multifd-off migration 4x faster."""
        ch = np.asarray(self.multifd_channels, dtype=float) + np.zeros(np.shape(ctx.base_streams))
        return np.where(ch > 0, ch, 1.0)

    def network_streams_unused(self):
        return (
            "QEMU sends RAM over its one migration channel, or with multifd over the "
            "policy.multifd_channels channels it opens (ram.c: ram_save_target_page, "
            "multifd.c: multifd_send_setup)"
        )

    def rate_bytes_s(self, st, ctx):
        return np.minimum(super().rate_bytes_s(st, ctx), self.effective_cap_bytes_s())

    def effective_cap_bytes_s(self):
        """``max-bandwidth`` as pre-copy runs it: plus up to one 512 KiB packet per multifd
        channel per 100 ms window, charged only once written (module doc, *Multifd*)."""
        cap = none_to(self.max_bandwidth_mib_s, np.inf) * MIB
        late = released_since(self.qemu_version, MULTIFD_LATE_ACCOUNTING_SINCE)
        over = np.where(late, np.asarray(self.multifd_channels, dtype=float), 0.0) * MULTIFD_PACKET_BYTES
        return cap + over / BUFFER_DELAY_S

    def stop_rate_bytes_s(self, st, ctx):
        return super().rate_bytes_s(st, ctx)  # RATE_LIMIT_DISABLED at switchover

    def xbzrle_slots(self, ctx):
        """Cache entries: ``xbzrle-cache-size`` / page (a power of two: checked; a guest page
        larger than the 4 KiB target page leaves fewer, rounded down); 0 when the capability
        is off."""
        pages = np.asarray(self.xbzrle_cache_mib, dtype=float) * MIB / np.asarray(ctx.page_bytes, dtype=float)
        with np.errstate(divide="ignore"):
            slots = np.where(pages >= 1, 2.0 ** np.floor(np.log2(np.maximum(pages, 1.0))), 0.0)
        return np.where(np.asarray(self.xbzrle), slots, 0.0)

    def xbzrle_costs(self, st, ctx, stop=False):
        """(seconds, bytes) of a hit sent as a delta, and seconds of an unchanged hit (no bytes).

        With ``verify_checksums`` a delta is a non-zero page like any other (the destination
        hashes the page it decoded): hashed and sent :meth:`transmissions_per_page` times, as
        :meth:`~.base.Policy.link` does for whole pages; an unchanged hit sends nothing."""
        rate = self.stop_rate_bytes_s(st, ctx) if stop else self.rate_bytes_s(st, ctx)
        delta = self.page_header_bytes + 3.0 + ctx.page_bytes * self.xbzrle_delta_ratio
        encode = ctx.page_bytes / (self.xbzrle_encode_gib_s * GIB)
        sends = self.transmissions_per_page(ctx)
        t_hit = sends * np.maximum(delta / rate, encode + self.checksum_cpu_s(ctx))
        return t_hit, sends * delta, encode

    # -- switchover --------------------------------------------------------------------------
    def window_threshold_bytes(self, st):
        """``threshold_size`` once a rate window has been measured: bandwidth estimate x
        downtime limit (bytes)."""
        return st.bw_est * self.downtime_limit_ms / 1000.0

    def threshold_bytes(self, st):
        """``threshold_size`` (bytes): 0 before the first sync, then bandwidth x downtime limit.

        QEMU 10.0.13 ``migration.c: migrate_init`` sets ``s->threshold_size = 0``, and
        ``migration_update_counters`` first sets it once a ``BUFFER_DELAY`` (100 ms) window
        has passed (it returns early before).  So the checks before then compare the pending
        size with 0 and never switch over: not even a guest that would fit the downtime limit
        whole is paused at the start.  Before the first sync (``round`` 1) no window has
        been measured in the model; the first phase spans that window
        (:meth:`first_window_checks`)."""
        return np.where(self.no_window_yet(st), 0.0, self.window_threshold_bytes(st))

    @staticmethod
    def no_window_yet(st):
        """No rate window measured yet: before the first sync after setup (``round`` 1)."""
        return st.round <= 1

    def first_window_checks(self, st, ctx):
        """Checks before the first one that sees a measured threshold: ``BUFFER_DELAY`` /
        check period (2 at 50 ms, 1 at 100 ms) in the first phase, else 1.

        ``migration.c: migration_thread`` sets ``iteration_start_time`` before the setup,
        then loops ``migration_iteration_run`` (the check) and ``migration_rate_limit`` ->
        ``migration_update_counters``, which measures only from 100 ms on: the checks at 0
        and 50 ms see ``threshold_size`` 0, the one at 100 ms the measured value."""
        first = np.ceil(BUFFER_DELAY_S / self.check_period_s(st, ctx) - 1e-9)
        return np.where(self.no_window_yet(st), first, 1.0)

    def converged(self, st, ctx):
        pending_bytes = st.pending * ctx.page_bytes
        return (pending_bytes <= self.threshold_bytes(st)) | bitmap_empty(st.pending)

    def convergence_margin_pages(self, st, ctx):
        return st.pending - self.threshold_bytes(st) / ctx.page_bytes

    def check_period_s(self, st, ctx):
        """Time between two switchover checks (s): one ``ram_save_iterate`` (``MAX_WAIT``),
        or one rate-limit window (``BUFFER_DELAY``) where ``max-bandwidth``'s budget for a
        window is spent before ``MAX_WAIT`` has passed (a cap at most half the line).

        QEMU 10.0.13 ``migration.c: migration_thread`` runs ``migration_iteration_run`` (the
        check) whenever ``migration_rate_exceeded`` is false, then ``migration_rate_limit``
        sleeps to the window's end only once the budget is spent; ``ram.c:
        ram_save_iterate`` returns when the budget is spent or after ``MAX_WAIT`` 50 ms.  So
        with a cap above half the line the budget outlasts an iteration: a check at 50 ms
        into the window and one at its end — every 50 ms, as without a cap."""
        line = super().rate_bytes_s(st, ctx)
        rate = self.rate_bytes_s(st, ctx)
        iteration_s = self.iteration_ms / 1000.0
        per_window = (rate < line) & (rate * BUFFER_DELAY_S <= line * iteration_s)
        return np.where(per_window, BUFFER_DELAY_S, iteration_s)

    def phase_pages(self, st, ctx):
        """Send until the estimate drops below the threshold, in whole check periods.

        ``migration_iteration_run`` tests the estimate only between iterations, so a phase
        lasts a whole number of check periods (at least one): the dirty bytes left at the
        sync are below the threshold by up to one period's worth of sending.  A period's
        worth counts the zero pages the first pass still has to reach at their own (small)
        cost (:meth:`~.base.Policy.pending_page_s`): the checks come every 100 ms of time,
        not of non-zero pages.  Where the zero pages lie in one stretch (``vm.zero_layout``),
        the engine's scan profile gives the time along the send order instead of a mean
        cost per page (:meth:`~.base.Policy.scan_profile`): an idle Linux guest's check
        falls after its zero pages were scanned, with part of its top tail sent.
        """
        below = np.floor(self.window_threshold_bytes(st) / ctx.page_bytes)
        to_threshold = np.maximum(st.pending - below, 0.0)
        lk = self.link(st, ctx)
        per_page = self.pending_page_s(st, ctx, lk)
        period = self.check_period_s(st, ctx)
        per_check = period / per_page
        least = self.first_window_checks(st, ctx)
        checks = np.maximum(np.ceil(to_threshold / per_check - 1e-9), least)
        prof = self.scan_profile(st)
        if prof is not None:
            # zero pages in one stretch (vm.zero_layout): the checks come every period of
            # time, whatever the pages scanned in it — time along the send order
            cp, ct, on = prof
            need = self.along_profile(to_threshold, cp, ct)
            checks = np.where(on, np.maximum(np.ceil(need / period - 1e-9), least), checks)
        k = np.round(self.pages_in_checks(st, checks, period, per_check))
        # the auto-converge timer's forced sync ends the phase (QEMU >= 9.2)
        left = st.extra["ac_next_force"] - st.t
        k = np.where(np.isfinite(left), np.minimum(k, np.maximum(np.round(left / per_page), 1.0)), k)
        return np.clip(k, 1, np.maximum(st.pending, 1))

    def periodic_sync(self):
        """The auto-converge sync timer runs (``cpu_throttle_dirty_sync_timer``, QEMU >= 9.2)."""
        return np.asarray(self.auto_converge) & released_since(self.qemu_version, PERIODIC_SYNC_SINCE)

    def stationary(self, st):
        """Without auto-converge (or at the throttle's ceiling, without the sync timer, whose
        ticks depend on the time) nothing but time changes."""
        at_max = st.throttle * 100.0 >= self.max_cpu_throttle - 1e-9
        return ~np.asarray(self.auto_converge) | (at_max & ~self.periodic_sync())

    # -- auto-converge -----------------------------------------------------------------------
    def init_state(self, st, ctx):
        super().init_state(st, ctx)
        z = np.zeros_like(st.t)
        st.extra.update(
            ac_period_start=z.copy(),
            ac_dirty_pages=z.copy(),
            ac_xfer_bytes=z.copy(),
            ac_high_cnt=z.copy(),
            ac_next_force=z + np.inf,
        )

    def after_sync(self, st, ctx):
        super().after_sync(st, ctx)
        ex = st.extra
        ex["ac_dirty_pages"] = ex["ac_dirty_pages"] + st.dirty_new
        ex["ac_xfer_bytes"] = ex["ac_xfer_bytes"] + st.phase_bytes
        period_over = st.t > ex["ac_period_start"] + THROTTLE_PERIOD_S
        high = (
            ex["ac_dirty_pages"] * ctx.page_bytes
            > ex["ac_xfer_bytes"] * self.throttle_trigger_threshold / 100.0
        )
        on = np.asarray(self.auto_converge) & period_over
        cnt = np.where(on & high, ex["ac_high_cnt"] + 1, ex["ac_high_cnt"])
        trigger = on & high & (cnt >= 2)
        pct = st.throttle * 100.0
        new_pct = np.where(
            pct > 0,
            np.minimum(pct + self.cpu_throttle_increment, self.max_cpu_throttle),
            self.cpu_throttle_initial,
        )
        st.throttle = np.where(trigger, new_pct / 100.0, st.throttle)
        ex["ac_high_cnt"] = np.where(trigger, 0.0, cnt)
        # Reset the period counters (the period ends at every evaluated sync).
        for k in ("ac_dirty_pages", "ac_xfer_bytes"):
            ex[k] = np.where(period_over, 0.0, ex[k])
        ex["ac_period_start"] = np.where(period_over, st.t, ex["ac_period_start"])
        # the sync timer (cpu_throttle_dirty_sync_timer_tick): a tick forces a sync when none
        # happened since the previous tick; this sync was forced if it came at the planned tick
        lk = self.link(st, ctx)
        forced = st.t >= ex["ac_next_force"] - 1.5 * lk.t_nz
        tick = DIRTY_SYNC_TIMESLICE_S
        nxt = np.where(forced, (np.round(st.t / tick) + 1) * tick, (np.floor(st.t / tick) + 2) * tick)
        ex["ac_next_force"] = np.where(self.periodic_sync(), nxt, np.inf)
