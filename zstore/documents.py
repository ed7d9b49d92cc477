"""What a store's metadata documents say, read so that one damaged document is named and
does not hide the others.

zarr-python lists a group by parsing every child's ``zarr.json``, so one document it
cannot read (not JSON, attributes that are not an object, ...) fails the whole listing
with an error naming neither the key nor the node. Here the documents are fetched
concurrently and checked one by one (:func:`zstore._compat.node_documents`): an
experiment lists its trials from them (a damaged trial is listed, and fails when
loaded, naming the trial and the key), and opening an experiment, a collection or a
trial says which document is damaged, what was found, and the way out (another trial,
an earlier version).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import zarr

from . import _compat
from .errors import NotAnExperimentError
from .store import ENCODING_VERSION, EXPERIMENT_ENCODING, EXPERIMENTS, TRIALS

__all__ = [
    "TrialListing",
    "check_child_group",
    "check_experiment_node",
    "check_experiment_root",
    "damaged_documents",
    "damaged_experiments",
    "damaged_text",
    "earlier_versions_hint",
    "experiment_problem",
    "list_trials",
    "open_trial_group",
    "parse_format_version",
    "root_problem",
    "trial_fix",
]


def trial_fix(trial_id: str) -> str:
    """The way out of one trial that cannot be read (the end of a message)."""
    return (
        f"the other trials are unaffected: remove this one with exp.remove_trial("
        f"{trial_id!r}), replace it with exp.add_trial({trial_id!r}, ..., overwrite=True), "
        f"or read an earlier version (`zstore history`, then zs.open_experiment(..., "
        f"version=ID))"
    )


# -- the trials of an experiment, as its `trials` group lists them -------------------


@dataclasses.dataclass(frozen=True)
class TrialListing:
    """The trials under an experiment's ``trials`` group.

    ``ids``: every trial group in the order the trials were added, then those whose
    metadata cannot be read (by name): they are listed, and fail when loaded.
    ``damaged``: for each of those (and any Zarr array found among the trials), what
    is wrong, naming the key ("trials/t-005/zarr.json is not valid JSON (...)").
    """

    ids: list[str]
    damaged: dict[str, str]


def list_trials(store: Any, path: str) -> TrialListing:
    """The trials under ``path`` (an experiment's ``trials`` group) in ``store``, from
    their metadata documents (fetched concurrently); one damaged trial does not hide
    the others.

    Examples
    --------
    >>> import icechunk, numpy as np, zstore as zs
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    >>> _ = exp.add_trial("t-2", zs.AnnotatedData(np.ones((2, 3), dtype="float32")))
    >>> _ = exp.add_trial("t-1", zs.AnnotatedData(np.ones((2, 3), dtype="float32")))
    >>> list_trials(exp.open_zarr().store, "trials")
    TrialListing(ids=['t-2', 't-1'], damaged={})
    """
    names = _compat.child_names(store, path)
    documents = _compat.node_documents(store, [f"{path}/{n}" for n in names])
    created: list[tuple[int, str]] = []
    unreadable: list[str] = []
    damaged: dict[str, str] = {}
    for name, doc in zip(names, documents, strict=True):
        if doc.kind == "group":
            created.append((_created(doc.attributes), name))
        elif doc.kind == "array":
            damaged[name] = f"{path}/{name} is a Zarr array, not a trial group"
        else:
            unreadable.append(name)
            damaged[name] = _document_problem(doc)
    return TrialListing([name for _, name in sorted(created)] + unreadable, damaged)


def _created(attributes: Mapping[str, Any]) -> int:
    """When the trial was added (its position in the listing); last when unknown."""
    meta = attributes.get("zstore")
    value = meta.get("created") if isinstance(meta, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 2**63


def _document_problem(doc: _compat.NodeDocument) -> str:
    if doc.kind == "absent":
        return f"its metadata document {doc.key} is missing"
    return f"its metadata document {doc.key} {doc.problem}"


def open_trial_group(store: Any, path: str, trial_id: str, where: str) -> zarr.Group | None:
    """The trial group at ``path`` (None when there is none); NotAnExperimentError
    naming the trial and the key when its metadata cannot be read or it is an array.
    ``where`` names the experiment ("experiment 'E' at /data/E.zarr")."""
    (doc,) = _compat.node_documents(store, [path])
    if doc.kind == "absent":
        return None
    if doc.kind != "group":
        problem = (
            f"{path} is a Zarr array, not a trial group"
            if doc.kind == "array"
            else _document_problem(doc)
        )
        raise NotAnExperimentError(
            f"trial {trial_id!r} of {where} cannot be read: {problem} (the store was "
            f"changed by another program, or damaged); {trial_fix(trial_id)}"
        )
    return zarr.open_group(store, path=path, mode="r", zarr_format=3)


def damaged_documents(store: Any, path: str) -> list[_compat.NodeDocument]:
    """Every metadata document under ``path`` (the node's own too) that zarr cannot
    read, naming its key."""
    prefix = f"{path.strip('/')}/" if path.strip("/") else ""
    keys = [k for k in _compat.list_keys(store, prefix) if k.rsplit("/", 1)[-1] == "zarr.json"]
    own = _compat.document_key(path)
    keys = sorted(set(keys) | {own})
    found = _compat.read_many(store, keys)
    docs = [_compat.parse_node_document(k, raw) for k, raw in zip(keys, found, strict=True)]
    return [d for d in docs if d.kind == "damaged" or (d.key == own and d.kind == "absent")]


def damaged_text(what: str, damaged: Sequence[_compat.NodeDocument], *, fix: str) -> str:
    """One message for the documents ``damaged`` of ``what`` ("trial 't-005'")."""
    first = damaged[0]
    more = f" (and {len(damaged) - 1} more: `zstore verify`)" if len(damaged) > 1 else ""
    return (
        f"{what} cannot be read: {_document_problem(first)}{more}; the store was changed "
        f"by another program, or damaged; {fix}"
    )


# -- an experiment's own metadata ---------------------------------------------------------


def earlier_versions_hint(where: str) -> str:
    """Where to look when the newest version of a store is damaged."""
    label = where.split("::", 1)[0]
    return (
        f"an earlier version may be intact: `zstore history {label}` lists them; open one "
        f"with zs.open_experiment({label!r}, version=ID) (zs.open_collection for a "
        f"collection)"
    )


def parse_format_version(found: Any, where: str) -> tuple[int, int]:
    """``(major, minor)`` of a recorded ``encoding-version`` ("0.2.0"), or
    NotAnExperimentError when it is not a version at all (damaged, not newer)."""
    if not isinstance(found, str) or not re.fullmatch(r"[0-9]+\.[0-9]+(\.[0-9]+)*", found):
        raise NotAnExperimentError(
            f"{where}: the root attribute zstore['encoding-version'] is {found!r}, which is "
            f"not a format version (expected text such as {ENCODING_VERSION!r}); the store's "
            f"metadata was changed by another program or damaged: "
            f"{earlier_versions_hint(where)}"
        )
    major, minor = found.split(".")[:2]
    return int(major), int(minor)


def check_experiment_root(root: zarr.Group, meta: Mapping[str, Any], where: str) -> None:
    """The experiment's ID and its ``trials`` group are there and readable, else
    NotAnExperimentError naming the attribute or key, what was found and the way out."""
    problem = None
    if "expID" not in meta:
        problem = "the root attribute zstore['expID'] (the experiment's ID) is missing"
    elif not isinstance(meta["expID"], str) or not meta["expID"]:
        problem = (
            f"the root attribute zstore['expID'] is {meta['expID']!r}, expected the "
            f"experiment's ID as text (e.g. 'RL109')"
        )
    else:
        problem = _child_group_problem(root, TRIALS, "one group per trial")
    if problem is not None:
        raise NotAnExperimentError(
            f"{where}: the experiment's metadata is damaged: {problem}; the store was "
            f"changed by another program or damaged: {earlier_versions_hint(where)}"
        )


def check_child_group(root: zarr.Group, name: str, where: str, holds: str) -> None:
    """The group ``name`` of ``root`` is there and readable (it ``holds`` e.g. "one
    group per experiment"), else NotAnExperimentError naming its key."""
    problem = _child_group_problem(root, name, holds)
    if problem is not None:
        raise NotAnExperimentError(
            f"{where}: the store's metadata is damaged: {problem}; the store was changed "
            f"by another program or damaged: {earlier_versions_hint(where)}"
        )


def _child_group_problem(root: zarr.Group, name: str, holds: str) -> str | None:
    path = f"{root.path}/{name}" if root.path else name
    (doc,) = _compat.node_documents(root.store, [path])
    if doc.kind == "absent":
        return f"it has no {path!r} group (expected {holds} in it)"
    if doc.kind == "array":
        return f"{path!r} is a Zarr array, expected a group (holding {holds})"
    if doc.kind == "damaged":
        return f"its metadata document {doc.key} {doc.problem}"
    return None


def check_experiment_node(store: Any, path: str, exp_id: str, where: str) -> None:
    """Nothing to say when there is no node at ``path`` or it is a readable zstore
    experiment; else NotAnExperimentError: the experiment ``exp_id`` of the collection
    ``where`` is there but its metadata cannot be read (naming the key)."""
    (doc,) = _compat.node_documents(store, [path])
    meta = doc.attributes.get("zstore")
    if doc.kind == "absent" or (doc.kind == "group" and isinstance(meta, Mapping)):
        return
    if doc.kind == "damaged":
        problem = f"its metadata document {doc.key} {doc.problem}"
    elif doc.kind == "array":
        problem = f"{path} is a Zarr array, not an experiment's group"
    else:
        problem = f"{doc.key} has no 'zstore' attributes of an experiment"
    raise NotAnExperimentError(
        f"experiment {exp_id!r} of the collection at {where} cannot be read: {problem} (the "
        f"store was changed by another program, or damaged); the other experiments are "
        f"unaffected: {earlier_versions_hint(where)}"
    )


def root_problem(store: Any, path: str, where: str, err: Exception) -> Exception:
    """What to raise when zarr cannot open the group at ``path`` (a store's root, or an
    experiment's in a collection): NotAnExperimentError naming its metadata document
    when that is damaged or is an array's, else ``err`` itself."""
    (doc,) = _compat.node_documents(store, [path])
    if doc.kind == "array":
        node = f"{path!r}" if path else "its root"
        return NotAnExperimentError(
            f"{where} is not a zstore experiment or collection: {node} is a Zarr array "
            f"({doc.key}), where zstore keeps a group; it was written by another program: "
            f"read it with zarr.open_array, or choose another path for zstore"
        )
    if doc.kind == "damaged":
        return NotAnExperimentError(
            f"{where} cannot be read: its metadata document {doc.key} {doc.problem}; the "
            f"store was changed by another program or damaged: {earlier_versions_hint(where)}"
        )
    return err


def experiment_problem(key: str, meta: Mapping[str, Any], has_trials: bool) -> str | None:
    """What is wrong with the attributes ``meta`` of the experiment group whose document
    is ``key`` (its ID, its format version) or its ``trials`` group (``has_trials``:
    there); None: nothing."""
    exp_id, version = meta.get("expID"), meta.get("encoding-version")
    if not isinstance(exp_id, str) or not exp_id:
        return (
            f"{key}: attribute zstore.expID: expected the experiment's ID as text, found {exp_id!r}"
        )
    if not isinstance(version, str) or not re.fullmatch(r"[0-9]+\.[0-9]+(\.[0-9]+)*", version):
        return (
            f"{key}: attribute zstore.encoding-version: expected a format version such as "
            f"{ENCODING_VERSION!r}, found {version!r}"
        )
    if not has_trials:
        trials = key.replace("zarr.json", TRIALS)
        return f"{trials}: expected the group of the experiment's trials, found nothing"
    return None


def damaged_experiments(store: Any) -> dict[str, str]:
    """The experiments of the collection in ``store`` whose metadata cannot be read (a
    collection's table leaves them out) or is damaged (:func:`experiment_problem`), each
    with what is wrong, naming the key."""
    names = _compat.child_names(store, EXPERIMENTS)
    docs = _compat.node_documents(store, [f"{EXPERIMENTS}/{n}" for n in names])
    trials = _compat.node_documents(store, [f"{EXPERIMENTS}/{n}/{TRIALS}" for n in names])
    out = {}
    for name, doc, tdoc in zip(names, docs, trials, strict=True):
        meta = doc.attributes.get("zstore")
        kind = meta.get("encoding-type") if isinstance(meta, Mapping) else None
        if doc.kind == "group" and kind == EXPERIMENT_ENCODING:
            assert isinstance(meta, Mapping)
            problem = experiment_problem(doc.key, meta, tdoc.kind == "group")
            if problem is not None:
                out[name] = problem
            continue
        if doc.kind == "array":
            out[name] = f"{EXPERIMENTS}/{name} is a Zarr array, not an experiment's group"
        elif doc.kind == "group":
            out[name] = f"{doc.key} has no 'zstore' attributes of an experiment"
        else:
            out[name] = _document_problem(doc)
    return out
