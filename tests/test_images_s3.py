"""Summary images on object storage (moto S3), where commits take no lock: a removal that
deletes an image and an add that refers to it, settled before either commits, leave no
trial referring to a deleted image whichever commits first (zstore.images, "the window").

The two writers run in two threads of this process against a real S3-compatible server;
the interleaving is forced, not hoped for: each writer pauses right after its pre-commit
check (both have checked before either commits), then the test lets them commit in a
chosen order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from s3server import S3Server

import zstore as zs
from zstore import experiment as experiment_module
from zstore.experiment import _SettleImages

pytestmark = pytest.mark.filterwarnings("error::zstore.errors.ZstoreWarning")
KEYS = ("meanImg", "max_proj")


def images(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {key: rng.random((12, 16)).astype(np.float32) for key in KEYS}


def trial(seed: int) -> zs.AnnotatedData:
    X = np.random.default_rng(seed).random((4, 20)).astype(np.float32)
    return zs.AnnotatedData(X, uns={"fs": 30.0, "suite2p": images(seed)})


class Interleaving:
    """Pauses the writers named here (thread names) after their pre-commit image check
    until :meth:`commit` lets them go, one at a time."""

    def __init__(self, names: tuple[str, ...]):
        self.settled = {name: threading.Event() for name in names}
        self.go = {name: threading.Event() for name in names}
        self.errors: dict[str, BaseException] = {}
        self.threads: dict[str, threading.Thread] = {}

    def hook(self, original: Callable[[Any, Any, Any], None]) -> Callable[[Any, Any, Any], None]:
        def paused(settle: Any, tip: Any, base: Any) -> None:
            original(settle, tip, base)
            name = threading.current_thread().name
            if name in self.settled:
                self.settled[name].set()
                assert self.go[name].wait(120), f"{name} was never let commit"

        return paused

    def start(self, name: str, write: Callable[[], None]) -> None:
        def run() -> None:
            try:
                write()
            except BaseException as err:  # reported by commit()
                self.errors[name] = err

        self.threads[name] = threading.Thread(target=run, name=name, daemon=True)
        self.threads[name].start()

    def wait_settled(self) -> None:
        for name, event in self.settled.items():
            assert event.wait(120), f"{name} never reached its commit"

    def commit(self, name: str) -> None:
        self.go[name].set()
        self.threads[name].join(120)
        assert not self.threads[name].is_alive(), f"{name} did not finish"
        if name in self.errors:
            raise self.errors[name]


@pytest.fixture
def place(s3: S3Server) -> Iterator[tuple[str, dict[str, Any]]]:
    yield f"s3://{s3.new_bucket()}/e.zarr", s3.options()


def race(
    place: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, first: str
) -> zs.Experiment:
    """x (the only trial using images(1)) is removed while y, with the same images, is
    added; both check before either commits, then ``first`` commits, then the other."""
    store, options = place
    exp = zs.create_experiment(store, exp_id="E", storage_options=options)
    exp.add_trial("t-0", trial(0), progress=False)
    exp.add_trial("x", trial(1), progress=False)
    remover = zs.open_experiment(store, mode="r+", storage_options=options)
    adder = zs.open_experiment(store, mode="r+", storage_options=options)
    steps = Interleaving(("remover", "adder"))
    monkeypatch.setattr(_SettleImages, "__call__", steps.hook(_SettleImages.__call__))
    steps.start("remover", lambda: remover.remove_trial("x"))
    steps.start("adder", lambda: adder.add_trial("y", trial(1), progress=False))
    steps.wait_settled()  # the remover deletes images(1); the adder reuses them
    second = "adder" if first == "remover" else "remover"
    steps.commit(first)
    steps.commit(second)
    return zs.open_experiment(store, storage_options=options)


def test_without_the_repair_the_interleaving_leaves_a_dangling_reference(
    place: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # proves the test below exercises the window: with no check after the commits, the
    # added trial refers to images the removal deleted
    monkeypatch.setattr(_SettleImages, "repair", lambda self, repo, guard: None)
    with pytest.warns(zs.ZstoreWarning, match="is not in the experiment"):
        exp = race(place, monkeypatch, "remover")  # add_trial loads y back: it warns
    assert sorted(exp.trialIDs) == ["t-0", "y"]
    problems = zs.verify_experiment(exp, progress=False)
    assert problems and all("images/" in str(p) for p in problems)


@pytest.mark.parametrize("first", ["remover", "adder"])
def test_a_removal_and_an_add_racing_on_s3_leave_every_image_a_trial_refers_to(
    place: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    exp = race(place, monkeypatch, first)
    assert sorted(exp.trialIDs) == ["t-0", "y"]
    assert zs.verify_experiment(exp, progress=False) == []
    uns = exp.load_trial("y").data.uns["suite2p"]
    for key, image in images(1).items():
        np.testing.assert_array_equal(uns[key], image)
    # images(0) (t-0's) and images(1) (y's): nothing else, nothing twice
    assert len(list(exp.open_zarr("images").array_keys())) == 2 * len(KEYS)
    # the later writer wrote them back in a follow-up commit, named in the history
    assert any("write back summary images" in c.message for c in exp.history())


def test_repair_retries_when_another_writer_commits_first(
    place: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the follow-up commit conflicts once (another writer wrote the same image first):
    # the writer looks at the tip again and finds nothing left to do
    original = experiment_module.create_image
    calls = []

    def racing_create(group: Any, name: str, key: str, image: np.ndarray) -> None:
        if not calls:  # someone else writes the same image just before this commit
            store, options = place
            other = zs.open_experiment(store, mode="r+", storage_options=options)
            other.add_trial("z", trial(1), progress=False)
        calls.append(name)
        original(group, name, key, image)

    monkeypatch.setattr(experiment_module, "create_image", racing_create)
    exp = race(place, monkeypatch, "remover")
    assert sorted(exp.trialIDs) == ["t-0", "y", "z"]
    # z wrote the images first; the writer's own follow-up conflicted and was not needed
    assert calls and not any("write back summary images" in c.message for c in exp.history())
    assert zs.verify_experiment(exp, progress=False) == []
    assert len(list(exp.open_zarr("images").array_keys())) == 2 * len(KEYS)
