"""One look for every figure of the project: a seaborn theme and one colour per policy.

>>> from lmtoolkit.plotting import style
>>> style.apply()                       # seaborn theme + rc settings (idempotent)
>>> style.policy_palette(["vmware", "hyperv"])
{'vmware': '#029E73', 'hyperv': '#DE8F05'}

Policies of one vendor share a hue family (VMware greens, Hyper-V oranges), so a profile
(``vmware_vsphere7``, ``hyperv_2008r2``) reads as a variant of its family.  Colours come
from seaborn's colour-blind palette.
"""

from __future__ import annotations

from collections.abc import Iterable

#: policy name -> colour (hex).  The one policy palette of the project.
POLICY_PALETTE: dict[str, str] = {
    "qemu": "#0173B2",
    "xen": "#CC78BC",
    "vmware": "#029E73",
    "vmware_vsphere5": "#7FCDB0",
    "vmware_vsphere7": "#00563F",
    "hyperv": "#DE8F05",
    "hyperv_2012r2": "#DE8F05",
    "hyperv_2008r2": "#F2C26B",
    "postcopy": "#D55E00",
    "hybrid": "#CA9161",
    "stopcopy": "#949494",
    "custom": "#56B4E9",
}
#: colours for anything that is not a policy (cycled in order)
OTHER_COLORS = (
    "#0173B2",
    "#DE8F05",
    "#029E73",
    "#D55E00",
    "#CC78BC",
    "#CA9161",
    "#FBAFE4",
    "#949494",
    "#ECE133",
    "#56B4E9",
)
#: sequential colour map for heat maps (dirty bitmaps, time over a grid)
HEATMAP_CMAP = "rocket_r"

THEME = dict(context="notebook", style="whitegrid", font_scale=0.95)
RC = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "axes.titlesize": "medium",
    "axes.titleweight": "bold",
    "legend.frameon": False,
    "figure.constrained_layout.use": True,
    "pdf.fonttype": 42,  # TrueType in PDFs (editable text)
}


def apply() -> None:
    """Set the project's seaborn theme and matplotlib rc settings."""
    import seaborn as sns

    sns.set_theme(**THEME, palette=list(OTHER_COLORS), rc=RC)


def policy_color(name: str) -> str:
    """The colour of policy ``name`` (profiles fall back to their family's colour)."""
    name = str(name)
    if name in POLICY_PALETTE:
        return POLICY_PALETTE[name]
    family = name.split("_")[0]
    if family in POLICY_PALETTE:
        return POLICY_PALETTE[family]
    return OTHER_COLORS[sum(map(ord, name)) % len(OTHER_COLORS)]


def policy_palette(names: Iterable[str]) -> dict[str, str]:
    """``{policy: colour}`` for the given policy names (for seaborn's ``palette=``)."""
    return {str(n): policy_color(n) for n in names}


def palette(names: Iterable, kind: str | None = None) -> dict:
    """Colours for the values of a hue: policy colours if ``kind == 'policy'``, else the cycle."""
    names = list(names)
    if kind == "policy":
        return policy_palette(names)
    return {n: OTHER_COLORS[i % len(OTHER_COLORS)] for i, n in enumerate(names)}
