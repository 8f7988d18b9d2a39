"""The Hydra application behind ``lmtk sweep -m`` (multirun with any Hydra launcher).

    lmtk sweep -m experiment=quickstart network=1gbe,10gbe hydra/launcher=joblib
    python -m lmtoolkit.hydra_app -m experiment=memory_scaling policy=vmware,hyperv \\
        hydra/launcher=submitit_slurm hydra.launcher.partition=compute

Each job runs :func:`lmtoolkit.sweep.run` on its own overrides.  In a multirun the job's
results go to its Hydra output directory, ``<hydra.sweep.dir>/<job num>/`` (beside
``.hydra/overrides.yaml``), as :func:`~lmtoolkit.sweep.run` lays them out under a results
directory: ``<exp>/variants/<hash>/<exp>.nc`` (``<exp>/<exp>.nc`` for a job whose overrides
only pick the experiment and how it runs), which ``lmtk collect multirun/<date>/<time>`` merges into one
Dataset.  A single run (no ``-m``) writes to ``paths.results_dir`` like ``lmtk sweep``.
"""

from __future__ import annotations

import hydra

from .paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg) -> str:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .sweep import run

    hc = HydraConfig.get()
    overrides = [str(o) for o in hc.overrides.task]
    if hc.mode == RunMode.MULTIRUN:
        overrides = [o for o in overrides if not o.lstrip("+~").startswith("paths.results_dir=")]
        overrides.append(f"paths.results_dir={hc.runtime.output_dir}")
        overrides.append("sweep.progress=false")
    ds, info = run(overrides, command="lmtk sweep -m " + " ".join(hc.overrides.task))
    print(
        f"job {hc.job.num if hc.mode == RunMode.MULTIRUN else '-'}: {info['path']} "
        f"({'cached' if info['cached'] else str(info['chunks_computed']) + ' chunks computed'})"
    )
    return str(info["path"])


def cli() -> int:
    """Run :func:`main` (Hydra reads ``sys.argv``); Ctrl-C ends it quietly with status 130.

    Ctrl-C reaches ``lmtk sweep -m`` and this process alike (one process group): the parent
    says "lmtk: interrupted", and this one had added a 60-line KeyboardInterrupt traceback
    (Hydra reports only ``Exception``).  The finished chunks stay in ``.partial/``: the same
    command resumes."""
    try:
        main()
    except KeyboardInterrupt:
        return 130
    return 0


#: what ``lmtk sweep -m`` runs with ``python -c``: :func:`cli`, with a Ctrl-C during the
#: imports (the first second or so) as quiet as one later
CHILD = (
    "import sys\n"
    "try:\n"
    "    from lmtoolkit.hydra_app import cli\n"
    "except KeyboardInterrupt:\n"
    "    sys.exit(130)\n"
    "sys.exit(cli())\n"
)


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(cli())
