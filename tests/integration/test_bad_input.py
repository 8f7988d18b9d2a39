"""Bad input, tried as a new user would: one clear line naming the key or path, exit 2,
no traceback, nothing half-written, and nothing wrong silently accepted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lmtoolkit.cli import main
from lmtoolkit.paths import config_dir
from tests.conftest import cli_error

pytestmark = pytest.mark.integration

#: (argv, words the one-line message must contain)
BAD = [
    (["run", "policy.auto_converge=maybe"], ["policy.auto_converge", "true or false"]),
    (["run", "policy.xbzrle=yes"], ["policy.xbzrle", "true or false"]),
    (["run", "vm.page_size_kib=3"], ["vm.page_size_kib", "power of two"]),
    (["run", "vm.page_size_kib=2.5"], ["vm.page_size_kib"]),
    (["run", "vm.memory_gib=true"], ["vm.memory_gib", "number"]),
    (["run", "+foo=1"], ["'foo'"]),
    (["run", "policy="], ["policy=", "available", "qemu"]),
    (["run", "policy=xen", "policy.auto_converge=true"], ["policy.auto_converge", "xen", "qemu"]),
    (["run", "vm.memory_gb=4"], ["vm.memory_gb", "vm.memory_gib"]),
    (["run", "policy=qemux"], ["policy", "qemux", "qemu"]),
    (["run", "vm.zero_fraction=1.5"], ["vm.zero_fraction", "[0, 1]"]),
    (["run", "vm.zero_layout=top"], ["vm.zero_layout", "top", "spread", "linux"]),
    # a huge-page guest is a whole number of pages (QEMU's hugetlbfs/memfd backends refuse
    # others): 1.9 GiB in 1 GiB pages ran as a 1 GiB guest (9.14 s, "memory 1.00 GiB")
    (
        ["run", "network=1gbe", "policy=stopcopy", "vm.memory_gib=1.9", "vm.page_size_kib=1048576"],
        ["vm.memory_gib=1.9", "vm.page_size_kib=1048576", "hostmem.c", "use 1 or 2"],
    ),
    # a write rate on the idle workload would be ignored: the run would silently be idle
    (
        ["run", "workload=idle", "workload.dirty_rate_pages_s=5000"],
        ["workload.dirty_rate_pages_s", "idle", "uniform"],
    ),
    # infinite sizes, costs and limits: timeout_s=inf hung the page engine (and ran 10^9 rounds
    # in the fluid one), a 1e308 MiB XBZRLE cache was an OverflowError, the rest inf results
    (["run", "policy.timeout_s=inf"], ["policy.timeout_s=inf", "finite"]),
    (["run", "policy.stop_overhead_ms=inf"], ["policy.stop_overhead_ms=inf", "finite"]),
    (["run", "policy.xbzrle_cache_mib=1e308"], ["policy.xbzrle_cache_mib", "1.75922e+13"]),
    (["run", "power.peak_w=inf"], ["power.peak_w=inf", "[0, 1e+06]"]),
    (["run", "storage.disk_gib=inf"], ["storage.disk_gib=inf", "(0, 1e+06]"]),
    (["run", "host.numa_node_gib=inf"], ["host.numa_node_gib=inf", "finite"]),
    (
        ["run", "workload=uniform", "workload.dirty_rate_pages_s=inf"],
        ["workload.dirty_rate_pages_s=inf", "2.048e+13"],
    ),
    # beyond any memory's write rate, or an iteration past the timeout: NaN pages ("rule
    # phase_pages gave pages = nan", naming no key) or an OverflowError traceback (sequential)
    (
        ["run", "workload=sequential", "workload.dirty_rate_pages_s=1e308"],
        ["workload.dirty_rate_pages_s=1e+308", "[0, 2.048e+13] pages/s", "4096 vCPUs"],
    ),
    (["run", "policy.iteration_ms=1e308"], ["policy.iteration_ms=1e+308", "(0, 600000] ms", "timeout_s"]),
    (["run", "policy=vmware", "policy.min_progress_pct=inf"], ["policy.min_progress_pct=inf", "[1, 1000]"]),
    (["run", "policy=postcopy", "policy.fault_overhead_us=inf"], ["policy.fault_overhead_us=inf", "finite"]),
    # a plug-in that does not import: the key lacked its group and the message the way out
    (["run", "policy=custom", "policy._target_=no_such_module.P"], ["policy._target_=", "PYTHONPATH"]),
    # keys Xen's rules never read: they ran as the default (a downtime axis gave equal rows)
    (
        ["run", "policy=xen", "policy.downtime_limit_ms=30"],
        ["policy.downtime_limit_ms=30", "policy xen", "change nothing"],
    ),
    (["run", "policy=xen", "policy.zero_page_bytes=4000"], ["policy.zero_page_bytes=4000", "whole"]),
    # per-page framing beyond a page: post-copy reported 6.5e16 bytes for a 2 GiB guest
    *[
        (
            ["run", f"policy={p}", "policy.page_header_bytes=1e12"],
            ["policy.page_header_bytes=", "[0, 1024] bytes"],
        )
        for p in ("postcopy", "qemu", "xen", "hyperv", "vmware", "stopcopy", "hybrid")
    ],
    (["run", "policy.zero_page_bytes=2000"], ["policy.zero_page_bytes=2000", "[0, 1024] bytes", "264 B"]),
    # keys nothing reads in the workload's, storage's or policy's mode: each ran as its default
    # (a random writer's sweep_start=0.5 gave the same 10.82 s as 0)
    (
        ["run", "workload=uniform", "workload.sweep_start=0.5"],
        ["workload.sweep_start=0.5", "workload uniform", "pattern=sequential", "change nothing"],
    ),
    (
        ["run", "workload=uniform", "workload.pacing=guest", "workload.max_rate_pages_s=6000"],
        ["workload.max_rate_pages_s=6000", "pacing=wall", "change nothing"],
    ),
    (
        ["run", "storage=shared", "storage.disk_gib=100"],
        ["storage.disk_gib=100", "storage.mode=shared", "mode=migrate", "change nothing"],
    ),
    (
        ["run", "policy=postcopy", "policy.dst_populate_mib_s=20"],
        ["policy.dst_populate_mib_s=20", "policy postcopy", "device state", "change nothing"],
    ),
    (
        ["sweep", "experiment=downtime_target", "policy=xen", "debug=default"],
        ["sweep.axes.downtime_limit", "policy.downtime_limit_ms=", "policy xen"],
    ),
    # the abstract base: a NotImplementedError traceback from converged() mid-run
    (["run", "policy=custom", "policy._target_=lmtoolkit.policies.base.Policy"], ["_target_", "converged"]),
    (["run", "experiment=quickstart"], ["sweep axes", "lmtk sweep"]),
    (["run", "task=nonsense"], ["task", "migration", "evacuation"]),
    (["run", "-o", "/proc/x.nc"], ["/proc/x.nc", "--output"]),
    # an error named a policy rule's t_nz = 0.0 (the link had no finite rate)
    (
        ["run", "network.bandwidth_gbit_s=inf", "network.stream_gbit_s=inf"],
        ["network.bandwidth_gbit_s=inf", "finite"],
    ),
    # an empty path wrote to the default one, silently
    (["run", "-o", ""], ["--output=''", "leave the option out"]),
    (["evacuate", "-o", ""], ["--output=''"]),
    (["run", "paths.results_dir=/proc/x"], ["/proc/x", "paths.results_dir"]),
    (["evacuate", "experiment=quickstart"], ["task=migration"]),
    (["evacuate", "evacuation.order=random"], ["evacuation.order", "largest_first"]),
    # it named evacuation.vms[3].hot_mib, which is not a VM key
    (["evacuate", "workload=hpc"], ["evacuation.vms[3].wss_mib=64", "workload.hot_mib=512"]),
    # accepted, recorded as page, and run on the fluid engine
    (["evacuate", "engine=page"], ["engine=page", "evacuation", "engine=fluid"]),
    # these were tracebacks (ValueError from float()/int()) or silently truncated (2.5 VMs -> 2)
    (["evacuate", "evacuation.vms=[{name: x, memory_gib: abc}]"], ["evacuation.vms[0].memory_gib", "number"]),
    (
        ["evacuate", "evacuation.vms=[{name: x, memory_gib: 4, count: 2.5}]"],
        ["evacuation.vms[0].count", "integer"],
    ),
    (
        ["evacuate", "evacuation.vms=[{name: x, memory_gib: 4, count: 0}]"],
        ["evacuation.vms", "every count is 0"],
    ),
    (
        ["evacuate", "evacuation.destinations=[{name: h1, link_gbit_s: abc}]"],
        ["evacuation.destinations[0].link_gbit_s", "number"],
    ),
    (["evacuate", "evacuation.concurrency=2.5"], ["evacuation.concurrency", "integer"]),
    (["evacuate", "evacuation.setup_s=abc"], ["evacuation.setup_s", "number"]),
    # an infinite setup left every VM "not moved: cannot converge at its share"
    (["evacuate", "evacuation.setup_s=inf"], ["evacuation.setup_s", "finite"]),
    # two VMs of one name: the results are indexed by name, one VM vanished from them (and from
    # the makespan and totals)
    (
        ["evacuate", "evacuation.vms=[{name: a, memory_gib: 1, count: 2}, {name: a-1, memory_gib: 8}]"],
        ["evacuation.vms[1].name", "'a-1'", "its own name"],
    ),
    (
        ["evacuate", "evacuation.vms=[{name: a, memory_gib: 1}, {name: a, memory_gib: 2}]"],
        ["evacuation.vms[1].name", "'a'"],
    ),
    # a VM's own write rate under a workload that states its writes elsewhere was ignored (and
    # still reported in the Dataset, and used to order the VMs)
    (
        [
            "evacuate",
            "workload=phased",
            "evacuation.vms=[{name: a, memory_gib: 1, dirty_rate_pages_s: 100000}]",
        ],
        ["evacuation.vms[0].dirty_rate_pages_s=100000", "no effect", "phases"],
    ),
    (
        ["evacuate", "workload=trace", "evacuation.vms=[{name: a, memory_gib: 1, wss_mib: 10}]"],
        ["evacuation.vms[0].wss_mib=10", "no effect", "trace"],
    ),
    (["sweep", "experiment=nope"], ["experiment", "nope", "quickstart"]),
    (["sweep"], ["experiment=NAME"]),
    (["sweep", "experiment=quickstart", "sweep.executor=gpu"], ["sweep.executor", "inline"]),
    (
        [
            "sweep",
            "experiment=quickstart",
            "sweep.axes.dirty_rate.values={start: 0, stop: 5, num: 3, log: true}",
        ],
        ["sweep.axes.dirty_rate.values", "> 0"],
    ),
    (["sweep", "experiment=quickstart", "sweep.axes.dirty_rate.values=[]"], ["sweep.axes.dirty_rate.values"]),
    # ran, with a coordinate [1 1] (true read as 1)
    (
        ["sweep", "experiment=quickstart", "+sweep.axes.mem={key: vm.memory_gib, values: [1, true]}"],
        ["sweep.axes.mem.values", "one kind of value"],
    ),
    (["sweep", "-m", "experiment=quickstart", "hydra/launcher=jobib"], ["hydra/launcher", "joblib"]),
    # a comma list without -m: Hydra's "Ambiguous value ... use key=[value1,value2]" (a list,
    # which vm.memory_gib is not); for a group "unknown network '1gbe,10gbe'"
    (
        ["sweep", "experiment=quickstart", "vm.memory_gib=1,2"],
        ["vm.memory_gib=1,2", "lmtk sweep -m", "+sweep.axes.NAME={key: vm.memory_gib, values: [1, 2]}"],
    ),
    (
        ["sweep", "experiment=quickstart", "network=1gbe,10gbe"],
        ["network=1gbe,10gbe", "lmtk sweep -m", "{key: network, values: [1gbe, 10gbe]}"],
    ),
    (["run", "seed=range(3)"], ["seed=range(3)", "lmtk sweep -m", "values: [0, 1, 2]"]),
    # a bad second value: a Hydra traceback in its job, after the first job had run
    (
        ["sweep", "-m", "experiment=quickstart", "debug=default", "seed=1,2", "vm.memory_gib=0.5,-1"],
        ["vm.memory_gib=-1", "[3.8147e-06, 65536] GiB"],
    ),
    # one range for every refused size (-1 said "(0, 65536]", 1e-9 "[3.8147e-06, 65536]"):
    # at least one page of the guest's page size
    (["run", "vm.memory_gib=-1"], ["vm.memory_gib=-1", "[3.8147e-06, 65536] GiB: at least one 4 KiB page"]),
    (
        ["run", "vm.memory_gib=1e-9"],
        ["vm.memory_gib=1e-09", "[3.8147e-06, 65536] GiB: at least one 4 KiB page"],
    ),
    (
        ["run", "vm.memory_gib=0", "vm.page_size_kib=2048"],
        ["vm.memory_gib=0", "[0.00195312, 65536] GiB: at least one 2048 KiB page"],
    ),
    (
        [
            "sweep",
            "experiment=quickstart",
            "debug=default",
            "sweep.executor=dask",
            "sweep.dask_address=tcp://127.0.0.1:1",
        ],
        ["sweep.dask_address", "tcp://127.0.0.1:1"],
    ),
    # a malformed address was a traceback from distributed (ValueError: missing port; unknown
    # address scheme) where a refused one is a line
    *[
        (
            [
                "sweep",
                "experiment=quickstart",
                "debug=default",
                "sweep.executor=dask",
                f"sweep.dask_address={a}",
            ],
            ["sweep.dask_address=", a, "[SCHEME://]HOST:PORT"],
        )
        for a in ("123", "foo://x:1", "tcp://10.0.0.5", "tcp://10.0.0.5:99999")
    ],
    # an address with another executor was silently ignored (the sweep ran inline)
    *[
        (
            [
                "sweep",
                "experiment=quickstart",
                "debug=default",
                f"sweep.executor={e}",
                "sweep.dask_address=tcp://h:8786",
            ],
            [
                "sweep.dask_address=tcp://h:8786 would have no effect",
                f"sweep.executor={e}",
                "sweep.executor=dask",
            ],
        )
        for e in ("inline", "processes")
    ],
    # a netCDF file written under another suffix (.csv), and a collect output that was a traceback
    (["run", "-o", "/tmp/lmtk-bad-input-x.csv"], ["--output='/tmp/lmtk-bad-input-x.csv'", ".nc or .zarr"]),
    (["evacuate", "-o", "/tmp/lmtk-bad-input-x.txt"], ["--output=", ".nc or .zarr"]),
    (["collect", "/tmp", "-o", "/tmp/lmtk-bad-input-x.json"], ["--output=", ".nc or .zarr"]),
    (["collect", "/tmp", "-o", "/proc/x.nc"], ["/proc/x.nc", "--output"]),
    # output directories that cannot be made: tracebacks (figures, site: after the sweeps ran)
    (["figures", "fig01", "-o", "/proc/x"], ["cannot write /proc/x", "--output"]),
    (["figures", "fig01", "--thumbnails", "/proc/x"], ["cannot write /proc/x", "--thumbnails"]),
    (["site", "--smoke", "-o", "/proc/x"], ["cannot write /proc/x", "--output"]),
    (["notebooks", "00", "-o", "/proc/x"], ["cannot write /proc/x", "--output"]),
    (["testbed", "run", "out_dir=/proc/x"], ["cannot write /proc/x", "out_dir"]),
    # a seed axis ran every point with a seed word of the base seed, not the seed it was labelled
    (
        ["sweep", "experiment=quickstart", "+sweep.axes.s={key: seed, values: [1, 2]}"],
        ["'seed' cannot be swept", "sweep.replicates"],
    ),
    # 'maybe' was read as true; an empty axis key was an omegaconf traceback
    (
        ["sweep", "experiment=quickstart", "sweep.common_random_numbers=maybe"],
        ["sweep.common_random_numbers", "true or false"],
    ),
    (
        ["sweep", "experiment=quickstart", "sweep.axes.dirty_rate.key="],
        ["sweep.axes.dirty_rate.key", "not a config key"],
    ),
    (
        ["sweep", "experiment=quickstart", "sweep.axes.dirty_rate.key=null"],
        ["sweep.axes.dirty_rate.key", "None"],
    ),
    # an override of a swept key was replaced at every point: the sweep ran without it, silently
    (
        ["sweep", "experiment=quickstart", "policy=xen"],
        ["policy=xen", "no effect", "sweep.axes.policy.values=[xen]"],
    ),
    (
        ["sweep", "experiment=quickstart", "workload.dirty_rate_pages_s=5000"],
        ["workload.dirty_rate_pages_s=5000", "axis dirty_rate", "sweep.axes.dirty_rate.values=[5000]"],
    ),
    # a phased workload: phases that are not workloads were a TypeError traceback, and its own
    # write rate or working set was dropped unseen (each phase has its own)
    (["run", "workload=phased", "workload.phases=[1,2]"], ["workload.phases=[1, 2]", "a list of workloads"]),
    (["run", "workload=phased", "workload.durations_s=5"], ["workload.durations_s=5", "one per phase"]),
    (["run", "workload=phased", "+workload.wss_mib=64"], ["workload.wss_mib=64", "no effect", "phases[i]"]),
    # a trace replays its file's writes: a rate, working set or pattern given to it (as the
    # unknown-key hint suggested, with +) was dropped unseen and the run cached as another config
    (
        ["run", "workload=trace", "+workload.dirty_rate_pages_s=500000"],
        ["workload.dirty_rate_pages_s=500000", "no effect", "workload.file"],
    ),
    (["run", "workload=trace", "+workload.foo=1"], ["workload.foo=1", "no effect"]),
    # keys added to the sweep or paths groups were read by nothing: +sweep.replicate=5 ran one
    # replicate without a word
    (["run", "+sweep.replicate=5"], ["sweep.replicate", "sweep.replicates"]),
    (
        ["sweep", "experiment=quickstart", "+sweep.replicate=5"],
        ["sweep.replicate", "sweep.replicates"],
    ),
    (["run", "+paths.foo=1"], ["paths.foo", "results_dir, data_dir"]),
    # two axes over one key: every point ran with the second axis's value under the first's label
    (
        [
            "sweep",
            "experiment=quickstart",
            "+sweep.axes.x={key: workload.dirty_rate_pages_s, values: [1, 2]}",
        ],
        ["sweep.axes.x.key", "already swept by axis dirty_rate"],
    ),
    # 2000 and 2000.0 are one point: a coordinate with it twice (sel returned both); the error
    # names the values ("has duplicates" named none)
    (
        ["sweep", "experiment=quickstart", "sweep.axes.dirty_rate.values=[2000,2000.0]"],
        ["sweep.axes.dirty_rate.values=[2000, 2000.0]", "duplicates: 2000 = 2000.0"],
    ),
    (
        ["sweep", "experiment=quickstart", "sweep.axes.dirty_rate.values=[1000,5000,1000]"],
        ["duplicates: 1000 2 times"],
    ),
    # ... as given, before sweep.max_values cuts the axis ([2000, 2000, 5000] ran as [2000, 5000])
    (
        [
            "sweep",
            "experiment=quickstart",
            "sweep.max_values=2",
            "sweep.axes.dirty_rate.values=[2000,2000,5000]",
        ],
        ["duplicates: 2000 2 times"],
    ),
    (
        ["sweep", "experiment=quickstart", "sweep.axes.dirty_rate.values={start: 1000, stop: 1000, num: 3}"],
        ["sweep.axes.dirty_rate.values.num=3", "1 when start = stop", "all be 1000"],
    ),
    # generated values: the field at fault named ("a generated axis is {start: a, ...}" did not)
    (
        ["sweep", "experiment=quickstart", "sweep.axes.dirty_rate.values={start: 1000, stop: 2000, n: 3}"],
        ["sweep.axes.dirty_rate.values.n=3", "fields: start, stop, num, log"],
    ),
    (
        [
            "sweep",
            "experiment=quickstart",
            "sweep.axes.dirty_rate.values={start: 1000, stop: 2000, num: 3, step: 5}",
        ],
        ["sweep.axes.dirty_rate.values.step=5", "fields: start, stop, num, log"],
    ),
    (
        ["sweep", "experiment=quickstart", "sweep.axes.dirty_rate.values={start: 1000, num: 3}"],
        ["sweep.axes.dirty_rate.values=", "stop missing"],
    ),
    # units live in key names: `units: Mbit/s` labelled points that ran at 1000 Gbit/s Mbit/s
    (
        ["sweep", "experiment=quickstart", "debug=default", "+sweep.axes.dirty_rate.units=pages/min"],
        [
            "sweep.axes.dirty_rate.units='pages/min'",
            "workload.dirty_rate_pages_s is in pages/s",
            "key, values, long_name",
        ],
    ),
    (
        ["sweep", "experiment=quickstart", "+sweep.axes.dirty_rate.value=3"],
        ["sweep.axes.dirty_rate.value=3", "fields: key, values, long_name", "did you mean values"],
    ),
    # a <group>.name axis is a group swap: policy.name [qemu, xen] ran xen with qemu's keys
    # ("unknown key 'policy.max_bandwidth_mib_s' for policy 'xen'"), workload.name [uniform,
    # hotcold] ran hotcold with uniform's keys, without a word
    (
        [
            "sweep",
            "engine=fluid",
            "vm=small",
            "workload=uniform",
            "network=1gbe",
            "+sweep.axes.p={key: policy.name, values: [qemu, xen]}",
        ],
        ["sweep.axes.p.key='policy.name'", "group axis sweep.axes.p={key: policy, values: [qemu, xen]}"],
    ),
    (
        [
            "sweep",
            "experiment=shared_network",
            "debug=default",
            "+sweep.axes.w={key: workload.name, values: [uniform, hotcold]}",
        ],
        ["sweep.axes.w.key='workload.name'", "{key: workload, values: [uniform, hotcold]}"],
    ),
    # a value of a column axis that one cell refuses (1.5 Gbit/s of background on 1 GbE): it
    # was checked on the first cell only (10gbe) and failed mid-sweep naming neither axis nor cell
    (
        [
            "sweep",
            "experiment=shared_network",
            "sweep.axes.network.values=[10gbe, 1gbe]",
            "sweep.axes.background.values=[0.0, 1.5, 0.5]",
        ],
        ["sweep.axes.background: network.background_gbit_s=1.5", "[0, 1)", "(at network=1gbe)"],
    ),
    # ... or with another column axis of the same object (5 Gbit/s of background at 1 Gbit/s)
    (
        [
            "sweep",
            "experiment=bandwidth_vs_dirty_rate",
            "+sweep.axes.bg={key: network.background_gbit_s, values: [0, 5]}",
        ],
        ["sweep.axes.bg: network.background_gbit_s=5", "(at network.bandwidth_gbit_s=1)"],
    ),
    # ... also on a 1 GbE base: the error is about the point bw=1 x bg=5 the sweep would run
    # (it was the base config's 1 Gbit/s, with no combination named: the same words for a
    # sweep over [10, 25] that no point refuses)
    (
        [
            "sweep",
            "engine=fluid",
            "network=1gbe",
            "+sweep.axes.bw={key: network.bandwidth_gbit_s, values: [1, 10]}",
            "+sweep.axes.bg={key: network.background_gbit_s, values: [0, 5]}",
        ],
        ["sweep.axes.bg: network.background_gbit_s=5", "[0, 1)", "(at network.bandwidth_gbit_s=1)"],
    ),
    # a sweep-wide background refused at a bandwidth the sweep runs (2), not at the base's (1)
    (
        [
            "sweep",
            "engine=fluid",
            "network=1gbe",
            "network.background_gbit_s=5",
            "+sweep.axes.bw={key: network.bandwidth_gbit_s, values: [10, 2]}",
        ],
        ["sweep.axes.bw: network.background_gbit_s=5", "[0, 2)", "(at network.bandwidth_gbit_s=2)"],
    ),
    # a bad value inside a swept group: one line (a note that "every point runs
    # latency_ms=abc" came first)
    (
        ["sweep", "experiment=shared_network", "network.latency_ms=abc"],
        ["network.latency_ms='abc'", "a number"],
    ),
    (
        ["sweep", "experiment=shared_network", "network.latency_ms=-1"],
        ["network.latency_ms=-1", "[0, 60000]"],
    ),
    # a bad value between an axis's ends: refused before any point runs (three chunks were
    # computed and written first), and a generated axis of one value whose stop is dropped
    (
        ["sweep", "experiment=quickstart", "+sweep.axes.zf={key: vm.zero_fraction, values: [0.1, 1.5, 0.6]}"],
        ["sweep.axes.zf: vm.zero_fraction=1.5", "[0, 1]"],
    ),
    (
        ["sweep", "experiment=quickstart", "sweep.axes.dirty_rate.values={start: 1000, stop: 2000, num: 1}"],
        ["sweep.axes.dirty_rate.values.num=1", "at least 2"],
    ),
    # sizes and delays no machine has were accepted: a 1e30 MiB device state ran to the
    # timeout, a 1e30 ms latency changed nothing in pre-copy, a 1e30 GiB disk took 9e29 s
    (["run", "vm.device_state_mib=1e30"], ["vm.device_state_mib", "[0, 65536]"]),
    (["run", "network.latency_ms=1e30"], ["network.latency_ms", "[0, 60000]"]),
    (["run", "storage=migrate", "storage.disk_gib=1e30"], ["storage.disk_gib", "1e+06"]),
    # QEMU's mirror granularity is a power of two from 512 B to 64 MiB (blockdev.c): 3 KiB ran
    (
        ["run", "storage=migrate", "storage.block_kib=3"],
        ["storage.block_kib=3", "power of two", "blockdev_mirror_common"],
    ),
    (["run", "storage=migrate", "storage.block_kib=131072"], ["storage.block_kib=131072", "[0.5, 65536]"]),
    # a point's error names the axis it concerns, and no axis when it concerns none: seed=-1
    # said "(with policy=vmware, network=1gbe)", a bad axis value did not name its axis
    (
        ["sweep", "experiment=quickstart", "sweep.axes.dirty_rate.values=[1000,abc]"],
        ["(at sweep.axes.dirty_rate:"],
    ),
    (["sweep", "experiment=quickstart", "policy.timeout_s=-1"], ["(at sweep.axes.policy: policy=vmware)"]),
    # a key of one option of a policy axis only: named with both sets before any point is built
    (
        ["sweep", "experiment=quickstart", "policy.switchover_goal_ms=-1"],
        ["policy.switchover_goal_ms=-1 is a key of policy vmware but not of policy hyperv"],
    ),
    # a mapping for a list: Hydra's "Error merging override evacuation.vms={a: 1}"
    (["evacuate", "evacuation.vms={a: 1}"], ["evacuation.vms=", "a list"]),
    (["evacuate", "evacuation.source=[1]"], ["evacuation.source=", "a mapping"]),
    # a scalar for a list, or a list of scalars, Hydra merges: ValueError/TypeError tracebacks
    (["evacuate", "evacuation.vms=foo"], ["evacuation.vms='foo' is not allowed: a list [...]"]),
    (["evacuate", "evacuation.vms=3"], ["evacuation.vms=3 is not allowed: a list [...]"]),
    (["evacuate", "evacuation.vms=[1,2]"], ["evacuation.vms[0]=1 is not allowed: a mapping {key: value"]),
    (["evacuate", "evacuation.destinations=foo"], ["evacuation.destinations='foo' is not allowed: a list"]),
    (["evacuate", "evacuation.destinations=[1]"], ["evacuation.destinations[0]=1 is not allowed: a mapping"]),
    (["evacuate", "evacuation.source=foo"], ["evacuation.source='foo' is not allowed: a mapping"]),
    # QEMU up to 10.0 refuses postcopy-ram with multifd (options.c: migrate_caps_check)
    (
        ["run", "policy=hybrid", "policy.multifd_channels=2", "policy.qemu_version=9.2"],
        ["policy.multifd_channels=2", "Postcopy is not yet compatible with multifd", "10.1"],
    ),
    # a null group option or an override without a key was a Hydra ValueError traceback
    (["run", "vm=null"], ["vm=null", "needs an option", "medium"]),
    (["sweep", "experiment=quickstart", "seed=-1"], ["seed=-1", "non-negative integer"]),
    (["evacuate", "power=null"], ["power=null", "liu2011"]),
    (["run", "local=null"], ["local=null", "~local"]),
    (["run", "=5"], ["'=5'", "names no key"]),
    # the hint to add a key with + only where a new key can mean something (a sweep's axes)
    (["run", "vm.memory_gb=4", "network.bandwidth_gbps=1"], ["vm.memory_gb"]),
    # a bad -p value was a failed cell after a kernel had started (and an executed copy left)
    (
        ["notebooks", "quickstart", "--smoke", "-p", "vm.memory_gib=-1"],
        ["vm.memory_gib=-1", "[3.8147e-06, 65536] GiB"],
    ),
    (["notebooks", "01", "--smoke", "-p", "network.bandwidth_gbit_s=0"], ["network.bandwidth_gbit_s=0"]),
    (["notebooks", "--smoke", "-p", "policy.downtime_limit_ms=-5"], ["policy.downtime_limit_ms=-5"]),
]

#: what a single migration does not read, and where it belongs: (argv, words of the one line)
NOT_FOR_RUN = [
    # "unknown key" for a documented key
    (
        ["run", "evacuation.order=smallest_first"],
        [
            "evacuation.order=smallest_first",
            "host evacuations",
            "lmtk evacuate evacuation.order=smallest_first",
        ],
    ),
    # Hydra's "... To append to your default list use +evacuation=gigabit"
    (["run", "evacuation=gigabit"], ["evacuation=gigabit", "lmtk evacuate evacuation=gigabit"]),
    # ... which lmtk run then accepted and ignored, as a migration sweep did
    (["run", "+evacuation=gigabit"], ["+evacuation=gigabit", "task=migration", "lmtk evacuate"]),
    (["run", "+evacuation.order=given"], ["+evacuation.order=given", "task=migration", "lmtk evacuate"]),
    (
        ["sweep", "experiment=quickstart", "+evacuation=gigabit"],
        ["+evacuation=gigabit", "task=migration", "lmtk evacuate"],
    ),
    # a single run has no replicates, executor or cache: ran one migration, exit 0
    (["run", "sweep.replicates=5"], ["sweep.replicates=5", "lmtk sweep", "one migration"]),
    (["run", "sweep.executor=processes"], ["sweep.executor=processes", "lmtk sweep"]),
    (["run", "sweep=default"], ["sweep=default", "lmtk sweep"]),
    # lmtk evacuate task=migration: it said the evacuation group was not read by a migration
    (["evacuate", "task=migration"], ["task='migration'", "lmtk evacuate runs evacuations"]),
]


@pytest.mark.parametrize("argv, words", NOT_FOR_RUN, ids=[" ".join(a) for a, _ in NOT_FOR_RUN])
def test_what_a_command_does_not_read_is_one_line_and_writes_nothing(
    argv, words, capsys, tmp_path, monkeypatch
):
    from lmtoolkit import api

    def simulated(*a, **k):
        raise AssertionError("a migration was simulated")

    monkeypatch.setattr(api, "run_batch", simulated)
    out = tmp_path / "results"
    monkeypatch.setenv("LMT_RESULTS_DIR", str(out))
    err = cli_error(argv, capsys, words)
    assert "To append to your default list" not in err and "unknown key" not in err, err
    assert not out.exists() or not any(out.rglob("*"))


def test_lmtk_run_still_reads_paths_and_its_output(tmp_path, capsys):
    """paths.* keys are read by lmtk run (where its result goes): not refused with sweep.*."""
    assert main(["run", "vm.memory_gib=0.25", f"paths.results_dir={tmp_path / 'r'}"]) == 0
    assert list((tmp_path / "r" / "runs").glob("run_*.nc"))


@pytest.mark.parametrize("argv, words", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2(argv, words, capsys):
    err = cli_error(argv, capsys, words)
    if not any(w.startswith("sweep.axes") for w in words):
        assert "to add a new key" not in err, err
    if argv[-1] == "seed=-1":
        assert "(at " not in err and "with" not in err, err


def test_a_malformed_dask_address_is_refused_before_any_work(monkeypatch, capsys):
    """``sweep.dask_address`` is checked with the other settings, before the sweep is planned."""
    import importlib

    sweep_run = importlib.import_module("lmtoolkit.sweep.run")

    def planned(*a, **k):
        raise AssertionError("the sweep was planned")

    monkeypatch.setattr(sweep_run, "expand_plan", planned)
    argv = ["sweep", "experiment=quickstart", "sweep.cache=false", "sweep.executor=dask"]
    assert main([*argv, "sweep.dask_address=123"]) == 2
    assert "sweep.dask_address=123" in capsys.readouterr().err


def test_bad_notebook_parameter_starts_no_kernel(tmp_path, monkeypatch, capsys):
    """Every target is checked before the first kernel: nothing is executed or written."""
    import lmtoolkit.notebooks as nb

    started = []
    monkeypatch.setattr(nb, "ensure_kernel", lambda *a, **k: started.append(a))
    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path))
    assert main(["notebooks", "00", "20", "--smoke", "-p", "vm.memory_gib=-1"]) == 2
    assert "vm.memory_gib=-1" in capsys.readouterr().err
    assert started == [] and not (tmp_path / "notebooks").exists()
    # the defaults of every notebook and experiment pass the check
    for stem, exp in nb.targets(None, []):
        nb.check_parameters(stem, exp, [], True)


def test_a_sweep_key_for_a_notebook_of_single_migrations_starts_no_kernel(tmp_path, monkeypatch, capsys):
    """``lmtk notebooks 02 -p sweep.replicates=5`` passed the parameter check, started the
    kernel and failed in the first cell that simulates (notebooks 00 and 13, which build their
    runs from the config, dropped the key).  Now refused before any kernel, with
    ``lmt.simulate``'s error; the notebooks that hand their overrides to ``lmt.sweep`` take it."""
    import lmtoolkit.notebooks as nb
    from lmtoolkit.api import check_run_overrides
    from lmtoolkit.errors import ConfigError

    started = []
    monkeypatch.setattr(nb, "ensure_kernel", lambda *a, **k: started.append(a))
    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as simulate_error:
        check_run_overrides(["sweep.replicates=5"])
    assert main(["notebooks", "02", "--smoke", "-p", "sweep.replicates=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lmtk: error: notebook 02_vmware_vs_hyperv runs single migrations: {simulate_error.value}"
    assert started == [] and not (tmp_path / "notebooks").exists()
    single = [s for s, to in nb.OVERRIDES_TO.items() if to == "migration"]
    assert single == [s for s in nb.list_notebooks() if not s.startswith(("12", "2", "3"))]
    for stem in single:
        with pytest.raises(ConfigError, match=rf"^notebook {stem} runs single migrations: sweep.workers=2: "):
            nb.check_parameters(stem, None, ["sweep.workers=2"], True)
    with pytest.raises(
        ConfigError, match=r"^notebook 13_migration_energy runs single migrations: the config declares"
    ):
        nb.check_parameters(
            "13_migration_energy", None, ["+sweep.axes.m={key: vm.memory_gib, values: [1, 2]}"], True
        )
    for stem, exp in ((nb.TEMPLATE, "quickstart"), ("30_paper_figures", None)):  # lmt.sweep's settings
        nb.check_parameters(stem, exp, ["sweep.replicates=1"], True)


def test_the_suggested_axis_override_runs_what_was_asked():
    """What the swept-key error suggests instead (sweep.axes.DIM.values=[...]) runs that value."""
    import lmtoolkit as lmt

    ds = lmt.sweep(["experiment=quickstart", "debug=default", "sweep.axes.policy.values=[xen]"])
    assert ds.policy.values.tolist() == ["xen"]


def test_the_documented_generated_axis_form_works(capsys):
    """README: sweep.axes.dirty_rate.values={start: ..., stop: ..., num: ..., log: true}."""
    assert (
        main(
            [
                "sweep",
                "experiment=quickstart",
                "debug=default",
                "--no-plot",
                "-q",
                "sweep.axes.dirty_rate.values={start: 1000, stop: 2000000, num: 5, log: true}",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "dirty_rate 2" in out  # debug keeps the two ends of the 5 generated values
    import lmtoolkit as lmt

    ds = lmt.sweep(
        [
            "experiment=quickstart",
            "debug=default",
            "sweep.axes.dirty_rate.values={start: 1000, stop: 2000000, num: 5, log: true}",
        ]
    )
    np.testing.assert_allclose(ds.dirty_rate.values, [1000, 2e6])


def test_api_accepts_a_string_or_none():
    import lmtoolkit as lmt

    a = lmt.simulate("policy=qemu vm.memory_gib=0.25")
    b = lmt.simulate(["policy=qemu", "vm.memory_gib=0.25"])
    assert float(a.total_time) == float(b.total_time)
    assert lmt.simulate(None).total_time.item() > 0
    # a mapping {key: value}, Python values written as Hydra's (True -> true, a list -> [a,b])
    c = lmt.simulate({"policy": "qemu", "vm.memory_gib": 0.25, "policy.auto_converge": False})
    assert float(c.total_time) == float(a.total_time)
    assert json.loads(c.attrs["lmt_overrides"]) == [
        "policy=qemu",
        "vm.memory_gib=0.25",
        "policy.auto_converge=false",
    ]


def test_sweep_api_accepts_a_string_or_a_mapping(tmp_path):
    """``lmt.sweep("experiment=quickstart")`` split the string into characters ("override 'e'
    is not of the form key=value"); it takes what ``lmt.simulate`` takes."""
    import lmtoolkit as lmt

    base = ["experiment=quickstart", "debug=default", f"paths.results_dir={tmp_path}"]
    a = lmt.sweep(base)
    b = lmt.sweep(" ".join(base))
    c = lmt.sweep(dict(o.split("=", 1) for o in base))
    np.testing.assert_array_equal(a.total_time.values, b.total_time.values)
    np.testing.assert_array_equal(a.total_time.values, c.total_time.values)


def test_broken_experiment_yaml_is_one_line(tmp_path, monkeypatch, capsys):
    import lmtoolkit as lmt
    from lmtoolkit.errors import ConfigError

    cfgs = tmp_path / "configs"
    shutil.copytree(config_dir(), cfgs)
    (cfgs / "experiment" / "broken.yaml").write_text("sweep:\n  axes: {a: [1, 2\n  b: 3\n")
    monkeypatch.setenv("LMT_CONFIG_DIR", str(cfgs))
    assert main(["sweep", "experiment=broken"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.yaml" in err and "line 3" in err, err
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        lmt.sweep(["experiment=broken"])


@pytest.mark.parametrize(
    "argv, words",
    [
        (["figures", "-o", "{d}", "badid"], ["figure='badid'", "fig01"]),
        (["figures", "--thumbnails", "{d}", "badid"], ["figure='badid'"]),
        (["notebooks", "-o", "{d}", "badname"], ["notebook='badname'", "00_"]),
        (["notebooks", "-o", "{d}", "00", "-p", "vm.memory_gib=-1"], ["vm.memory_gib=-1"]),
    ],
)
def test_a_refused_command_leaves_no_output_directory(argv, words, tmp_path, capsys):
    """The output directory was made by its check, before the IDs were: a refusal left it."""
    d = tmp_path / "new" / "out"
    cli_error([a.format(d=d) for a in argv], capsys, words)
    assert list(tmp_path.iterdir()) == []


def _chattr(flag: str, path: Path) -> bool:
    return (
        shutil.which("chattr") is not None
        and subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="chattr +i needs root")
def test_unwritable_destinations_fail_before_the_work(tmp_path, capsys, monkeypatch):
    """An immutable file, an immutable results directory: one line, and nothing simulated."""
    from lmtoolkit import api

    f, d = tmp_path / "imm.nc", tmp_path / "imdir"
    f.write_bytes(b"old")
    d.mkdir()
    if not (_chattr("+i", f) and _chattr("+i", d)):
        pytest.skip("this file system does not support chattr +i")
    calls = []
    monkeypatch.setattr(api, "run_batch", lambda s: calls.append(1))
    try:
        assert main(["run", "-o", str(f)]) == 2
        assert "cannot be replaced" in capsys.readouterr().err
        assert main(["run", f"paths.results_dir={d}"]) == 2
        assert str(d) in capsys.readouterr().err
        assert main(["sweep", "experiment=quickstart", "debug=default", f"paths.results_dir={d}"]) == 2
        assert str(d) in capsys.readouterr().err
        assert not calls and f.read_bytes() == b"old"
    finally:
        _chattr("-i", f)
        _chattr("-i", d)


def test_timeout_stops_a_migration_mid_pass():
    """network.bandwidth_gbit_s=1e-9: stopped at policy.timeout_s, not 'completed' after years."""
    import lmtoolkit as lmt

    for engine in ("page", "fluid"):
        ds = lmt.simulate(["network.bandwidth_gbit_s=1e-9", f"engine={engine}"])
        assert not ds.completed.item() and not ds.converged.item()
        assert ds.stop_reason.item() == "timeout" and np.isclose(ds.total_time.item(), 600.0)


def test_override_sweeps_never_replace_the_canonical_result(tmp_path):
    from lmtoolkit.sweep import run

    base = ["experiment=quickstart", "debug=default", f"paths.results_dir={tmp_path}"]
    _, canon = run(base)
    stamp = canon["path"].stat().st_mtime_ns
    _, variant = run(base + ["vm.memory_gib=0.5", "sweep.replicates=2"])
    assert variant["path"] != canon["path"] and variant["path"].exists()
    assert canon["path"].stat().st_mtime_ns == stamp
    assert run(base)[1]["cached"] and run(base + ["vm.memory_gib=0.5", "sweep.replicates=2"])[1]["cached"]


def test_readme_experiment_table_counts_are_true():
    """README's experiments table: the points column is what each experiment plans."""
    import re

    from lmtoolkit.sweep import make_plan

    readme = (config_dir().parent / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \|.*\| ([\d,]+) \|$", readme, flags=re.M)
    table = {
        name: int(n.replace(",", ""))
        for name, n in rows
        if (config_dir() / "experiment" / f"{name}.yaml").exists()
    }
    assert len(table) == len(list((config_dir() / "experiment").glob("*.yaml")))
    for name, n in table.items():
        assert make_plan([f"experiment={name}"], expand=False).n_points == n, name


def test_debug_keeps_the_contrast_an_experiment_is_about():
    from lmtoolkit.sweep import make_plan

    plan = make_plan(["experiment=vmware_vs_hyperv", "debug=default"], expand=False)
    policy = next(a for a in plan.axes if a.dim == "policy")
    assert policy.values[0].startswith("vmware") and policy.values[-1].startswith("hyperv")


def test_sweep_table_says_mean_spread_and_stop_reason(capsys):
    assert main(["sweep", "experiment=quickstart", "debug=default", "sweep.replicates=2", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "mean over 2 replicates (± standard deviation)" in out and " ± " in out
    assert "completed" in out and "stop" in out and "converged" in out


def test_a_migration_log_the_readers_refuse_is_one_line_from_lmtk_fit(tmp_path, capsys):
    """A key given twice, a saved MigrationLog with a negative downtime, a _t in Unix time: each
    was fitted (the first two silently wrong, the last refused blaming policy.timeout_s=600)."""
    from lmtoolkit.io import write_dataset
    from lmtoolkit.logs import read_log

    qmp = Path(__file__).resolve().parents[2] / "tests/data/logs/qmp_r10000-h064-rand-bw064-dl0300-n0.jsonl"
    lines = qmp.read_text().splitlines()
    dup = tmp_path / "dup.jsonl"
    dup.write_text("\n".join([*lines[:-1], lines[-1][:-1] + ', "downtime": 300}']) + "\n")
    saved = read_log(qmp).load()
    saved["downtime"].values.fill(-5.0)
    nc = write_dataset(saved, tmp_path / "ml.nc")
    epoch = tmp_path / "epoch.jsonl"
    replies = [json.loads(ln) for ln in lines]
    for r in replies:
        r["_t"] += 1.732e9
        r.pop("total-time", None)
    epoch.write_text("\n".join(json.dumps(r) for r in replies) + "\n")
    for log, words in [
        (dup, ["dup.jsonl line 53", "'downtime' is given twice", "(14, then 300)"]),
        (nc, ["ml.nc (a saved MigrationLog of", "line 53", "-5 s is not allowed"]),
        (epoch, ["epoch.jsonl line 1", "Unix time"]),
    ]:
        out = tmp_path / "fit.yaml"
        assert main(["fit", str(log), "--out", str(out)]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("lmtk: error: "), err
        assert "Traceback" not in captured.err + captured.out and "timeout_s" not in err
        for w in words:
            assert w in err, (w, err)
        assert not out.exists()


ONE_CELL_REFUSES = [
    # 1.5 Gbit/s of background is fine on 10 GbE (the first cell) and not on 1 GbE
    (
        [
            "experiment=shared_network",
            "sweep.axes.network.values=[10gbe, 1gbe]",
            "sweep.axes.background.values=[0.0, 1.5, 0.5]",
            "sweep.axes.dirty_rate.values=[5000]",
        ],
        ["sweep.axes.background", "(at network=1gbe)"],
    ),
    # a bandwidth axis that is not a column (the stream rate follows it) composes its cells:
    # background 5 was checked at the base's 10 Gbit/s only, not in the cell at 1 Gbit/s
    (
        [
            "network=10gbe",
            "network.stream_gbit_s=${network.bandwidth_gbit_s}",
            "+sweep.axes.bw={key: network.bandwidth_gbit_s, values: [10, 1]}",
            "+sweep.axes.bg={key: network.background_gbit_s, values: [0, 5]}",
            "sweep.replicates=2",
        ],
        ["sweep.axes.bg: network.background_gbit_s=5", "[0, 1)", "(at network.bandwidth_gbit_s=1)"],
    ),
]


@pytest.mark.parametrize("argv, words", ONE_CELL_REFUSES, ids=["group cell", "composed cell"])
def test_a_value_one_cell_refuses_writes_nothing(argv, words, tmp_path, monkeypatch, capsys):
    """Page engine, chunks of 4 points: a value the first cells take and a later one refuses
    was refused after the first chunk was written to .partial (and a rerun "resumed" it to
    fail again), naming neither axis nor cell.  Now refused before any point runs."""
    out = tmp_path / "res"
    monkeypatch.setenv("LMT_RESULTS_DIR", str(out))
    cli_error(["sweep", "engine=page", "vm.memory_gib=0.25", *argv], capsys, words)
    assert not out.exists() or not any(out.rglob("*"))


def test_axis_fields_and_max_values_one(tmp_path):
    """An axis's coordinate takes its key's units, with or without a long_name; sweep.max_values=1
    keeps an axis's first value (configs/sweep/default.yaml said "the first N-1 and the last")."""
    from lmtoolkit.sweep import make_plan

    p = make_plan(
        ["experiment=shared_network", "+sweep.axes.background.long_name=other traffic"], expand=False
    )
    bg = {a.dim: a for a in p.axes}["background"]
    assert bg.coord_attrs() == {
        "long_name": "other traffic",
        "lmt_key": "network.background_gbit_s",
        "units": "Gbit/s",
    }
    p = make_plan(["experiment=shared_network", "sweep.max_values=1"], expand=False)
    assert [a.values for a in p.axes] == [["1gbe"], [0.0], [5000]]
    p = make_plan(["experiment=shared_network", "sweep.max_values=3"], expand=False)
    assert [a.values for a in p.axes] == [["1gbe", "10gbe"], [0.0, 0.25, 0.9], [5000, 20000]]


def test_readme_multirun_commands_plan_every_job():
    """Every `lmtk sweep -m` command of the README plans each of its jobs: the SLURM example
    (experiment=memory_scaling policy=vmware,hyperv network=10gbe,100gbe_rdma) was refused
    at every job, "policy=vmware would have no effect: experiment memory_scaling sweeps policy"."""
    import itertools
    import re
    import shlex

    from lmtoolkit.sweep import make_plan

    readme = (config_dir().parent / "README.md").read_text().replace("\\\n", " ")
    commands = re.findall(r"^lmtk sweep -m (.*)$", readme, flags=re.M)
    assert len(commands) >= 2
    for line in commands:
        words = [w for w in shlex.split(line.split("#")[0]) if not w.startswith(("hydra/", "hydra."))]
        choices = [[f"{w.split('=')[0]}={v}" for v in w.split("=", 1)[1].split(",")] for w in words]
        for job in itertools.product(*choices):
            assert make_plan(list(job), expand=False).n_points > 0, (line, job)
