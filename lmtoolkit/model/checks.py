"""Type checks every config dataclass shares: booleans are booleans, numbers are numbers.

Hydra turns ``true``/``false`` into booleans and numerals into numbers, but ``yes``, ``maybe``
or ``1`` reach a boolean field as they are, and ``true`` reaches a numeric field as a
boolean (``float(True) == 1.0`` would pass a range check); ``nan`` reaches a numeric field as
a float and ``5`` a text field as a number.  :func:`check_fields` reads each dataclass field's
annotation (resolved with ``typing.get_type_hints``: ``float``, ``float | None`` written
either way, ``Optional[float]``, as text under ``from __future__ import annotations`` or as
objects without it) and rejects such values with one :class:`ConfigError` naming the key,
the value and what is allowed, before the class's own range checks run.  The
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
import types
import typing

import numpy as np

from ..errors import ConfigError, UnusedKeyError

#: annotation -> kind checked
_KINDS = {bool: "bool", float: "float", int: "int", str: "str"}
_NAMES = {"bool": "bool", "float": "float", "int": "int", "str": "str"}


def _scalar(value):
    """A 0-d numpy array as its scalar (numpy scalars and anything else unchanged)."""
    return value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value


def check_bool(key: str, value) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a boolean (Python or numpy)."""
    if not isinstance(_scalar(value), (bool, np.bool_)):
        raise ConfigError(key, value, "must be true or false")


def check_number(key: str, value, integer: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a real number (an integral one when
    ``integer``), not NaN; booleans are not numbers here.  Infinity passes (a speed or a limit
    may be infinite, an idealisation): the class's range checks decide, as for the built-in
    keys."""
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(key, value, "must be an integer" if integer else "must be a number")
    # (an int is whole and finite: np.isfinite refused one beyond 64 bits with a TypeError
    # that lost the key — "vm: ufunc 'isfinite' not supported" for vm.vcpus=10**23)
    whole = isinstance(value, numbers.Integral) or (np.isfinite(value) and float(value).is_integer())
    if integer and not whole:
        raise ConfigError(key, value, "must be an integer")
    if value != value:
        raise ConfigError(key, value, "a number, not NaN")


def _kind_of_text(text: str) -> tuple[str | None, bool]:
    """:func:`_kind` of an annotation left as text (a name it cannot resolve): ``float``,
    ``float | None``, ``Optional[float]``, ``Union[float, None]``."""
    t = text.replace("typing.", "").replace(" ", "")
    for head in ("Optional[", "Union["):
        if t.startswith(head) and t.endswith("]"):
            inner = t[len(head) : -1].split(",")
            parts = inner + (["None"] if head == "Optional[" else [])
            break
    else:
        parts = t.split("|")
    optional = "None" in parts or "NoneType" in parts
    rest = [p for p in parts if p not in ("None", "NoneType")]
    return (_NAMES.get(rest[0]) if len(rest) == 1 else None), optional


def _kind(annotation) -> tuple[str | None, bool]:
    """(``"bool"``/``"float"``/``"int"``/``"str"`` or None, None allowed) of a field
    annotation: a type (``float``), a union with None (``float | None`` — ``types.UnionType``
    at run time —, ``Optional[float]``, ``Union[float, None]``), or its text where the module
    has ``from __future__ import annotations`` and the name could not be resolved."""
    if isinstance(annotation, str):
        return _kind_of_text(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        optional = type(None) in args
        rest = [a for a in args if a is not type(None)]
    else:
        optional, rest = False, [annotation]
    return (_KINDS.get(rest[0]) if len(rest) == 1 else None), optional


def _annotations(cls) -> dict[str, object]:
    """Field name -> its annotation resolved (``typing.get_type_hints``: text annotations of
    ``from __future__ import annotations`` evaluated in their module), or as written where a
    name does not resolve."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a name only imported for type checkers (NameError, …): read the text
        return {}


@functools.cache
def typed_fields(cls) -> tuple[tuple[str, str, bool], ...]:
    """``(name, kind, optional)`` of the bool/float/int/str fields of dataclass ``cls``."""
    hints = _annotations(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, optional = _kind(hints.get(f.name, f.type))
        if kind is not None:
            out.append((f.name, kind, optional))
    return tuple(out)


def check_fields(obj) -> None:
    """Check every bool/float/int/str-annotated field of the dataclass instance ``obj``.

    ``bool`` fields take ``true``/``false`` only; ``float`` fields any real number but not a
    boolean nor NaN; ``int`` fields an integral number (``4`` or ``4.0``, not ``2.5``) but not a
    boolean; ``str`` fields a string, or a number, which becomes its text (as a Hydra
    structured config does: ``policy.qemu_version=9.2`` is ``"9.2"``), not a boolean, list or
    mapping; ``X | None`` / ``Optional[X]`` fields also take null.  Ranges are the class's
    own business.
    """
    for name, kind, optional in typed_fields(type(obj)):
        value = getattr(obj, name)
        if value is None and optional:
            continue
        if kind == "bool":
            check_bool(name, value)
        elif kind == "str":
            if not isinstance(value, str):
                v = _scalar(value)
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
                    raise ConfigError(name, value, "must be a string")
                object.__setattr__(obj, name, str(v.item() if isinstance(v, np.generic) else v))
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
            raise UnusedKeyError(
                key,
                bad[0],
                "",
                message=f"{key}={bad[0]!r} is not allowed for {owner}: {why}; it would change nothing "
                f"(leave it at its default, {default!r})",
                default=default,
            )
