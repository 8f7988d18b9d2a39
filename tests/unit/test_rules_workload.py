"""Workload pacing (issue 12, rule 5): a writer paced by guest progress slows with the
guest's throttle; one paced by the wall clock catches up and slows only when its peak rate,
scaled by the throttle, falls below its target (lmtoolkit/model/workload.py)."""

from __future__ import annotations

import pytest

from lmtoolkit.errors import ConfigError
from lmtoolkit.model import HotColdWorkload, UniformWorkload
from lmtoolkit.policies import QemuPolicy
from tests.conftest import run, scenario

ENGINES = ("page", "fluid")


def test_write_speed_by_pacing():
    guest = UniformWorkload(dirty_rate_pages_s=10_000)
    wall = UniformWorkload(dirty_rate_pages_s=10_000, pacing="wall")
    capped = UniformWorkload(dirty_rate_pages_s=10_000, pacing="wall", max_rate_pages_s=25_000)
    assert float(guest.write_speed(0.3)) == pytest.approx(0.3)
    assert float(wall.write_speed(0.3)) == 1.0  # catches up: no slowdown
    assert float(capped.write_speed(0.5)) == 1.0  # 0.5 x 25k >= 10k
    assert float(capped.write_speed(0.2)) == pytest.approx(0.5)  # 0.2 x 25k = 5k of 10k


@pytest.fixture(scope="module")
def paced():
    out = {}
    for name, kw in (
        ("guest", {}),
        ("wall", dict(pacing="wall")),
        ("wall2x", dict(pacing="wall", max_rate_pages_s=120_000)),
    ):
        hot = HotColdWorkload(dirty_rate_pages_s=60_000, hot_mib=256, **kw)
        for e in ENGINES:
            out[name, e] = run(
                scenario(workload=hot, engine=e, policy=QemuPolicy(timeout_s=120, auto_converge=True))
            )
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_auto_converge_against_both_pacings(paced, engine):
    guest, wall, wall2x = (paced[n, engine] for n in ("guest", "wall", "wall2x"))
    # guest pacing: the throttle cuts the write rate, 60 % suffices
    assert guest.converged and guest.total_time_s == pytest.approx(31.0, rel=0.01)
    assert guest.throttle_max == pytest.approx(0.6)
    # a clock-paced writer with unbounded headroom is not slowed at all: no convergence
    assert not wall.converged and wall.stop_reason == "timeout" and wall.throttle_max == pytest.approx(0.99)
    # with twice the target rate in reserve it slows only past 50 %: 90 % needed, 41 % longer
    assert wall2x.converged and wall2x.throttle_max == pytest.approx(0.9)
    assert wall2x.total_time_s == pytest.approx(43.8, rel=0.01)


def test_pacing_engines_agree(paced):
    for n in ("guest", "wall", "wall2x"):
        p, f = paced[n, "page"], paced[n, "fluid"]
        assert f.total_time_s == pytest.approx(p.total_time_s, rel=0.01), n
        assert f.converged == p.converged


def test_pacing_keys_are_checked():
    with pytest.raises(ConfigError) as e:
        UniformWorkload(pacing="clock")
    assert e.value.key == "pacing"
    with pytest.raises(ConfigError) as e:
        UniformWorkload(dirty_rate_pages_s=10_000, pacing="wall", max_rate_pages_s=5_000)
    assert e.value.key == "max_rate_pages_s"


# -- a sequential writer's phase (workload.sweep_start) -------------------------------------------
def test_sweep_start_places_the_write_cursor():
    """The sampler's cursor starts ``sweep_start`` into the working set and wraps at its end."""
    import numpy as np

    wl = UniformWorkload(dirty_rate_pages_s=1000, wss_mib=40, pattern="sequential", sweep_start=0.75)
    p, _ = wl.sampler(262144, 4096, np.random.default_rng(0)).sample(0.0, 3.0)  # 3000 writes
    assert sorted(p.tolist()) == list(range(0, 441)) + list(range(7681, 10240))
    random = UniformWorkload(dirty_rate_pages_s=1000)
    assert random.regions(1000, 4096)[0].start == 0.0  # random writes: no cursor


def _seq(phase, engine):
    return run(
        scenario(
            memory_gib=0.5,
            workload=UniformWorkload(
                dirty_rate_pages_s=5000, wss_mib=64, pattern="sequential", sweep_start=phase
            ),
            policy=QemuPolicy(max_bandwidth_mib_s=64),
            engine=engine,
            gbit=10.0,
        )
    )


