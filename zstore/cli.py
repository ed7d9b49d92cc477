"""The ``zstore`` command: ingest Suite2p runs, inspect stores. The only module that prints.

Errors are said in one line (and a hint where useful) in the command line's terms, its
flags rather than the API's keywords; a traceback only with ``--debug``. Exit status: 0
done, 1 a failure, 2 a usage error, 130 interrupted, 141 stdout or stderr closed early.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import sys
import time
import unicodedata
import warnings
from collections.abc import Sequence
from typing import Any

# Only light modules at the top: --version and --help must not import anndata, zarr,
# dask or pandas (seconds); each command imports what it needs.
from ._version import __version__
from .cli_failures import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    prepare,
    reader_left,
    report,
    stdout_failed,
    streams_closed,
)
from .errors import InvalidArgumentError, ZstoreWarning

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zstore`` command line; return its exit code."""
    stdout_closed = _prepare_process()
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 0
    except BrokenPipeError:  # --help into `| head`
        return streams_closed()
    code = _run(args)
    # stdout was closed (`>&-`): the output went nowhere, as into a pipe whose reader left
    return EXIT_BROKEN_PIPE if stdout_closed and code == 0 else code


def _prepare_process() -> bool:
    """Make output and file-size limits fail softly; return True when stdout was closed.

    Text the terminal's encoding cannot show (a trial ``café`` on an ASCII stdout) is
    printed with backslash escapes rather than failing after the work was saved; a
    closed stdout or stderr (``>&-``) becomes devnull; a file-size limit (``ulimit -f``)
    makes writes fail with EFBIG, said as an error, instead of killing the process.
    OpenBLAS runs one thread unless the environment says otherwise: zstore's work
    parallelises over dask's threads, not BLAS, and under a memory limit (``ulimit
    -v``) OpenBLAS's thread start-up spins forever when numpy is imported.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy's first import
    closed = sys.stdout is None
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    if hasattr(signal, "SIGXFSZ"):
        with contextlib.suppress(ValueError):  # not the main thread: leave it
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return closed


def _run(args: argparse.Namespace) -> int:
    """Run a command; say its failure in one line (a traceback only with --debug)."""
    failure: BaseException | None = None
    code = EXIT_ERROR
    stdout = _Stdout(sys.stdout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ZstoreWarning)
        try:
            sys.stdout = stdout
            _check_name_flags(args)
            from .store import check_open_files

            prepare()  # what reporting a failure needs, imported while memory lasts
            check_open_files()  # too few: asyncio and Icechunk fail deep inside, noisily
            code = int(args.run(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        except (SystemExit, GeneratorExit):
            raise
        except BaseException as err:  # each is said below, bugs as bugs (Rust panics too)
            failure = err
        finally:
            sys.stdout = stdout.stream
    try:
        # Outside catch_warnings: showing a warning there would record it again.
        _flush_warnings(caught)
        if failure is None:
            return code
        if isinstance(failure, BrokenPipeError) and reader_left():
            return streams_closed()
        if stdout.failure is not None and failure is stdout.failure:  # only its summary lost
            return stdout_failed(stdout.failure, args.command, _written(args))
        return report(
            failure,
            args.command,
            debug=getattr(args, "debug", False),
            flags=getattr(args, "flags", frozenset()),
        )
    except BrokenPipeError:  # stderr's reader left too
        return streams_closed()


class _Stdout:
    """``sys.stdout`` while a command runs: the same stream, recording a write that
    failed (a full disk behind ``> FILE``), so that the failure is said as stdout's, not
    as the store's, after the command's work was saved."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.failure: OSError | None = None

    def write(self, text: str) -> int:
        try:
            return int(self.stream.write(text))
        except OSError as err:
            self.failure = err
            raise

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as err:
            self.failure = err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _written(args: argparse.Namespace) -> str | None:
    """What the command wrote before printing its summary: the store, or the file of
    export and plot; None for the commands that only read."""
    if args.command in ("export", "plot"):
        return str(getattr(args, "to", None) or getattr(args, "out", ""))
    if args.command in ("ingest", "dff", "migrate") or (args.command == "gc" and not args.dry_run):
        return str(args.store)
    return None


