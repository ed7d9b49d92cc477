"""Progress of long calls: one policy for every function that takes ``progress=``.

``progress=True`` shows a :mod:`tqdm.auto` bar (a widget in Jupyter when ipywidgets is
installed, a text bar on stderr otherwise), ``False`` shows nothing, a callable is
called as ``progress(label, done, total)`` by every function, and ``None``
(the default) means on in an interactive session (an IPython or Jupyter kernel, or the
Python prompt on a terminal) and off otherwise (scripts, tests, pipes).

A bar counts the units of the whole call (shards written, arrays read) across all its
parts (trials), not per part: each part reports its own total when it starts, and
until every part has started the total is estimated from the parts seen so far.
tqdm is imported only when a bar is shown (~50 ms, mostly asyncio).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

from .errors import ArgumentTypeError

__all__ = ["ProgressOption", "is_interactive", "reporting"]

ProgressOption: TypeAlias = bool | Callable[..., None] | None
"""What ``progress=`` accepts: True, False, None (interactive sessions only) or a callable."""


def is_interactive() -> bool:
    """True in an IPython shell or Jupyter kernel, or at the Python prompt on a terminal.

    Examples
    --------
    >>> is_interactive()  # doctests run as a script
    False
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is not None and get_ipython() is not None:
        return True
    prompt = hasattr(sys, "ps1") or bool(sys.flags.interactive)
    return prompt and _isatty(sys.stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


@contextlib.contextmanager
def reporting(
    progress: ProgressOption,
    *,
    desc: str,
    parts: int = 1,
    unit: str = "shard",
    label: str | None = None,
    file: Any = None,
) -> Iterator[Callable[..., None] | None]:
    """What a long call passes down as its callback, for as long as the call runs.

    Yields a callback ``(label, done, total)``: ``progress`` itself when it is a
    callable (every public ``progress=`` callable is called so), None when nothing is
    to be shown, else a bar's. With ``label`` (a call of one part, whose writer counts
    ``(done, total)``), yields ``(done, total)`` instead, which reports as ``(label,
    done, total)`` to the callable or the bar. ``parts`` is how many parts (trials) will
    report; ``desc`` and ``unit`` label the bar; ``file`` is where a text bar goes
    (default stderr). The bar is closed when the call ends, also on an error.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with reporting(True, desc="write", parts=2, file=out) as report:
    ...     for trial in ("t-1", "t-2"):
    ...         for done in range(4):
    ...             report(trial, done + 1, 4)
    >>> "write: 100%" in out.getvalue() and "8/8" in out.getvalue()
    True
    >>> with reporting(False, desc="write") as report:
    ...     report is None
    True
    """
    if callable(progress):
        progress = _three_arguments(progress)
        yield progress if label is None else functools.partial(progress, label)
        return
    if progress is None:
        progress = is_interactive()
    if not progress:
        yield None
        return
    bar = _Bar(desc, parts, unit, file)
    try:
        yield bar.update if label is None else functools.partial(bar.update, label)
    finally:
        bar.close()


def _three_arguments(callback: Callable[..., None]) -> Callable[..., None]:
    """``callback`` as a ``(label, done, total)`` callable.

    zstore 0.2 called the callbacks of ``add_trial`` and ``export`` as ``(done, total)``;
    such a callable keeps working (it is not given the label). Any other shape is a
    TypeError now, not in the middle of a long write.
    """
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return callback
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return callback
    positional = [p for p in params if p.kind in kinds]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    if len(required) <= 3 <= len(positional):
        return callback
    if len(required) <= 2 <= len(positional):
        return lambda label, done, total: callback(done, total)
    raise ArgumentTypeError(
        f"progress={callback!r}: a progress callable is called as progress(label, done, "
        f"total) (label: the trial or experiment; done and total: units of work); it takes "
        f"{len(required)} required positional arguments. Pass such a callable, or "
        f"progress=True for a bar"
    )


class _Bar:
    """A tqdm bar over a call's parts; each part reports ``(label, done, total)``."""

    def __init__(self, desc: str, parts: int, unit: str, file: Any) -> None:
        self._kwargs: dict[str, Any] = {"desc": desc, "unit": unit}
        if file is not None:
            self._kwargs["file"] = file
        self._tqdm: Any = None  # made at the first report, when there is a total to show
        self._parts = max(parts, 1)
        self._totals: dict[str, int] = {}
        self._done: dict[str, int] = {}

    def update(self, label: str, done: int, total: int) -> None:
        self._totals[label] = max(int(total), 0)
        self._done[label] = min(max(int(done), 0), self._totals[label])
        known = sum(self._totals.values())
        pending = self._parts - len(self._totals)
        # Parts not started yet are assumed as large as the average part so far.
        total = known + (round(pending * known / len(self._totals)) if pending > 0 else 0)
        if self._tqdm is None:
            # `disable` is left to tqdm's default, so TQDM_DISABLE=1 turns bars off.
            self._tqdm = _tqdm_class()(total=total, **self._kwargs)
        self._set_total(total)
        if len(self._totals) > 1 or self._parts > 1:
            self._tqdm.set_postfix_str(label, refresh=False)
        self._tqdm.update(sum(self._done.values()) - self._tqdm.n)

    def close(self) -> None:
        if self._tqdm is None:
            return
        # What was counted, not an estimate for parts that never reported.
        self._set_total(sum(self._totals.values()))
        self._tqdm.close()

    def _set_total(self, total: int) -> None:
        if self._tqdm.total == total:
            return
        self._tqdm.total = total
        container = getattr(self._tqdm, "container", None)
        if container is not None:  # a Jupyter widget: its bar keeps its own maximum
            container.children[1].max = total


def _tqdm_class() -> Any:
    # tqdm.auto picks the notebook widget inside a Jupyter kernel; without ipywidgets it
    # warns "IProgress not found" and falls back to the text bar, which is taken here
    # directly instead (a text bar in a notebook is what the user can see).
    if "ipykernel.zmqshell" in sys.modules and importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm
