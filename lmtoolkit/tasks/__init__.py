"""What one sweep point is: a migration, a host evacuation.  One interface, one sweep machinery.

Each task (:class:`~lmtoolkit.tasks.base.Task`) knows how to check a config cell, run the
points of a cell, keep its results as plain arrays (partial files, process/Dask boundaries)
and lay them out as a Dataset.  The experiment picks one with the config key ``task``.
"""

from .base import Task
from .evacuation import EvacuationTask
from .migration import MigrationTask

TASKS: dict[str, Task] = {t.name: t for t in (MigrationTask(), EvacuationTask())}


def get_task(name: str) -> Task:
    from ..errors import ConfigError

    if name not in TASKS:
        raise ConfigError("task", name, "one of " + ", ".join(TASKS))
    return TASKS[name]


__all__ = ["Task", "MigrationTask", "EvacuationTask", "TASKS", "get_task"]
