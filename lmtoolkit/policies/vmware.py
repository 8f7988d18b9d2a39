"""VMware-vMotion-like pre-copy, from ESXi's advanced settings and VMware's documents.

Sources (tags: **published** = a VMware/Broadcom document or an ``esxcli`` settings dump says
so; **inferred** = our reading, not documented):

* **Switchover goal** (published) — ``Migrate.PreCopySwitchoverTimeGoal``, default 500
  (range 100–100000), "Goal time in milliseconds to send changed pages after pre-copy
  completes" (``esxcli system settings advanced list`` dumps, ESXi 6.0U3 … 9.0.1, GitHub
  ``lamw/esxi-advanced-and-kernel-settings``).  Broadcom KB 436882 ("How to identify vMotion
  stun time"): iterations continue "until the remaining set of dirty pages is small enough
  that it can be transferred within the 500 ms switchover time goal.  At that point, the
  virtual machine is stunned".  Here: switch over when ``pending x wire bytes / measured
  throughput <= switchover_goal_ms``.  vMotion has no pass cap (J. Savill, ITProToday:
  "no hard limit on the number of times it copies dirty memory").
* **Minimum progress** (setting published, meaning inferred) — ``Migrate.PreCopyMinProgressPerc``,
  default 130 (1–1000), "Minimum allowed transmit to dirty page ratio per pre-copy
  iteration".  Here: a pass whose pages sent / pages dirtied during it is below
  ``min_progress_pct`` / 100 makes no progress (for a full pass that ratio is the transmit
  rate over the dirty rate, see :meth:`IterativePrecopy.transmit_dirty_ratio`).
* **Stun During Page Send** (settings published, controller inferred) — ``Migrate.SdpsEnabled``,
  default 2: "Stuns VMotion source in small increments during precopy, 0=disabled, 1=always
  enabled, 2=dynamic"; ``Migrate.SdpsTargetRate`` default 500 (1–10000): "Percent by which transmit
  should be made to exceed dirty".  Introduced in vSphere 5.0 (D. Epping, Yellow Bricks,
  "vSphere 5.0 vMotion Enhancements", 2011-07-20); "SDPS kicks in when the rate at which
  pages are changed (dirtied) exceeds the rate at which the pages can be transferred … the
  source vCPUs will be placed in a sleep state … frequent, tiny sleeps"; "by default SDPS is
  not doing anything" (Yellow Bricks, "slowdown-during-page-send", 2012).  Our model:

  - ``sdps: dynamic`` — SDPS engages after a pass fails the minimum-progress test and then
    stays on; ``sdps: on`` — engaged from the first pass boundary; ``sdps: off`` — never.
  - While engaged, after every pass the guest is slowed (``State.throttle``, the share of
    vCPU time spent stunned) so that transmit/dirty reaches a target ratio — a
    proportional controller on guest speed, capped at
    ``sdps_max_throttle`` (ours; ESXi publishes no cap).  It relaxes when the ratio is above
    target.  ``Migrate.SdpsDynamicDelaySec`` (30 s polling inside the first pass) is not
    modelled: decisions happen at pass boundaries only.
  - **The target** (``sdps_target_reading``): "Percent by which transmit should be made to
    exceed dirty" with 500 says transmit = dirty + 500 % of dirty, a ratio of 1 + 500/100 =
    **6** (``exceed``, the default: what the setting's text says, as "A exceeds B by 500
    percent" does; the neighbouring ``PreCopyMinProgressPerc`` says "ratio" where it means
    one).  The looser reading "transmit = 500 % of dirty", a ratio of **5** (``ratio``, the
    former default), stays selectable; it throttles ~17 % less.  VMware documents
    neither further.
  - A pass without progress ends pre-copy (reason ``no_progress``, forced switchover with
    whatever is left) when SDPS is off, or when it is already at ``sdps_max_throttle``
    (inferred: vMotion would otherwise fail or time out).
* **Streams** (published) — multi-NIC vMotion since 5.0 (Epping 2011): one stream per
  vMotion-enabled VMkernel adapter, ``network.streams`` of them (the one policy that reads
  that key: the vmknics are the host's migration network, not a vMotion setting).  Broadcom
  KB 323379 ("Improving performance for vMotion when using 40GbE NICs"): "vMotion in vSphere
  6 creates TCP/IP connections (or stream channels) between the source and destination
  hosts based on the configured vMotion vmknics, and then instantiates one vMotion worker
  thread per TCP/IP connection"; it recommends several vmknics on one 40GbE NIC.  Each
  stream's data goes out through one stream helper, a thread on one core: "by default, vMotion would use a single stream … Typically, one stream helper is
  capable of saturating ±15 GbE of bandwidth.  This is great for 10 GbE NICs, but it
  becomes a limiting factor when using 25 GbE or higher NICs" (VMware, "Faster vMotion
  Makes Balancing Workloads Invisible", core.vmware.com, 2021; Broadcom KB 323379 measured
  one vMotion vmknic on a 40GbE NIC at 18 Gbit/s, "the vMotion worker thread becomes CPU
  saturated", two at 28, three at 36): a stream carries at most ``stream_helper_gbit_s``
  (15; ESXi 8.0U1+ has it as a setting, ``Migrate.MigrateStreamHelperBwUtilMax``, default
  15000, range 1–15000, "Maximum network bandwidth (Mbps) that each stream helper can
  saturate", same settings dumps) of the link's payload share, below the network's own
  per-stream rate (:meth:`VmwarePolicy.stream_rate_bytes_s`).  vSphere 7.0U2+: "the vMotion process
  automatically spins up the number of streams according to the bandwidth of the physical
  NICs" (same VMware post; the 7.0U2 settings dump reads ``Migrate.VMotionStreamHelpers``
  "0 to dynamically allocate"): ``stream_autoscale`` opens as many streams as the link
  needs (``ceil(line rate / per-stream rate)``).
* **Encrypted vMotion** (published: vSphere 6.5 … 8.0 docs "Encrypted vSphere vMotion",
  docs.vmware.com GUID-6865D84A-C286-49C4-A4D4-D62145150242: "For virtual machines that are
  not encrypted, you can set encrypted vSphere vMotion to one of the following states. The
  default is Opportunistic" — "Use encrypted vSphere vMotion if source and destination hosts
  support it. Only ESXi versions 6.5 and later"; AES-GCM via vmkcrypto; Denneman 2018: "does
  increase the CPU utilization").  So every profile of 6.5+ hosts encrypts by default
  (``generic``, ``vsphere7``), ``vsphere5`` cannot.  ``encryption: true`` adds a sender CPU
  cost per byte at ``host.encrypt_gib_s_per_core`` x spare cores (``Context.encrypt_bytes_s``);
  the page goes at the slower of wire and cipher.  Cost numbers are our assumption (AES-NI
  AES-GCM ≈ 1–2 GiB/s per core; VMware's white paper numbers were not retrieved).
* **Concurrency limits** (published, recorded only) — docs.vmware.com "Limits on Simultaneous
  Migrations" (vSphere 6.5/6.7): network cost of a vMotion 1, maximum 4 on 1 GigE and 8 on
  10 GigE (``concurrent_limit_1gbe``, ``concurrent_limit_10gbe``); used by the concurrency
  work, not by a single migration.
* **Zero pages** — ``Migrate.DetectZeroPages`` default 1 (published): zero pages go as
  markers (``zero_page_bytes``); the marker size is ours.

Version profiles (``profile``; config files ``policy=vmware_vsphere5`` / ``vmware_vsphere7``):

* ``generic`` — the settings as dumped for ESXi 6.0U3 … 9.0.1 (identical defaults), one
  stream per vmknic (``network.streams``), Encrypted vMotion Opportunistic — on between hosts of 6.5
  or later, the published default (published; ``encryption: false`` is the Disabled state).
* ``vsphere5`` — SDPS and multi-NIC vMotion as introduced in 5.0 (published); the 5.x
  defaults of the ``Migrate.*`` settings were not dumped, we assume the 6.x values
  (inferred); no encryption (Encrypted vMotion arrived in 6.5, published); no stream
  autoscaling.
* ``vsphere7`` — Encrypted vMotion opportunistic, i.e. on (published default since 6.5);
  stream autoscaling (7.0U2, published).  The 7.0U1 "loose page trace" (fewer vCPU
  stuns while installing write traces; patent US 11,995,459) and any compacted bitmap at
  switchover are not modelled (no numbers found).

``encryption`` and ``stream_autoscale`` left null take the profile's value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import check_choice, check_range
from ..records import REASON_CODE
from .base import none_to
from .precopy import IterativePrecopy

SDPS_MODES = ("dynamic", "on", "off")
#: reading of Migrate.SdpsTargetRate -> transmit/dirty target for a setting of ``pct``
SDPS_READINGS = {"ratio": lambda pct: pct / 100.0, "exceed": lambda pct: 1.0 + pct / 100.0}
#: profile -> the values of the keys left null
PROFILES = {
    "generic": {"encryption": True, "stream_autoscale": False},
    "vsphere5": {"encryption": False, "stream_autoscale": False},
    "vsphere7": {"encryption": True, "stream_autoscale": True},
}
#: link rate (Gbit/s) from which ``concurrent_limit_10gbe`` applies instead of ``_1gbe``
TEN_GBE = 10.0


@dataclass(frozen=True)
class VmwarePolicy(IterativePrecopy):
    """VMware vMotion: switchover within a 500 ms goal, SDPS slows the guest when a pass makes no progress."""

    profile: str = "generic"  # generic | vsphere5 | vsphere7
    switchover_goal_ms: float = 500.0  # Migrate.PreCopySwitchoverTimeGoal (default 500)
    min_progress_pct: float = 130.0  # Migrate.PreCopyMinProgressPerc: min transmit/dirty per pass, %
    sdps: str = "dynamic"  # Migrate.SdpsEnabled: dynamic (2) | on (1) | off (0)
    sdps_target_pct: float = 500.0  # Migrate.SdpsTargetRate ("percent by which transmit should exceed dirty")
    sdps_target_reading: str = "exceed"  # exceed: 1 + 500 % = 6 x dirty (the text) | ratio: 5 x
    sdps_max_throttle: float = 0.99  # ours: highest share of vCPU time stunned (no published cap)
    encryption: bool | None = None  # Encrypted vMotion (AES-GCM CPU cost); null = profile's
    stream_autoscale: bool | None = None  # 7.0U2+: as many streams as the link needs; null = profile's
    stream_helper_gbit_s: float = 15.0  # one stream helper thread's rate ("±15 GbE", VMware 2021)
    concurrent_limit_1gbe: int = 4  # max concurrent vMotions per host on 1 GbE (network cost 4)
    concurrent_limit_10gbe: int = 8  # max concurrent vMotions per host on 10 GbE (network cost 8)

    name = "vmware"
    stop_reasons = ("no_progress",)

    def __post_init__(self):
        self.resolve_profile("profile", PROFILES)
        super().__post_init__()
        # the ranges ESXi accepts (esxcli system settings advanced list: min, max)
        check_range("switchover_goal_ms", self.switchover_goal_ms, 100, 100000)
        check_range("min_progress_pct", self.min_progress_pct, 1, 1000)
        check_choice("sdps", self.sdps, SDPS_MODES)
        check_range("sdps_target_pct", self.sdps_target_pct, 1, 10000)
        check_choice("sdps_target_reading", self.sdps_target_reading, tuple(SDPS_READINGS))
        check_range("sdps_max_throttle", self.sdps_max_throttle, 0, 1, hi_open=True)
        check_range("stream_helper_gbit_s", self.stream_helper_gbit_s, 0, 1e6, lo_open=True)
        check_range("concurrent_limit_1gbe", self.concurrent_limit_1gbe, 1, 10**6)
        check_range("concurrent_limit_10gbe", self.concurrent_limit_10gbe, 1, 10**6)

    def concurrent_migrations(self, link_gbit_s):
        """docs.vmware.com "Limits on Simultaneous Migrations" (vSphere 6.5/6.7): a vMotion
        costs 1 of a host's network budget of 4 on 1 GigE and 8 on 10 GigE — so
        ``concurrent_limit_10gbe`` from :data:`TEN_GBE` Gbit/s up, else ``concurrent_limit_1gbe``."""
        ten = float(link_gbit_s) >= TEN_GBE
        return int(self.concurrent_limit_10gbe if ten else self.concurrent_limit_1gbe)

    # -- link --------------------------------------------------------------------------------
    def stream_rate_bytes_s(self, ctx):
        """A stream's payload rate (bytes/s): the network's, at most what one stream helper
        puts on the wire — ``stream_helper_gbit_s`` at the link's payload share (module doc,
        *Streams*)."""
        helper = self.stream_helper_gbit_s * 1e9 / 8.0 * none_to(ctx.link_efficiency, 1.0)
        return np.minimum(ctx.stream_bytes_s, helper)

    def streams(self, ctx):
        """One stream per vMotion vmknic (``network.streams``, KB 323379); with
        ``stream_autoscale`` (7.0U2+) at least as many as the link needs (module doc,
        *Streams*)."""
        needed = np.ceil(ctx.line_bytes_s / self.stream_rate_bytes_s(ctx))
        return np.where(
            np.asarray(self.stream_autoscale), np.maximum(ctx.base_streams, needed), ctx.base_streams
        )

    def network_streams_unused(self):
        """None: ``network.streams`` is the number of vMotion vmknics, a stream each."""
        return None

    def nonzero_cpu_s(self, st, ctx):
        cipher = ctx.page_bytes / np.maximum(ctx.encrypt_bytes_s, 1.0)
        return np.where(np.asarray(self.encryption), cipher, 0.0)

    # -- switchover --------------------------------------------------------------------------
    def switchover_goal_s(self):
        return self.switchover_goal_ms / 1000.0

    def forced(self, st, ctx):
        code = super().forced(st, ctx)
        stalled = st.extra["vmw_stalled"] > 0
        return np.where((code == 0) & stalled, REASON_CODE["no_progress"], code)

    # -- progress and SDPS -------------------------------------------------------------------
    def init_state(self, st, ctx):
        super().init_state(st, ctx)
        z = np.zeros_like(st.t)
        st.extra.update(vmw_sdps=z.copy(), vmw_stalled=z.copy())

    def after_sync(self, st, ctx):
        super().after_sync(st, ctx)
        ex = st.extra
        mode = np.asarray(self.sdps)
        no_progress = self.transmit_dirty_ratio(st) * 100.0 < self.min_progress_pct
        at_max = st.throttle >= self.sdps_max_throttle - 1e-12
        engaged = (ex["vmw_sdps"] > 0) | (mode == "on") | ((mode == "dynamic") & no_progress)
        engaged = engaged & (mode != "off")
        ex["vmw_stalled"] = np.where(no_progress & (~engaged | at_max), 1.0, 0.0)
        literal = np.asarray(self.sdps_target_reading) == "exceed"
        ratio = np.where(
            literal,
            SDPS_READINGS["exceed"](self.sdps_target_pct),
            SDPS_READINGS["ratio"](self.sdps_target_pct),
        )
        target = self.throttle_for_ratio(st, ratio, self.sdps_max_throttle)
        st.throttle = np.where(engaged, target, st.throttle)
        ex["vmw_sdps"] = engaged.astype(float)
