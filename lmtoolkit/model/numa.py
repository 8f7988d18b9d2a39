"""NUMA topology and what a migration does to memory locality.

Model (tags as in the policies: **published**, **secondary**, **ours**):

* A host has ``src_numa_nodes`` (destination: ``dst_numa_nodes``) nodes with
  ``numa_node_gib`` (``dst_numa_node_gib``) of memory each.
* At power-on the VM gets a virtual NUMA (vNUMA) topology of ``v = ceil(memory /
  node size)`` nodes on the source — one node when it fits in one — and its guest OS places
  memory and threads by it.  vNUMA is sized when the VM powers on and a vMotion does not
  change it (the premise of issue 7; vSphere's resource-management guide describes vNUMA as
  set at power-on — not re-read for this code, treat as **secondary**).  A VM larger than
  one node needs NUMA spanning (Hyper-V ``Set-VMHost -NumaSpanningEnabled``, published; the
  default is commonly on — **secondary**); without it the VM does not start.
* On the destination each vNUMA node of ``s = memory / v`` GiB is placed on one physical
  node with its vCPUs; what does not fit (``s > dst node size``) lands on another node and
  every access to it is remote.  With accesses spread evenly over a vNUMA node's memory the
  **remote share** is ``1 - min(1, dst node size / s)`` (**ours**).  Fewer destination
  nodes than vNUMA nodes keep memory local (several vNUMA nodes share one physical node)
  but the layout no longer matches: ``numa_compatible`` is false.
* ``numa_penalty``: slowdown of memory-bound guest work after the migration,
  ``remote share x (remote/local latency ratio - 1)`` (time per access grows by that factor;
  a fully memory-bound guest slows down by it — an upper bound).
  ``numa_remote_latency_ratio`` default 1.6: a two-socket Xeon loads a line from local DRAM in
  about 190 cycles and from the other socket's in about 310, 1.63x (Frank Denneman, "NUMA Deep
  Dive Part 4: Local Memory Optimization", frankdenneman.nl, 2016 — **secondary**; ~80 vs
  ~130 ns is the same ratio); the firmware's ACPI SLIT distances
  that ``numactl --hardware`` prints are typically 10 (local) vs 20–21 (remote), i.e. 2.0–2.1
  (**published** convention, a relative distance rather than a measured latency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError, check_range


@dataclass(frozen=True)
class NumaEffect:
    vnuma_nodes: int  # vNUMA nodes the VM got at power-on (source)
    compatible: bool  # the vNUMA layout maps one-to-one onto destination nodes
    remote_share: float  # share of memory accesses that are remote after migration
    penalty: float  # fractional slowdown of memory-bound work after migration


def check_host_numa(host) -> None:
    """Field checks for the NUMA keys of :class:`~lmtoolkit.model.host.Host`."""
    check_range("src_numa_nodes", host.src_numa_nodes, 1, 1024)
    if host.dst_numa_nodes is not None:
        check_range("dst_numa_nodes", host.dst_numa_nodes, 1, 1024)
    check_range("numa_node_gib", host.numa_node_gib, 0, None, lo_open=True, finite=True)
    if host.dst_numa_node_gib is not None:
        check_range("dst_numa_node_gib", host.dst_numa_node_gib, 0, None, lo_open=True, finite=True)
    check_range("numa_remote_latency_ratio", host.numa_remote_latency_ratio, 1, 100)


def numa_effect(memory_gib: float, host) -> NumaEffect:
    """NUMA outcome of migrating a VM of ``memory_gib`` between the hosts ``host`` describes.

    Raises :class:`ConfigError` for impossible topologies: a VM larger than a host's memory,
    or larger than one node when ``numa_spanning`` is false.
    """
    src_total = host.src_numa_nodes * host.numa_node_gib
    dst_total = host.dst_nodes * host.dst_node_gib
    for key, total in (("host.src_numa_nodes", src_total), ("host.dst_numa_nodes", dst_total)):
        if memory_gib > total + 1e-9:
            raise ConfigError(
                "vm.memory_gib", memory_gib, f"at most the host's memory ({key} x node size = {total:g} GiB)"
            )
    if not host.numa_spanning:
        for key, size in (
            ("host.numa_node_gib", host.numa_node_gib),
            ("host.dst_numa_node_gib", host.dst_node_gib),
        ):
            if memory_gib > size + 1e-9:
                raise ConfigError(
                    "vm.memory_gib",
                    memory_gib,
                    f"at most one NUMA node ({key} = {size:g} GiB) when host.numa_spanning is false",
                )
    v = max(1, min(host.src_numa_nodes, math.ceil(memory_gib / host.numa_node_gib - 1e-9)))
    s = memory_gib / v
    remote = 1.0 - min(1.0, host.dst_node_gib / s)
    compatible = host.dst_nodes >= v and s <= host.dst_node_gib + 1e-9
    return NumaEffect(
        v, bool(compatible), float(remote), float(remote * (host.numa_remote_latency_ratio - 1.0))
    )
