"""Summary images (Suite2p's meanImg, meanImgE, max_proj, Vcorr), stored once per experiment.

Every trial of a Suite2p run has the same summary images; copied into each trial's uns
they were most of a small store's files and bytes. An experiment keeps each image once,
content-addressed, under ``images/<hash>`` (a Zarr array; ``<hash>`` is derived from its
dtype, shape and bytes, so two runs with different images in one experiment keep both,
and the same image is never stored twice). A trial's uns holds references in place of
the images: ``uns["zstore_images"]`` mirrors where each image was
(``{"suite2p": {"meanImg": "images/<hash>"}}``, paths from the experiment's root), so
plain anndata still reads the trial (it sees the references). zstore puts the images
back when it loads a trial: ``trial.data.uns["suite2p"]["meanImg"]`` is the image, and
``to_memory()`` and exports carry it.

An image that cannot be read (a changed byte, a deleted object) does not make its trials
unreadable: the trial loads with a warning, and in the image's place uns holds an
:class:`UnreadableImage`, which raises the error (naming the experiment, trial, image
and ``images/<hash>``) when used as an array, copied into memory or exported; saving the
trial keeps its reference. Images no trial refers to any more are deleted by the
transaction that removed or replaced the last trial using them (:func:`settle_images`);
on object stores, where no lock keeps the newest version still between that check and
the commit, each write checks again after its commit and writes back what a trial
refers to and another writer deleted meanwhile (:func:`dangling`, see below).

Nothing here commits: the caller hands in a group of a transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from ._compat import (
    child_names,
    is_corrupt_object,
    is_missing_object,
    is_storage_error,
    short_message,
)
from .errors import CorruptChunkError, MissingChunkError, StoreError, emit_user_warning
from .store import TRIALS

__all__ = [
    "IMAGES",
    "IMAGE_KEYS",
    "REFS",
    "ImageReader",
    "ImageWriter",
    "UnreadableImage",
    "check_readable",
    "create_image",
    "dangling",
    "image_name",
    "image_refs",
    "is_image_array",
    "join_images",
    "read_image",
    "restore_source",
    "settle_images",
    "split_images",
]

#: The group of an experiment that holds its images.
IMAGES = "images"
#: The uns key of a trial that holds its references.
REFS = "zstore_images"
#: Which uns entries are images kept once per experiment: ``{uns key: image keys}``.
IMAGE_KEYS: Mapping[str, tuple[str, ...]] = {
    "suite2p": ("meanImg", "meanImgE", "max_proj", "Vcorr"),
}
IMAGE_ENCODING = {"encoding-type": "zstore.image", "encoding-version": "0.1.0"}
_COMPRESSORS = [ZstdCodec(level=3), Crc32cCodec()]


def _is_image(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.ndim >= 2 and value.dtype.kind in "iufb"


def image_name(image: np.ndarray) -> str:
    """The content address of ``image``: a hash of its dtype, shape and bytes."""
    digest = hashlib.sha256()
    digest.update(f"{image.dtype.str}{image.shape}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:32]


def split_images(uns: Mapping[str, Any], put: Callable[[str, np.ndarray], str]) -> dict[str, Any]:
    """``uns`` with its summary images replaced by references (a new dict; ``uns`` is
    not changed). ``put(key, image)`` stores one image and returns its path."""
    if REFS in uns:
        raise ValueError(
            f"uns[{REFS!r}] holds references to the summary images of a zstore store (the "
            f"trial was read without zstore); zstore cannot tell which images they name. "
            f"Load the trial with zstore (which puts the images back), or delete "
            f"uns[{REFS!r}] before storing it"
        )
    out = dict(uns)
    refs: dict[str, dict[str, str]] = {}
    for outer, keys in IMAGE_KEYS.items():
        section = uns.get(outer)
        if not isinstance(section, Mapping):
            continue
        found = {key: section[key] for key in keys if _is_image(section.get(key))}
        # an image that could not be read keeps its reference (saving uns loses nothing)
        kept = {
            key: value.path
            for key in keys
            if isinstance(value := section.get(key), UnreadableImage)
        }
        if not found and not kept:
            continue
        out[outer] = {k: v for k, v in section.items() if k not in found and k not in kept}
        refs[outer] = {**kept, **{key: put(key, image) for key, image in found.items()}}
    if refs:
        out[REFS] = refs
    return out


def image_refs(uns: Mapping[str, Any]) -> dict[str, str]:
    """The references of a trial's stored uns: ``{"suite2p/meanImg": "images/<hash>"}``."""
    refs = uns.get(REFS)
    if not isinstance(refs, Mapping):
        return {}
    return {
        f"{outer}/{key}": str(path)
        for outer, section in refs.items()
        if isinstance(section, Mapping)
        for key, path in section.items()
    }


