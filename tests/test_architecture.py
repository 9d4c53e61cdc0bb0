"""The layers of docs/ARCHITECTURE.md hold: the import contracts in pyproject.toml pass on this tree,
and they do catch a core module that reaches up into an adapter or out to a vendor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import PROJECT_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_tree(destination: Path) -> Path:
    for package in ("bot", "handlers", "models"):
        shutil.copytree(PROJECT_ROOT / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", destination / "pyproject.toml")
    return destination


def test_the_tree_keeps_its_layers():
    result = lint_imports(PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # The core reaching up into an adapter.
        ("bot/relatives/status_card.py", "import handlers.console", "Layers: composition root"),
        # The core speaking to a vendor's library directly.
        ("bot/alerts/dispatcher.py", "import telegram", "know no platform"),
        # The tables reaching up into the product.
        ("models/queries.py", "import bot.outbox", "Layers: composition root"),
        # Intake and the relatives' side are independent of each other.
        ("bot/intake/rules.py", "import bot.relatives.access", "Layers: composition root"),
    ],
)
def test_a_wrong_import_breaks_a_contract(tmp_path, module, line, broken):
    tree = copy_of_the_tree(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + f"\n{line}  # the wrong import under test\n")

    result = lint_imports(tree)

    assert result.returncode != 0
    _, _, broken_contracts = result.stdout.partition("Broken contracts")
    assert broken in broken_contracts
