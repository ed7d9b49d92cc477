"""The NWB file of an export: :func:`export_nwb` builds the NWBFile (session, subject,
device, imaging plane), adds the ROIs, series, channels and trials table from the other
modules of :mod:`zstore.nwb`, and writes it under a temporary name (:mod:`zstore.publish`).
"""

from __future__ import annotations

import datetime
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import ArgumentTypeError, InvalidArgumentError
from ..export import hdf5_file
from ..progress import ProgressOption, reporting
from ..publish import check_target, publishing
from ..validate import choice, name_list, positive_number, progress_option, shown, trial_ids
from .acquisition import add_channels, add_trials
from .plan import Plan, select_trials
from .segmentation import plane_segmentation, summary_images
from .series import add_series

__all__ = ["NWB_EXTRA", "export_nwb"]

NWB_EXTRA = "pip install 'zstore[nwb]'"


def export_nwb(
    source: Any,
    path: str | os.PathLike[str],
    *,
    session_start_time: datetime.datetime | str | None = None,
    subject: Any = None,
    trials: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    identifier: str | None = None,
    session_description: str | None = None,
    indicator: str | None = None,
    location: str | None = None,
    excitation_lambda: float | None = None,
    emission_lambda: float | None = None,
    device: str | None = None,
    nwbfile_kwargs: Mapping[str, Any] | None = None,
    compression: str | None = "gzip",
    progress: ProgressOption = None,
) -> Path:
    """Write trials of an experiment to one NWB file at ``path`` (``.nwb``); return it.

    Parameters
    ----------
    source
        An :class:`~zstore.Experiment` (all its trials, or those named in ``trials``),
        a :class:`~zstore.Trial`, or a list of Trials of one experiment. Several trials
        become one file, concatenated along time (see :mod:`zstore.nwb`).
    path
        The file to create; it must not exist (zstore never replaces files).
    session_start_time
        When the session began (the moment var ``time`` counts from): a timezone-aware
        ``datetime`` or ISO 8601 text (``"2026-05-01T10:30:00+01:00"``). Default: the
        experiment's metadata ``session_start_time``, if it was recorded at ingest.
    subject
        A ``pynwb.file.Subject``, a dict of its arguments (``subject_id``, ``species``,
        ``sex``, ``age``, ...) or a subject ID. Default: the experiment's metadata
        ``subject``.
    trials
        With an Experiment: the trial IDs to export (default all, in order).
    layers
        The layers to export (default: those every trial has). X is always exported.
    indicator, location, excitation_lambda, emission_lambda, device
        The imaging plane's description (defaults: the experiment's metadata keys of the
        same name, else "unknown" and NaN nm).
    nwbfile_kwargs
        Other arguments of ``pynwb.NWBFile`` (``experimenter``, ``lab``,
        ``institution``, ``keywords``, ...).
    compression
        HDF5 compression of the series: ``"gzip"`` (default; readable everywhere),
        ``"lzf"`` (faster, h5py only) or None.
    progress
        True shows a bar (``tqdm.auto``), False nothing, None (default) a bar in an
        interactive session only; a callable is called as ``progress(label, done,
        total)`` as each series' blocks are written (label: the series' name).

    Examples
    --------
    >>> import datetime, icechunk, numpy as np, tempfile, zstore as zs
    >>> from pynwb import NWBHDF5IO
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
    >>> X = np.arange(40, dtype="float32").reshape(4, 10)
    >>> _ = exp.add_trial("t-005", zs.AnnotatedData(X, uns={"fs": 30.0}))
    >>> start = datetime.datetime(2026, 5, 1, 10, 30, tzinfo=datetime.UTC)
    >>> out = zs.export_nwb(exp, tempfile.mkdtemp() + "/RL109.nwb", session_start_time=start)
    >>> with NWBHDF5IO(out, "r") as io:
    ...     f = io.read().processing["ophys"]["Fluorescence"]["F"]
    ...     f.data.shape, float(f.rate)
    ((10, 4), 30.0)
    """
    pynwb = _import_pynwb()
    _check_arguments(
        path,
        text={
            "identifier": identifier,
            "session_description": session_description,
            "indicator": indicator,
            "location": location,
            "device": device,
        },
        numbers={"excitation_lambda": excitation_lambda, "emission_lambda": emission_lambda},
        nwbfile_kwargs=nwbfile_kwargs,
        compression=compression,
        progress=progress,
    )
    trials = trial_ids(trials, where="export_nwb")
    layers = name_list(
        layers, name="layers", what="layer name", where="export_nwb", example="'dFF'"
    )
    target = Path(path)
    if target.suffix.lower() != ".nwb":
        raise InvalidArgumentError(
            f"export_nwb to {str(target)!r}: the file name must end in .nwb; for anndata "
            f"formats use zs.export (FILE.h5ad or FILE.zarr)"
        )
    check_target(target, what="export_nwb to")
    exp, loaded = select_trials(source, trials)
    meta = exp.metadata
    plan = Plan(exp, loaded, layers)
    start = _session_start(session_start_time, meta, exp.expID)

    try:
        nwbfile = pynwb.NWBFile(
            session_description=session_description
            or f"two-photon imaging, experiment {exp.expID}: trials {', '.join(plan.trial_ids)}",
            identifier=identifier or str(uuid.uuid4()),
            session_start_time=start,
            session_id=str(meta["session"]) if meta.get("session") is not None else exp.expID,
            notes=f"exported by zstore {__version__} from {exp.location} (version {exp.version})",
            **{
                "keywords": ["two-photon calcium imaging", "Suite2p"],
                **dict(nwbfile_kwargs or {}),
            },
        )
    except (TypeError, ValueError) as err:  # pynwb's own check of its arguments
        raise InvalidArgumentError(
            f"export_nwb: pynwb.NWBFile refused the arguments given ({err}); check "
            f"nwbfile_kwargs={dict(nwbfile_kwargs or {})!r} against pynwb.NWBFile's"
        ) from None
    who = _subject(pynwb, subject, meta)
    if who is not None:
        nwbfile.subject = who
    plane = _imaging_plane(
        nwbfile,
        plan,
        meta,
        indicator=indicator,
        location=location,
        excitation_lambda=excitation_lambda,
        emission_lambda=emission_lambda,
        device=device,
    )
    ophys = nwbfile.create_processing_module(
        name="ophys", description=f"Suite2p ROIs and traces of experiment {exp.expID} (zstore)"
    )
    segmentation = plane_segmentation(pynwb, plane, plan)
    image_segmentation = pynwb.ophys.ImageSegmentation(name="ImageSegmentation")
    image_segmentation.add_plane_segmentation(segmentation)
    ophys.add(image_segmentation)
    images = summary_images(pynwb, plan)
    if images is not None:
        ophys.add(images)
    add_trials(nwbfile, plan)
    parts = 1 + len(plan.layers)  # one progress part per series
    with (
        reporting(progress, desc="NWB export", parts=parts, unit="block") as report,
        publishing(target, what="export_nwb to") as temporary,
    ):
        first = add_series(pynwb, ophys, segmentation, plan, compression, report)
        add_channels(pynwb, nwbfile, plan, first)
        # a full disk or `ulimit -f`: one OSError naming the file, said by publishing
        with hdf5_file(temporary) as h5, pynwb.NWBHDF5IO(mode="w", file=h5) as io:
            io.write(nwbfile)  # the series' iterators read the store now
    return target


