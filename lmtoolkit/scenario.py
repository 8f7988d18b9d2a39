"""A scenario: everything one migration needs, as plain objects (no Hydra here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError, check_choice
from .model import VM, Host, Network, Workload
from .model.checks import refuse_unused
from .model.numa import numa_effect
from .model.reliability import check_verifiable, page_ok_probability
from .model.storage import Storage
from .model.vm import MIB
from .policies.base import GIB, Context, Policy, State

ENGINES = ("page", "fluid")


@dataclass(frozen=True)
class Scenario:
    vm: VM = field(default_factory=VM)
    workload: Workload = None
    network: Network = field(default_factory=Network)
    host: Host = field(default_factory=Host)
    policy: Policy = None
    engine: str = "page"
    seed: int = 0
    storage: Storage = field(default_factory=Storage)

    def __post_init__(self):
        check_choice("engine", self.engine, ENGINES)
        if self.workload is None or self.policy is None:
            raise ConfigError("workload/policy", None, "a workload and a policy are required")
        try:
            self.workload.check_fits(self.vm.memory_gib * 1024)
            self.workload.check_page_size(int(self.vm.page_size_kib))
        except ConfigError as e:
            raise e.with_prefix("workload") from None
        numa_effect(self.vm.memory_gib, self.host)  # raises for impossible topologies
        why = self.policy.network_streams_unused()
        if why is not None:
            # the policy opens its own streams: network.streams would change nothing (it had
            # multiplied a one-stream migration's window and sender caps)
            try:
                refuse_unused(self.network, {"streams": why}, f"policy {self.policy.name}")
            except ConfigError as e:
                raise e.with_prefix("network") from None
        self.storage.check_link(self.disk_rate_bytes_s, self.network)
        check_verifiable(self.host, self.vm.page_bytes, bool(self.policy.verify_checksums))
        self.check_spare_cores()

    @property
    def disk_rate_bytes_s(self) -> float:
        """The rate the disk copy of ``storage.mode=migrate`` gets (bytes/s), in one place:
        the bulk copy and its passes run at it (:func:`~.model.storage.disk_precopy`, both
        engines through :mod:`.engine.beyond`) and the guest's writes must stay below it
        (:meth:`~.model.storage.Storage.check_link`).  See
        :meth:`~.model.storage.Storage.copy_rate_bytes_s`."""
        return self.storage.copy_rate_bytes_s(self.network)

    def check_spare_cores(self) -> None:
        """One rule for the helper work (compression, encryption, page checksums): it runs on
        ``host.spare_cores`` cores at their per-core speeds (:meth:`context`), fractions of a
        core included — so with ``host.spare_cores=0`` a policy that has such work (a
        non-zero CPU time per page at one core's speed: the policy's ``nonzero_cpu_s`` hook
        plus ``checksum_cpu_s``) could never send a page, and is refused.  (Compression ran
        at 1e-9 B/s and timed out with nothing sent while encryption and hashing were given
        a core they did not have.)  A policy without helper work needs no spare core: the
        migration thread's own work (stack, zero scan) is not taken from them.

        Source (the rule is **ours**): the Hyper-V-like compressor runs on idle host CPU ("CPU
        load aware so it will only use idle cycles", cited in :mod:`.policies.hyperv`), and
        the energy model's reading of the field — the spare cores set how long the helper
        work takes, not what it costs (:mod:`.model.energy`, README *Migration energy*)."""
        if self.host.spare_cores > 0:
            return
        ctx = self.context(one_core=True)
        own = float(self.policy.nonzero_cpu_s(State(()), ctx))
        hashing = float(self.policy.checksum_cpu_s(ctx))
        work = [
            f"{what} ({cpu * 1e6:.3g} CPU-us per page)"
            for what, cpu in (("sender work (compression or encryption)", own), ("page checksums", hashing))
            if cpu > 0
        ]
        if work:
            raise ConfigError(
                "host.spare_cores",
                self.host.spare_cores,
                "",
                message=(
                    f"host.spare_cores={self.host.spare_cores:g} is not allowed with policy "
                    f"{self.policy.name} and its {' and '.join(work)}: that work runs on the spare cores, so "
                    "with none no page could ever be sent; give it spare cores (> 0, fractions allowed) "
                    "or turn the work off"
                ),
            )

    def context(self, one_core: bool = False) -> Context:
        """What the policy reads.  The helper threads' throughputs (compression, encryption,
        checksums) are those of the ``host.spare_cores`` cores they run on — the same rule
        for all three (:meth:`check_spare_cores`); ``one_core``: those of one core, so that a
        hook's time per page is its CPU-seconds of work (:mod:`.model.energy`) — the same
        work however many cores share it."""
        vm, net, host = self.vm, self.network, self.host
        cores = 1.0 if one_core else host.spare_cores
        rate = getattr(self.workload, "dirty_rate_pages_s_mean", self.workload.dirty_rate_pages_s)
        return Context(
            pages=vm.pages,
            page_bytes=vm.page_bytes,
            memory_bytes=vm.memory_bytes,
            # Mirrored disk writes (storage.mode=migrate) share the link with memory while the
            # guest runs (Context.paused: none in the pause nor after the switchover); they go
            # on the disk copy's own connection, whose rate they stay below
            # (Storage.check_link), so the whole write rate is taken off the line.
            line_bytes_s=net.payload_bytes_s(streams=10**9) - self.storage.mirror_bytes_s,
            stream_bytes_s=net.stream_payload_bytes_s,
            base_streams=net.streams,
            rtt_s=net.rtt_s,
            zero_scan_bytes_s=host.zero_scan_gib_s * GIB,
            compress_bytes_s=cores * host.compress_mib_s_per_core * MIB,
            encrypt_bytes_s=cores * host.encrypt_gib_s_per_core * GIB,
            compressibility=vm.compressibility,
            device_state_bytes=vm.device_state_bytes,
            dirty_rate_pages_s=rate,
            link_efficiency=net.efficiency,
            hash_bytes_s=cores * host.hash_gib_s_per_core * GIB,
            page_ok_probability=float(page_ok_probability(host.bit_error_rate, vm.page_bytes, host.ecc)),
            zero_fraction=vm.zero_fraction,
            mirror_bytes_s=self.storage.mirror_bytes_s,
            host_ratio=vm.pages_per_host_page,
        )
