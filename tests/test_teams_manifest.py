"""The Teams app package: a manifest that validates against the shared v1.20 schema, and icons."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import jsonschema
import pytest

from adapters.teams.manifest import PackageError, build_manifest, package
from bot.cli import main
from tests.conftest import SHARED

SCHEMA = SHARED / "schemas" / "teams-manifest-v1.20.schema.json"
APP = "11111111-2222-4333-8444-555555555555"


def manifest_problems(manifest: dict[str, object]) -> list[str]:
    assert SCHEMA.exists(), f"{SCHEMA} is missing: the shared schemas are required"
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    # Draft 7 on purpose: the file declares draft-04 but uses `const` (see shared/SOURCES.md).
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(manifest)]


def png_size(data: bytes) -> tuple[int, int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, _depth, colour = struct.unpack(">IIBB", data[16:26])
    return width, height, colour


def test_manifest_validates_and_declares_commands_and_the_share_action() -> None:
    manifest = build_manifest(APP.upper(), domain="boeket.example.nl")
    assert manifest_problems(manifest) == []
    assert manifest["manifestVersion"] == "1.20" and manifest["id"] == APP
    [bot] = manifest["bots"]
    assert bot["botId"] == APP
    for command_list in bot["commandLists"]:
        assert [c["title"] for c in command_list["commands"]] == ["deel", "zoek", "help"]
    scopes = {s for cl in bot["commandLists"] for s in cl["scopes"]}
    assert {"team", "personal"} <= scopes
    [extension] = manifest["composeExtensions"]
    [command] = extension["commands"]
    assert (command["type"], command["title"], command["fetchTask"]) == (
        "action",
        "Deel een succes",
        True,
    )
    assert "organisatieleren" in manifest["description"]["full"]


def test_a_bad_manifest_would_be_caught() -> None:
    manifest = build_manifest(APP, domain="boeket.example.nl")
    manifest["accentColor"] = "groen"
    assert manifest_problems(manifest)


@pytest.mark.parametrize(
    ("app_id", "domain", "field"),
    [("bot", "boeket.example.nl", "app_id"), (APP, "https://boeket.example.nl/", "domain")],
)
def test_bad_values_are_refused(app_id: str, domain: str, field: str) -> None:
    with pytest.raises(PackageError) as caught:
        build_manifest(app_id, domain=domain)
    assert caught.value.field == field


def test_package_holds_exactly_the_manifest_and_two_icons() -> None:
    data = package(build_manifest(APP, domain="boeket.example.nl"))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        assert manifest_problems(json.loads(archive.read("manifest.json"))) == []
        assert png_size(archive.read("color.png")) == (192, 192, 6)
        outline = archive.read("outline.png")
    assert png_size(outline) == (32, 32, 6)


def test_cli_builds_the_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "boeket-teams.zip"
    assert main(["teams", "package", "--out", str(out), "--app-id", APP]) == 0
    assert zipfile.ZipFile(out).namelist()
    assert APP in capsys.readouterr().out


def test_cli_without_an_app_id_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TEAMS_CLIENT_ID", "TEAMS_CLIENT_SECRET", "TEAMS_TENANT_ID", "TEAMS_DEV_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOEKET_LANG", "nl")
    assert main(["teams", "package", "--out", str(tmp_path / "x.zip")]) == 2
    assert "--app-id" in capsys.readouterr().err
    assert main(["teams", "package", "--out", str(tmp_path / "x.zip"), "--app-id", "nope"]) == 2
    assert "GUID" in capsys.readouterr().err


def test_manifest_asks_the_team_to_consent_to_reading_its_channel_messages() -> None:
    """ChannelMessage.Read.Group (resource-specific consent): how a post is found after a crash."""
    manifest = build_manifest(APP, domain="boeket.example.nl")
    assert manifest_problems(manifest) == []
    assert manifest["authorization"] == {
        "permissions": {
            "resourceSpecific": [{"name": "ChannelMessage.Read.Group", "type": "Application"}]
        }
    }
    # Teams takes RSC permissions only with the app's Entra id here, and some resource.
    assert manifest["webApplicationInfo"]["id"] == APP
    assert manifest["webApplicationInfo"]["resource"]
