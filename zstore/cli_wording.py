"""The API's hints in the command line's terms: ``pass fs=<Hz>`` is ``pass --fs HZ``.

Errors are written once, for the API (``pass name=value``, ``overwrite=True``); the
command line says them with its own flags, and keeps the API's words for keywords it has
no flag for (``API_ONLY_KEYWORDS``).
"""

from __future__ import annotations

import re

__all__ = ["API_FLAGS", "API_ONLY_KEYWORDS", "cli_wording"]

#: Phrases of the API's hints and what the command line says instead (in this order; the
#: keyword -> flag table below then rewrites what is left of ``pass name=value``).
_CLI_WORDING: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"zs\.compute_dff\(exp, layer='[^']*'\) or (`zstore dff [^`]*`)"), r"\1"),
    (re.compile(r"\(layer=None\)"), "(--layer X)"),
    (
        re.compile(r"pass trials=\[\.\.\.\] with the trials of one ROI set, or trial=ID"),
        "pass --trial ID for each trial of one ROI set (one --trial: that trial alone)",
    ),
    (re.compile(r"\((?:pass )?trials=\[\.\.\.\]\)"), "(--trial ID, repeated for each trial)"),
    (re.compile(r"zs\.create_(?:experiment|collection)\(\.\.\.\) or (`zstore ingest`)"), r"\1"),
    (re.compile(r", open it with zs\.open_experiment\(\.\.\.\),"), ","),
    (re.compile(r"(`zstore history [^`]*`) or exp\.history\(\)"), r"\1"),
    (re.compile(r"pass source=None for X, or "), "leave out --source for X, or pass "),
    (re.compile(r"pass source=None for X"), "leave out --source for X"),
    (
        re.compile(r"trials=\{[^{}]*\}"),
        "--trial TRIAL=FILE,FILE (or TRIAL=START:STOP) for each trial",
    ),
    (
        re.compile(r"dask\.config\.set\(num_workers=(\d+)\)"),
        r"DASK_NUM_WORKERS=\1 in the environment",
    ),
    (re.compile(r"smaller shards for new data \(StorageConfig\(shard_bytes=\.\.\.\)\), "), ""),
)
#: API keywords and the flag that passes each on the command line; a value of True
#: or False names the flag that gives it (``cells_only=False`` is ``--all-rois``).
API_FLAGS: dict[str, str | dict[str, str]] = {
    "fs": "--fs",
    "normalize_pct": "--pct",
    "sig_baseline": "--sigma",
    "win_baseline": "--window",
    "baseline": "--baseline",
    "layer": "--layer",
    "layers": "--layer",
    "source": "--source",
    "where": "--where",
    "trials": "--trial",
    "trial": "--trial",
    "rois": "--roi",
    "overwrite": {"True": "--overwrite"},
    "cells_only": {"False": "--all-rois"},
    "paq_channel": "--paq-channel",
    "exp_id": "--exp-id",
    "subject": "--subject",
    "session": "--session",
    "metadata": "--metadata",
    "neuropil_coeff": "--neuropil-coeff",
    "version": "--version",
    "session_start_time": "--session-start-time",
    "path": "--to",
}
#: Keywords of the API's hints that the command line has no flag for: of functions it
#: does not call (events, normalize_dff's roi_names, add_var's values), of plotting
#: options it does not offer (ax, cmap), or whose value it sets itself (mode, config).
#: Their hints stay as the API says them.
API_ONLY_KEYWORDS = frozenset(
    {
        "after",
        "ax",
        "before",
        "channel",
        "cmap",
        "clevel",
        "coeff",
        "config",
        "data",  # write_paq's
        "events",
        "exp",  # verify_experiment's: the command opens the store itself
        "fig",
        "iloc",
        "min_gap",  # frame_times'
        "mode",
        "name",
        "nwbfile_kwargs",
        "paq",  # frame_times' PaqData (ingest's --paq takes TRIAL=FILE; its hints say so)
        "rate",  # write_paq's
        "roi_names",
        "storage_options",  # said as --storage-option KEY=VALUE by its own rule
        "threshold",
        "values",
        "vmax",
        "vmin",
        "windows",
    }
)
_VALUE = r"""<[^>]*>|'[^']*'|"[^"]*"|\[[^\]]*\]|\{[^}]*\}|[\w.+\-:]+"""
#: ``name=value`` of a keyword above, not inside a Python call (``f(x, version=ID)``).
_KEYWORD = re.compile(
    rf"(?<![\w.\-(])(?<!, )({'|'.join(sorted(API_FLAGS, key=len, reverse=True))})"
    rf"=(?!=)({_VALUE})?"
)
#: Keywords named alone ("win_baseline must be a finite number"): those whose names are
#: no English word, so that they are never a user's text.
_BARE_KEYWORD = re.compile(
    r"(?<![\w.\-'\"])(normalize_pct|sig_baseline|win_baseline|paq_channel|neuropil_coeff"
    r"|exp_id|session_start_time)(?![\w=\-'\"])"
)
_STORAGE_OPTIONS = re.compile(r"storage_options=\{([^{}]*)\}")
_REPEATED_FLAG = re.compile(r"(--[\w-]+)((?: [A-Z]+)?) \((?:or )?\1\)")


def cli_wording(message: str, command: str, flags: frozenset[str] | set[str] = frozenset()) -> str:
    """An error's message with the API's ways out given as ``command``'s flags (those in
    ``flags``; a keyword whose flag the command lacks stays as the API says it)."""
    for pattern, replacement in _CLI_WORDING:
        if command == "dff" and replacement == "(--layer X)":
            replacement = "(leave out --source)"  # dff's --layer names the output
        message = pattern.sub(replacement, message)
    if "--storage-option" in flags:
        message = _STORAGE_OPTIONS.sub(_storage_option_flags, message)

    def keyword(found: re.Match[str]) -> str:
        return _flag_for(found[1], found[2], flags) or found[0]

    message = _KEYWORD.sub(keyword, message)
    message = _BARE_KEYWORD.sub(lambda found: _flag_for(found[1], None, flags) or found[0], message)
    if "--overwrite" in flags:
        message = message.replace("overwrite=True", "--overwrite")
    return _REPEATED_FLAG.sub(r"\1\2", message)


def _flag_for(name: str, value: str | None, flags: frozenset[str] | set[str]) -> str | None:
    """``name=value`` as the command line passes it, or None when it has no such flag."""
    flag = API_FLAGS[name]
    if isinstance(flag, dict):
        named = flag.get(value or "")
        return named if named in flags else None
    if flag not in flags:
        return None
    if not value:
        return flag
    if value.startswith("<") and re.fullmatch(r"<\w+>", value):
        return f"{flag} {value[1:-1].upper()}"  # <Hz> -> HZ, as in --help
    if value.startswith("{"):
        return None  # a dict (NWB's subject=): the flag takes text, the API's form stays
    if value.startswith("["):
        return f"{flag} ID (repeat for each)"
    if value[0] == "'" and value[-1] == "'" and " " not in value:
        return f"{flag} {value[1:-1]}"
    return f"{flag} {value}"


def _storage_option_flags(found: re.Match[str]) -> str:
    """``storage_options={'key': ..., 'anon': True}`` as ``--storage-option`` flags."""
    words = {"True": "true", "False": "false"}
    items = re.findall(r"'(\w+)':\s*([^,]+)", found[1])
    values = [(key, value.strip().strip("'")) for key, value in items]
    return " ".join(f"--storage-option {key}={words.get(v, v)}" for key, v in values)