def join_images(
    uns: Mapping[str, Any], get: Callable[[str, str], np.ndarray], *, label: str
) -> dict[str, Any]:
    """``uns`` as stored, with the images it refers to put back in place.

    ``get(path, what)`` reads one image (``what`` names it in errors). One that cannot
    be read becomes an :class:`UnreadableImage` (with a warning): the trial's X and
    layers stay readable."""
    refs = uns.get(REFS)
    if not isinstance(refs, Mapping):
        return dict(uns)
    out = {k: v for k, v in uns.items() if k != REFS}
    for outer, section in refs.items():
        if not isinstance(section, Mapping):
            raise ValueError(
                f"{label} uns/{REFS}/{outer}: expected a mapping of image names to paths "
                f"(images/<hash>), found {type(section).__name__}; the trial's uns is damaged"
            )
        target = dict(out.get(outer) or {})
        for key, path in section.items():
            what = f"{label} uns[{outer!r}][{key!r}] (the summary image {path})"
            try:
                target[key] = get(str(path), what)
            except CorruptChunkError as err:  # MissingChunkError too
                target[key] = UnreadableImage(str(path), err)
                emit_user_warning(
                    f"{err}. The trial is loaded without it: uns[{outer!r}][{key!r}] raises "
                    f"this error when used; X, layers and the other elements read as usual"
                )
        out[outer] = target
    return out


class ImageWriter:
    """Stores images once in the ``images`` group of an experiment root (in a
    transaction): :meth:`put` writes an image that is not there yet."""

    def __init__(self, root: zarr.Group):
        self.root = root
        self.written: list[str] = []
        #: images put that were there already: ``{path: (key, image)}``, to write them
        #: again if another writer deletes them before this one commits
        self.reused: dict[str, tuple[str, np.ndarray]] = {}
        #: every image put, written or not: ``{path: (key, image)}``; on object stores
        #: they are written again after the commit if another writer deleted them
        #: meanwhile (:func:`dangling`)
        self.held: dict[str, tuple[str, np.ndarray]] = {}

    def put(self, key: str, image: np.ndarray) -> str:
        name = image_name(image)
        path = f"{IMAGES}/{name}"
        self.held[path] = (key, image)
        group = self._group()
        if name in group:
            if path not in self.written:
                self.reused[path] = (key, image)
            return path
        create_image(group, name, key, image)
        self.written.append(path)
        return path

    def _group(self) -> zarr.Group:
        if IMAGES in self.root:
            return cast(zarr.Group, self.root[IMAGES])
        return self.root.create_group(IMAGES)


def create_image(group: zarr.Group, name: str, key: str, image: np.ndarray) -> None:
    """Write ``image`` as the array ``name`` of the images ``group``; ``key`` is its uns
    name (meanImg, ...)."""
    array = group.create_array(
        name,
        shape=image.shape,
        dtype=image.dtype,
        chunks=image.shape,
        compressors=_COMPRESSORS,
        attributes={"zstore": {**IMAGE_ENCODING, "name": key}},
        dimension_names=[f"{key}_dim{i}" for i in range(image.ndim)],
    )
    array[...] = image


class ImageReader:
    """Reads the images of an experiment root (one version), each once."""

    def __init__(self, root: zarr.Group, label: str):
        self.root = root
        self.label = label
        self._cache: dict[str, np.ndarray | CorruptChunkError] = {}

    def __call__(self, path: str, what: str = "") -> np.ndarray:
        what = what or f"the summary image {path}"
        if path not in self._cache:
            try:
                self._cache[path] = self._read(path)
            except CorruptChunkError as err:
                self._cache[path] = err  # every trial using it is told, none re-reads it
        found = self._cache[path]
        if isinstance(found, CorruptChunkError):
            raise type(found)(f"{self.label}: {what} {found}")
        return found.copy()  # each trial gets its own array (uns is the user's to edit)

    def _read(self, path: str) -> np.ndarray:
        node = self.root.get(path) if path.startswith(f"{IMAGES}/") else None
        if not isinstance(node, zarr.Array):
            raise MissingChunkError(
                f"is not in the experiment (a trial's uns/{REFS} refers to it; expected an "
                f"array at {IMAGES}/<hash>); the store is damaged: `zstore verify` lists what "
                f"else is, and an earlier version may have it (`zstore history`)"
            )
        return read_image(node)


