"""The API's hints in the command line's terms: ``pass fs=<Hz>`` is ``pass --fs HZ``.

Errors are written once, for the API (``pass name=value``, ``overwrite=True``); the
command line says them with its own flags, and keeps the API's words for keywords it has
no flag for (``API_ONLY_KEYWORDS``).
"""

from __future__ import annotations

import re

__all__ = ["API_FLAGS", "API_ONLY_KEYWORDS", "PYTHON_ADVICE", "cli_wording"]

#: Phrases of the API's hints and what the command line says instead (in this order; the
#: keyword -> flag table below then rewrites what is left of ``pass name=value``).
_CLI_WORDING: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"zs\.compute_dff\(exp, layer='[^']*'\) or (`zstore dff [^`]*`)"), r"\1"),
    (re.compile(r"\(layer=None\)"), "(--layer X)"),
    (re.compile(r"\bexport_nwb to "), "export to "),
    (
        re.compile(r"pass trials=\[\.\.\.\] with the trials of one ROI set, or trial=ID"),
        "pass --trial ID for each trial of one ROI set (one --trial: that trial alone)",
    ),
    (re.compile(r"\((?:pass )?trials=\[\.\.\.\]\)"), "(--trial ID, repeated for each trial)"),
    (
        re.compile(r"zs\.create_(?:experiment|collection)(?:\(\.\.\.\))? or (`zstore ingest`)"),
        r"\1",
    ),
    (re.compile(r"zs\.create_(?:experiment|collection)\(\.\.\.\)"), "`zstore ingest`"),
    (re.compile(r", open it with zs\.open_experiment\(\.\.\.\),"), ","),
    (re.compile(r"open it with zs\.open_(?:experiment|collection)\(\.\.\.\), or "), ""),
    (
        re.compile(r"open it with zs\.open_experiment\('([^']*)'\)"),
        r"name it as STORE alone (\1, without ::experiments/ID)",
    ),
    (
        re.compile(
            r"open it with zs\.open_collection\('([^']*)'\) and pick one with "
            r"\.open_experiment\(ID\) \(its IDs are in \.experimentIDs\)"
        ),
        r"name one of its experiments as STORE \1::experiments/ID (`zstore info \1` lists "
        r"their IDs)",
    ),
    (
        re.compile(
            r"zs\.ingest_suite2p\(\.\.\., zs\.open_collection\([^)]*\)\) or (`zstore ingest`)"
        ),
        r"\1 (without --overwrite)",
    ),
    (
        re.compile(
            r"remove this one with exp\.remove_trial\([^)]*\), replace it with "
            r"exp\.add_trial\([^)]*\), or read an earlier version \(`zstore history`, then "
            r"zs\.open_experiment\(\.\.\., version=ID\)\)"
        ),
        "an earlier version may be intact (`zstore history STORE` lists the versions; "
        "`zstore export STORE --version ID --to FILE` exports one)",
    ),
    (
        re.compile(
            r"open one with zs\.open_experiment\('([^']*)', version=ID\) "
            r"\(zs\.open_collection for a collection\)"
        ),
        r"export one with `zstore export \1 --version ID --to FILE`",
    ),
    (
        re.compile(r"open an earlier version with zs\.open_experiment\(\.\.\., version=ID\)"),
        "export an earlier version with `zstore export STORE --version ID --to FILE` "
        "(`zstore history STORE` lists them)",
    ),
    (
        re.compile(
            r"pass a name as the store lists it \(exp\.trialIDs, exp\.layer_names\(trial_id\), "
            r"col\.experimentIDs\)"
        ),
        "pass a name as `zstore info STORE` lists it",
    ),
    (
        re.compile(r"not 0\.1; open it with zs\.open_experiment$"),
        "not 0.1: it needs no migration, every command reads it as it is",
    ),
    (re.compile(r"; (?:exp|col)\.refresh\(\) sees \w+ added since(?: opening)?"), ""),
    (
        re.compile(r"col\.refresh\(\) and look at col\.experimentIDs before retrying"),
        "run the command again (`zstore info STORE` lists the experiments)",
    ),
    (
        re.compile(r"open the collection again \(col\.refresh\(\)\) and retry"),
        "run the command again",
    ),
    (
        re.compile(
            r"session_start_time=datetime\(\.\.\., tzinfo=\.\.\.\) or ISO text such as "
            r"'([^']*)' \(`--session-start-time` in the CLI\)"
        ),
        r"--session-start-time \1 (ISO 8601 date and time, with a timezone)",
    ),
    (
        re.compile(
            r"needs one: datetime\(\.\.\., tzinfo=zoneinfo\.ZoneInfo\([^)]*\)\) or '([^']*)'"
        ),
        r"needs one: pass --session-start-time \1",
    ),
    (re.compile(r" \(or set trial\.data\.uns\['fs'\](?: and [^)]*)?\)"), ""),
    (re.compile(r", e\.g\. \.rename\(columns=\{[^}]*\}\)"), ""),
    (
        re.compile(
            r"; for (\w+):// build an icechunk\.Storage \(e\.g\. icechunk\.\w+\(\.\.\.\)\) and "
            r"pass it as the store"
        ),
        r"; the command line cannot open \1:// (copy the store to a local path or an S3 "
        r"bucket, or use zstore's Python API)",
    ),
    (
        re.compile(
            r"storage_options apply to (s3:// URLs|URLs), not to the local path ('[^']*')"
            r"(?:; pass storage_options=None)?"
        ),
        r"--storage-option applies to s3:// URLs, not to the local path \2: leave out "
        r"--storage-option",
    ),
    (
        re.compile(r"paq= maps trial IDs to existing \.paq files"),
        "each --paq TRIAL=FILE must name an existing .paq file",
    ),
    (
        re.compile(r"\(This file contains pickled \(object\) data\..*?`pickle\.load\(\)`\.\)"),
        "(it holds pickled Python objects, not numbers)",
    ),
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
    (re.compile(r": obs_names lists them\), or, in Python, iloc= for row positions"), ")"),
    (re.compile(r" \(or iloc=\)"), ""),
    (re.compile(r" and np\.save the file\b"), " and save the file again"),
    (re.compile(r" \(for roi in stat: roi\.pop\([^)]*\); then np\.save\)"), ""),
    (re.compile(r"\bwith or without overwrite\b"), "with or without --overwrite"),
    (
        re.compile(r"\bpath must be a file name ending in (\.\w+(?: or \.\w+)*) \(a str or Path\)"),
        r"--to must be a file name ending in \1",
    ),
    (re.compile(r"; check the path \((?:old|path|store)=\)"), "; check the path"),
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
#: ``name=value`` of a keyword above, not inside a Python call (``f(x, version=ID)``) nor
#: quoted (``'subject=RL109'``: a flag's value the command line shows as given).
_KEYWORD = re.compile(
    rf"(?<![\w.\-('])(?<!, )({'|'.join(sorted(API_FLAGS, key=len, reverse=True))})"
    rf"=(?!=)({_VALUE})?"
)
#: Keywords named alone ("win_baseline must be a finite number"): those whose names are
#: no English word, so that they are never a user's text.
_BARE_KEYWORD = re.compile(
    r"(?<![\w.\-'\"])(normalize_pct|sig_baseline|win_baseline|paq_channel|neuropil_coeff"
    r"|exp_id|session_start_time)(?![\w=\-'\"])"
)
_STORAGE_OPTIONS = re.compile(r"storage_options=\{([^{}]*)\}")
#: An API function named at the head of a message ("compute_dff: ..."): the command
#: line's messages already begin with the command.
_API_PREFIX = re.compile(
    r"^(?:zs\.)?(?:compute_dff|export_nwb|ingest_suite2p|export|verify_experiment|migrate"
    r"|create_experiment|create_collection|open_experiment|open_collection|read_paq"
    r"|frame_times|concat|collect_garbage)(?: \(trial [^)]*\))?: "
)
#: API functions named inside a message, and the command that does the same.
_API_FUNCTIONS = {
    "ingest_suite2p": "zstore ingest",
    "compute_dff": "zstore dff",
    "export_nwb": "zstore export",
    "verify_experiment": "zstore verify",
}
#: Python in a message: a call or an item of zstore's objects, ``f(...)``, ``x=True``.
PYTHON_ADVICE = re.compile(
    r"(?<![\w/.\-])zs\.\w|(?<![\w/.\-])(?:exp|col|adata|trial|icechunk|np|pd|zoneinfo|datetime)"
    r"\.[A-Za-z_][\w.]*[(\[]|\w\(\.\.\.|\b[a-z_]+=(?:True|False|None)\b|\ballow_pickle\b"
    r"|\bnp\.save\b|\bin Python\b|\(a str or Path\)|\((?:old|iloc|path|store)=\)"
)
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
    message = _REPEATED_FLAG.sub(r"\1\2", message)
    message = _API_PREFIX.sub("", message)
    for function, command_line in _API_FUNCTIONS.items():
        message = re.sub(rf"(?<![\w.`]){function}\b(?!\()", command_line, message)
    return _without_python(message)


