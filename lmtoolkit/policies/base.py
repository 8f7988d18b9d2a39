"""The shared pre-copy base every policy plugs into.

A migration alternates *phases* (send some of the pages in the dirty bitmap, in address
order, continuing where the last phase stopped) and *syncs* (add the pages written since the
last sync to the bitmap).  At each sync the policy decides: go on, or switch over (pause the
VM and send what is left: the downtime).  A policy is a frozen dataclass of parameters plus
four rules:

* :meth:`Policy.decide` — after a sync: continue, or stop with a reason (``records.STOP_REASONS``);
* :meth:`Policy.phase_pages` — how many pending pages to send before the next sync;
* :meth:`Policy.link` — per-page wire bytes and time (bandwidth caps, compression, delta
  encoding, zero pages, CPU limits);
* :meth:`Policy.after_sync` — update policy state (bandwidth estimate, guest throttling).

Hooks the engines and the concurrency work read instead of vendor field names:

* :attr:`Policy.dirty_clear` — when the dirty log of a page is cleared (``"send"``,
  ``"sync"``, ``"chunk"`` with :meth:`Policy.clear_chunk_pages`, or Xen's ``"skip"``; QEMU's
  ``dirty_clear`` field and Xen's ``version`` decide it for those policies);
* :meth:`Policy.concurrent_migrations` — migrations one host runs at once (VMware, Hyper-V);
* :meth:`Policy.streams` / :meth:`Policy.network_streams_unused` — the TCP streams the pages
  go over (one unless the policy opens more), and whether ``network.streams`` (vMotion's
  vmknics) is read or refused;
* :attr:`Policy.stop_reasons` — stop reasons of the policy's own, added to
  ``records.STOP_REASONS`` when the class is defined;
* :attr:`Policy.detects_zero_pages`, :meth:`Policy.zero_wire_bytes`,
  :meth:`Policy.zero_scan_bytes_s` — whether zero pages are found (else sent whole), a zero
  page's wire bytes, and how fast the sender scans for them (QEMU's ``zero_page_detection``
  decides all three, :mod:`.qemu`); read by :meth:`Policy.link` and :mod:`lmtoolkit.model.energy`.

Registration: a subclass defined in ``lmtoolkit.policies`` that declares its own ``name``
registers itself in :data:`REGISTRY` (``POLICIES``, the names ``policy=NAME`` selects), so
adding a built-in policy is one module plus one ``configs/policy/NAME.yaml``.  A class
outside the package (``policy._target_``, see ``examples/``) is not registered unless it
passes ``register=True`` (``class P(PrecopyPolicy, register=True)``), and then in the process
that imported its module only (the command line imports none by name: it names a plug-in by
``_target_``); a base meant only for subclassing passes ``register=False``.

Validation: :meth:`Policy.__post_init__` type-checks every field by its annotation
(``bool`` fields take true/false only; ``float``/``int`` fields numbers, not booleans nor NaN;
``str`` fields text — :func:`lmtoolkit.model.checks.check_fields`) and makes a list field a
tuple, a dict field a :class:`FrozenDict` (a policy is hashable); subclasses add range checks.

All rules are written with numpy operations on the :class:`State` so that the same code runs
for one migration (page engine, 0-d values) and for thousands at once (fluid engine, one
array element per scenario, with the policy's parameters stacked by :meth:`Policy.stack`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from ..errors import check_choice, check_range
from ..model.checks import check_fields, refuse_unused
from ..model.reliability import transmissions_per_page
from ..records import REASON_CODE, register_stop_reason

CONTINUE = REASON_CODE["running"]
MIB = 1024**2
GIB = 1024**3
#: the most wire bytes of framing per page (``page_header_bytes``, ``zero_page_bytes``): the
#: smallest page the model runs (``vm.page_size_kib=1``), so framing never outweighs a page.
#: QEMU's largest is 264 B (10.1 ``migration/ram.c: save_page_header``: the 8-byte
#: offset|flags word, plus on a RAMBlock's first page a length byte and its idstr of up to 255
#: bytes, ``RAMBlock.idstr[256]``); Xen's and Hyper-V's 8 B.  1e12 was accepted (post-copy
#: reported 6.5e16 bytes for a 2 GiB guest)
MAX_PAGE_HEADER_BYTES = 1024
PAGE_HEADER_NOTE = " bytes per page: at most the smallest page, 1 KiB (QEMU's header is 8 to 264 B)"


#: name -> class of every registered policy (``lmtoolkit.policies.POLICIES`` is this dict)
REGISTRY: dict[str, type] = {}


#: a bitmap of fewer pages than this is empty: the page engine's counts are whole pages (so
#: this is ``pending == 0`` there); the fluid engine's expected count ``m`` of a bitmap whose
#: pages are dirtied independently (a Poisson count) is 0 with chance ``exp(-m)``, more
#: likely than not below ``ln 2`` pages — the verdict the page engine gives most often
EMPTY_BITMAP_PAGES = float(np.log(2.0))


def bitmap_empty(pending):
    """Nothing left to send (:data:`EMPTY_BITMAP_PAGES`): convergence for every policy."""
    return np.asarray(pending) < EMPTY_BITMAP_PAGES


def none_to(x, default):
    """``None`` (or NaN) → ``default``; works on scalars and float arrays."""
    if x is None:
        return default
    arr = np.asarray(x, dtype=float)
    return np.where(np.isnan(arr), default, arr)


@dataclass
class Context:
    """Scenario constants a policy reads (scalars, or arrays over scenarios).

    Rates in bytes/s; ``rtt_s`` in seconds.  ``pages`` and ``page_bytes`` are the pages the
    migration tracks and sends (:attr:`lmtoolkit.model.vm.VM.page_bytes`: 4 KiB ones for a
    guest backed by huge pages).
    """

    pages: object
    page_bytes: object
    memory_bytes: object
    line_bytes_s: object  # payload rate of the link for any number of streams
    stream_bytes_s: object  # payload rate one stream can carry
    base_streams: object  # network.streams (vMotion vmknics; read only by policies that say so)
    rtt_s: object
    zero_scan_bytes_s: object
    compress_bytes_s: object  # spare host cores x per-core compressor throughput
    encrypt_bytes_s: object  # spare host cores x per-core cipher throughput
    compressibility: object
    device_state_bytes: object
    dirty_rate_pages_s: object  # the workload's nominal write rate (for policies that estimate)
    link_efficiency: object = None  # network.efficiency (payload share of line rate); None = unknown
    hash_bytes_s: object = 1e300  # page checksum throughput (spare cores x per-core hash rate)
    page_ok_probability: object = 1.0  # one transmission of a page arrives right (model.reliability)
    zero_fraction: object = 0.0  # share of the VM's pages that are zero at the start (vm.zero_fraction)
    mirror_bytes_s: object = 0.0  # mirrored disk writes taken off ``line_bytes_s`` while the guest runs
    #: ``pages`` per host page (VM.pages_per_host_page): 1, or the 4 KiB pages of a huge page,
    #: the unit post-copy moves (:func:`lmtoolkit.engine.common.fault_stall_s`)
    host_ratio: object = 1.0

    def subset(self, idx):
        return _subset(self, idx)

    def paused(self) -> Context:
        """The context once the guest is paused, and after the switchover: the link without
        the mirrored disk writes (``storage.mode=migrate``), which ``line_bytes_s`` carries
        only while the guest runs on the source.

        Source: QEMU ``qapi/block-core.json``, ``MirrorCopyMode``: ``write-blocking`` — "when
        data is written to the source, write it (synchronously) to the target as well"; the
        mirror carries the guest's writes, and a paused guest (vCPUs stopped for the
        stop-and-copy) issues none.  QEMU ``docs/interop/live-block-operations.rst``, section
        "Live disk synchronization --- drive-mirror and blockdev-mirror", subsection "QMP
        invocation for live storage migration with drive-mirror + NBD": once the job is
        ``BLOCK_JOB_READY`` the source ends it with ``block-job-cancel`` (a point-in-time
        copy, "One use case for this is live VM migration with non-shared storage"), the
        destination stops its NBD server and resumes the guest with ``cont``: from the
        switchover on the guest writes to the destination's own disk and nothing is mirrored
        (post-copy's post phase included).  The engines use this context for the pause, the
        switchover and the post-copy push; the live pre-copy phase keeps ``line_bytes_s``.
        """
        m = np.asarray(self.mirror_bytes_s, dtype=float)
        if not np.any(m):
            return self
        return dataclasses.replace(self, line_bytes_s=self.line_bytes_s + m, mirror_bytes_s=0.0 * m)


class State:
    """Mutable migration state shared by engine and policy (scalars or arrays).

    ``round`` counts dirty-bitmap syncs done (1 after the initial sync at setup, as QEMU's
    ``dirty-sync-count``); ``pending`` is the number of pages in the bitmap;
    ``phase_pages`` the pages the last phase sent and ``phase_scanned`` the pages of the
    bitmap it went through (more than sent when a policy skips pages, Xen's ``to_skip``).
    """

    NAMES = (
        "t",
        "round",
        "pending",
        "pending_zero",
        "dirty_new",
        "phase_time",
        "phase_bytes",
        "phase_pages",
        "phase_scanned",
        "sent_bytes",
        "sent_pages",
        "bw_est",
        "throttle",
        "throttle_max",
        "lost_guest_time",
    )

    def __init__(self, shape=()):
        for n in self.NAMES:
            setattr(self, n, np.zeros(shape))
        self.round = self.round + 1
        self.extra: dict[str, np.ndarray] = {}

    def subset(self, idx) -> State:
        s = State.__new__(State)
        for n in self.NAMES:
            setattr(s, n, getattr(self, n)[idx])
        s.extra = {k: v[idx] for k, v in self.extra.items()}
        return s

    @property
    def speed(self):
        """Guest speed (1 = unthrottled)."""
        return 1.0 - self.throttle


class FrozenDict(Mapping):
    """A read-only, hashable mapping: what a dict-valued policy field becomes, as a list
    becomes a tuple (:func:`_freeze_containers`).  Read it as a dict (``self.caps["a"]``,
    ``.get``, ``.items()``, ``dict(self.caps)``); it equals a dict of the same items."""

    def __init__(self, items=()):
        self._d = dict(items)

    def __getitem__(self, key):
        return self._d[key]

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)

    def __hash__(self):
        return hash(frozenset(self._d.items()))

    def __repr__(self):
        return f"FrozenDict({self._d!r})"

    def __reduce__(self):  # (pickled to process and Dask workers with the policy)
        return (FrozenDict, (self._d,))


#: field values kept whole by :meth:`Policy.stack` (not an element per migration)
_WHOLE = (tuple, list, Mapping)


def _frozen(value):
    """``value`` with every list in it a tuple and every mapping a :class:`FrozenDict`."""
    if isinstance(value, Mapping):
        return FrozenDict((k, _frozen(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _unhashable(value) -> bool:
    """``value`` is, or holds, a list or a mapping other than a :class:`FrozenDict`."""
    if isinstance(value, list) or (isinstance(value, Mapping) and not isinstance(value, FrozenDict)):
        return True
    items = value.values() if isinstance(value, FrozenDict) else value if isinstance(value, tuple) else ()
    return any(_unhashable(v) for v in items)


def _freeze_containers(policy) -> None:
    """A list- or dict-valued field (``field(default_factory=lambda: [1, 2])``,
    ``policy.steps=[3,4]`` or ``policy.caps={a: 2}`` from a config) becomes a tuple or a
    :class:`FrozenDict`: a policy is frozen and hashable, as the fluid engine's batching of
    equal scenarios needs (a list field was ``TypeError: unhashable type: 'list'``, a dict
    field ``… 'dict'``); a rule reads them as it reads a list or a dict."""
    for f in fields(policy):
        v = getattr(policy, f.name)
        if _unhashable(v):
            object.__setattr__(policy, f.name, _frozen(v))


def stack_key(policy) -> tuple:
    """What policies stacked into one (:meth:`Policy.stack`) must share: the class and the
    values of the sequence and mapping fields (kept whole, not an element per migration)."""
    whole = tuple((f.name, v) for f in fields(policy) if isinstance(v := getattr(policy, f.name), _WHOLE))
    return (type(policy), whole)


def _subset(obj, idx):
    changes = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, np.ndarray) and v.ndim >= 1:
            changes[f.name] = v[idx]
    return dataclasses.replace(obj, **changes) if changes else obj


@dataclass(frozen=True)
class Link:
    """Per-page cost of one phase: wire bytes and seconds for non-zero and zero pages."""

    t_nz: object
    t_z: object
    b_nz: object
    b_z: object


@dataclass(frozen=True)
class Policy:
    """Base of all policies.  Parameters common to every policy:

    ``timeout_s``: a migration whose VM does not run on the destination after this long
    is abandoned (``completed = false``, as an operator cancelling it would), so that a
    migration that cannot converge reports its rounds and bytes instead of looping (see
    **Timeout** below).
    ``stop_overhead_ms``: fixed cost of the switchover (pause, last bitmap sync, resume on
    the destination) added to the downtime.
    ``page_header_bytes`` / ``zero_page_bytes``: wire bytes per normal page beyond its
    content, and per zero page (QEMU ``migration/ram.c``: ``save_page_header`` writes an
    8-byte offset|flags word; ``save_zero_page`` sends the header plus one byte), at most
    :data:`MAX_PAGE_HEADER_BYTES`.
    ``dst_populate_mib_s``: how fast the destination takes in, during the switchover, non-zero
    pages it has never received (null: as fast as the link).  QEMU allocates the destination's
    guest RAM lazily (``util/oslib-posix.c: qemu_anon_ram_alloc``: an anonymous
    ``MAP_NORESERVE`` mapping, populated only with ``-mem-prealloc``), so
    ``migration/ram.c: ram_load_precopy`` copying a page that never arrived before
    (``qemu_get_buffer`` into ``host_from_ram_block_offset``) first faults it in; and the
    source's pause ends only when the stream is flushed (``migration.c:
    migration_completion`` → ``qemu_savevm_state_complete_precopy`` → ``qemu_fflush``), which
    TCP flow control ties to the destination's pace.  What is left at the switchover of a
    guest that stops inside its first pass (an idle guest: the tail of the pass) is such
    pages; a hot set's pages arrived in earlier passes.  Such a page goes at the slower of
    the wire and this rate (:func:`lmtoolkit.engine.common.switchover`).
    ``verify_checksums``: hash every non-zero page on both sides and re-send a page whose
    hash differs (see :mod:`lmtoolkit.model.reliability`); costs hashing time per page
    (``Context.hash_bytes_s``), which overlaps the wire: a page goes at the slower of the two,
    and ``1 / q`` expected transmissions of it (:meth:`transmissions_per_page`), re-sent in
    the phase that sent it (:meth:`link`).

    **Timeout** — both engines stop a migration at ``timeout_s`` (measured from the start of
    the migration: a disk copy of ``storage.mode=migrate`` counts, and one not in sync by then
    ends the migration with memory never started, :func:`lmtoolkit.model.storage.disk_precopy`)
    wherever it is: inside a pre-copy pass (the pages whose send ended by then count: time, bytes, and
    the interrupted pass as a round), or inside the stop-and-copy / switchover (the VM is
    resumed on the source; the bytes sent in the pause so far count).  The record then has
    ``completed = converged = false``, ``stop_reason = "timeout"``, ``total_time =
    timeout_s``, and ``downtime`` the guest's pause: from the stop to the timeout where the
    switchover was abandoned (the guest was paused all that while, QEMU
    ``migration_iteration_finish`` resuming it: :func:`lmtoolkit.engine.common.abandoned_pause_s`),
    NaN where the timeout fell before any pause.  This holds for stop-and-copy too (the whole
    copy is the switchover: its downtime is ``timeout_s``).  Post-copy: the timeout can abandon the migration only until the VM
    runs on the destination (pre-copy passes and the pause that sends the device state);
    after the switch the source no longer holds a runnable VM (QEMU
    ``docs/devel/migration/postcopy.rst``: "a failure of *either* side causes the guest to
    be lost"), so the post-copy phase always completes, even past ``timeout_s``.
    """

    timeout_s: float = 600.0
    stop_overhead_ms: float = 0.0
    page_header_bytes: float = 8.0
    zero_page_bytes: float = 9.0
    dst_populate_mib_s: float | None = None
    verify_checksums: bool = False

    name: ClassVar[str] = "base"
    #: False: zero pages are sent whole, like any page (Xen: no zero-page detection).  A
    #: subclass may make it a property (a bool array on a stacked policy: QEMU's
    #: ``zero_page_detection``)
    detects_zero_pages: ClassVar[bool] = True
    #: False: no pre-copy at all (stop-and-copy, post-copy).
    precopy: ClassVar[bool] = True
    #: True: every phase sends the whole bitmap (:meth:`phase_pages` is ``pending``), so the
    #: send order across phases does not matter; False (QEMU-like): phases may stop inside a
    #: pass and the next continues from the cursor (the fluid engine then tracks addresses).
    full_passes: ClassVar[bool] = True
    #: True: after the switch the remaining pages are pulled/pushed while the VM runs.
    postcopy: ClassVar[bool] = False
    #: One-way crossings of the link between the pause's last byte leaving the source and
    #: the guest running on the destination, added to the downtime as ``switchover_trips x
    #: network.latency_ms`` (:func:`lmtoolkit.engine.common.switchover_latency_s`, which
    #: cites the code).  1: the destination resumes on the last byte, no reply awaited (QEMU
    #: pre- and post-copy; the physical minimum, assumed for the VMware- and Hyper-V-like
    #: policies, whose switchover protocol is not public); Xen's ``xl`` handshake makes 3.
    switchover_trips: ClassVar[int] = 1
    #: Hook: when a page's dirty bit is cleared.  ``"send"``: just before the page is sent,
    #: so a write between the sync and the send is carried by that send (an idealised
    #: per-page clear, the default of the generic, VMware-like and Hyper-V-like policies);
    #: ``"sync"``: at the sync, so every write after it is dirty at the next sync (QEMU
    #: under TCG, Xen's stream v2); ``"chunk"``: per chunk of :meth:`clear_chunk_pages`
    #: pages just before the chunk's first send (QEMU/KVM with manual dirty-log protect);
    #: ``"skip"``: at the sync, and pending pages written since are skipped in the pass (Xen
    #: classic's ``to_skip``).  The page engine's module doc states each precisely.  Both
    #: engines read it (``engine/page.py``, ``engine/fluid.py``); :class:`~.qemu.QemuPolicy`
    #: makes it a config field, :class:`~.xen.XenPolicy` derives it from its version.  Scalar
    #: or, on a stacked policy, a string array.  (Deliberately not annotated: a plain class
    #: attribute, so a subclass may turn it into a field or a property.)
    dirty_clear = "send"
    #: ``dirty_clear: skip``: pages sent between two peeks of the dirty log (Xen's
    #: ``MAX_BATCH_SIZE``, ``xg_save_restore.h``: 1024 pages).
    skip_batch_pages: ClassVar[int] = 1024
    #: Stop reasons this policy may return besides ``records.STOP_REASONS``; registered
    #: (given a code) when the class is defined, so plug-in policies can add their own.
    stop_reasons: ClassVar[tuple[str, ...]] = ()
    #: Fields a policy inherits but its rules never read: field -> why.  A value other than
    #: the field's default is refused (it would change nothing: ``policy=xen
    #: policy.downtime_limit_ms=30`` ran as 300, an experiment's downtime axis gave equal rows).
    unused_fields: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, register: bool | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        for reason in cls.__dict__.get("stop_reasons", ()):
            register_stop_reason(reason)
        if register is None:
            register = "name" in cls.__dict__ and cls.__module__.startswith(__package__ + ".")
        if register:
            old = REGISTRY.get(cls.name)
            if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
                raise TypeError(f"policy name {cls.name!r} is taken by {old.__module__}.{old.__qualname__}")
            REGISTRY[cls.name] = cls

    def __post_init__(self):
        _freeze_containers(self)
        check_fields(self)
        refuse_unused(self, self.unused_keys(), f"policy {self.name}")
        check_range("timeout_s", self.timeout_s, 0, None, lo_open=True, finite=True)
        check_range("stop_overhead_ms", self.stop_overhead_ms, 0, None, finite=True)
        for key in ("page_header_bytes", "zero_page_bytes"):
            check_range(key, getattr(self, key), 0, MAX_PAGE_HEADER_BYTES, note=PAGE_HEADER_NOTE)
        if self.dst_populate_mib_s is not None:
            check_range("dst_populate_mib_s", self.dst_populate_mib_s, 0, None, lo_open=True)

    def unused_keys(self) -> dict[str, str]:
        """Fields the rules do not read given the other fields: field -> why, refused away from
        their defaults (:func:`~lmtoolkit.model.checks.refuse_unused`).  :attr:`unused_fields`
        (never read by the class), plus what a subclass adds for a setting that turns a field
        off (Hyper-V's ``smb_*`` off ``transport=smb``)."""
        return dict(self.unused_fields)

    def resolve_profile(self, key: str, profiles: dict[str, dict[str, object]]) -> None:
        """Fill the fields a profile (or version) decides and the config left null.

        ``key`` is the field naming the profile (``profile``, ``version``) and ``profiles``
        maps each allowed value to ``{field: value}``; a field already set (not None) keeps
        its value.  Call it first in ``__post_init__``, before the type and range checks.
        """
        check_choice(key, getattr(self, key), tuple(profiles))
        for field, value in profiles[getattr(self, key)].items():
            if getattr(self, field) is None:
                object.__setattr__(self, field, value)

    def xbzrle_slots(self, ctx) -> int:
        """Hook: entries of an XBZRLE-like page cache (0 = none; the engines run the cache,
        see :class:`~.qemu.QemuPolicy`)."""
        return 0

    def xbzrle_costs(self, st: State, ctx: Context, stop: bool = False):
        """Hook (with :meth:`xbzrle_slots`): (seconds, wire bytes) of a cache hit sent as a
        delta, and seconds of a hit on an unchanged page (which sends nothing)."""
        raise NotImplementedError

    def clear_chunk_pages(self, ctx):
        """Hook (``dirty_clear: chunk``): pages whose dirty log is cleared together (1 = per
        page).  :class:`~.qemu.QemuPolicy` derives it from ``clear_bitmap_shift``."""
        return 1

    # -- concurrency (lmtoolkit.evacuate) --------------------------------------------------
    def concurrent_migrations(self, link_gbit_s: float) -> int | None:
        """Hook: how many migrations a host runs at once over a ``link_gbit_s`` link
        (None = no limit; the default).  VMware and Hyper-V override it with their
        documented limits."""
        return None

    # -- vectorisation ---------------------------------------------------------------------
    @classmethod
    def stack(cls, policies: list[Policy]) -> Policy:
        """One policy whose parameters are arrays over ``policies`` (all of class ``cls``).

        A sequence or mapping field (a tuple or a :class:`FrozenDict`: :meth:`__post_init__`
        makes a list or a dict one) is not an element per migration: it is kept whole, and
        must be the same in every policy (the fluid engine batches policies by these fields,
        :func:`stack_key`)."""
        obj = object.__new__(cls)
        for f in fields(cls):
            vals = [getattr(p, f.name) for p in policies]
            if any(isinstance(v, _WHOLE) for v in vals):
                if any(v != vals[0] for v in vals):
                    raise ValueError(
                        f"{cls.__qualname__}.stack: field {f.name} differs between the policies "
                        f"({vals[0]!r}, …): batch them by stack_key() first"
                    )
                object.__setattr__(obj, f.name, vals[0])
                continue
            if all(isinstance(v, (bool, np.bool_)) for v in vals):
                arr = np.array(vals, dtype=bool)
            elif all(isinstance(v, str) for v in vals):
                arr = np.array(vals)
            else:
                arr = np.array([np.nan if v is None else v for v in vals], dtype=float)
            object.__setattr__(obj, f.name, arr)
        return obj

    def subset(self, idx) -> Policy:
        obj = object.__new__(type(self))
        for f in fields(self):
            v = getattr(self, f.name)
            object.__setattr__(obj, f.name, v[idx] if isinstance(v, np.ndarray) and v.ndim else v)
        return obj

    # -- rules -----------------------------------------------------------------------------
    def streams(self, ctx: Context):
        """TCP streams the policy sends the guest's pages over, each capped at
        :meth:`stream_rate_bytes_s` (a sender thread, a TCP window per round trip).

        The number is the migration software's, not the link's: one here — a single
        migration stream, as ``xl migrate`` sends (one ``send_fd``, the pipe to its ``ssh``
        child, handed to ``libxl_domain_suspend``: ``tools/xl/xl_migrate.c:
        migrate_domain``), as QEMU sends without multifd (``ram.c: ram_save_target_page`` ->
        ``ram_save_page`` on the one migration channel) and, nothing saying otherwise, as the
        stop-and-copy and post-copy baselines do.  Policies that open several override it — QEMU's
        ``multifd_channels``, Hyper-V's ``smb_channels``, vMotion's streams per vmknic — and
        one whose count is the network's ``network.streams`` says so in
        :meth:`network_streams_unused`."""
        return np.ones(np.shape(ctx.base_streams))

    def network_streams_unused(self) -> str | None:
        """Why ``network.streams`` would change nothing for this policy, or None where it is
        one of the policy's inputs (:meth:`streams` reads ``Context.base_streams``).

        ``network.streams`` counts the vMotion-enabled VMkernel adapters (vmknics) of the
        migration network, which vMotion opens one stream each over (Broadcom KB 323379,
        :mod:`.vmware`); no other built-in policy has a stream count the network decides, so
        :class:`~lmtoolkit.scenario.Scenario` refuses a value other than 1 with this answer
        (the rule of :attr:`unused_fields`: ``network.streams=4`` ran a one-stream migration
        4x faster)."""
        return (
            f"policy {self.name} sends memory over one migration stream (a single TCP connection), "
            "whatever the network offers"
        )

    def stream_rate_bytes_s(self, ctx: Context):
        """Payload one stream carries (bytes/s): the network's (``network.stream_gbit_s``, at
        most a TCP window per round trip); policies whose sender thread is slower lower it."""
        return ctx.stream_bytes_s

    def streams_rate_bytes_s(self, ctx: Context):
        """Payload throughput of the policy's streams on the link (bytes/s)."""
        return np.minimum(ctx.line_bytes_s, self.streams(ctx) * self.stream_rate_bytes_s(ctx))

    def rate_bytes_s(self, st: State, ctx: Context):
        """Payload throughput available to pre-copy (bytes/s)."""
        return self.streams_rate_bytes_s(ctx)

    def stop_rate_bytes_s(self, st: State, ctx: Context):
        """Payload throughput during the stop-and-copy (bytes/s)."""
        return self.rate_bytes_s(st, ctx)

    def nonzero_wire_bytes(self, st: State, ctx: Context):
        """Wire bytes for one non-zero page (content + header) in the current round."""
        return ctx.page_bytes + self.page_header_bytes

    def nonzero_cpu_s(self, st: State, ctx: Context):
        """Sender CPU time per non-zero page that does not overlap the wire (s)."""
        return 0.0 * ctx.page_bytes

    def compresses_pages(self):
        """True where the sender's per-page work (:meth:`nonzero_cpu_s`) is compression, whose
        inverse on the receiver (decompression) is faster (``power.decompress_speedup``);
        False where the receiver undoes it at the sender's speed (encryption) or there is
        none.  Read by :mod:`lmtoolkit.model.energy` only; a setting of the policy, not
        inferred from the bytes (an incompressible page is still run through the compressor
        and the decompressor)."""
        return False

    def checksum_cpu_s(self, ctx: Context):
        """Hashing time per non-zero page when ``verify_checksums`` is on (s): the page at the
        hashing rate of the host's spare cores (``Context.hash_bytes_s``).  Sender and
        receiver hash in parallel on their own hosts, so the time is one side's; the
        CPU-seconds are both sides' (:func:`lmtoolkit.model.reliability.checksum_cpu_s`)."""
        with np.errstate(divide="ignore"):  # no spare core: refused where it is used (Scenario)
            per_page = np.asarray(ctx.page_bytes, dtype=float) / np.asarray(ctx.hash_bytes_s, dtype=float)
        return np.where(np.asarray(self.verify_checksums), per_page, 0.0)

    def transmissions_per_page(self, ctx: Context):
        """Expected transmissions of a non-zero page: ``1 / q`` when ``verify_checksums`` is on
        (a page found bad by the destination's checksum is sent again until one arrives
        right, ``q = Context.page_ok_probability`` each time: geometric, see
        :mod:`lmtoolkit.model.reliability`), 1 when nothing checks the pages (a bad page then
        stays, silently: ``corruption_probability``)."""
        return transmissions_per_page(ctx.page_ok_probability, self.verify_checksums)

    def never_sent_pages(self, st: State, ctx: Context):
        """Pages not sent yet: the setup sync marks every page dirty, so the first pass sends
        each once and ``pages - sent_pages`` (while positive) are the ones it has not reached."""
        return np.maximum(np.asarray(ctx.pages, dtype=float) - st.sent_pages, 0.0)

    def pending_page_s(self, st: State, ctx: Context, lk: Link):
        """Mean seconds per pending page: the pages the first pass has not reached hold the
        VM's zero pages (``zero_fraction`` of them; a written page is no longer zero), which
        cost ``t_z`` instead of ``t_nz``."""
        pending = np.maximum(st.pending, 1e-300)
        never = np.minimum(self.never_sent_pages(st, ctx), st.pending)
        share_z = np.clip(np.asarray(ctx.zero_fraction, dtype=float) * never / pending, 0.0, 1.0)
        return lk.t_nz - share_z * (lk.t_nz - lk.t_z)

    def link(self, st: State, ctx: Context, stop: bool = False) -> Link:
        """Per-page costs of a phase (``stop``: of the pause).  A non-zero page goes at the
        slower of the wire and its CPU work (compression/encryption, checksum hashing), and
        with ``verify_checksums`` it costs :meth:`transmissions_per_page` times that — wire
        bytes and time: the pages the destination's checksum finds bad are re-sent where
        they were found, in this pass or in this pause, so the engines' timeout, downtime,
        round bytes and the policy's measured bandwidth include them (both engines read
        these costs; :mod:`lmtoolkit.model.reliability` states the model and its source).
        Zero pages are not hashed (a marker, not the page) and go once."""
        rate = self.stop_rate_bytes_s(st, ctx) if stop else self.rate_bytes_s(st, ctx)
        return self._link_at(st, ctx, rate, self.detects_zero_pages)

    def _link_at(self, st: State, ctx: Context, rate, zero_pages) -> Link:
        """:meth:`link`'s costs at ``rate`` (bytes/s); where ``zero_pages`` (bool or bool
        array) is false a zero page is sent whole, as a non-zero one."""
        b_nz = self.nonzero_wire_bytes(st, ctx)
        cpu = self.nonzero_cpu_s(st, ctx) + self.checksum_cpu_s(ctx)
        sends = self.transmissions_per_page(ctx)
        t_nz = sends * np.maximum(b_nz / rate, cpu)
        b_nz = sends * b_nz
        zero = np.asarray(zero_pages, dtype=bool)
        if not zero.any():
            return Link(t_nz, t_nz, b_nz, b_nz)
        b_z = self.zero_wire_bytes(st, ctx)
        t_z = np.maximum(b_z / rate, ctx.page_bytes / self.zero_scan_bytes_s(ctx))
        if zero.all():
            return Link(t_nz, t_z, b_nz, b_z)
        # a stacked policy, some of whose migrations send them whole
        return Link(t_nz, np.where(zero, t_z, t_nz), b_nz, np.where(zero, b_z, b_nz))

    def zero_wire_bytes(self, st: State, ctx: Context):
        """Wire bytes for one zero page found by the scan: ``zero_page_bytes`` (QEMU
        ``save_zero_page``: the 8-byte header plus one byte)."""
        return self.zero_page_bytes + 0.0 * ctx.page_bytes

    def zero_scan_bytes_s(self, ctx: Context):
        """How fast the sender tests pages for zero content (bytes/s): one thread's rate,
        ``host.zero_scan_gib_s`` (``Context.zero_scan_bytes_s``).  The CPU-seconds of the scan
        do not depend on how many threads share it (:mod:`lmtoolkit.model.energy`)."""
        return ctx.zero_scan_bytes_s

    def initial_bandwidth(self, st: State, ctx: Context):
        """Bandwidth estimate before anything was measured: the nominal wire rate (bytes/s)."""
        lk = self.link(st, ctx)
        return lk.b_nz / lk.t_nz

    def init_state(self, st: State, ctx: Context) -> None:
        st.bw_est = st.bw_est + self.initial_bandwidth(st, ctx)

    def converged(self, st: State, ctx: Context):
        """Boolean: the policy's convergence test holds now (after a sync)."""
        raise NotImplementedError

    def convergence_margin_pages(self, st: State, ctx: Context):
        """Pages of the bitmap above what the convergence test allows (> 0: not converged), or
        NaN when the test is not a threshold on the bitmap's size.  The fluid engine uses it
        to tell when the page count's fluctuations would cross the threshold."""
        return np.full(np.shape(st.t), np.nan)

    def forced(self, st: State, ctx: Context):
        """Reason code (0 = none) for a switchover forced by a cap, before convergence."""
        return np.zeros_like(st.t, dtype=int)

    def decide(self, st: State, ctx: Context):
        """After a sync: ``CONTINUE`` (0) or the stop reason code."""
        # Nothing left to send is convergence for every policy.
        done = np.asarray(self.converged(st, ctx)) | bitmap_empty(st.pending)
        code = np.where(done, REASON_CODE["converged"], CONTINUE)
        code = np.where(code == CONTINUE, self.forced(st, ctx), code)
        timeout = (code == CONTINUE) & (st.t >= self.timeout_s)
        return np.where(timeout, REASON_CODE["timeout"], code).astype(int)

    def phase_pages(self, st: State, ctx: Context):
        """Pages to send before the next sync (default: the whole bitmap — a full pass)."""
        return st.pending

    @staticmethod
    def scan_profile(st: State):
        """The engine's scan profile, or None: where the pending pages' costs vary along the
        send order (``vm.zero_layout`` other than ``spread``) the engine puts in ``st.extra``
        the cumulative pages ``scan_cp`` and seconds ``scan_ct`` along the send order from the
        cursor (``(M,)`` or ``(S, M)``) and the rows it holds for, ``scan_on`` — also once no
        zero page is pending (the first pass's unsent pages are then the data tail, not
        ``zero_fraction`` zero pages); elsewhere a mean cost per page (:meth:`pending_page_s`)
        is exact."""
        on = st.extra.get("scan_on")
        if on is None or not np.any(on):
            return None
        return st.extra["scan_cp"], st.extra["scan_ct"], on

    def pages_in_checks(self, st: State, checks, period, per_check):
        """Pending pages sent from the cursor in ``checks`` check periods of ``period`` s:
        ``per_check`` a period at the pending pages' mean cost, or along the engine's scan
        profile (:meth:`scan_profile`) on the rows it holds for."""
        k = checks * per_check
        prof = self.scan_profile(st)
        if prof is not None:
            cp, ct, on = prof
            with np.errstate(invalid="ignore"):
                k = np.where(on, self.along_profile(checks * period, ct, cp), k)
        return k

    @staticmethod
    def drop_scan_profile(st: State) -> None:
        """Forget the engine's scan profile (it holds for one phase's start only)."""
        for key in ("scan_on", "scan_cp", "scan_ct"):
            st.extra.pop(key, None)

    @staticmethod
    def along_profile(x, xp, fp):
        """``fp`` at ``x`` by linear interpolation along the nondecreasing ``xp`` (per row)."""
        if np.ndim(xp) == 1:
            return np.interp(x, xp, fp)
        x = np.asarray(x, dtype=float)
        M = xp.shape[1]
        i = np.clip((xp <= x[:, None]).sum(1) - 1, 0, M - 2)
        r = np.arange(xp.shape[0])
        x0, x1, f0, f1 = xp[r, i], xp[r, i + 1], fp[r, i], fp[r, i + 1]
        u = np.clip((x - x0) / np.maximum(x1 - x0, 1e-300), 0.0, 1.0)
        return f0 + u * (f1 - f0)

    def after_sync(self, st: State, ctx: Context) -> None:
        """Update state after a phase and its sync (default: measured bandwidth)."""
        st.bw_est = np.where(st.phase_time > 0, st.phase_bytes / np.maximum(st.phase_time, 1e-12), st.bw_est)

    # -- steady state (fluid engine fast-forward) ------------------------------------------
    def stationary(self, st: State):
        """True where the rules' next decisions depend only on the bitmap, bandwidth, time and
        round count — so a migration whose expected state repeats exactly keeps repeating it
        until :meth:`steady_horizon` rounds have passed.  Conservative default: never."""
        return np.zeros(np.shape(st.t), dtype=bool)

    def steady_horizon(self, st: State, ctx: Context, phase_s, phase_bytes):
        """Rounds that can be skipped at a fixed point before a rule may change its answer."""
        return np.ceil(np.maximum(self.timeout_s - st.t, 0.0) / np.maximum(phase_s, 1e-12))

    # -- post-copy (see policies/postcopy.py) ----------------------------------------------
    def postcopy_rate_bytes_s(self, st: State, ctx: Context):
        """Payload throughput from the post-copy switch on: its pause (discard ranges, device
        state), its push and its demand faults (bytes/s).  Default: the pause's rate."""
        return self.stop_rate_bytes_s(st, ctx)

    def postcopy_zero_pages(self):
        """Post-copy sends a zero page as a marker (True) or whole (False).  Bool or bool array."""
        return self.detects_zero_pages

    def postcopy_link(self, st: State, ctx: Context) -> Link:
        """Per-page costs after the post-copy switch: :meth:`link`'s at
        :meth:`postcopy_rate_bytes_s`, zero pages as :meth:`postcopy_zero_pages` says."""
        return self._link_at(st, ctx, self.postcopy_rate_bytes_s(st, ctx), self.postcopy_zero_pages())

    def discard_bytes(self, runs):
        """Post-copy: bytes the switch's pause sends to tell the destination which pages to drop,
        for ``runs`` runs of pages still dirty in address order (scalar or array).  Default: none."""
        return 0.0 * np.asarray(runs, dtype=float)

    def goes_postcopy(self, code):
        """After pre-copy stopped with reason ``code``: finish by post-copy (True) or by
        stop-and-copy (False).  A post-copy-capable policy whose pre-copy converged (the rest
        fits the downtime goal) completes as plain pre-copy, as QEMU does when the remaining
        size falls below the threshold before ``migrate-start-postcopy``."""
        return np.asarray(self.postcopy) & (np.asarray(code) != REASON_CODE["converged"])

    def prepaging_enabled(self):
        """Post-copy: push the hottest pages first (pre-paging).  Bool or bool array."""
        return False

    def fault_access_factor(self):
        """Post-copy: guest page accesses per page write (a read of a missing page faults too)."""
        return 1.0

    def fault_overhead_s(self):
        """Post-copy: fault handling time beyond the round trip and the page transfer (s)."""
        return 0.0

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or cls.name).strip().splitlines()[0]
