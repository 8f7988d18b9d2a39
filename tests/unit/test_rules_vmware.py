"""VMware-like rules of issue 12 (lmtoolkit/policies/vmware.py cites VMware's documents):
Encrypted vMotion is Opportunistic by default; both readings of the SDPS target."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lmtoolkit.errors import ConfigError
from lmtoolkit.model import HotColdWorkload
from lmtoolkit.model.host import Host
from lmtoolkit.policies import VmwarePolicy
from lmtoolkit.policies.base import State
from tests.conftest import after_pass, run, scenario, stop_reason

ENGINES = ("page", "fluid")


def test_encrypted_vmotion_is_opportunistic_by_default():
    """ "The default is Opportunistic": encrypted between hosts of 6.5 or later."""
    assert VmwarePolicy().encryption is True  # generic (6.0U3 … 9.0.1 dumps)
    assert VmwarePolicy(profile="vsphere7").encryption is True
    assert VmwarePolicy(profile="vsphere5").encryption is False  # before 6.5
    assert VmwarePolicy(encryption=False).encryption is False  # the Disabled state


@pytest.mark.parametrize("engine", ENGINES)
def test_encryption_costs_cpu_when_the_cipher_is_slower_than_the_link(engine):
    scn = dataclasses.replace(scenario(memory_gib=2.0, gbit=40, engine=engine), host=Host(spare_cores=1))
    # 7.0U2+: as many streams as 40 Gbit/s needs (one stream helper carries ~15)
    plain = run(dataclasses.replace(scn, policy=VmwarePolicy(profile="vsphere7", encryption=False)))
    default = run(dataclasses.replace(scn, policy=VmwarePolicy(profile="vsphere7")))
    # one spare core of AES-GCM (host.encrypt_gib_s_per_core) instead of 40 Gbit/s
    assert plain.total_time_s == pytest.approx(0.458, rel=0.01)
    assert default.total_time_s == pytest.approx(1.333, rel=0.01)


@pytest.fixture(scope="module")
def sdps():
    hot = HotColdWorkload(dirty_rate_pages_s=60_000, hot_mib=512)
    return {
        (reading, mode, e): run(
            scenario(
                memory_gib=2.0,
                workload=hot,
                engine=e,
                policy=VmwarePolicy(sdps=mode, sdps_target_reading=reading),
            )
        )
        for reading in ("ratio", "exceed")
        for mode in ("dynamic", "on")
        for e in ENGINES
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_sdps_target_readings(sdps, engine):
    """SdpsTargetRate 500: transmit = 5 x dirty ("ratio"), or the literal "exceed dirty by
    500 %" = 6 x dirty ("exceed"): the literal reading stuns harder, leaves less to the pause."""
    for mode in ("dynamic", "on"):
        five, six = sdps["ratio", mode, engine], sdps["exceed", mode, engine]
        assert six.throttle_max > five.throttle_max
        assert six.downtime_s < 0.8 * five.downtime_s
        assert six.guest_slowdown >= five.guest_slowdown
    assert sdps["ratio", "on", engine].total_time_s == pytest.approx(28.35, rel=0.01)
    assert sdps["exceed", "on", engine].total_time_s == pytest.approx(27.61, rel=0.01)


def test_sdps_engines_agree(sdps):
    for (reading, mode, e), rec in sdps.items():
        if e == "fluid":
            page = sdps[reading, mode, "page"]
            assert rec.total_time_s == pytest.approx(page.total_time_s, rel=0.01)
            assert rec.rounds == page.rounds


def test_sdps_target_rate_reads_as_its_setting_says_by_default():
    """``Migrate.SdpsTargetRate`` 500, "Percent by which transmit should be made to exceed
    dirty": transmit = dirty x (1 + 500 %) = 6 x dirty.  A pass that sent as many pages as the
    guest dirtied (ratio 1) now slows the guest to 1/6 of its speed (throttle 0.833; the 5x
    reading gave 0.8), and a hot 2 GiB guest with SDPS on takes 27.61 s / 163 ms (was
    28.35 s / 271 ms)."""
    pol = VmwarePolicy(sdps="on")
    assert pol.sdps_target_reading == "exceed"
    ctx = scenario(memory_gib=2.0).context()
    st = State(())
    pol.init_state(st, ctx)
    st.phase_pages, st.dirty_new = np.float64(1000), np.float64(1000)
    pol.after_sync(st, ctx)
    assert float(st.throttle) == pytest.approx(1 - 1 / 6)
    hot = HotColdWorkload(dirty_rate_pages_s=60_000, hot_mib=512)
    rec = run(scenario(memory_gib=2.0, workload=hot, policy=pol))
    assert rec.total_time_s == pytest.approx(27.61, rel=0.01)
    assert rec.downtime_s == pytest.approx(0.163, rel=0.05)