def _without_python(message: str) -> str:
    """``message`` without the Python advice no rule above rewrote: the parenthesis, or
    else the clause (between ``;``), that holds it; never the message's first clause."""
    for _ in range(20):  # each pass removes one piece; a message holds a few at most
        found = PYTHON_ADVICE.search(message)
        if found is None:
            return message
        start, end = _enclosing(message, found.start())
        if start is None:  # not in a parenthesis: drop its clause (not the first)
            head = message.rfind("; ", 0, found.start())
            if head < 0:
                return message
            tail = message.find("; ", found.end())
            message = message[:head] + ("" if tail < 0 else message[tail:])
        else:
            message = message[:start].rstrip(" ") + message[end + 1 :]
    return message


def _enclosing(text: str, at: int) -> tuple[int | None, int]:
    """The positions of the ``(`` and ``)`` around ``text[at]``, or (None, 0)."""
    depth = 0
    for i in range(at - 1, -1, -1):
        if text[i] == ")":
            depth += 1
        elif text[i] == "(":
            if depth == 0:
                depth = 1
                for j in range(at, len(text)):
                    depth += {"(": 1, ")": -1}.get(text[j], 0)
                    if depth == 0:
                        return i, j
                return None, 0
            depth -= 1
    return None, 0


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
        items = re.fullmatch(r"\[('[^'\s]+'(?:, '[^'\s]+')*)\]", value)
        if items:  # ['t-2', 't-3'] -> --trial t-2 --trial t-3
            return " ".join(f"{flag} {i[1:-1]}" for i in items.group(1).split(", "))
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