def test_sweep_start_decides_what_the_passes_resend_on_both_engines():
    """Where the writer stands against the send cursor decides how many of its writes land on
    pages already sent: at 0 (and 0.75) it trails the cursor into the second pass (4 rounds),
    a quarter in it stays ahead of it until the pass ends (3 rounds, 17 MiB less)."""
    out = {(ph, e): _seq(ph, e) for ph in (0.0, 0.25, 0.5, 0.75) for e in ENGINES}
    for ph in (0.0, 0.25, 0.5, 0.75):
        page, fluid = out[ph, "page"], out[ph, "fluid"]
        assert fluid.total_time_s == pytest.approx(page.total_time_s, rel=0.01)
        assert fluid.transferred_bytes == pytest.approx(page.transferred_bytes, rel=0.01)
        assert fluid.rounds == page.rounds
    a, b = out[0.0, "page"], out[0.25, "page"]
    assert (a.rounds, b.rounds) == (4, 3)
    assert a.total_time_s == pytest.approx(9.214, abs=0.01) and b.total_time_s == pytest.approx(
        8.916, abs=0.01
    )
    assert (a.transferred_bytes - b.transferred_bytes) / 2**20 == pytest.approx(17.6, abs=0.5)


def test_sweep_start_is_checked():
    with pytest.raises(ConfigError, match="sweep_start"):
        UniformWorkload(pattern="sequential", sweep_start=1.0)
    with pytest.raises(ConfigError, match="sweep_start"):
        UniformWorkload(pattern="sequential", sweep_start=-0.1)


# -- keys nothing reads are refused away from their defaults (as a policy's unused_fields) ---------
@pytest.mark.parametrize(
    "make, key, words",
    [
        # a random writer has no cursor: sweep_start=0.5 ran as 0 (same 10.82 s)
        (
            lambda: UniformWorkload(dirty_rate_pages_s=1000, sweep_start=0.5),
            "sweep_start",
            "pattern=sequential",
        ),
        (lambda: HotColdWorkload(sweep_start=0.25), "sweep_start", "pattern=sequential"),
        # a guest-paced writer has no peak: range-checked, then ignored
        (
            lambda: UniformWorkload(dirty_rate_pages_s=1000, max_rate_pages_s=6000),
            "max_rate_pages_s",
            "pacing=wall",
        ),
        (lambda: _idle(wss_mib=64.0), "wss_mib", "writes nothing"),
        (lambda: _idle(pacing="wall"), "pacing", "writes nothing"),
        (lambda: _phased_with(sweep_start=0.5), "sweep_start", "phases[i].sweep_start"),
        # the engines read each phase's layout (Workload.phase_at): the page engine's pre-paging
        # had read this one (12,292 faults of a hot/cold phase became 19,534)
        (lambda: _phased_with(pattern="sequential"), "pattern", "phases[i].pattern"),
        (lambda: _trace_with(pattern="sequential"), "pattern", "its file recorded"),
        (lambda: _phased_with(pacing="wall", max_rate_pages_s=5e4), "max_rate_pages_s", "never slowed"),
        (lambda: _phased_with(phase=dict(pacing="wall")), "phases[0].pacing", "paces every phase"),
    ],
)
def test_keys_nothing_reads_are_refused(make, key, words):
    with pytest.raises(ConfigError) as e:
        make()
    assert e.value.key == key
    text = str(e.value)
    assert text.startswith(f"{key}=") and "change nothing" in text and words in text, text
    assert len(text.splitlines()) == 1


def test_keys_read_in_their_mode_are_accepted():
    assert UniformWorkload(pattern="sequential", sweep_start=0.5).sweep_start == 0.5
    assert UniformWorkload(dirty_rate_pages_s=10, pacing="wall", max_rate_pages_s=20).max_rate_pages_s == 20
    assert _phased_with(pacing="wall").pacing == "wall"  # the phased workload's own pacing is read


def _idle(**kw):
    from lmtoolkit.model import IdleWorkload

    return IdleWorkload(**kw)


def _trace_with(**kw):
    import numpy as np

    from lmtoolkit.model import TraceWorkload

    return TraceWorkload(counts=(1,), pages=np.array([0]), **kw)