def _check_arguments(
    path: Any,
    *,
    text: Mapping[str, Any],
    numbers: Mapping[str, Any],
    nwbfile_kwargs: Any,
    compression: Any,
    progress: Any,
) -> None:
    """export_nwb's plain arguments, before anything is read."""
    here = "export_nwb"
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise ArgumentTypeError(
            f"{here}: path must be a file name ending in .nwb (a str or Path), got "
            f"{shown(path)}; pass path='RL109.nwb'"
        )
    for name, value in text.items():
        if value is not None and not isinstance(value, str):
            raise ArgumentTypeError(
                f"{here}: {name} must be text (a str) or None, got {shown(value)}; pass "
                f"{name}='...'"
            )
    for name, value in numbers.items():
        if value is not None:
            positive_number(value, name=name, where=here, fix=f"pass {name}=<nm>")
    if nwbfile_kwargs is not None and not isinstance(nwbfile_kwargs, Mapping):
        raise ArgumentTypeError(
            f"{here}: nwbfile_kwargs must be a dict of pynwb.NWBFile arguments, got "
            f"{shown(nwbfile_kwargs)}; pass nwbfile_kwargs={{'lab': '...'}}"
        )
    if compression is not None:
        choice(compression, ("gzip", "lzf"), name="compression", where=here)
    progress_option(progress, where=here)


