"""Migration policies: one module per policy, each citing its sources.

``POLICIES`` maps the config name (``policy=NAME``, key ``name``) to the class.  Every module
of this package is imported here, and a policy class in it that declares a ``name``
registers itself (:meth:`Policy.__init_subclass__`), so adding a built-in policy is one
module plus one ``configs/policy/NAME.yaml``.  A policy from outside the package is used
with ``policy._target_=my.module.MyPolicy`` (see ``examples/``).

:func:`policy_class` and :func:`policy_fields` tell which class a ``policy`` config selects
and which keys (dataclass fields, with their defaults) it accepts: a ``configs/policy``
file states only the keys that differ from the class's defaults, the class is the one
source of every default.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import sys

from ..errors import ConfigError
from .base import REGISTRY, Policy
from .hybrid import HybridPolicy
from .hyperv import HypervPolicy
from .postcopy import PostcopyPhase, PostcopyPolicy
from .precopy import IterativePrecopy, PrecopyPolicy
from .qemu import QemuPolicy
from .stopcopy import StopCopyPolicy
from .vmware import VmwarePolicy
from .xen import XenPolicy

# Any other module of the package registers its policies on import.
for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

#: name -> policy class (the registry itself: policies defined later appear here too)
POLICIES = REGISTRY


def _missing(e: ModuleNotFoundError, module: str) -> bool:
    """``e`` says ``module`` itself (or a package it is in) does not exist — not that the
    module exists and failed on an import of its own."""
    return e.name is not None and (module == e.name or module.startswith(e.name + "."))


def _where(e: BaseException) -> str:
    """``file:line`` where ``e`` was raised in the user's code: a SyntaxError's own place, else
    the innermost frame outside the import machinery and this package (a name clash is raised
    in ``Policy.__init_subclass__``, for the plug-in's class statement)."""
    import traceback
    from pathlib import Path

    if isinstance(e, SyntaxError) and e.filename:
        return f"{e.filename}:{e.lineno}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith("<frozen ")]
    pkg = str(Path(__file__).resolve().parents[1])
    own = [f for f in frames if not str(Path(f.filename).resolve()).startswith(pkg)]
    f = (own or frames or [None])[-1]
    return f"{f.filename}:{f.lineno}" if f is not None else "?"


def _import_failure(target: str, module: str, e: BaseException) -> ConfigError:
    what = e.msg if isinstance(e, SyntaxError) else (str(e).strip().splitlines() or [""])[0]
    return ConfigError(
        "_target_",
        target,
        "",
        message=f"_target_={target}: importing module {module} raised {type(e).__name__}: {what} "
        f"({_where(e)})",
    )


def _import_class(target: str):
    """The object ``target`` (``module.Class``) names, or None where no module of it exists.

    Raises :class:`ConfigError` in one line where the module has no such name, and where the
    module exists but importing it fails (naming the module, the exception and where): an
    import of its own that is missing, a SyntaxError, an exception at import, a policy name
    that is taken.  Both were reported as a module to put on PYTHONPATH (wrong advice), or as
    a traceback."""
    parts = str(target).split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if _missing(e, module):
                continue  # no such module: a shorter prefix may be it (package.module.Class.Inner)
            raise _import_failure(target, module, e) from None
        except Exception as e:  # noqa: BLE001 - whatever the module raised, said in one line
            raise _import_failure(target, module, e) from None
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            where = getattr(sys.modules.get(module), "__file__", None)
            raise ConfigError(
                "_target_",
                target,
                "",
                message=f"_target_={target}: module {module}{f' ({where})' if where else ''} has no "
                f"{'.'.join(parts[i:])}",
            ) from None
        return obj
    return None


def policy_class(policy_cfg) -> type:
    """The policy class a ``policy`` config (dict or DictConfig) selects.

    ``_target_`` (``module.Class``, importable, a :class:`Policy` subclass) wins over
    ``name`` (a key of :data:`POLICIES`).  Raises :class:`ConfigError` with the key without
    the group prefix (``name``, ``_target_``); add it with ``ConfigError.with_prefix``.
    """
    cfg = policy_cfg or {}
    target = cfg.get("_target_")
    if target:
        cls = _import_class(target)
        if cls is None:
            raise ConfigError(
                "_target_",
                target,
                "an importable policy class (module.Class): put its module's directory on "
                "PYTHONPATH (PYTHONPATH=examples lmtk run policy=custom)",
            )
        if not (isinstance(cls, type) and issubclass(cls, Policy)):
            raise ConfigError("_target_", target, "a subclass of lmtoolkit.policies.Policy")
        if cls.converged is Policy.converged:  # the abstract base (NotImplementedError mid-run)
            raise ConfigError(
                "_target_",
                target,
                "a policy class with a convergence test (converged): subclass one that has it, "
                "e.g. lmtoolkit.policies.PrecopyPolicy (examples/my_policy.py)",
            )
        return cls
    name = cfg.get("name")
    if name not in POLICIES:
        # (a plug-in's register=True adds its name only in a process that imported its module:
        # the command line imports none of yours by name)
        raise ConfigError(
            "name",
            name,
            "one of " + ", ".join(sorted(POLICIES)) + "; a plug-in class: policy._target_=module.Class",
        )
    return POLICIES[name]


def policy_fields(policy_cfg) -> dict[str, object]:
    """Field name -> default of the class :func:`policy_class` selects: every key a
    ``policy`` config (and a ``policy.KEY=value`` override) may set besides ``name`` and
    ``_target_``."""
    return class_defaults(policy_class(policy_cfg))


def class_defaults(cls: type) -> dict[str, object]:
    """Field name -> default of the policy class ``cls`` (None where a field has none)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None
    return out


__all__ = [
    "Policy",
    "IterativePrecopy",
    "PrecopyPolicy",
    "QemuPolicy",
    "XenPolicy",
    "VmwarePolicy",
    "HypervPolicy",
    "PostcopyPhase",
    "PostcopyPolicy",
    "HybridPolicy",
    "StopCopyPolicy",
    "POLICIES",
    "REGISTRY",
    "policy_class",
    "policy_fields",
    "class_defaults",
]