def _flush_warnings(caught: list[warnings.WarningMessage]) -> None:
    pending = list(caught)
    caught.clear()
    for w in pending:
        if issubclass(w.category, ZstoreWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that knows its flags, so that messages can name only those."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.flags: set[str] = set()
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.flags.update(action.option_strings)
        return action


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="zstore",
        description="A Zarr-backed, out-of-core store for two-photon calcium-imaging "
        "experiments. Run 'zstore COMMAND --help' for the options of each command.",
        epilog="exit status: 0 done; 1 a failure, said in one line on stderr (with a "
        "traceback only under --debug; an internal error says it is a bug); 2 a usage "
        "error (a flag missing, of a wrong value, or flags that do not go together); 130 "
        "interrupted; 141 stdout or stderr closed before the output ended (as by "
        "'| head', or '>&-'): the output stops quietly, as a Unix tool's does (128 + "
        "SIGPIPE). Text the terminal's encoding cannot show is printed with backslash "
        "escapes (caf\\xe9).",
    )
    parser.add_argument("--version", action="version", version=f"zstore {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, also print its full traceback (for bug reports)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    ingest = commands.add_parser(
        "ingest",
        help="ingest a Suite2p run (one plane or every plane) into a collection or experiment",
        description="Ingest a Suite2p run, one trial per file of the run unless --trial "
        "says otherwise. SUITE2P_DIR is a plane folder (holds F.npy) or a suite2p folder "
        "with plane0..planeN: every plane becomes its own experiment, with ID "
        "<subject>_<session>_plane<k>. When STORE is a collection the experiments are "
        "appended to it and nothing else there is touched; when nothing is at STORE, a "
        "collection is created if there are several planes or --subject/--session is "
        "given, else a one-plane experiment store. Traces are streamed: memory stays at a "
        "few shards whatever the size of the run.",
        epilog="examples:\n  zstore ingest RL109/2024-05-01/suite2p lab.zarr --subject RL109 "
        "--session 2024-05-01 --metadata genotype=GCaMP6s\n  zstore ingest "
        "RL109/suite2p/plane0 RL109.zarr --paq t-005=paq/t-005.paq --exp-id RL109",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ingest.add_argument(
        "plane_dir",
        metavar="SUITE2P_DIR",
        help="a Suite2p plane folder (holds F.npy) or a suite2p folder with plane0..planeN",
    )
    _add_store(ingest, "collection to append to, or new store to create")
    ingest.add_argument("--subject", help="the subject (default: the folder above suite2p/)")
    ingest.add_argument("--session", help="the session (e.g. its date, 2024-05-01)")
    ingest.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="anything else to record with each experiment (repeat, each KEY once; not "
        "subject, session, plane or expID, which ingest sets itself, nor a column of the "
        "table such as trial or fs); numbers stay numbers, a number that is not finite "
        "(nan, inf, 1e999) is refused",
    )
    ingest.add_argument(
        "--paq",
        action="append",
        default=[],
        metavar="TRIAL=FILE",
        help="the .paq file of a trial (repeat, once per trial)",
    )
    ingest.add_argument(
        "--trial",
        action="append",
        default=[],
        metavar="TRIAL=FILE,FILE|START:STOP",
        help="a trial made of consecutive files of the run, or of the frames START up to "
        "STOP (0 <= START < STOP; repeat, once per trial); default: one trial per file, "
        "named by the file's stem",
    )
    ingest.add_argument(
        "--exp-id",
        help="experiment ID (several planes: <exp-id>_plane<k>); default from --subject and "
        "--session in a collection, the folder above suite2p/ for an experiment store",
    )
    ingest.add_argument(
        "--neuropil-coeff",
        type=_number,
        default=0.0,
        metavar="C",
        help="X = F - C * Fneu (default 0: X = F)",
    )
    ingest.add_argument(
        "--all-rois", action="store_true", help="keep non-cell ROIs too (default: iscell == 1 only)"
    )
    ingest.add_argument(
        "--json",
        action="store_true",
        help="print what was ingested as one JSON document (keys in docs/CLI.md)",
    )
    ingest.add_argument(
        "--paq-channel", default="frame_clock", help="frame clock channel of the .paq files"
    )
    ingest.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a zstore experiment at STORE, or in a collection the experiments with "
        "the same IDs (as a new version; the old data stays readable until 'zstore gc'); "
        "anything else there is never replaced",
    )
    ingest.set_defaults(run=_ingest)

    info = commands.add_parser(
        "info",
        help="describe a store: a collection's trial table, or an experiment's trials",
        description="For a collection: its trial table (first rows), counts of subjects, "
        "sessions, planes, experiments and trials, and the total size. For an "
        "experiment: per trial fs, frames, duration, ROIs stored (cells/total in the "
        "Suite2p run), paq channels and stored size; each layer and how it was computed; "
        "with --storage, each array's shards, chunks and codecs. --json prints all of it "
        "(for a collection, every experiment's) as one JSON document. Reads metadata only.",
    )
    _add_store(info, "collection or experiment store to describe")
    info.add_argument("--where", help="a pandas query on the table (collections)")
    info.add_argument(
        "--rows", type=_rows, default=20, metavar="N", help="table rows to print (default 20)"
    )
    info.add_argument(
        "--storage",
        action="store_true",
        help="also each array's shards, chunks, codecs, stored and uncompressed sizes",
    )
    info.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document instead (for scripts; its keys are in docs/CLI.md)",
    )
    info.set_defaults(run=_info)

    dff = commands.add_parser(
        "dff",
        help="compute and save dF/F for every trial (streaming, bounded memory)",
        description="Compute dF/F per ROI over each trial's whole trace and save it as a "
        "layer, one trial after another. percentile: t = percentile(F, P); f0 = mean of "
        "F below t; dF/F = (F - f0) / |f0| * 100. maximin: Gaussian smoothing, then a "
        "running min and max over --window seconds (needs the frame rate in uns['fs']).",
    )
    _add_store(dff, "collection or experiment store (opened for writing)")
    dff.add_argument(
        "--where",
        default=None,
        help="select trials with a pandas query on the table, e.g. \"subject == 'RL109' "
        'and plane == 0" (default: every trial)',
    )
    dff.add_argument(
        "--pct",
        type=_percent,
        default=20.0,
        metavar="P",
        help="baseline percentile, in (0, 100] (default 20)",
    )
    dff.add_argument("--baseline", choices=["percentile", "maximin"], default="percentile")
    dff.add_argument("--layer", default="dFF", help="layer to write (default dFF)")
    dff.add_argument("--source", default=None, help="layer to compute from (default: X)")
    dff.add_argument(
        "--trial", action="append", default=None, metavar="ID", help="only this trial (repeat)"
    )
    dff.add_argument(
        "--sigma",
        type=_non_negative,
        default=10.0,
        metavar="FRAMES",
        help="maximin: Gaussian sigma in frames (default 10; 0: no smoothing)",
    )
    dff.add_argument(
        "--window",
        type=_positive,
        default=60.0,
        metavar="SECONDS",
        help="maximin: window of the running min and max in seconds (default 60)",
    )
    dff.add_argument(
        "--fs",
        type=_positive,
        default=None,
        metavar="HZ",
        help="maximin: the frame rate, for trials whose uns['fs'] is missing or wrong "
        "(default: each trial's uns['fs'])",
    )
    dff.add_argument("--overwrite", action="store_true", help="recompute a layer that exists")
    dff.set_defaults(run=_dff)

    verify = commands.add_parser(
        "verify",
        help="read every chunk of a store and report damaged ones",
        description="Read every array of every trial. X and layers carry crc32c checksums, "
        "so changed bytes are reported (trial, array, chunk) instead of read as wrong "
        "numbers. Exit status 1 when anything is damaged.",
    )
    _add_store(verify, "experiment store to check")
    verify.set_defaults(run=_verify)

    history = commands.add_parser(
        "history",
        help="list the versions of an experiment: when, and what each changed",
        description="List the commits of the experiment, newest first: version ID, time "
        "and what changed. Any version can be exported: zstore export STORE --version ID "
        "--to FILE.",
    )
    _add_store(history, "experiment store")
    history.add_argument("-n", type=_whole, default=None, help="show only the newest N")
    history.set_defaults(run=_history)

    gc = commands.add_parser(
        "gc",
        help="reclaim the space of old versions and of killed writes",
        description="Expire versions older than --keep days (the newest version is always "
        "kept), then delete every stored object no kept version uses: replaced layers and "
        "trials, and the leftovers of writes that were killed. A write under way is never "
        "touched: every zstore writer holds a lease, and everything written since the "
        "oldest live writer began is spared; so is everything younger than --grace hours "
        "(for writers that hold no lease).",
    )
    _add_store(gc, "experiment store")
    gc.add_argument(
        "--keep",
        type=_non_negative,
        required=True,
        metavar="DAYS",
        help="keep every version younger than this many days (0: only the newest)",
    )
    gc.add_argument(
        "--grace",
        type=_non_negative,
        default=1.0,
        metavar="HOURS",
        help="also spare objects younger than this, for writers that hold no lease (default 1)",
    )
    gc.add_argument(
        "--dry-run",
        action="store_true",
        help="change nothing: count the versions that would expire and the objects no "
        "version uses now (objects used only by expiring versions are not counted)",
    )
    gc.set_defaults(run=_gc)

    migrate = commands.add_parser(
        "migrate",
        help="convert an experiment written by zstore 0.1 into the current format",
        description="Read the zstore 0.1 experiment OLD (plain Zarr; it is not changed) "
        "and write every committed trial into a new experiment NEW, verifying every "
        "chunk's checksum on the way.",
    )
    migrate.add_argument("old", metavar="OLD", help="the zstore 0.1 store (path or s3:// URL)")
    _add_store(migrate, "the new experiment to create")
    migrate.set_defaults(run=_migrate)

    export = commands.add_parser(
        "export",
        help="write a trial (or all trials) as a plain anndata .zarr or .h5ad, or as NWB",
        description="Write one trial (--trial), or every trial concatenated along frames, "
        "to a plain anndata Zarr store (FILE.zarr) or an .h5ad file that anndata, scanpy "
        "and other tools read without zstore, or to Neurodata Without Borders (FILE.nwb, "
        "needs pynwb: pip install 'zstore[nwb]'; trials along session time). Streams "
        "block by block; never replaces an existing file.",
    )
    _add_store(export, "experiment store")
    export.add_argument(
        "--to", required=True, metavar="FILE", help="FILE.zarr, FILE.h5ad or FILE.nwb"
    )
    export.add_argument(
        "--trial",
        action="append",
        default=None,
        metavar="ID",
        help="the trial to export (repeat to concatenate several; default: all)",
    )
    export.add_argument(
        "--layer", action="append", default=None, help="layers to include (repeat; default all)"
    )
    export.add_argument("--version", default=None, help="export this version (default: newest)")
    export.add_argument(
        "--session-start-time",
        default=None,
        metavar="ISO",
        help="FILE.nwb: when the session began, with a timezone (2026-05-01T10:30:00+01:00)",
    )
    export.add_argument("--subject", default=None, help="FILE.nwb: the subject's ID")
    export.add_argument(
        "--location", default=None, help="FILE.nwb: the imaging plane's brain area (e.g. VISp)"
    )
    export.add_argument("--indicator", default=None, help="FILE.nwb: the indicator (e.g. GCaMP6s)")
    export.set_defaults(run=_export)

    plot = commands.add_parser(
        "plot",
        help="draw a trial: ROI masks, a dF/F raster, or traces with paq channels",
        description="Draw one trial to an image file. rois: masks over the mean image, "
        "coloured by an obs column. raster: all ROIs x frames, binned lazily. traces: "
        "chosen ROIs with paq channels on the same time axis. Needs matplotlib.",
    )
    _add_store(plot, "experiment store")
    plot.add_argument("--trial", required=True, help="trial ID")
    plot.add_argument("--kind", choices=["rois", "raster", "traces"], required=True)
    plot.add_argument(
        "--out",
        required=True,
        metavar="FILE.png",
        help="image file to write; its extension picks the format (png, pdf, svg, jpg, tif, "
        "... as matplotlib writes them; none: FILE.png)",
    )
    plot.add_argument("--layer", default="dFF", help="layer for raster/traces (X: --layer X)")
    plot.add_argument("--color-by", default="iscell_prob", help="obs column for rois")
    plot.add_argument(
        "--roi",
        action="append",
        default=None,
        metavar="ID",
        help="stored ROI ID (Suite2p's ROI index; repeat) to draw: an ID that is not "
        "stored (a dropped non-cell) is an error, never a row position. Default: traces "
        "the first five ROIs, rois and raster all",
    )
    plot.add_argument(
        "--channel", action="append", default=[], help="paq channel for traces (repeat)"
    )
    plot.add_argument(
        "--dpi",
        type=_dpi,
        default=120,
        metavar="N",
        help=f"image resolution, dots per inch, {_DPI[0]}..{_DPI[1]} (default 120)",
    )
    plot.set_defaults(run=_plot)
    for command in commands.choices.values():
        command.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,  # else it would reset a --debug given before COMMAND
            help="on an error, also print its full traceback",
        )
        command.set_defaults(flags=frozenset(getattr(command, "flags", ())))
    return parser