def _import_pynwb() -> Any:
    try:
        import pynwb
        import pynwb.base
        import pynwb.image
        import pynwb.ophys
    except ImportError:
        raise ImportError(f"NWB export needs pynwb: {NWB_EXTRA}") from None
    return pynwb


def _session_start(
    value: datetime.datetime | str | None, meta: Mapping[str, Any], exp_id: str
) -> datetime.datetime:
    given = value if value is not None else meta.get("session_start_time")
    if given is None:
        raise InvalidArgumentError(
            f"export_nwb: experiment {exp_id!r}: NWB needs the session's start time; pass "
            f"session_start_time=datetime(..., tzinfo=...) or ISO text such as "
            f"'2026-05-01T10:30:00+01:00' (`--session-start-time` in the CLI)"
        )
    if isinstance(given, str):
        try:
            given = datetime.datetime.fromisoformat(given)
        except ValueError:
            raise InvalidArgumentError(
                f"export_nwb: session_start_time {given!r} is not ISO 8601 date-time text; "
                f"write it like '2026-05-01T10:30:00+01:00'"
            ) from None
    if not isinstance(given, datetime.datetime):
        raise ArgumentTypeError(
            f"export_nwb: session_start_time must be a datetime or ISO text, got "
            f"{type(given).__name__} ({given!r})"
        )
    if given.tzinfo is None or given.utcoffset() is None:
        raise InvalidArgumentError(
            f"export_nwb: session_start_time {given.isoformat()} has no timezone; NWB "
            f"needs one: datetime(..., tzinfo=zoneinfo.ZoneInfo('Europe/London')) or "
            f"'{given.isoformat()}+00:00'"
        )
    return given


def _subject(pynwb: Any, subject: Any, meta: Mapping[str, Any]) -> Any:
    if subject is None:
        found = meta.get("subject")
        return pynwb.file.Subject(subject_id=str(found)) if found is not None else None
    if isinstance(subject, pynwb.file.Subject):
        return subject
    if isinstance(subject, str):
        return pynwb.file.Subject(subject_id=subject)
    if isinstance(subject, Mapping):
        try:
            return pynwb.file.Subject(**dict(subject))
        except (TypeError, ValueError) as err:  # pynwb's own check of its arguments
            raise InvalidArgumentError(
                f"export_nwb: pynwb.file.Subject refused subject={dict(subject)!r} ({err}); "
                f"pass subject={{'subject_id': 'RL109', 'species': 'Mus musculus'}}"
            ) from None
    raise ArgumentTypeError(
        f"export_nwb: subject must be a pynwb Subject, a dict of its arguments or a subject "
        f"ID, got {type(subject).__name__}"
    )


def _imaging_plane(
    nwbfile: Any,
    plan: Plan,
    meta: Mapping[str, Any],
    *,
    indicator: str | None,
    location: str | None,
    excitation_lambda: float | None,
    emission_lambda: float | None,
    device: str | None,
) -> Any:
    import pynwb.ophys

    def pick(given: Any, key: str, default: Any) -> Any:
        return given if given is not None else meta.get(key, default)

    microscope = nwbfile.create_device(
        name=str(pick(device, "device", "Microscope")),
        description="the two-photon microscope that recorded the trials",
    )
    channel = pynwb.ophys.OpticalChannel(
        name="OpticalChannel",
        description="the channel Suite2p extracted the traces from",
        emission_lambda=float(pick(emission_lambda, "emission_lambda", math.nan)),
    )
    ops = plan.first.uns.get("suite2p") or {}
    size = f" of {ops['Ly']} x {ops['Lx']} pixels" if "Ly" in ops and "Lx" in ops else ""
    return nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=channel,
        description=f"the field of view{size} of experiment {plan.exp.expID}",
        device=microscope,
        excitation_lambda=float(pick(excitation_lambda, "excitation_lambda", math.nan)),
        imaging_rate=plan.fs if plan.fs is not None else math.nan,
        indicator=str(pick(indicator, "indicator", "unknown")),
        location=str(pick(location, "location", "unknown")),
    )