def test_sdps_target_reading_is_checked():
    with pytest.raises(ConfigError) as e:
        VmwarePolicy(sdps_target_reading="literal")
    assert e.value.key == "sdps_target_reading"


@pytest.mark.parametrize("engine", ENGINES)
def test_one_stream_helper_carries_about_15_gbit_s(engine):
    """ "one stream helper is capable of saturating ±15 GbE … a limiting factor when using 25
    GbE or higher NICs" (VMware 2021): an idle 16 GiB guest on 25 GbE takes bytes / (15
    Gbit/s x payload share) with one stream (before 7.0U2), the line rate with 7.0U2's
    automatic streams; on 10 GbE the helper does not bind."""
    gib = 16.0
    wire = gib * 2**30 * (4096 + 8) / 4096  # every page non-zero, 8-byte headers

    def t(gbit, **kw):
        pol = VmwarePolicy(encryption=False, **kw)
        r = run(scenario(memory_gib=gib, gbit=gbit, engine=engine, policy=pol, zero_fraction=0.0))
        return r.total_time_s

    one, auto = t(25.0), t(25.0, profile="vsphere7")
    assert one == pytest.approx(wire / (15e9 / 8 * 0.94), rel=0.01)  # was the line rate
    assert auto == pytest.approx(wire / (25e9 / 8 * 0.94), rel=0.01)
    assert t(10.0) == pytest.approx(t(10.0, profile="vsphere7"), rel=1e-9)
    assert t(25.0, stream_helper_gbit_s=30.0) == pytest.approx(auto, rel=1e-9)


@pytest.mark.parametrize(
    ("key", "bad"),
    [("switchover_goal_ms", 50.0), ("min_progress_pct", 2000.0), ("sdps_target_pct", 20000.0)],
)
def test_settings_outside_esxis_ranges_are_refused(key, bad):
    """ESXi's settings dump: PreCopySwitchoverTimeGoal 100-100000, PreCopyMinProgressPerc
    1-1000, SdpsTargetRate 1-10000."""
    with pytest.raises(ConfigError, match=key):
        VmwarePolicy(**{key: bad})


@pytest.mark.parametrize(
    ("pct", "ratio", "reason"), [(130, 1.2, "no_progress"), (130, 1.4, "running"), (110, 1.2, "running")]
)
def test_min_progress_is_130_percent_transmit_over_dirty(pct, ratio, reason):
    """``Migrate.PreCopyMinProgressPerc`` 130 ("Minimum allowed transmit to dirty page ratio
    per pre-copy iteration"): without SDPS a pass that sent 1.2 pages per page dirtied ends
    pre-copy; 1.4 goes on, and so does 1.2 under a 110 % setting."""
    pol = VmwarePolicy(sdps="off", min_progress_pct=pct)
    st, ctx = after_pass(pol, sent=1000 * ratio, dirtied=1000, pending=1e6)
    assert stop_reason(pol, st, ctx) == reason


def test_no_progress_at_the_throttle_cap_ends_precopy():
    """SDPS already stunning the guest at ``sdps_max_throttle`` and still no progress: the
    pass ends pre-copy (no_progress); below the cap SDPS throttles harder instead."""
    pol = VmwarePolicy(sdps="on", sdps_max_throttle=0.9)
    capped, ctx = after_pass(pol, sent=1000, dirtied=1000, pending=1e6, throttle=0.9)
    assert stop_reason(pol, capped, ctx) == "no_progress"
    below, ctx = after_pass(pol, sent=1000, dirtied=1000, pending=1e6, throttle=0.5)
    assert stop_reason(pol, below, ctx) == "running" and float(below.throttle) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("goal_ms", "pages", "reason"),
    [
        (500, 12_100, "converged"),
        (500, 12_300, "running"),
        (100, 12_100, "running"),
        (100, 2_400, "converged"),
    ],
)
def test_switchover_goal_is_the_time_to_send_what_is_left(goal_ms, pages, reason):
    """``Migrate.PreCopySwitchoverTimeGoal`` 500 ms: at 1e8 bytes/s measured, 4104-byte pages,
    what is left fits the goal up to 12,183 pages (2,436 for a 100 ms goal)."""
    pol = VmwarePolicy(switchover_goal_ms=goal_ms, encryption=False)
    st, ctx = after_pass(pol, sent=1e5, dirtied=1, pending=pages)
    assert stop_reason(pol, st, ctx) == reason
