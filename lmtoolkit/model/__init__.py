"""Plain models of what is migrated and over what: VM memory, workload, network, host.

Nothing here knows about Hydra, xarray or plotting.  Units are in field names.
"""
from .vm import VM
from .network import Network
from .host import Host
from .workload import (Workload, Region, IdleWorkload, UniformWorkload, HotColdWorkload,
                       ZipfWorkload, PhasedWorkload, TraceWorkload)

__all__ = ["VM", "Network", "Host", "Workload", "Region", "IdleWorkload", "UniformWorkload",
           "HotColdWorkload", "ZipfWorkload", "PhasedWorkload", "TraceWorkload"]
