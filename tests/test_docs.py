"""docs/API.md and docs/CLI.md match the docstrings and --help (regenerate to fix)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["API.md", "CLI.md"])
def test_docs_are_current(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps --help to the terminal width
    gen = _generator()
    expected = gen.api_page() if page == "API.md" else gen.cli_page()
    committed = (ROOT / "docs" / page).read_text()
    assert committed == expected, f"docs/{page} is stale: run .venv/bin/python scripts/gen_docs.py"


def test_every_public_name_has_a_docstring_with_an_example() -> None:
    import inspect

    import zstore as zs

    for name in zs.__all__:
        obj = getattr(zs, name)
        if not callable(obj) or name in {"ZstoreWarning"}:
            continue
        doc = inspect.getdoc(obj) or ""
        assert ">>>" in doc or inspect.isclass(obj), f"zstore.{name} has no example"
