"""Which names may become keys in the store: one portable rule for every name.

A trial ID, experiment ID, layer name, obs/var column, obsm/varm/obsp/varp/uns key (and a
paq channel name, which becomes a var column) becomes one path segment of the store: a
folder or file name on a local disk, part of an object key on S3, a name in an Icechunk
manifest, and a file name again when the store is exported or copied to another system.
So a name must be the same key everywhere and for everyone (docs/FORMAT.md, "Names"):

- a ``str`` that can be encoded as UTF-8 (no lone surrogates), in Unicode NFC form: the NFC
  and NFD forms of "café" look the same but would be two keys;
- no control characters, no invisible format characters (Unicode category Cf: U+200B,
  U+200D, U+2060, U+FEFF, ...), none of ``< > : " | ? *`` (reserved on Windows and awkward
  in URLs), no path separator ``/`` or ``\\``;
- not empty, not ``.`` or ``..``, no leading or trailing white space, no trailing dot;
- not starting with ``__`` (reserved by Zarr), not a Zarr metadata document's name
  (``zarr.json``, ``.zgroup``, ...), not a Windows device name (``CON``, ``NUL``, ``COM1``,
  ``LPT1``, ..., also with an extension: ``nul.txt``);
- at most :data:`MAX_NAME_BYTES` (128) bytes in UTF-8;
- a layer name is not one of :data:`RESERVED_LAYER_NAMES` (``X``: the main matrix).

New names are checked (:func:`check_name`) and refused with a suggestion; they are never
renamed silently, so the name in the caller's hands is the stored key. Names already in
a store are looked up (:func:`stored_name`) under the rule stores were written with
before (no separators, control characters, ``..``), so older stores still read, and a
lookup finds a name stored in NFC whichever form it is given in.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from .errors import InvalidNameError

__all__ = [
    "MAX_NAME_BYTES",
    "RESERVED_LAYER_NAMES",
    "check_column",
    "check_name",
    "equivalent_name",
    "shown_name",
    "stored_name",
    "suggest_name",
]

#: The longest name, in UTF-8 bytes. A local file name may have 255 bytes (ext4, APFS;
#: 255 UTF-16 units on NTFS) and zstore adds up to ~40 to a name on disk (an export's
#: ``.<name>.<8 hex>.partial.zarr``); an S3 key may have 1024 bytes and holds up to three
#: names (experiment, trial, layer) plus ~60 bytes of layout and the user's prefix.
MAX_NAME_BYTES = 128

#: Zarr's own metadata documents (v3 and v2): a node of that name would be hidden by,
#: or would hide, the metadata of its parent.
_METADATA = frozenset({"zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata"})
#: Reserved in Windows file names, and awkward in URLs and object keys.
_RESERVED = frozenset('<>:"|?*')
_SEPARATORS = frozenset("/\\")
#: Windows device names: a file of that name (with any extension) is the device.
_DEVICE = re.compile(r"(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[0-9¹²³]|LPT[0-9¹²³])", re.IGNORECASE)
#: Layer names zstore refuses, and why: a layer of that name would be taken for, or would
#: replace, something else when the trial is read, shown or exported.
RESERVED_LAYER_NAMES = {
    "X": "'X' names the trial's main matrix (the raw fluorescence), which every reader, "
    "export and plot takes X to mean (layer='X' is X); a layer named 'X' would shadow it",
}
#: The ``kind`` words under which layer names are checked.
_LAYER_KINDS = frozenset({"layer", "layer name"})
_GENERIC_FIX = "use letters, digits, '-', '_' or '.' (for example 't-005')"


@dataclass(frozen=True)
class _Problem:
    what: str  # why the name cannot be stored
    fix: str | None = None  # the fix, when a suggested name says too little


def check_name(name: object, *, kind: str, of: str = "") -> str:
    """Return ``name`` if it can be a new key of the store, else raise InvalidNameError.

    ``kind`` says what the name is ("trial ID", "obs column") and ``of`` where it is
    ("trial 't-005'"); both go into the message, with the rule broken and a fix.
    """
    label = _label(name, kind, of)
    text = _as_text(name, label)
    problem = _legacy_problem(text) or _portable_problem(text)
    if problem is not None:
        raise InvalidNameError(f"{label} cannot be stored: {problem.what}; {_fix(text, problem)}")
    if kind in _LAYER_KINDS and text in RESERVED_LAYER_NAMES:
        raise InvalidNameError(
            f"{label} cannot be stored: {RESERVED_LAYER_NAMES[text]}; use another name, "
            f"e.g. {text + '_layer'!r}"
        )
    return text


def check_column(name: object, *, kind: str, of: str = "") -> str:
    """:func:`check_name` for a data frame's column, which also may not be ``_index``
    (anndata's name for the index of the frames it writes)."""
    text = check_name(name, kind=kind, of=of)
    if text == "_index":
        raise InvalidNameError(
            f"{_label(name, kind, of)} cannot be stored: anndata reserves '_index' for the "
            f"index of its data frames; rename it, e.g. .rename(columns={{'_index': 'index_'}})"
        )
    return text


def stored_name(
    name: object,
    present: Collection[str] | Callable[[], Collection[str]] | None = None,
    *,
    kind: str,
    of: str = "",
) -> str:
    """The key under which ``name`` is stored, for reading: ``name`` itself, or its NFC form.

    Only the rule older stores were written under is checked (``name`` cannot leave its
    group), so names the portable rule now refuses still read. ``present`` (the stored
    keys, or a function returning them) is consulted for a name not among them; without
    it, or with no equivalent key, ``name`` is returned as given.
    """
    label, verb = _label(name, kind, of), "cannot name anything in a store"
    text = _as_text(name, label, verb)
    problem = _legacy_problem(text)
    if problem is not None:
        raise InvalidNameError(
            f"{label} {verb}: {problem.what}, and no stored name does; pass a name as the "
            f"store lists it (exp.trialIDs, exp.layer_names(trial_id), col.experimentIDs)"
        )
    if present is None:
        return text
    keys = present() if callable(present) else present
    if text in keys:
        return text
    return equivalent_name(text, keys) or text


def equivalent_name(name: str, keys: Iterable[str]) -> str | None:
    """The stored key among ``keys`` that is ``name`` up to Unicode normalization: the key
    whose NFC form is ``name``'s NFC form (``name`` itself first), or None.

    A store written by zstore <= 0.2.0 may hold a name in NFD form; this finds it whichever
    form it is asked for in, and an add under the other form replaces it (never a second,
    same-looking key)."""
    keys = list(keys)
    if name in keys:
        return name
    nfc = unicodedata.normalize("NFC", name)
    return next((k for k in keys if unicodedata.normalize("NFC", k) == nfc), None)


def shown_name(name: str) -> str:
    """``name`` for a message: repr, or ascii when it holds characters that look like
    others (combining marks, non-NFC, invisible), so two look-alike names differ."""
    if name.isascii() or (
        unicodedata.normalize("NFC", name) == name
        and not any(unicodedata.combining(c) or _blank(c) for c in name)
    ):
        return repr(name)
    return ascii(name)


def suggest_name(name: str) -> str | None:
    """A name close to ``name`` that :func:`check_name` accepts, or None if none is."""
    text = "".join("_" if unicodedata.category(c) == "Cs" else c for c in name)
    text = "".join(c for c in unicodedata.normalize("NFC", text) if not _invisible(c))
    text = "".join("_" if c in _RESERVED or c in _SEPARATORS else c for c in text)
    text = text.strip().lstrip(".").rstrip(". ")
    if text.startswith("__"):
        text = "_" + text.lstrip("_")
    if text.lower() in _METADATA:
        text = text.replace(".", "_")
    if _is_device(text):
        stem, dot, rest = text.partition(".")
        text = f"{stem.rstrip()}_{dot}{rest}"
    text = _truncate(text, MAX_NAME_BYTES).rstrip(". ")
    if _legacy_problem(text) or _portable_problem(text):
        return None
    return text


# -- the rules ---------------------------------------------------------------------------


def _label(name: object, kind: str, of: str) -> str:
    if isinstance(name, str):
        shown = (
            shown_name(name)
            if len(name) <= 60
            else f"{shown_name(name[:40])}... ({len(name)} characters)"
        )
    else:
        try:
            shown = f"{name!r} ({type(name).__name__})"
        except Exception:  # a broken __repr__ must not hide the name error
            shown = f"<{type(name).__name__} object> ({type(name).__name__})"
    return f"{kind} {shown}" + (f" of {of}" if of else "")


def _as_text(name: object, label: str, verb: str = "cannot be stored") -> str:
    if not isinstance(name, str):
        fix = f"use the str {str(name)!r}" if isinstance(name, int | float) else "use a str"
        raise InvalidNameError(f"{label} {verb}: names must be str; {fix}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = name[err.start]
        raise InvalidNameError(
            f"{label} {verb}: it holds the lone surrogate U+{ord(bad):04X} at "
            f"position {err.start}, which UTF-8 cannot encode (it comes from bytes decoded "
            f"with errors='surrogateescape', e.g. a file name in another encoding); "
            f"{_fix(name, _Problem('', None))}"
        ) from None
    return name


def _blank_problem(name: str) -> _Problem | None:
    """A name that shows as nothing: only blank-looking or combining characters."""
    if all(_blank(c) or unicodedata.combining(c) or c.isspace() or _invisible(c) for c in name):
        return _Problem(
            "it looks blank (it holds only blank-looking or combining characters: "
            f"{', '.join(dict.fromkeys(_describe(c) for c in name))})",
            _GENERIC_FIX,
        )
    return None


def _legacy_problem(name: str) -> _Problem | None:
    """The rule every zstore store was written under: the name stays in its group."""
    if not name or not name.strip():
        return _Problem("it is empty", _GENERIC_FIX)
    if any(c in _SEPARATORS for c in name):
        return _Problem("it contains a path separator ('/' or '\\')")
    if name in (".", ".."):
        return _Problem("it is a relative path component", _GENERIC_FIX)
    if name.startswith("__"):
        return _Problem("names starting with '__' are reserved by Zarr")
    if name.lower() in _METADATA:
        return _Problem("it is the name of Zarr's own metadata documents")
    if any(unicodedata.category(c) == "Cc" for c in name):
        return _Problem("it contains control characters")
    if name != name.strip():
        return _Problem("it starts or ends with white space")
    return None


def _portable_problem(name: str) -> _Problem | None:
    """What else keeps a name one key on every store and system."""
    nfc = unicodedata.normalize("NFC", name)
    if nfc != name:
        return _Problem(
            f"it is not in Unicode NFC form: it is {name!a}, with decomposed characters "
            f"(as in file names from older macOS disks), and would be a second key beside "
            f"the same-looking NFC name {nfc!a}",
            f"use its NFC form {nfc!r}, unicodedata.normalize('NFC', name)",
        )
    blank = _blank_problem(name)
    if blank is not None:
        return blank
    invisible = [c for c in name if _invisible(c)]
    if invisible:
        shown = ", ".join(dict.fromkeys(_describe(c) for c in invisible))
        return _Problem(f"it contains invisible characters ({shown})")
    reserved = sorted({c for c in name if c in _RESERVED})
    if reserved:
        return _Problem(
            f"it contains {' '.join(reserved)}, reserved in Windows file names and awkward "
            f"in URLs and object keys"
        )
    if name.endswith("."):
        return _Problem("it ends with a dot, which Windows drops from file names")
    if _is_device(name):
        return _Problem("it is a Windows device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9)")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return _Problem(
            f"it has {size} bytes in UTF-8, more than the {MAX_NAME_BYTES} that fit in a "
            f"file name and an object key on every store",
            f"shorten it to at most {MAX_NAME_BYTES} bytes",
        )
    return None


def _invisible(char: str) -> bool:
    # control (Cc), format (Cf: zero-width space/joiner, BOM, word joiner, bidi marks),
    # line and paragraph separators (Zl, Zp), lone surrogates (Cs)
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs")


#: Letters and symbols that print as blank space but are not white space to str.isspace.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _blank(char: str) -> bool:
    return char in _BLANK


def _describe(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}"


def _is_device(name: str) -> bool:
    return _DEVICE.fullmatch(name.partition(".")[0].rstrip(" ")) is not None


def _truncate(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _fix(name: str, problem: _Problem) -> str:
    if problem.fix is not None:
        return problem.fix
    suggestion = suggest_name(name)
    if suggestion is not None and suggestion != name:
        return f"use another name, e.g. {suggestion!r}"
    return _GENERIC_FIX
