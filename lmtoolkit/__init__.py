"""lmtoolkit — a research toolkit for live virtual-machine migration.

>>> import lmtoolkit as lmt
>>> ds = lmt.simulate(["policy=qemu", "workload=uniform", "workload.dirty_rate_pages_s=5000"])
"""

__version__ = "0.1.0"

# first: the stat of every source file before any module of the package is read
from . import _imported  # noqa: E402, F401
from .api import simulate  # noqa: E402
from .errors import ConfigError  # noqa: E402
from .evacuate import evacuate  # noqa: E402
from .runner import build_scenario, compose  # noqa: E402
from .sweep import sweep  # noqa: E402  (the function; the module is lmtoolkit.sweep in sys.modules)

__all__ = ["simulate", "evacuate", "sweep", "compose", "build_scenario", "ConfigError", "__version__"]

#: submodules loaded on first use (``lmt.notebooks.compose``, ``lmt.plotting.figures`` …)
_LAZY = ("notebooks", "teaching", "analytic", "plotting")


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
