"""Migration policies: one module per policy, each citing its sources.

``POLICIES`` maps the config name (``policy=NAME``) to the class.  A policy from outside the
package is used with ``policy._target_=my.module.MyPolicy`` (see ``examples/``).
"""
from .base import Policy
from .hybrid import HybridPolicy
from .hyperv import HypervPolicy
from .postcopy import PostcopyPhase, PostcopyPolicy
from .precopy import IterativePrecopy, PrecopyPolicy
from .qemu import QemuPolicy
from .stopcopy import StopCopyPolicy
from .vmware import VmwarePolicy
from .xen import XenPolicy

POLICIES = {cls.name: cls for cls in (PrecopyPolicy, QemuPolicy, XenPolicy, VmwarePolicy,
                                      HypervPolicy, PostcopyPolicy, HybridPolicy, StopCopyPolicy)}

__all__ = ["Policy", "IterativePrecopy", "PrecopyPolicy", "QemuPolicy", "XenPolicy",
           "VmwarePolicy", "HypervPolicy", "PostcopyPhase", "PostcopyPolicy", "HybridPolicy",
           "StopCopyPolicy", "POLICIES"]
