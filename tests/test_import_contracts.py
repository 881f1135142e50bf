"""The import contracts of ``.importlinter`` (run by ``make lint``): the code
keeps them, and each one breaks on the import it forbids, including the
contracts on adapter packages that have not landed yet."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("config", "core", "accounts", "streams", "brokers", "marketdata", "oms", "workspaces")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(root / ".importlinter")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_code_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept, 0 broken" in result.stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A copy of the project's packages to add forbidden imports to."""
    root = tmp_path_factory.mktemp("contracts")
    shutil.copy(ROOT / ".importlinter", root)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "migrations"))
    return root


VIOLATIONS = {
    "The OMS knows brokers.base and the registry, never a concrete adapter": {
        "brokers/ccxt/__init__.py": "",
        "brokers/ccxt/adapter.py": "class CcxtBroker: ...\n",
        "oms/services/shortcut.py": "from brokers.ccxt.adapter import CcxtBroker\n",
    },
    "External-broker adapters reach the OMS and other brokers only through the registry": {
        "brokers/kis/shortcut.py": "from oms.services.fills import fills_apply\n",
    },
    "External-broker adapters reach the OMS and other brokers only through the registry ": {  # indirectly, through a service
        "brokers/kite/__init__.py": "from brokers import services\n",
    },
    "External-broker adapters reach the OMS and other brokers only through the registry  ": {
        "brokers/ccxt/__init__.py": "",
        "brokers/ccxt/adapter.py": "from brokers.paper.engine import PaperEngine\n",
    },
    "No lower app imports oms": {
        "brokers/fills_shortcut.py": "import oms.services\n",
    },
    "marketdata imports none of oms, brokers, workspaces": {
        "marketdata/shortcut.py": "from brokers.registry import broker_for\n",
    },
    "core imports no app": {
        "core/shortcut.py": "from accounts.models import User\n",
    },
    "Apps import one way": {
        "accounts/shortcut.py": "from streams.publish import group_for\n",
    },
}


@pytest.mark.parametrize("contract", list(VIOLATIONS))
def test_each_contract_breaks_on_the_import_it_forbids(scratch, tmp_path, contract):
    root = tmp_path / "tree"
    shutil.copytree(scratch, root)
    for name, text in VIOLATIONS[contract].items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    result = lint_imports(root)
    assert result.returncode != 0
    output = " ".join(result.stdout.split())  # rich wraps long names
    # The summary lists each contract once, followed by KEPT or BROKEN.
    verdict = output[output.index(contract.strip()) :].split("KEPT")[0]
    assert "BROKEN" in verdict, result.stdout
