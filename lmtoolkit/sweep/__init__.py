"""Sweeps: an experiment's axes -> a grid of points -> chunks run by an executor -> one Dataset.

    >>> import lmtoolkit as lmt
    >>> ds = lmt.sweep(["experiment=quickstart"])   # dims: policy, network, dirty_rate, replicate, round

One machinery for every task (``task: migration`` — the default — or ``task: evacuation``,
:mod:`lmtoolkit.tasks`): same axes, seeds, chunks, cache, resume after SIGKILL, executors
(inline / processes / Dask), progress bar and Dataset assembly.

* :mod:`.axes` — ``sweep.axes`` -> checked axes (values or group swaps);
* :mod:`.plan` — cells, columns, seeds, chunks, output path (canonical or variant);
* :mod:`.execute` — one chunk, partial files, executors;
* :mod:`.run` — the cache (config + code hash), resume, assembly, files;
* :mod:`.collect` — a Hydra multirun's jobs -> one Dataset.
"""

from .axes import Axis
from .collect import collect
from .execute import ChunkTask, run_chunk
from .plan import Plan, available_experiments, make_plan
from .run import read_result, run, sweep

__all__ = [
    "sweep",
    "run",
    "make_plan",
    "collect",
    "run_chunk",
    "read_result",
    "Plan",
    "Axis",
    "ChunkTask",
    "available_experiments",
]
