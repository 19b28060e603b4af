"""House rules the code itself must keep: SDKs stay in adapters, only the root reads the env."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_PACKAGES = ("bot", "prompts", "storage")
PLATFORM_SDKS = frozenset(
    {
        "slack_bolt",
        "slack_sdk",
        "microsoft_agents",
        "botbuilder",
        "msal",
        "microsoft_teams",
        "msgraph",
        "botframework",
    }
)
# The composition root reads the environment; nothing else may.
ENV_READERS = {ROOT / "bot" / "settings.py", ROOT / "bot" / "cli.py"}


def imported_modules(source: str) -> set[str]:
    """Top-level names of every module a source file imports, at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and getattr(node.func, "id", getattr(node.func, "attr", ""))
            in {
                "import_module",
                "__import__",
            }
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found


def python_files(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files found in {package}/"
    return files


@pytest.mark.parametrize("package", CORE_PACKAGES)
def test_core_packages_import_no_platform_sdk(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path.read_text()) & PLATFORM_SDKS)
        for path in python_files(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    "source",
    [
        "import slack_bolt",
        "from slack_sdk.web.async_client import AsyncWebClient",
        "def f():\n    from microsoft_agents.hosting.core import TurnContext\n",
        "import importlib\nimportlib.import_module('botbuilder.core')",
        "try:\n    import msal\nexcept ImportError:\n    pass\n",
    ],
)
def test_the_check_sees_every_way_of_importing(source: str) -> None:
    assert imported_modules(source) & PLATFORM_SDKS


def test_only_the_composition_root_reads_the_environment() -> None:
    readers = []
    for package in (*CORE_PACKAGES, "adapters"):
        for path in python_files(package):
            source = path.read_text()
            if path not in ENV_READERS and ("os.environ" in source or "getenv(" in source):
                readers.append(str(path.relative_to(ROOT)))
    assert readers == []
