"""A scenario: everything one migration needs, as plain objects (no Hydra here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError, check_choice
from .model import VM, Host, Network, Workload
from .model.checks import refuse_unused
from .model.numa import numa_effect
from .model.storage import Storage
from .model.vm import MIB
from .policies.base import GIB, Context, Policy

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
        self.storage.check_link(self.network.payload_bytes_s(streams=10**9))

    def context(self, one_core: bool = False) -> Context:
        """What the policy reads.  The helper threads' throughputs (compression, encryption,
        checksums) are those of the cores they run on; ``one_core``: those of one core, so
        that a hook's time per page is its CPU-seconds of work (:mod:`.model.energy`) —
        the same work however many cores share it."""
        vm, net, host = self.vm, self.network, self.host
        cores = 1.0 if one_core else host.spare_cores
        at_least_one = 1.0 if one_core else max(host.spare_cores, 1.0)
        rate = getattr(self.workload, "dirty_rate_pages_s_mean", self.workload.dirty_rate_pages_s)
        return Context(
            pages=vm.pages,
            page_bytes=vm.page_bytes,
            memory_bytes=vm.memory_bytes,
            # Mirrored disk writes (storage.mode=migrate) share the link with memory while the
            # guest runs (Context.paused: none in the pause nor after the switchover).
            line_bytes_s=net.payload_bytes_s(streams=10**9) - self.storage.mirror_bytes_s,
            stream_bytes_s=net.stream_payload_bytes_s,
            base_streams=net.streams,
            rtt_s=net.rtt_s,
            zero_scan_bytes_s=host.zero_scan_gib_s * GIB,
            compress_bytes_s=cores * host.compress_mib_s_per_core * MIB,
            encrypt_bytes_s=at_least_one * host.encrypt_gib_s_per_core * GIB,
            compressibility=vm.compressibility,
            device_state_bytes=vm.device_state_bytes,
            dirty_rate_pages_s=rate,
            link_efficiency=net.efficiency,
            hash_bytes_s=at_least_one * host.hash_gib_s_per_core * GIB,
            zero_fraction=vm.zero_fraction,
            mirror_bytes_s=self.storage.mirror_bytes_s,
            host_ratio=vm.pages_per_host_page,
        )
