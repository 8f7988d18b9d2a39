"""Plain models of what is migrated and over what: VM memory, workload, network, host.

Nothing here knows about Hydra, xarray or plotting.  Units are in field names.
"""

from .host import Host
from .network import Network
from .vm import VM
from .workload import (
    HotColdWorkload,
    IdleWorkload,
    PhasedWorkload,
    Region,
    TraceWorkload,
    UniformWorkload,
    Workload,
    ZipfWorkload,
)

__all__ = [
    "VM",
    "Network",
    "Host",
    "Workload",
    "Region",
    "IdleWorkload",
    "UniformWorkload",
    "HotColdWorkload",
    "ZipfWorkload",
    "PhasedWorkload",
    "TraceWorkload",
]
