"""``lmtk testbed setup|run`` and ``lmtk validate [DATASET]``."""

from __future__ import annotations

import sys


def cmd_setup(args) -> int:
    from .setup import SetupError, setup

    try:
        setup(force=args.force)
    except SetupError as e:
        print(f"lmtk testbed setup: error: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_run(args) -> int:
    from .matrix import reference_dir, run_matrix
    from .setup import SetupError

    try:
        files = run_matrix(args.overrides, reference=args.reference)
    except SetupError as e:
        print(f"lmtk testbed run: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(files)} run(s)")
    if files and files[0].parent != reference_dir():
        print(f"compare them with the simulator: lmtk validate --data {files[0].parent}")
    return 0


def cmd_validate(args) -> int:
    from .validate import DATASETS, run_validate

    if args.dataset not in DATASETS:
        print(
            f"lmtk: error: unknown dataset '{args.dataset}' (available: {', '.join(sorted(DATASETS))})",
            file=sys.stderr,
        )
        return 2
    return run_validate(
        args.dataset, path=args.data, engine=args.engine, all_runs=args.all, fit_on_data=args.fit_on_data
    )


def add_commands(sub) -> None:
    tb = sub.add_parser("testbed", help="real QEMU live migrations (ground truth for the simulator)")
    tsub = tb.add_subparsers(dest="testbed_command", required=True, metavar="ACTION")
    s = tsub.add_parser(
        "setup",
        help="obtain QEMU 10 (an installed QEMU >= 9 also serves) and a kernel (Debian packages), build the guest",
    )
    s.add_argument("--force", action="store_true", help="download and rebuild everything")
    s.set_defaults(func=cmd_setup)
    r = tsub.add_parser(
        "run",
        help="run a matrix of migrations (configs/testbed/, Hydra overrides); "
        "runs go to <results>/testbed/ unless --reference or out_dir=DIR",
    )
    r.add_argument(
        "overrides", nargs="*", help="e.g. matrix=full run.max_bandwidth_mib_s=100 out_dir=/tmp/tb"
    )
    r.add_argument(
        "--reference",
        action="store_true",
        help="add the runs to the tracked reference set data/testbed/ (what `lmtk validate` "
        "fits on by default)",
    )
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("validate", help="simulate recorded real migrations and report the errors")
    from .validate import DATASETS

    v.add_argument(
        "dataset",
        nargs="?",
        default="testbed",
        help=f"dataset name: {', '.join(sorted(DATASETS))} (default: testbed)",
    )
    v.add_argument(
        "--data",
        help="directory of the dataset's files (default: its registered location; "
        "testbed: the reference set data/testbed/, e.g. --data results/testbed "
        "for your own runs)",
    )
    v.add_argument("--engine", default="page", choices=("page", "fluid"))
    v.add_argument("--all", action="store_true", help="summarise all runs, fitting runs included")
    v.add_argument(
        "--fit-on-data",
        action="store_true",
        help="testbed, with --data: fit the calibration on the fit third of those runs "
        "(default: the reference set's calibration, every run out of sample)",
    )
    v.set_defaults(func=cmd_validate)
