"""Migration policies: one module per policy, each citing its sources.

``POLICIES`` maps the config name (``policy=NAME``) to the class.  A policy from outside the
package is used with ``policy._target_=my.module.MyPolicy`` (see ``examples/``).
"""
from .base import Policy
from .precopy import PrecopyPolicy
from .qemu import QemuPolicy
from .stopcopy import StopCopyPolicy
from .xen import XenPolicy

POLICIES = {cls.name: cls for cls in (PrecopyPolicy, QemuPolicy, XenPolicy, StopCopyPolicy)}

__all__ = ["Policy", "PrecopyPolicy", "QemuPolicy", "XenPolicy", "StopCopyPolicy", "POLICIES"]
