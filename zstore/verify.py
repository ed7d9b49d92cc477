"""Read every stored chunk of an experiment and report the damaged ones.

X and layers carry a crc32c checksum per chunk (and per shard index), so a changed byte
is found, not read as wrong numbers. Arrays are read a shard at a time; a shard that
fails is re-read one inner chunk at a time to name exactly which chunks are damaged.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import zarr

from .experiment import Experiment
from .store import open_trial_group

__all__ = ["Damage", "verify_experiment"]


@dataclasses.dataclass(frozen=True)
class Damage:
    """One unreadable chunk: where it is and what reading it said."""

    trial: str
    array: str
    chunk: tuple[int, ...]
    error: str

    def __str__(self) -> str:
        coords = ".".join(map(str, self.chunk))
        return f"trial {self.trial!r} {self.array} chunk {coords}: {self.error}"


def verify_experiment(
    exp: Experiment, *, progress: Callable[[str, int, int], None] | None = None
) -> list[Damage]:
    """Read every array of every trial; return the damaged chunks ([] when all is well).

    Examples
    --------
    >>> import numpy as np, zarr, zstore as zs
    >>> from zstore.verify import verify_experiment
    >>> exp = zs.create_experiment(zarr.storage.MemoryStore(), exp_id="E")
    >>> _ = exp.add_trial("t", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
    >>> verify_experiment(exp)
    []
    """
    damage: list[Damage] = []
    for trial_id in exp.trialIDs:
        group = open_trial_group(exp.store, trial_id, mode="r")
        arrays = [
            (path, node)
            for path, node in group.members(max_depth=None)
            if isinstance(node, zarr.Array)
        ]
        for k, (path, array) in enumerate(arrays):
            damage += _verify_array(trial_id, path, array)
            if progress is not None:
                progress(trial_id, k + 1, len(arrays))
    return damage


def _verify_array(trial_id: str, path: str, array: zarr.Array) -> list[Damage]:
    outer = array.shards or array.chunks
    found = []
    for block in _blocks(array.shape, outer):
        try:
            array[block]
        except Exception as err:  # any decode failure is damage to report
            found += _locate(trial_id, path, array, block, err)
    return found


def _locate(
    trial_id: str, path: str, array: zarr.Array, block: tuple[slice, ...], err: Exception
) -> list[Damage]:
    inner = array.chunks
    found = []
    for chunk in _blocks(array.shape, inner, within=block):
        try:
            array[chunk]
        except Exception as inner_err:
            coords = tuple(s.start // c for s, c in zip(chunk, inner, strict=True))
            found.append(Damage(trial_id, path, coords, _reason(inner_err)))
    if not found:  # the shard index itself is damaged: every chunk of the shard is lost
        coords = tuple(s.start // c for s, c in zip(block, inner, strict=True))
        found.append(Damage(trial_id, path, coords, f"shard unreadable: {_reason(err)}"))
    return found


def _reason(err: Exception) -> str:
    text = str(err)
    if "checksum" in text:
        return "checksum mismatch (the stored bytes changed after writing)"
    return f"{type(err).__name__}: {text}"[:200]


def _blocks(
    shape: tuple[int, ...], step: tuple[int, ...], within: tuple[slice, ...] | None = None
) -> Any:
    if not shape or 0 in shape:
        return
    bounds = within or tuple(slice(0, n) for n in shape)
    ranges = [
        range(b.start, min(b.stop, n), s) for b, n, s in zip(bounds, shape, step, strict=True)
    ]
    for starts in itertools.product(*ranges):
        yield tuple(
            slice(int(a), int(min(a + s, b.stop, n)))
            for a, s, b, n in zip(starts, step, bounds, shape, strict=True)
        )
