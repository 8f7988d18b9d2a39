"""``lmtk`` — the command line.  Every subcommand takes Hydra overrides (``key=value``).

    lmtk run policy=qemu workload=uniform workload.dirty_rate_pages_s=5000

Bad input prints one line (``lmtk: error: …``) and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import provenance
from .api import check_single_migration, simulate
from .compose import compose
from .errors import ConfigError
from .io import DATASET_SUFFIXES, check_writable, write_dataset
from .paths import results_dir

EXIT_USAGE = 2


def _fmt_bytes(b: float) -> str:
    for unit, div in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(b) >= div:
            return f"{b / div:.2f} {unit}"
    return f"{b:.0f} B"


def _fmt_s(s: float) -> str:
    if s != s:
        return "n/a"
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def _transferred_line(ds) -> str:
    """Bytes sent, the memory's share as a multiple of the guest's memory (a disk copied with
    ``storage=migrate`` apart: it had been counted in the memory ratio, 51.92x for 2 GiB)."""
    g = lambda k: float(ds[k].item()) if k in ds else 0.0  # noqa: E731
    disk = g("storage_transferred")
    mem_sent = g("transferred") - disk
    line = f"  transferred     {_fmt_bytes(g('transferred'))}  (memory {_fmt_bytes(g('memory'))}, "
    line += f"{mem_sent / g('memory'):.2f}x"
    return line + (f"; disk {_fmt_bytes(disk)})" if disk > 0 else ")")


def _beyond_lines(ds) -> list[str]:
    """The "Beyond one link" results where they say something (README): the disk copy, a NUMA
    mismatch at the destination, copy errors and checksum re-sends."""
    g = lambda k: float(ds[k].item()) if k in ds else 0.0  # noqa: E731
    out = []
    if g("storage_transferred") > 0:
        # a disk copy not in sync by the timeout takes the whole migration: memory never started
        cut = not bool(ds["completed"].item()) and g("storage_time") >= g("total_time")
        when = "not in sync by the timeout: abandoned, memory not migrated" if cut else "before the memory"
        out.append(
            f"  disk copy       {_fmt_s(g('storage_time'))} {when}, {_fmt_bytes(g('storage_transferred'))}"
        )
    if "numa_compatible" in ds and not bool(ds["numa_compatible"].item()):
        out.append(
            f"  destination     vNUMA does not map onto its nodes: memory-bound work {g('numa_penalty') * 100:.1f}% slower"
        )
    if g("retransmitted") > 0 or g("checksum_cpu_time") > 0 or g("corruption_probability") >= 1e-9:
        checked = g("retransmitted") > 0 or g("checksum_cpu_time") > 0
        out.append(
            f"  copy errors     P(a page arrives corrupted) {g('corruption_probability'):.3g}; "
            + (
                f"checksums: {_fmt_bytes(g('retransmitted'))} re-sent, {g('checksum_cpu_time'):.3g} CPU-s hashing (both hosts)"
                if checked
                else "no checksums (policy.verify_checksums=false)"
            )
        )
    return out


def _abandoned_pause(ds) -> bool:
    """A switchover abandoned at the timeout: not completed, yet a downtime (the pause)."""
    return not bool(ds["completed"].item()) and ds["downtime"].item() == ds["downtime"].item()


def summary_text(ds) -> str:
    """A readable summary of a one-migration Dataset."""
    g = lambda k: ds[k].item()  # noqa: E731
    cfg_hash = ds.attrs.get("lmt_config_hash", "")
    lines = [
        f"policy {ds.attrs.get('lmt_policy', '?')}  engine {ds.attrs.get('lmt_engine', '?')}  "
        f"config {cfg_hash}",
        f"  total time      {_fmt_s(g('total_time'))}",
        f"  downtime        {_fmt_s(g('downtime'))}"
        + ("  (abandoned at the timeout: then resumed on the source)" if _abandoned_pause(ds) else ""),
        _transferred_line(ds),
        f"  pre-copy rounds {g('rounds')}",
        f"  converged       {'yes' if g('converged') else 'no'}  (stop: {g('stop_reason')}; "
        f"completed: {'yes' if g('completed') else 'no'})",
        f"  guest throttle  max {g('throttle_max') * 100:.0f}%, slowdown {g('guest_slowdown') * 100:.1f}%",
    ]
    if g("postcopy_time") > 0:
        lines.append(f"  post-copy       {_fmt_s(g('postcopy_time'))}, {g('postcopy_faults'):.0f} faults")
    lines += _beyond_lines(ds)
    if "energy_total" in ds:  # lmtoolkit.model.energy
        lines.append(
            f"  energy          {g('energy_total'):.1f} J (source {g('energy_source'):.1f}, destination "
            f"{g('energy_destination'):.1f}, network {g('energy_network'):.1f}); guest lost "
            f"{g('guest_lost_cpu_s'):.2f} vCPU-s"
        )
    n = ds.sizes.get("round", 0)
    if n:
        from .records import ROUND_KINDS

        lines.append("")
        lines.append("  round  kind      start      duration   dirty pages   pages sent      bytes")
        rows = list(range(n)) if n <= 12 else list(range(8)) + [None] + list(range(n - 3, n))
        for r in rows:
            if r is None:
                lines.append("    ...")
                continue
            kind = ROUND_KINDS[int(ds.round_kind[r])]
            lines.append(
                f"  {r:5d}  {kind:8s} {_fmt_s(float(ds.round_start[r])):>9s}  "
                f"{_fmt_s(float(ds.round_duration[r])):>10s}  "
                f"{float(ds.round_dirty_pages[r]):12.0f}  {float(ds.round_pages[r]):11.0f}  "
                f"{_fmt_bytes(float(ds.round_bytes[r])):>10s}"
            )
    return "\n".join(lines)


def print_config(cfg) -> int:
    """``--cfg job`` (as Hydra apps take it): the composed config, resolved, every policy
    parameter listed — exactly what the run records as ``lmt_config`` and the cache hashes
    (:func:`lmtoolkit.provenance.config_yaml`: without ``hydra`` and ``paths``, keys sorted)."""
    print(provenance.config_yaml(cfg), end="")
    return 0


def add_cfg_option(parser) -> None:
    parser.add_argument(
        "--cfg",
        choices=["job"],
        help="print the composed config (resolved, every policy parameter) and exit, as Hydra's --cfg job",
    )


def cmd_run(args) -> int:
    cfg = compose(args.overrides)  # the one composition of this command
    if args.cfg:
        return print_config(cfg)
    check_single_migration(cfg, args.overrides)
    out = (
        Path(args.output)
        if args.output
        else results_dir(cfg) / "runs" / f"run_{provenance.config_hash(cfg)}.nc"
    )
    check_writable(out, "--output" if args.output else "paths.results_dir", DATASET_SUFFIXES)
    ds = simulate(args.overrides, command="lmtk run " + " ".join(args.overrides), cfg=cfg)
    write_dataset(ds, out)
    print(summary_text(ds))
    print(f"\nwrote {out}")
    return 0


#: Modules that add subcommands: each defines ``add_commands(subparsers)`` and sets
#: ``func`` on its parsers (``func(args) -> exit status``).  One line per feature area.
COMMAND_MODULES = (
    "lmtoolkit.sweep_cli",  # sweep, collect (issue 4)
    "lmtoolkit.testbed.cli",  # lmtk testbed setup|run, lmtk validate [DATASET]
    "lmtoolkit.trace.cli",  # lmtk trace -- COMMAND (dirty-page capture)
    "lmtoolkit.notebooks",  # lmtk notebooks [NAME] [--smoke] [-p key=value] (issue 5)
    "lmtoolkit.plotting.make",  # lmtk figures [ID] (issue 5)
    "lmtoolkit.evacuate",  # lmtk evacuate (issue 7: concurrent migrations, host evacuation)
    "lmtoolkit.site",  # lmtk site: the course site, static HTML (issue 15)
    "lmtoolkit.logs.cli",  # lmtk fit LOG, lmtk whatif FIT.yaml (issue 13: real migration logs)
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = argparse.ArgumentParser(prog="lmtk", description="live VM migration toolkit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="simulate one migration, print a summary, write a netCDF file")
    r.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. policy=xen vm.memory_gib=4")
    r.add_argument(
        "-o",
        "--output",
        help="netCDF file (.nc) or zarr store (.zarr) to write (default results/runs/run_<hash>.nc)",
    )
    add_cfg_option(r)
    r.set_defaults(func=cmd_run)
    # import every module before adding commands: imports register datasets (``lmtk validate
    # whatif`` comes from lmtoolkit.logs) that an earlier module's help lists
    for mod in [importlib.import_module(name) for name in COMMAND_MODULES]:
        mod.add_commands(sub)
    return p


#: options that name a file or directory: an empty one is refused (it meant the default)
PATH_OPTIONS = ("output", "out", "figure", "data")


#: the ``nargs="*"`` positional of a command (its overrides; ``lmtk figures`` ID|key=value,
#: ``lmtk notebooks`` NAME) that words after the command's options join
REST_ARGS = ("overrides", "items", "names")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may come after options (lmtk sweep -q experiment=X ...): argparse leaves those
    # (for every command: 'lmtk figures fig01 -o DIR debug=default' was "unrecognized arguments")
    rest = next((d for d in REST_ARGS if hasattr(args, d)), None)
    if extra and rest and not any(e.startswith("-") for e in extra):
        setattr(args, rest, list(getattr(args, rest)) + extra)
    elif extra:
        parser.error("unrecognized arguments: " + " ".join(extra))
    try:
        for opt in PATH_OPTIONS:  # -o '' wrote to the default path, silently
            if getattr(args, opt, None) == "":
                raise ConfigError(
                    f"--{opt}", "", "a file or directory name (leave the option out for the default)"
                )
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"lmtk: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:  # (a command may say how to resume: lmtk sweep -m)
        print("lmtk: interrupted" + (f": {e}" if str(e) else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # lmtk ... | head: the reader left; nothing more to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error at exit)
        return 141


def entry() -> None:  # console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
