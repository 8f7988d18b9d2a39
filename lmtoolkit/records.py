"""The result schema as plain dataclasses: one record per migration, one per round.

Both engines produce these; :mod:`lmtoolkit.dataset` turns them into an ``xarray.Dataset``.
A *round* is one copy pass between two dirty-bitmap syncs; the last round of a completed
migration is the stop-and-copy during the downtime (``kind == "stop"``), and a post-copy
migration ends with a ``"postcopy"`` round (pages pulled after the switch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

#: Why a migration stopped pre-copying. Index = code used by the vectorised engines.
#: Policies add their own with a ``stop_reasons`` class attribute (see
#: :func:`register_stop_reason`); the list grows in place, codes never change.
STOP_REASONS = [
    "running",  # 0: not decided yet (never in a finished record)
    "converged",  # 1: the policy's convergence test held (remaining data fits the downtime goal)
    "max_rounds",  # 2: round/pass/iteration cap reached (Xen max_iters, Hyper-V max passes)
    "max_sent",  # 3: Xen: more than max_factor x memory sent
    "timeout",  # 4: policy.timeout_s elapsed without convergence: migration abandoned
    "no_precopy",  # 5: stop-and-copy / post-copy: no pre-copy at all
    "precopy_done",  # 6: hybrid: the planned pre-copy passes are done, switch to post-copy
    "no_progress",  # 7: VMware: a pass made no progress and SDPS is off: forced switchover
]
REASON_CODE = {name: i for i, name in enumerate(STOP_REASONS)}


def register_stop_reason(name: str) -> int:
    """The code of stop reason ``name``, adding it to :data:`STOP_REASONS` if it is new.

    Called for each entry of a policy class's ``stop_reasons`` when the class is defined
    (:meth:`lmtoolkit.policies.base.Policy.__init_subclass__`).  Records and datasets carry
    the name, so codes only need to be stable within one process.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a stop reason is an identifier-like string, not {name!r}")
    if name not in REASON_CODE:
        REASON_CODE[name] = len(STOP_REASONS)
        STOP_REASONS.append(name)
    return REASON_CODE[name]


#: Per-round variables: name -> (units, long name)
ROUND_FIELDS = {
    "round_start": ("s", "start time of the round"),
    "round_duration": ("s", "duration of the round"),
    "round_pages": ("1", "pages sent in the round"),
    "round_bytes": ("bytes", "bytes sent in the round"),
    "round_dirty_pages": ("1", "dirty pages at the sync that opened the round"),
    "round_bandwidth": ("bytes s-1", "bandwidth estimate the policy used in the round"),
    "round_throttle": ("1", "share of guest CPU time removed by throttling during the round"),
}
#: Round kinds: 0 pre-copy pass, 1 stop-and-copy (downtime), 2 post-copy pull/push.
ROUND_KINDS = ("precopy", "stop", "postcopy")


@dataclass
class RoundRecord:
    index: int
    kind: str
    start_s: float
    duration_s: float
    pages: float
    bytes: float
    dirty_pages: float
    bandwidth_bytes_s: float
    throttle: float


@dataclass
class MigrationRecord:
    """What one migration did.  Times in seconds, sizes in bytes."""

    policy: str
    engine: str
    total_time_s: float
    downtime_s: float
    transferred_bytes: float
    rounds: int  # pre-copy passes (syncs), excluding stop-and-copy
    converged: bool  # the convergence test held (not forced by a cap)
    completed: bool  # the VM runs on the destination
    stop_reason: str
    memory_bytes: float
    throttle_max: float = 0.0  # highest guest throttle applied (0..1)
    guest_slowdown: float = 0.0  # mean share of guest progress lost during migration (0..1)
    postcopy_faults: float = 0.0  # demand faults after the switch (post-copy)
    postcopy_time_s: float = 0.0  # duration of the post-copy phase
    precopy_bytes: float = 0.0
    stop_bytes: float = 0.0
    # Beyond one link (issue 7; lmtoolkit.engine.beyond): NUMA, copy errors, storage.
    numa_compatible: bool = True  # the VM's vNUMA layout maps onto the destination's nodes
    numa_penalty: float = 0.0  # slowdown of memory-bound work after migration (fraction)
    corruption_probability: float = 0.0  # P(at least one page arrives silently corrupted)
    retransmitted_bytes: float = 0.0  # pages re-sent after a checksum mismatch (in transferred_bytes)
    checksum_cpu_time_s: float = 0.0  # hashing CPU-seconds of the verified pages, both hosts
    storage_time_s: float = 0.0  # disk pre-copy before memory (storage.mode=migrate)
    storage_bytes: float = 0.0  # disk bytes: pre-copy passes + mirrored writes
    round_detail: list[RoundRecord] = field(default_factory=list)

    def scalars(self) -> dict:
        d = asdict(self)
        d.pop("round_detail")
        return d


SCALAR_FIELDS = [f.name for f in fields(MigrationRecord) if f.name != "round_detail"]
