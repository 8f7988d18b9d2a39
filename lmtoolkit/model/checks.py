"""Type checks every config dataclass shares: booleans are booleans, numbers are numbers.

Hydra turns ``true``/``false`` into booleans and numerals into numbers, but ``yes``, ``maybe``
or ``1`` reach a boolean field as they are, and ``true`` reaches a numeric field as a
boolean (``float(True) == 1.0`` would pass a range check).  :func:`check_fields` reads each
dataclass field's annotation and rejects such values with one :class:`ConfigError` naming
the key, the value and what is allowed, before the class's own range checks run.  The
models (:class:`~lmtoolkit.model.vm.VM`, :class:`~lmtoolkit.model.network.Network`,
:class:`~lmtoolkit.model.host.Host`, the workloads, :class:`~lmtoolkit.model.storage.Storage`)
and every policy (:meth:`lmtoolkit.policies.base.Policy.__post_init__`) call it.

:func:`refuse_unused` is the other shared rule: a key nothing would read, given the object's
other keys (a policy's ``unused_fields``, a workload's or the storage's ``unused_keys()``), is
refused away from its default instead of being dropped unseen.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers

import numpy as np

from ..errors import ConfigError

#: annotation (as written, ``from __future__ import annotations``) -> kind checked
_KINDS = {"bool": "bool", "float": "float", "int": "int"}


def _scalar(value):
    """A 0-d numpy array as its scalar (numpy scalars and anything else unchanged)."""
    return value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value


def check_bool(key: str, value) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a boolean (Python or numpy)."""
    if not isinstance(_scalar(value), (bool, np.bool_)):
        raise ConfigError(key, value, "must be true or false")


def check_number(key: str, value, integer: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a real number (an integral one when
    ``integer``); booleans are not numbers here."""
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(key, value, "must be an integer" if integer else "must be a number")
    if integer and not (np.isfinite(value) and float(value).is_integer()):
        raise ConfigError(key, value, "must be an integer")


def _kind(annotation) -> tuple[str | None, bool]:
    """(``"bool"``/``"float"``/``"int"`` or None, None allowed) of a field annotation."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = [p.strip() for p in str(text).split("|")]
    optional = "None" in parts
    rest = [p for p in parts if p != "None"]
    if len(rest) != 1:
        return None, optional
    return _KINDS.get(rest[0]), optional


@functools.cache
def typed_fields(cls) -> tuple[tuple[str, str, bool], ...]:
    """``(name, kind, optional)`` of the bool/float/int fields of dataclass ``cls``."""
    out = []
    for f in dataclasses.fields(cls):
        kind, optional = _kind(f.type)
        if kind is not None:
            out.append((f.name, kind, optional))
    return tuple(out)


def check_fields(obj) -> None:
    """Check every bool/float/int-annotated field of the dataclass instance ``obj``.

    ``bool`` fields take ``true``/``false`` only; ``float`` fields any real number but not a
    boolean; ``int`` fields an integral number (``4`` or ``4.0``, not ``2.5``) but not a
    boolean; ``X | None`` fields also take null.  Ranges are the class's own business.
    """
    for name, kind, optional in typed_fields(type(obj)):
        value = getattr(obj, name)
        if value is None and optional:
            continue
        if kind == "bool":
            check_bool(name, value)
        else:
            check_number(name, value, integer=kind == "int")


def refuse_unused(obj, unused: dict[str, str], owner: str) -> None:
    """Refuse a value other than its default for each field of ``unused`` (field -> why nothing
    reads it, given ``obj``'s other fields): one :class:`ConfigError` naming the key, the value,
    ``owner`` (``policy xen``, ``workload uniform``, ``shared storage``) and why it would change
    nothing.  A stacked field (an array over scenarios) is refused if any element differs."""
    defaults = {f.name: f.default for f in dataclasses.fields(obj)}
    for key, why in unused.items():
        default = defaults[key]
        given = np.atleast_1d(np.asarray(getattr(obj, key), dtype=object))
        bad = [v for v in given if v != default]
        if bad:
            raise ConfigError(
                key,
                bad[0],
                "",
                message=f"{key}={bad[0]!r} is not allowed for {owner}: {why}; it would change nothing "
                f"(leave it at its default, {default!r})",
            )
