"""Units: config keys carry their unit in the name (``_gib``, ``_gbit_s``, ``_ms`` ...).

:data:`KEY_SUFFIXES` is the one table from a key's suffix to its UDUNITS/CF unit string,
used for sweep coordinates and anywhere else a unit is read off a key.
"""

from __future__ import annotations

#: key suffix -> CF units (longest suffixes first: ``_mib_s`` before ``_s``)
KEY_SUFFIXES = (
    ("_pages_s", "pages/s"),
    ("_gbit_s", "Gbit/s"),
    ("_mib_s", "MiB/s"),
    ("_gib_s", "GiB/s"),
    ("_gib", "GiB"),
    ("_mib", "MiB"),
    ("_kib", "KiB"),
    ("_ms", "ms"),
    ("_us", "us"),
    ("_pct", "%"),
    ("_bytes", "bytes"),
    ("_s", "s"),
)


def unit_of_key(key: str) -> str:
    """The unit a dotted config key names (``workload.dirty_rate_pages_s`` -> ``pages/s``);
    ``"1"`` (dimensionless) when its name carries none."""
    leaf = key.rsplit(".", 1)[-1]
    for suffix, units in KEY_SUFFIXES:
        if leaf.endswith(suffix):
            return units
    return "1"