def read_image(array: zarr.Array) -> np.ndarray:
    """The whole image ``array``; its failures as zstore's errors (the text follows the
    image's name: "... failed its crc32c checksum ...")."""
    try:
        return np.asarray(array[...])
    except Exception as err:
        if is_storage_error(err):
            if not (is_missing_object(err) or is_corrupt_object(err)):
                raise StoreError(
                    f"the summary image {array.path} could not be read: {short_message(err)}; "
                    f"check that the storage is reachable, then retry"
                ) from err
            raise MissingChunkError(
                f"cannot be read: its chunk object is missing or truncated "
                f"({short_message(err)}); run `zstore verify` to list what else is damaged"
            ) from err
        # zstore wrote the array (zstd + crc32c, one chunk) and its metadata was read:
        # what its codecs raise means its bytes changed (zarr has no error type of its own)
        if isinstance(err, ValueError | RuntimeError | TypeError):
            said = f"{type(err).__name__}: {str(err).split('. ')[0]}"
            raise CorruptChunkError(
                f"failed its crc32c checksum or cannot be decompressed, so its bytes were "
                f"changed after writing ({said}); restore the store from a copy, or add the "
                f"trials again from their Suite2p folder"
            ) from err
        raise


class UnreadableImage:
    """In a loaded trial's uns, in place of a summary image that could not be read.

    Using it as an array (``np.asarray``), copying the trial into memory or exporting
    it raises the error that reading the image raised; saving the trial keeps its
    reference to ``images/<hash>``."""

    def __init__(self, path: str, error: CorruptChunkError):
        self.path = path
        self.error = error

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise self.failure()

    def failure(self) -> CorruptChunkError:
        return type(self.error)(str(self.error))

    def __deepcopy__(self, memo: Any) -> UnreadableImage:
        return self  # immutable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnreadableImage) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"<unreadable summary image {self.path}: {self.error}>"


def check_readable(uns: Mapping[str, Any]) -> None:
    """Raise the error of the first :class:`UnreadableImage` in ``uns`` (nested)."""
    for value in uns.values():
        if isinstance(value, UnreadableImage):
            raise value.failure()
        if isinstance(value, Mapping):
            check_readable(value)


# -- keeping the images group consistent with the trials ------------------------------------


def is_image_array(node: Any) -> bool:
    """An array zstore wrote as a summary image (its encoding attributes)."""
    meta = node.attrs.get("zstore") if isinstance(node, zarr.Array) else None
    return (
        isinstance(meta, Mapping) and meta.get("encoding-type") == IMAGE_ENCODING["encoding-type"]
    )


def referenced(root: zarr.Group, trials: Iterable[str] | None = None) -> set[str]:
    """The image paths the trials of the experiment ``root`` refer to (all, or ``trials``)."""
    from anndata.io import read_elem

    group = root.get(TRIALS)
    if not isinstance(group, zarr.Group):
        return set()
    # listed without parsing each trial's metadata (a damaged one would fail the listing)
    names = child_names(group.store, group.path) if trials is None else list(trials)
    found: set[str] = set()
    for name in names:
        node = group.get(f"{name}/uns/{REFS}")
        if isinstance(node, zarr.Group):
            found.update(image_refs({REFS: read_elem(node)}).values())
    return found


