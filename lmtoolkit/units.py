"""Units: config keys carry their unit in the name (``_gib``, ``_gbit_s``, ``_ms`` ...).

:data:`KEY_SUFFIXES` is the one table from a key's suffix to its UDUNITS/CF unit string,
used for sweep coordinates and anywhere else a unit is read off a key.
"""

from __future__ import annotations

#: key suffix -> CF units (longest suffixes first: ``_mib_s`` before ``_s``)
KEY_SUFFIXES = (
    ("_gbit_s_per_core", "Gbit/s per core"),
    ("_gib_s_per_core", "GiB/s per core"),
    ("_mib_s_per_core", "MiB/s per core"),
    ("_nj_per_bit", "nJ/bit"),
    ("_pages_s", "pages/s"),
    ("_pages", "pages"),
    ("_gbit_s", "Gbit/s"),
    ("_mib_s", "MiB/s"),
    ("_gib_s", "GiB/s"),
    ("_gib", "GiB"),
    ("_mib", "MiB"),
    ("_kib", "KiB"),
    ("_ms", "ms"),
    ("_us", "us"),
    ("_pct", "percent"),
    ("_bytes", "bytes"),
    ("_s", "s"),
    ("_w", "W"),
    ("_j", "J"),
)

#: keys whose name carries no unit but whose value has one: QEMU's throttle parameters are
#: percentages (``throttle-trigger-threshold``, ``cpu-throttle-initial``, ...; 20 means 20 %)
NAMED_UNITS = {
    "throttle_trigger_threshold": "percent",
    "cpu_throttle_initial": "percent",
    "cpu_throttle_increment": "percent",
    "max_cpu_throttle": "percent",
}


def unit_of_key(key: str) -> str:
    """The unit a dotted config key names (``workload.dirty_rate_pages_s`` -> ``pages/s``);
    ``"1"`` (dimensionless: a count, share or ratio) when its name carries none and
    :data:`NAMED_UNITS` does not list it."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf in NAMED_UNITS:
        return NAMED_UNITS[leaf]
    for suffix, units in KEY_SUFFIXES:
        if leaf.endswith(suffix):
            return units
    return "1"