# -- values of flags, checked as they are parsed (a wrong one is a usage error, exit 2) ---------


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _positive(text: str) -> float:
    """A finite number > 0 (a frame rate, a window in seconds)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    """A finite number >= 0 (a sigma in frames, days, hours)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _percent(text: str) -> float:
    """A percentile in (0, 100]."""
    value = _number(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentile in (0, 100], got {text!r}")
    return value


def _whole(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


#: The image resolutions plot takes (dots per inch): beyond, a figure needs gigabytes.
_DPI = (10, 2400)


def _dpi(text: str) -> int:
    """A resolution in dots per inch, within _DPI."""
    value = _whole(text)
    if not _DPI[0] <= value <= _DPI[1]:
        raise argparse.ArgumentTypeError(
            f"must be a resolution from {_DPI[0]} to {_DPI[1]} dots per inch, got {text!r}"
        )
    return value


def _rows(text: str) -> int:
    """A whole number >= 0."""
    return 0 if text.strip() == "0" else _whole(text)


def _add_store(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("store", metavar="STORE", help=f"{what}: a path or s3://bucket/prefix URL")
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="S3 option for s3:// URLs (repeat): endpoint_url=http://127.0.0.1:9000, key=..., "
        "secret=..., region=..., anon=true, connect_timeout=SECONDS (default 10); values "
        "are text unless the option takes true/false or a number; the first '=' splits, "
        "so a value may start with or hold '=' (key==abc: the value '=abc')",
    )


#: What the KEY of each repeated KEY=VALUE flag names, for messages.
_PAIR_KEYS = {
    "--trial": "trial",
    "--paq": "trial",
    "--metadata": "key",
    "--storage-option": "option",
}


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` flags as a dict; the first ``=`` splits (a VALUE may hold ``=``).

    A KEY given twice (or in two forms of one Unicode name) is a usage error, never the
    last one silently winning.
    """
    out: dict[str, str] = {}
    first: dict[str, str] = {}  # NFC form of a key -> the flag that gave it
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise InvalidArgumentError(f"{flag} expects KEY=VALUE, got {value!r}")
        same = unicodedata.normalize("NFC", key)
        if same in first:
            what = _PAIR_KEYS.get(flag, "key")
            raise InvalidArgumentError(
                f"{flag} gives {what} {key!r} twice ({flag} {first[same]!r} and {flag} "
                f"{value!r}); give each {what} one {flag}"
            )
        first[same] = value
        out[key] = rest
    return out


def _storage_options(values: list[str]) -> dict[str, Any] | None:
    # Values stay text: zstore.store turns those of the options that take a switch or a
    # number into one (zstore.store.S3_OPTIONS), so an all-digit secret stays text.
    return dict(_pairs(values, "--storage-option")) or None


def _ingest(args: argparse.Namespace) -> int:
    from .experiment import Experiment
    from .ingest import ingest_suite2p

    trials: dict[str, Any] | None = None
    if args.trial:
        trials = {}
        for tid, spec in _pairs(args.trial, "--trial").items():
            _new_name("--trial", tid, "trial ID")
            trials[tid] = _frame_range(tid, spec)
    if args.exp_id is not None:
        if not args.exp_id:
            raise InvalidArgumentError(
                "--exp-id '' names no experiment; give an ID (e.g. --exp-id RL109_d1), or "
                "leave out --exp-id for the default"
            )
        _new_name("--exp-id", args.exp_id, "experiment ID")
    metadata = _metadata(args.metadata) or None
    paq = _pairs(args.paq, "--paq") or None
    t0 = time.perf_counter()
    result = ingest_suite2p(
        args.plane_dir,
        args.store,
        subject=args.subject,
        session=args.session,
        metadata=metadata,
        trials=trials,
        paq=paq,
        exp_id=args.exp_id,
        cells_only=not args.all_rois,
        neuropil_coeff=args.neuropil_coeff,
        paq_channel=args.paq_channel,
        overwrite=args.overwrite,
        storage_options=_storage_options(args.storage_option),
        progress=_terminal_bar(),
    )
    took = time.perf_counter() - t0
    summary = result.ingest_summary
    if summary is None:  # ingest_suite2p sets it on what it returns
        raise TypeError(f"ingest_suite2p returned {type(result).__name__} without a summary")
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return 0
    print(f"{summary}\ntook {took:.1f} s", end="")
    if isinstance(result, Experiment):
        print(f"; zstore info {args.store} describes the experiment")
    else:
        print(
            f"; appended to the collection at {args.store}, which now holds "
            f"{len(result)} experiments (zstore info {args.store} shows its table)"
        )
    return 0


#: Metadata keys that ingest sets itself, and the flag (or source) that gives each.
_SET_BY_INGEST = {
    "subject": "--subject",
    "session": "--session",
    "plane": "the folder name plane<k>",
    "expID": "--exp-id",
}


def _metadata(values: list[str]) -> dict[str, Any]:
    """``--metadata KEY=VALUE`` flags; a value that reads as a JSON number or boolean is
    one (age=12.5, awake=true), anything else text; a number that is not finite (nan,
    inf, 1e999, in any spelling) is refused, never stored as text or null."""
    from .opening import RESERVED_METADATA

    out: dict[str, Any] = {}
    for key, value in _pairs(values, "--metadata").items():
        pair = key + "=" + value
        if key in _SET_BY_INGEST or key.casefold() in ("expid", "exp_id"):
            given = _SET_BY_INGEST.get(key, "--exp-id")
            raise InvalidArgumentError(
                f"--metadata {pair!r}: {key!r} is set by zstore ingest itself, from {given}; "
                f"leave it out of --metadata"
                + (f" and pass {given} {value}" if given.startswith("--") else "")
            )
        if key in RESERVED_METADATA:
            raise InvalidArgumentError(
                f"--metadata {pair!r}: {key!r} is a column zstore fills in the table "
                f"({', '.join(RESERVED_METADATA)}); use another key, e.g. '{key}_label'"
            )
        _new_name("--metadata", key, "metadata key")
        if not _finite_or_text(value):
            raise InvalidArgumentError(
                f"--metadata {pair!r}: not a finite number; give a finite number, or text "
                f"that does not read as a number"
            )
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        out[key] = parsed if isinstance(parsed, int | float | bool) else value
    return out


def _finite_or_text(value: str) -> bool:
    """``value`` is text, or a finite number (not nan, inf, 1e999 in any spelling)."""
    try:
        return math.isfinite(float(value))
    except ValueError:
        return True


def _frame_range(tid: str, spec: str) -> tuple[int, int] | list[str]:
    """``--trial ID=START:STOP`` as a frame range, ``ID=FILE,FILE`` as file names."""
    frames = re.fullmatch(r"\s*([+-]?\d+)\s*:\s*([+-]?\d+)\s*", spec)
    if frames is None:
        if re.fullmatch(r"[^,]*:[^,]*", spec) and re.search(r"\d\s*:|:\s*-?\d", spec):
            raise InvalidArgumentError(
                f"--trial {tid + '=' + spec!r}: a frame range is START:STOP, two whole "
                f"numbers with 0 <= START < STOP (e.g. --trial {tid}=0:1000)"
            )
        return spec.split(",")
    start, stop = int(frames[1]), int(frames[2])
    if not 0 <= start < stop:
        raise InvalidArgumentError(
            f"--trial {tid + '=' + spec!r}: a frame range is START:STOP with 0 <= START < STOP "
            f"(frames START up to, not including, STOP; e.g. --trial {tid}=0:1000)"
        )
    return start, stop


def _new_name(flag: str, value: str | None, kind: str, *, new: bool = True) -> None:
    """A name a flag gives to something the command writes (an experiment ID, a layer;
    ``new``), or names to look up (a stored trial): a name the store cannot hold (or no
    stored name can be) is a usage error, said before any work."""
    from .errors import InvalidNameError
    from .names import check_name, stored_name

    if value is None:
        return
    try:
        if new:
            check_name(value, kind=kind)
        else:
            stored_name(value, kind=kind)
    except InvalidNameError as err:
        raise InvalidArgumentError(f"{flag} {value!r}: {err}{_escape_hint(value)}") from None


#: A backslash escape as zstore prints a character the terminal cannot show (caf\xe9).
_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|N\{[^}]+\})")


def _escape_hint(value: str) -> str:
    """A hint for a name typed as zstore printed it on a terminal that could not show
    it: with a literal ``\\xe9`` for the character."""
    if not _ESCAPE.search(value):
        return ""
    return (
        "; names are printed with \\x escapes when the terminal cannot show them: type the "
        "character itself (or set PYTHONIOENCODING=utf-8 to see it)"
    )


#: The flags of each command that name something, by dest: the flag, what it names,
#: and whether it is a new name (checked as the store will hold it) or one to look up.
_NAME_FLAGS: dict[str, tuple[tuple[str, str, str, bool], ...]] = {
    "ingest": (("exp_id", "--exp-id", "experiment ID", True),),
    "dff": (
        ("layer", "--layer", "layer name", True),
        ("source", "--source", "source layer name", False),
        ("trial", "--trial", "trial ID", False),
    ),
    "plot": (("trial", "--trial", "trial ID", False), ("layer", "--layer", "layer name", False)),
    "export": (("trial", "--trial", "trial ID", False), ("layer", "--layer", "layer name", False)),
}


def _check_name_flags(args: argparse.Namespace) -> None:
    """Every flag that names a trial, layer, experiment, subject or session: a name no
    store can hold is a usage error (exit 2), said before any work."""
    for dest, flag, kind, new in _NAME_FLAGS.get(args.command, ()):
        value = getattr(args, dest, None)
        for one in value if isinstance(value, list) else [value]:
            if not (dest == "exp_id" and one == ""):  # _ingest says how to leave it out
                _new_name(flag, one, kind, new=new)
    if args.command == "ingest" and args.exp_id is None:
        for dest in ("subject", "session"):  # they make the experiment ID
            value = getattr(args, dest)
            if value is not None and value != "":
                try:
                    _new_name(f"--{dest}", value, dest)
                except InvalidArgumentError as err:
                    raise InvalidArgumentError(
                        f"{err} (the experiment ID is built as <subject>_<session>_plane<k>; "
                        f"or pass --exp-id with the ID in full)"
                    ) from None
    if args.command == "export":
        _check_export_file(args.to)
    if args.command == "plot" and not args.out:
        raise InvalidArgumentError("--out '' names no file; give one, e.g. --out raster.png")


#: The files export writes, by extension.
_EXPORT_KINDS = ".zarr (a plain anndata Zarr store), .h5ad or .nwb (Neurodata Without Borders)"


def _check_export_file(to: str) -> None:
    """``--to``: a file name export can write, and not a dangling symbolic link."""
    if not to:
        raise InvalidArgumentError(
            f"--to '' names no file; give a file name ending in {_EXPORT_KINDS}"
        )
    if not to.lower().rstrip("/").endswith((".zarr", ".h5ad", ".nwb")):
        raise InvalidArgumentError(
            f"--to {to!r}: the file name must end in {_EXPORT_KINDS}, e.g. --to trials.h5ad"
        )
    if os.path.islink(to) and not os.path.exists(to):
        raise InvalidArgumentError(
            f"--to {to!r} is a dangling symbolic link (to {os.readlink(to)!r}); zstore does "
            f"not write through it: remove the link, or choose another file name"
        )


def _info(args: argparse.Namespace) -> int:
    from .summary import info_document

    found = _open_any(args)
    is_collection = hasattr(found, "experimentIDs")
    if args.where and not is_collection:
        raise InvalidArgumentError(
            f"--where selects trials of a collection; {args.store} is one experiment: leave "
            f"out --where"
        )
    if args.json:
        print(json.dumps(info_document(found, where=args.where, storage=args.storage), indent=2))
    elif is_collection:
        _print_collection(found, args.where, args.rows)
    else:
        _print_info(found, storage=args.storage)
    return 0


def _print_collection(col: Any, where: str | None, rows: int) -> None:
    import pandas as pd

    from .display import format_bytes

    table = col.table(where)
    print(
        f"collection at {col.location}, version {col.version}: {len(col)} experiments, "
        f"{len(col.table())} trials" + (f"; {len(table)} match {where!r}" if where else "")
    )
    if table.empty:
        return
    unique = {c: int(table[c].nunique()) for c in ("subject", "session", "plane")}
    counts = ", ".join(
        f"{n} {c}{'' if n == 1 else 's'}" for c, n in unique.items() if table[c].notna().any()
    )
    n_layers = table["layers"].map(lambda s: len([n for n in s.split(",") if n]))
    nbytes = (table["n_rois"] * table["n_frames"] * 4 * (1 + n_layers)).sum()
    hours = table["duration_s"].sum() / 3600
    print(
        f"{counts}; {hours:.2f} h of imaging; {format_bytes(float(nbytes))} of traces "
        f"uncompressed (X and layers, float32)"
    )
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.head(rows).to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    if len(table) > rows:
        print(f"... {len(table) - rows} more rows (--rows N)")


def _dff(args: argparse.Namespace) -> int:
    from .collection import open_collection, stored_kind
    from .experiment import compute_dff
    from .opening import open_experiment
    from .store import COLLECTION_ENCODING

    options = _storage_options(args.storage_option)
    if stored_kind(args.store, options) == COLLECTION_ENCODING:
        exp: Any = open_collection(args.store, mode="r+", storage_options=options)
    else:
        exp = open_experiment(args.store, mode="r+", storage_options=options)
    # a layer left part-way: compute_dff says how to finish it, with the stored settings
    t0 = time.perf_counter()
    done = compute_dff(
        exp,
        layer=args.layer,
        normalize_pct=args.pct,
        baseline=args.baseline,
        trials=args.trial,
        where=args.where,
        overwrite=args.overwrite,
        source=args.source,
        sig_baseline=args.sigma,
        win_baseline=args.window,
        **({"fs": args.fs} if args.fs is not None else {}),
        progress=_terminal_bar(),
    )
    took = time.perf_counter() - t0
    print(f"saved layer {args.layer!r} for {len(done)} trials {done} in {took:.1f} s")
    return 0


def _open_any(args: argparse.Namespace, mode: str = "r") -> Any:
    """The collection or the experiment at STORE (``COLLECTION::experiments/ID``: one
    experiment of a collection, as zstore's messages name it)."""
    from .collection import open_collection, stored_kind
    from .opening import open_experiment
    from .store import COLLECTION_ENCODING

    options = _storage_options(args.storage_option)
    if "::" in args.store:
        return _open_experiment(args, mode)
    if stored_kind(args.store, options) == COLLECTION_ENCODING:
        return open_collection(args.store, mode=mode, storage_options=options)
    return open_experiment(args.store, mode=mode, storage_options=options)


def _open_experiment(args: argparse.Namespace, mode: str = "r", version: Any = None) -> Any:
    """The experiment at STORE, or ``COLLECTION::experiments/ID`` of a collection."""
    from .collection import open_collection
    from .opening import open_experiment
    from .store import EXPERIMENTS

    options = _storage_options(args.storage_option)
    where, sep, inside = args.store.partition("::")
    if not sep:
        return open_experiment(where, mode=mode, storage_options=options, version=version)
    kind, _, exp_id = inside.partition("/")
    if kind != EXPERIMENTS or not exp_id:
        raise InvalidArgumentError(
            f"{args.store!r}: one experiment of a collection is named "
            f"COLLECTION::{EXPERIMENTS}/ID (e.g. lab.zarr::{EXPERIMENTS}/RL109_d1_plane0)"
        )
    col = open_collection(where, mode=mode, storage_options=options, version=version)
    return col.open_experiment(exp_id)


def _verify(args: argparse.Namespace) -> int:
    from .errors import StoreError
    from .verify import unreadable_experiments, verify_experiment

    found = _open_any(args)
    in_collection = hasattr(found, "experiments")
    damage: list[Any] = []
    trials = 0
    experiments = [found]
    if in_collection:  # experiments the table leaves out (damaged metadata)
        damage += unreadable_experiments(found)
        named = {d.experiment for d in damage}
        experiments = []
        for exp_id in found.experimentIDs:
            try:
                experiments.append(found.open_experiment(exp_id, mode="r"))
            except StoreError:
                raise  # the storage or the machine failed: a stop, not damage
            except (ValueError, KeyError, OSError) as err:  # its metadata is damaged
                if exp_id not in named:
                    damage.append(f"experiment {exp_id!r} cannot be read: {err}")
    for exp in experiments:  # one bar per experiment, "verify <expID>"
        try:
            damage += verify_experiment(exp, progress=_terminal_bar())
            trials += len(exp.trialIDs)
        except StoreError:
            raise  # the storage or the machine failed: a stop, not damage
        except (ValueError, KeyError, OSError) as err:
            if not in_collection:
                raise
            damage.append(f"experiment {exp.expID!r} cannot be read: {err}")
    for item in damage:
        print(f"DAMAGED {item}")
    if damage:
        print(
            f"{len(damage)} damaged item{'' if len(damage) == 1 else 's'} (chunks, arrays, "
            f"images) in {trials} trial{'' if trials == 1 else 's'}; restore them from a copy"
        )
        return EXIT_ERROR
    print(f"verified {trials} trials: every chunk reads back and its checksum matches")
    return 0


def _history(args: argparse.Namespace) -> int:
    from .errors import NotAnExperimentError
    from .opening import open_repo
    from .store import resolve

    try:  # a whole repository's versions are its own: listed past a damaged newest one
        found: Any = _open_any(args) if "::" in args.store else None
    except NotAnExperimentError:  # its newest version is damaged: list the versions anyway
        found = None
    if found is None:
        options = _storage_options(args.storage_option)
        place = resolve(args.store.partition("::")[0], storage_options=options)
        found = open_repo(place, writable=False)
    commits = found.history()
    for commit in commits[: args.n] if args.n else commits:
        print(commit)
    return 0


def _gc(args: argparse.Namespace) -> int:
    import datetime

    from .display import format_bytes

    report = _open_any(args, "r+").collect_garbage(
        keep=datetime.timedelta(days=args.keep),
        grace=datetime.timedelta(hours=args.grace),
        dry_run=args.dry_run,
    )
    verb = "would delete" if args.dry_run else "deleted"
    expired = "would expire" if args.dry_run else "expired"
    print(
        f"{expired} {report.versions_expired} versions; {verb} {report.chunks_deleted} chunks, "
        f"{report.manifests_deleted} manifests, {report.snapshots_deleted} snapshots "
        f"({format_bytes(report.bytes_deleted)})"
    )
    running = report.writers_running
    why = (
        (f"{running} write(s) under way" if running else "younger than --grace")
        if running is not None
        else "this storage cannot tell which writes are under way"
    )
    print(
        f"objects written after {report.objects_cutoff:%Y-%m-%d %H:%M:%S} UTC were spared "
        f"({why}); run gc again later to reclaim what they leave"
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from .migrate import migrate

    exp = migrate(
        args.old,
        args.store,
        new_storage_options=_storage_options(args.storage_option),
        progress=_terminal_bar(),
    )
    print(f"migrated {len(exp.trialIDs)} trials of {exp.expID!r} into {exp.location}")
    _print_info(exp)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export

    exp = _open_experiment(args, version=args.version)
    if args.to.lower().endswith(".nwb"):
        from .nwb import export_nwb

        out = export_nwb(
            exp,
            args.to,
            trials=args.trial,
            layers=args.layer,
            session_start_time=args.session_start_time,
            subject=args.subject,
            location=args.location,
            indicator=args.indicator,
            progress=_terminal_bar(),
        )
        n = len(args.trial or exp.trialIDs)
        what = f"trial {args.trial[0]!r}" if n == 1 and args.trial else f"{n} trials"
        print(f"exported {what} of {exp.expID!r} to {out} (NWB, along session time)")
        return 0
    one = args.trial[0] if args.trial and len(args.trial) == 1 else None
    out = export(
        exp,
        args.to,
        trial=one,
        trials=args.trial if one is None else None,
        layers=args.layer,
        progress=_terminal_bar(),
    )
    n = len(args.trial or exp.trialIDs)
    what = f"trial {one!r}" if one is not None else f"{n} trials (concatenated)"
    print(f"exported {what} of {exp.expID!r} to {out}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from . import plot

    plot.check_image_path(args.out, what="--out")
    args.out = plot.image_file(args.out)  # no extension: matplotlib writes PNG, FILE.png
    exp = _open_experiment(args)
    trial = exp.load_trial(args.trial)
    layer = None if args.layer == "X" else args.layer
    if args.kind == "rois":
        figure = plot.plot_rois(trial, color_by=args.color_by, rois=args.roi).figure
    elif args.kind == "raster":
        figure = plot.plot_raster(trial, layer=layer, rois=args.roi).figure
    else:
        figure = plot.plot_traces(trial, args.roi, layer=layer, channels=args.channel)
    figure.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")
    return 0


def _print_info(exp: Any, *, storage: bool = False) -> None:
    from .display import format_bytes
    from .summary import info_document, text_table

    doc = info_document(exp, storage=storage)
    totals, trials = doc["totals"], doc["trials"]
    duration = totals["duration_s"]
    print(
        f"experiment {doc['experiment']!r} at {doc['location']}, version {doc['version']}: "
        f"{totals['trials']} trial{'' if totals['trials'] == 1 else 's'}, "
        f"{totals['frames']} frames"
        + (f", {duration:.2f} s of imaging" if duration is not None else "")
        + f", {format_bytes(totals['stored_bytes'])} stored"
    )
    if doc["metadata"]:
        print("  " + ", ".join(f"{k} {v}" for k, v in doc["metadata"].items()))
    images = doc["images"]
    if images["arrays"]:
        print(
            f"  images: {images['arrays']} array{'' if images['arrays'] == 1 else 's'}, "
            f"{format_bytes(images['stored_bytes'])} (summary images shared by the trials)"
        )
    if not trials:
        return
    texts = {t["rois"]["text"] for t in trials}
    if len(texts) == 1 and trials[0]["rois"]["total"] is not None:
        print(f"  {texts.pop()}")
    rows = [
        (
            "trial",
            "fs (Hz)",
            "frames",
            "duration (s)",
            "ROIs (cells/total)",
            "run frames",
            "stored",
            "paq channels",
        )
    ]
    for t in trials:
        rois, frames = t["rois"], t["source"].get("frames")
        rows.append(
            (
                t["trial"],
                "-" if t["fs"] is None else f"{t['fs']:g}",
                str(t["n_frames"]),
                "-" if t["duration_s"] is None else f"{t['duration_s']:.2f}",
                f"{rois['stored']}"
                + (f" ({_count(rois['cells'])}/{_count(rois['total'])})" if rois["cells"] else ""),
                f"{frames[0]}:{frames[1]}"
                if isinstance(frames, list) and len(frames) == 2
                else "-",
                format_bytes(t["stored_bytes"]),
                ", ".join(t["channels"]) or "-",
            )
        )
    for line in text_table(rows, right=(1, 2, 3, 4, 6)):
        print("  " + line)
    # how each array was computed: once when every trial agrees, else per trial
    made = [
        {  # a layer named X (older stores) is shown as layers/X, beside X itself
            "X": t["X"]["computed"],
            **{("layers/X" if k == "X" else k): v["computed"] for k, v in t["layers"].items()},
        }
        for t in trials
    ]
    groups = (
        [("every trial", made[0])]
        if all(m == made[0] for m in made)
        else [(f"trial {t['trial']!r}", m) for t, m in zip(trials, made, strict=True)]
    )
    for label, arrays in groups:
        print(f"  X and layers ({label}), how each was computed:")
        for line in text_table([(name, text) for name, text in arrays.items()]):
            print("    " + line)
    if not storage:
        return
    for t in trials:
        print(f"  storage of trial {t['trial']!r}:")
        for arr in t["storage"]:
            ratio = arr["nbytes"] / arr["stored_bytes"] if arr["stored_bytes"] else float("nan")
            print(
                f"    {arr['name']:<14} {arr['dtype']:<8} shard {_shape(arr['shards'])} chunk "
                f"{_shape(arr['chunks'])}  {', '.join(arr['codecs'])}  "
                f"{format_bytes(arr['stored_bytes'])} stored, "
                f"{format_bytes(arr['nbytes'])} uncompressed ({ratio:.1f}x)"
            )


def _count(value: Any) -> str:
    return "-" if value is None else str(value)


def _shape(shape: Any) -> str:
    return "x".join(str(s) for s in shape) if shape else "-"


def _terminal_bar() -> bool:
    """``progress=`` for the API calls: a tqdm bar on stderr when it is a terminal
    (zstore.progress draws it), nothing in pipes, logs and tests."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
