"""Units: config keys carry their unit in the name (``_gib``, ``_gbit_s``, ``_ms`` ...).

:data:`KEY_SUFFIXES` is the one table from a key's suffix to its CF unit string, used for
sweep coordinates and anywhere else a unit is read off a key.  Every string is one UDUNITS-2
parses (CF-1.10 §3.1; ``tests/unit/test_api_cli.py`` checks each with ``cf_units``): UDUNITS
has no binary prefixes, so a GiB is ``2^30 bytes`` and a MiB/s ``2^20 bytes/s``; pages are a
count (``1``, page rates ``s-1``: the key and the ``long_name`` say what is counted).
:func:`display_unit` gives the short form for labels (``2^30 bytes`` -> ``GiB``).
"""

from __future__ import annotations

GIB, MIB, KIB = "2^30 bytes", "2^20 bytes", "2^10 bytes"

#: key suffix -> (CF units, the short form a label shows); longest suffixes first (``_mib_s``
#: before ``_s``).  A per-core rate has the rate's units (a count of cores is dimensionless).
KEY_SUFFIXES = (
    ("_gbit_s_per_core", "Gbit/s", "Gbit/s per core"),
    ("_gib_s_per_core", f"{GIB}/s", "GiB/s per core"),
    ("_mib_s_per_core", f"{MIB}/s", "MiB/s per core"),
    ("_nj_per_bit", "nJ/bit", "nJ/bit"),
    ("_pages_s", "s-1", "pages/s"),
    ("_pages", "1", "pages"),
    ("_gbit_s", "Gbit/s", "Gbit/s"),
    ("_mib_s", f"{MIB}/s", "MiB/s"),
    ("_gib_s", f"{GIB}/s", "GiB/s"),
    ("_gib", GIB, "GiB"),
    ("_mib", MIB, "MiB"),
    ("_kib", KIB, "KiB"),
    ("_ms", "ms", "ms"),
    ("_us", "us", "us"),
    ("_pct", "percent", "%"),
    ("_bytes", "bytes", "bytes"),
    ("_s", "s", "s"),
    ("_w", "W", "W"),
    ("_j", "J", "J"),
)

#: CF units -> the short form a label shows, where the key is not known
DISPLAY = {
    GIB: "GiB",
    MIB: "MiB",
    KIB: "KiB",
    f"{GIB}/s": "GiB/s",
    f"{MIB}/s": "MiB/s",
    "bytes s-1": "bytes/s",
}

#: keys whose name carries no unit but whose value has one: QEMU's throttle parameters are
#: percentages (``throttle-trigger-threshold``, ``cpu-throttle-initial``, ...; 20 means 20 %)
NAMED_UNITS = {
    "throttle_trigger_threshold": "percent",
    "cpu_throttle_initial": "percent",
    "cpu_throttle_increment": "percent",
    "max_cpu_throttle": "percent",
}


def _suffix(key: str) -> tuple[str, str] | None:
    """(CF units, short form) of a dotted config key, or None when its name carries none."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf in NAMED_UNITS:
        return NAMED_UNITS[leaf], "%"
    for suffix, units, short in KEY_SUFFIXES:
        if leaf.endswith(suffix):
            return units, short
    return None


def unit_of_key(key: str) -> str:
    """The CF unit a dotted config key names (``vm.memory_gib`` -> ``2^30 bytes``,
    ``workload.dirty_rate_pages_s`` -> ``s-1``); ``"1"`` (dimensionless: a count, share or
    ratio) when its name carries none and :data:`NAMED_UNITS` does not list it."""
    found = _suffix(key)
    return found[0] if found else "1"


def display_unit(units: str, key: str | None = None) -> str:
    """The short form of CF ``units`` for a label: the key's (``host.compress_mib_s_per_core``
    -> ``MiB/s per core``) where ``key`` is given and names them, else ``2^20 bytes/s`` ->
    ``MiB/s``."""
    found = _suffix(key) if key else None
    if found and found[0] == units:
        return found[1]
    return DISPLAY.get(units, units)
