"""A host evacuation as data: the source host, the destinations, the VMs, order and limits.

Every VM of ``source`` migrates to one of ``destinations`` (links ``link_gbit_s``, full
duplex; payload share ``network.efficiency`` minus ``network.background_gbit_s``; free
memory ``free_gib``).  Placement: in migration order (``order``), each VM goes to the
destination with the most free memory that holds it (worst fit: **ours**, a rule that spreads
the VMs and their links' load — vCenter's and SCVMM's placement is not public); VMs that
need more memory than the destinations have free in all, or a VM no destination can hold
when its turn comes, is a :class:`~lmtoolkit.errors.ConfigError` saying which.  The
simulation (several migrations sharing links) is
:func:`lmtoolkit.tasks.evacuation.simulate_evacuation`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from ..errors import ConfigError, PolicyRuleError, check_choice, check_range, policy_label
from .checks import check_number

ORDERS = ("largest_first", "smallest_first", "hottest_first", "coldest_first", "given")


@dataclass(frozen=True)
class HostLink:
    name: str
    link_gbit_s: float
    free_gib: float = float("inf")
    key: str = "host"

    def __post_init__(self):
        check_number(f"{self.key}.link_gbit_s", self.link_gbit_s)
        check_number(f"{self.key}.free_gib", self.free_gib)
        check_range(f"{self.key}.link_gbit_s", self.link_gbit_s, 0, None, lo_open=True, finite=True)
        check_range(f"{self.key}.free_gib", self.free_gib, 0, None)


def check_links_above(hosts, background_gbit_s: float) -> None:
    """Every host link carries more than the background traffic (``network.background_gbit_s``)."""
    for h in hosts:
        if h.link_gbit_s <= background_gbit_s:
            raise ConfigError(
                f"{h.key}.link_gbit_s",
                h.link_gbit_s,
                f"above network.background_gbit_s ({background_gbit_s:g})",
            )


@dataclass(frozen=True)
class VmSpec:
    name: str
    scenario: object
    key: str = "vm"


@dataclass(frozen=True)
class Evacuation:
    source: HostLink
    destinations: tuple
    vms: tuple
    order: str = "largest_first"
    concurrency: int | None = None
    setup_s: float = 0.0
    policy: object = None
    network: object = None

    def __post_init__(self):
        check_choice("evacuation.order", self.order, ORDERS)
        if self.concurrency is not None:
            check_number("evacuation.concurrency", self.concurrency, integer=True)
            check_range("evacuation.concurrency", self.concurrency, 1, 10**6)
        check_number("evacuation.setup_s", self.setup_s)
        check_range("evacuation.setup_s", self.setup_s, 0, None, finite=True)
        if not self.destinations:
            raise ConfigError("evacuation.destinations", [], "at least one destination host")
        if not self.vms:
            raise ConfigError("evacuation.vms", [], "at least one VM")
        names = [self.source.name] + [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ConfigError(
                "evacuation.destinations", names, "distinct host names, none equal to the source"
            )
        check_links_above([self.source, *self.destinations], self.network.background_gbit_s)

    # -- plan --------------------------------------------------------------------------------
    def ordered(self) -> list[VmSpec]:
        vms = list(self.vms)
        mem = lambda v: v.scenario.vm.memory_gib  # noqa: E731
        rate = lambda v: v.scenario.workload.dirty_rate_pages_s  # noqa: E731
        key = {
            "largest_first": lambda v: -mem(v),
            "smallest_first": mem,
            "hottest_first": lambda v: -rate(v),
            "coldest_first": rate,
        }.get(self.order)
        return vms if key is None else sorted(vms, key=key)  # stable: ties keep the given order

    def placement(self) -> list[tuple[VmSpec, HostLink]]:
        """Each VM, in migration order, on the destination with the most free memory left
        (worst fit).  VMs that need more memory than the destinations have free in all are one
        error saying so; a VM that finds no room although the total fits is an error naming it."""
        need_all = sum(v.scenario.vm.memory_gib for v in self.vms)
        free_all = sum(d.free_gib for d in self.destinations)
        if need_all > free_all + 1e-9:
            each = ", ".join(f"{d.name} {d.free_gib:g}" for d in self.destinations)
            raise ConfigError(
                "evacuation.destinations",
                free_all,
                "",
                message=f"the evacuation's {len(self.vms)} VMs need {need_all:g} GiB and its destinations have "
                f"{free_all:g} GiB free in all (evacuation.destinations[i].free_gib: {each}): raise the "
                "destinations' free_gib, add destinations, or evacuate fewer or smaller VMs (evacuation.vms)",
            )
        free = {d.name: d.free_gib for d in self.destinations}
        out = []
        for n, v in enumerate(self.ordered()):
            need = v.scenario.vm.memory_gib
            d = max(self.destinations, key=lambda h: free[h.name])
            if free[d.name] + 1e-9 < need:
                big = max(self.destinations, key=lambda h: h.free_gib)
                if big.free_gib + 1e-9 < need:
                    raise ConfigError(
                        f"{v.key}.memory_gib",
                        need,
                        "",
                        message=f"{v.key}.memory_gib={need:g} (VM {v.name}) is more than any destination has "
                        f"free (the most: {big.free_gib:g} GiB on {big.name}, evacuation.destinations[i].free_gib)",
                    )
                raise ConfigError(
                    f"{v.key}.memory_gib",
                    need,
                    "",
                    message=f"{v.key}.memory_gib={need:g} (VM {v.name}) fits on no destination when its turn "
                    f"comes: the destinations have {free_all:g} GiB free in all for {need_all:g} GiB of VMs, but "
                    f"placed in order {self.order} (each VM on the destination with the most free memory left) "
                    f"the {n} VMs before it leave at most {free[d.name]:g} GiB (on {d.name}); change "
                    "evacuation.order, the destinations' free_gib or the VM's memory_gib",
                )
            free[d.name] -= need
            out.append((v, d))
        return out

    def limit(self) -> int | None:
        """Migrations at once per host: ``concurrency``, else the policy's limit for the
        source link (:meth:`~lmtoolkit.policies.base.Policy.concurrent_migrations`)."""
        if self.concurrency is not None:
            return int(self.concurrency)
        n = self.policy.concurrent_migrations(self.source.link_gbit_s)
        if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
            raise PolicyRuleError(  # a plug-in's 0 was a RuntimeError traceback
                "policy",
                n,
                "",
                message=(
                    f"{policy_label(self.policy)}: rule concurrent_migrations gave {n!r} "
                    f"for a {self.source.link_gbit_s:g} Gbit/s link; allowed: None (no limit) or a whole "
                    f"number >= 1"
                ),
            )
        return None if n is None else int(n)

    def link_bytes_s(self, h: HostLink) -> float:
        net = self.network
        return (h.link_gbit_s - net.background_gbit_s) * 1e9 * net.efficiency / 8.0