def _phased_with(phase=None, **kw):
    from lmtoolkit.model import PhasedWorkload

    first = UniformWorkload(dirty_rate_pages_s=1000.0, **(phase or {}))
    return PhasedWorkload(
        phases=(first, UniformWorkload(dirty_rate_pages_s=2000.0)), durations_s=(1.0, 1.0), **kw
    )


def _phased(first_s: float, second_s: float):
    from lmtoolkit.model import PhasedWorkload

    quiet = UniformWorkload(dirty_rate_pages_s=19_000.0, wss_mib=82.0)
    burst = HotColdWorkload(dirty_rate_pages_s=57_500.0, hot_mib=64.0, hot_fraction=0.9)
    return PhasedWorkload(phases=(quiet, burst), durations_s=(first_s, second_s))


@pytest.mark.parametrize("durations", [(6.64, 8.23), (0.3, 0.2)])
def test_the_fluid_engine_follows_a_phased_workload_in_time(durations):
    """A phased workload writes at its phases' rates in turn (``PhasedWorkload``; the page
    engine samples each phase in its own guest time).  The fluid engine used the cycle's mean
    rates whatever the time: a migration over in 0.8 s, inside the quiet 6.64 s phase, was
    re-sent 10,008 pages in its second round where the page engine re-sends 5,761 (the burst's
    rates mixed in), and a Hyper-V-like run it should converge hit its pass cap.  It now takes
    the mean rates of the phases each of its rounds spans."""
    from lmtoolkit.policies import VmwarePolicy

    kw = dict(
        memory_gib=0.474, workload=_phased(*durations), policy=VmwarePolicy(), gbit=4.2, zero_fraction=0.3
    )
    page = [run(scenario(engine="page", seed=s, **kw)) for s in (1, 2)]
    fluid = run(scenario(engine="fluid", **kw))
    ref = sum(p.round_detail[1].pages for p in page) / 2
    assert fluid.round_detail[1].pages == pytest.approx(ref, rel=0.02)
    assert fluid.total_time_s == pytest.approx(page[0].total_time_s, rel=0.01)
    if durations[0] > 1.0:  # inside the quiet phase: as the quiet workload alone
        alone = run(scenario(engine="fluid", **{**kw, "workload": _phased(*durations).phases[0]}))
        assert fluid.round_detail[1].pages == pytest.approx(alone.round_detail[1].pages, rel=1e-9)


def test_a_fluid_batch_mixing_phased_and_steady_workloads_answers_each_as_alone():
    from lmtoolkit.engine import simulate_fluid

    scns = [
        scenario(memory_gib=0.5, workload=_phased(0.3, 0.2), gbit=4.0, engine="fluid"),
        scenario(
            memory_gib=0.5, workload=UniformWorkload(dirty_rate_pages_s=20_000.0), gbit=4.0, engine="fluid"
        ),
        scenario(memory_gib=0.5, workload=_phased(2.0, 1.0), gbit=4.0, engine="fluid"),
    ]
    together = simulate_fluid(scns).records()
    for s, t in zip(scns, together):
        alone = run(s)
        assert t.total_time_s == pytest.approx(alone.total_time_s, rel=1e-12)
        assert t.transferred_bytes == pytest.approx(alone.transferred_bytes, rel=1e-12)


def test_a_sequential_phase_is_refused_by_the_fluid_engine():
    from lmtoolkit.model import PhasedWorkload

    wl = PhasedWorkload(
        phases=(
            UniformWorkload(dirty_rate_pages_s=1000.0),
            UniformWorkload(dirty_rate_pages_s=5000.0, pattern="sequential"),
        ),
        durations_s=(1.0, 1.0),
    )
    with pytest.raises(ConfigError, match=r"workload.phases\[1\].pattern=sequential.*engine=page"):
        run(scenario(workload=wl, engine="fluid"))
    assert run(scenario(workload=wl, engine="page")).completed