def settle_images(
    ours: zarr.Group,
    tip: zarr.Group | None,
    base: zarr.Group | None,
    *,
    writer: ImageWriter | None,
    touched: Iterable[str],
    prune: bool,
) -> list[str]:
    """Run just before a commit (under the commit lock), with ``tip`` the experiment's root
    in the newest version and ``base`` in the version this transaction began from: makes
    this transaction's images agree with the tip.

    - An image this transaction created that another writer committed meanwhile (same
      content: the name is its hash; in the tip and not in ``base``) is dropped from this
      transaction, so both commits go in without a conflict. One that was in ``base``
      too is this transaction's own: it deleted the image (replacing the experiment) and
      wrote it again; dropping it would leave the trials without it.
    - An image this transaction refers to again that another writer deleted meanwhile
      (its last trial removed) is written again.
    - With ``prune``: images that neither this transaction's trials nor the newest
      version's other trials refer to are deleted (only arrays zstore wrote there).

    ``touched``: the trials this transaction wrote or removed. Returns the paths deleted.
    """
    deleted: list[str] = []
    tip_images = tip.get(IMAGES) if tip is not None else None
    base_images = base.get(IMAGES) if base is not None else None
    if writer is not None and isinstance(tip_images, zarr.Group):
        mine = cast(zarr.Group, ours[IMAGES])
        for path in writer.written:
            name = path.removeprefix(f"{IMAGES}/")
            ours_before = isinstance(base_images, zarr.Group) and is_image_array(
                base_images.get(name)
            )
            if is_image_array(tip_images.get(name)) and not ours_before:
                del mine[name]
        for path, (key, image) in writer.reused.items():
            name = path.removeprefix(f"{IMAGES}/")
            if not is_image_array(tip_images.get(name)):
                if name in mine:
                    del mine[name]
                create_image(mine, name, key, image)
    if not prune or not isinstance(ours.get(IMAGES), zarr.Group):
        return deleted
    keep = referenced(ours)
    if tip is not None:  # trials committed meanwhile by others, which this one did not touch
        others = tip.get(TRIALS)
        names: set[str] = set()
        if isinstance(others, zarr.Group):
            names = set(child_names(others.store, others.path))
        keep |= referenced(tip, sorted(names - set(touched)))
    images = cast(zarr.Group, ours[IMAGES])
    for name, node in list(images.arrays()):
        path = f"{IMAGES}/{name}"
        if path not in keep and is_image_array(node):
            del images[name]
            deleted.append(path)
    return deleted


# -- object stores: the window between the check before a commit and the commit ---------------
#
# On a local disk settle_images runs under the commit lock, so the newest version cannot
# change between it and the commit. Object stores have no such lock: writer A can settle
# (the last trial using image I is removed: I is deleted) while writer B settles (its new
# trial refers to I, which is there: B does not write it), and both commits then rebase
# without a conflict (they touch different nodes), leaving B's trial referring to a
# deleted image. Whichever of the two commits second sees the other's commit in the
# version it made, so each writer checks after its commit (images that this write held
# or deleted, at the newest version) and writes back what a trial refers to and is
# missing, in a follow-up commit: B from the bytes it holds, A from the version its write
# began from (Icechunk keeps it, and the writer's lease keeps gc from expiring it).


def dangling(root: zarr.Group, candidates: Iterable[str]) -> set[str]:
    """Of the image paths ``candidates``, those a trial of the experiment ``root`` refers
    to and that are not in ``root``'s images group: references that would dangle.

    Reads only the images group's listing when every candidate is there; otherwise the
    references of every trial (uns/zstore_images)."""
    group = root.get(IMAGES)
    present = set(group.array_keys()) if isinstance(group, zarr.Group) else set()
    missing = {p for p in candidates if p.removeprefix(f"{IMAGES}/") not in present}
    if not missing:
        return set()
    return missing & referenced(root)


def restore_source(
    held: Mapping[str, tuple[str, np.ndarray]], before: zarr.Group | None
) -> Callable[[str], tuple[str, np.ndarray] | None]:
    """Where the bytes of an image to write again come from: ``(key, image)`` from the
    images this write held, else from the experiment root ``before`` (the version the
    write began from); None when neither has it."""

    def source(path: str) -> tuple[str, np.ndarray] | None:
        if path in held:
            return held[path]
        node = before.get(path) if before is not None else None
        if not is_image_array(node):
            return None
        array = cast(zarr.Array, node)
        meta = cast(Mapping[str, Any], array.attrs["zstore"])
        image = read_image(array)
        if image_name(image) != path.removeprefix(f"{IMAGES}/"):
            return None  # its bytes changed since: writing them again would lie
        return str(meta.get("name", "image")), image

    return source