def test_a_phased_writer_crosses_a_phase_end_that_rounding_hides():
    """At guest time 12.76622727320959 s, phases of 1.6974233400779069 s and 1.0697776432050143 s
    leave 8.9e-16 s of the first phase, below the last bit of 12.77: the sampler's loop stood
    still there, appending empty samples until the machine ran out of memory (a post-copy
    run of a phased guest, 24 GiB, OOM-killed).  It moves on to the next phase."""
    import signal

    import numpy as np

    from lmtoolkit.model import PhasedWorkload

    wl = PhasedWorkload(
        phases=(
            UniformWorkload(dirty_rate_pages_s=128.0),
            HotColdWorkload(dirty_rate_pages_s=12.8, hot_mib=64.0),
        ),
        durations_s=(1.6974233400779069, 1.0697776432050143),
    )
    sampler = wl.sampler(131072, 4096, np.random.default_rng(0))

    def stuck(*_):
        raise TimeoutError("the phased sampler made no progress")

    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(5)
    try:
        pages, times = sampler._sample_guest(12.76622727320959, 16.0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert pages.size == np.unique(pages).size > 0
    assert times.min() >= 12.76622727320959 and times.max() < 16.0


# -- phases far shorter than a pass (page engine: one draw per phase, not per interval) ----------
def _count_region_draws(monkeypatch, limit):
    from lmtoolkit.model import workload as W

    calls = []
    draw = W.RegionSampler._sample_guest

    def counted(self, g0, g1, first=False):
        calls.append(g1 - g0)
        if len(calls) > limit:  # (before: 250,000 draws per 50 ms pass, past 60 s for a run)
            raise AssertionError(f"more than {limit} phase draws")
        return draw(self, g0, g1, first)

    monkeypatch.setattr(W.RegionSampler, "_sample_guest", counted)
    return calls


def test_phases_far_shorter_than_a_pass_run_in_the_page_engine(monkeypatch):
    """``durations_s=[1e-7, 1e-7]``: the page engine stepped through every phase interval
    (past 60 s; 27 s at 1e-5) where the fluid engine took 2.4 s.  It now draws each phase once
    per window on the phase's own clock; both engines agree."""
    kw = dict(memory_gib=0.5, workload=_phased(1e-7, 1e-7), policy=QemuPolicy(timeout_s=60), gbit=10.0)
    calls = _count_region_draws(monkeypatch, limit=20_000)
    page = run(scenario(engine="page", **kw))
    assert len(calls) < 20_000
    fluid = run(scenario(engine="fluid", **kw))
    assert page.converged and fluid.converged and page.rounds == fluid.rounds
    assert page.total_time_s == pytest.approx(fluid.total_time_s, rel=0.01)
    assert page.transferred_bytes == pytest.approx(fluid.transferred_bytes, rel=0.01)


def _phase_samples(wl, fast: bool, windows, seed=0):
    import numpy as np

    smp = wl.sampler(131072, 4096, np.random.default_rng(seed))
    if not fast:
        smp.FAST_INTERVALS = float("inf")  # interval by interval, as before
    return [smp.sample(a, b) for a, b in windows]


def test_one_draw_per_phase_is_the_interval_by_interval_draw():
    """Sequential cursors move only while their phase is active: both ways give the same pages
    at the same times; Poisson writes give the same distribution (distinct pages, times)."""
    import numpy as np

    from lmtoolkit.model import PhasedWorkload

    windows = [(0.0, 0.30713), (0.30713, 0.351), (0.351, 1.2)]  # 300 to 5,900 phase intervals
    seq = PhasedWorkload(
        phases=(
            UniformWorkload(dirty_rate_pages_s=19_937.3, wss_mib=64.0, pattern="sequential", sweep_start=0.3),
            HotColdWorkload(dirty_rate_pages_s=90_001.7, hot_mib=16.0, pattern="sequential"),
        ),
        durations_s=(1.234e-4, 0.777e-4),
    )
    for (p0, t0), (p1, t1) in zip(_phase_samples(seq, True, windows), _phase_samples(seq, False, windows)):
        o0, o1 = np.argsort(p0), np.argsort(p1)
        assert np.array_equal(p0[o0], p1[o1]) and p0.size > 1000
        assert np.allclose(t0[o0], t1[o1], rtol=0, atol=1e-9)
    rnd = _phased(1.234e-4, 0.777e-4)
    seeds = range(4)  # (distinct pages: about 1.3 % standard deviation per draw)
    fast, slow = ([_phase_samples(rnd, f, windows, seed) for seed in seeds] for f in (True, False))
    for w, (a, b) in enumerate(windows):
        n0, n1 = (np.mean([d[w][0].size for d in draws]) for draws in (fast, slow))
        assert n0 == pytest.approx(n1, rel=0.03) and n0 > 1000
        t0, t1 = (np.concatenate([d[w][1] for d in draws]) for draws in (fast, slow))
        assert np.all((t0 >= a) & (t0 <= b))
        assert t0.mean() == pytest.approx(t1.mean(), abs=0.01 * (b - a))
