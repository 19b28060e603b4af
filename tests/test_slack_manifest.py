"""The Slack app manifest: valid for Slack's schema, exactly the scopes Boeket needs; the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from referencing import Registry, Resource

from adapters.slack.manifest import (
    LONG_DESCRIPTION_MAX,
    LONG_DESCRIPTION_MIN,
    ManifestError,
    base_url,
    build_manifest,
    manifest_json,
    manifest_yaml,
)
from bot.cli import main
from prompts.library import PromptLibrary

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT.parent / "shared" / "schemas"
ROUTER = "slack-app-manifest.schema.json"
# The router's remote $refs, served from the copies beside it (see shared/schemas/SOURCES.md).
REMOTE = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/"
VERSIONS = {
    REMOTE + "manifest.schema.1.0.0.json": "slack-app-manifest-1.0.0.schema.json",
    REMOTE + "manifest.schema.2.0.0.json": "slack-app-manifest-2.0.0.schema.json",
}

URL = "https://boeket.example.nl"
NEEDED_SCOPES = {
    "chat:write",
    "commands",
    "channels:history",
    "groups:history",
    "channels:read",
    "groups:read",
    "users:read",
    "im:write",
}
NEEDED_EVENTS = {
    "message.channels",
    "message.groups",
    "app_home_opened",
    "member_joined_channel",
    "app_uninstalled",
    "tokens_revoked",
}
# (socket_mode, multi_workspace)
MODES = {
    "http": (False, False),
    "socket": (True, False),
    "multi-workspace": (False, True),
    "socket+multi-workspace": (True, True),
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BOEKET_"):
            monkeypatch.delenv(name)


def _load(name: str) -> dict[str, Any]:
    path = SCHEMAS / name
    if not path.is_file():
        pytest.fail(
            f"{path} is missing. The shared schemas folder must sit beside the project "
            f"({SCHEMAS}); CI always has it, so this is a broken checkout, not a reason to skip."
        )
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


@pytest.fixture(scope="module")
def validators() -> dict[str, Any]:
    """Validators for Slack's router schema (refs resolved offline) and for major version 1."""
    router = _load(ROUTER)
    registry: Registry[Any] = Registry().with_resources(
        (uri, Resource.from_contents(_load(file))) for uri, file in VERSIONS.items()
    )
    v1 = _load(VERSIONS[REMOTE + "manifest.schema.1.0.0.json"])
    result = {}
    for name, schema in (("router", router), ("v1", v1)):
        cls = validator_for(schema)
        assert cls is Draft7Validator, f"{name} declares {schema.get('$schema')}"
        cls.check_schema(schema)
        result[name] = cls(schema, registry=registry)
    return result


def _assert_valid(validators: dict[str, Any], manifest: dict[str, Any]) -> None:
    for name, validator in validators.items():
        error = best_match(validator.iter_errors(manifest))
        assert error is None, f"{name}: {error.message} at {list(error.absolute_path)}"


def _urls(node: object) -> list[str]:
    """Every string in the manifest that looks like a URL."""
    if isinstance(node, dict):
        return [url for value in node.values() for url in _urls(value)]
    if isinstance(node, list):
        return [url for value in node for url in _urls(value)]
    return [node] if isinstance(node, str) and "://" in node else []


# --- the manifest -------------------------------------------------------------------------------


@pytest.mark.parametrize(("socket_mode", "multi_workspace"), MODES.values(), ids=MODES.keys())
def test_manifest_is_valid_for_slacks_schema(
    validators: dict[str, Any], socket_mode: bool, multi_workspace: bool
) -> None:
    manifest = build_manifest(URL, socket_mode=socket_mode, multi_workspace=multi_workspace)
    _assert_valid(validators, manifest)
    assert manifest["_metadata"]["major_version"] == 1


def test_the_schema_check_is_not_a_rubber_stamp(validators: dict[str, Any]) -> None:
    manifest = build_manifest(URL)
    manifest["display_information"]["long_description"] = "te kort"
    manifest["features"]["bot_user"]["colour"] = "blue"
    for validator in validators.values():
        assert len(list(validator.iter_errors(manifest))) >= 1
    wrong_version = build_manifest(URL)
    wrong_version["_metadata"]["major_version"] = 3
    assert not validators["router"].is_valid(wrong_version)


@pytest.mark.parametrize(("socket_mode", "multi_workspace"), MODES.values(), ids=MODES.keys())
def test_scopes_are_exactly_what_boeket_needs(socket_mode: bool, multi_workspace: bool) -> None:
    manifest = build_manifest(URL, socket_mode=socket_mode, multi_workspace=multi_workspace)
    scopes = manifest["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}, "no user scopes, no optional scopes"
    assert scopes["bot"] == sorted(NEEDED_SCOPES)
    assert "chat:write.public" not in scopes["bot"]
    assert not [s for s in scopes["bot"] if s.startswith("admin")]


@pytest.mark.parametrize(("socket_mode", "multi_workspace"), MODES.values(), ids=MODES.keys())
def test_events_app_home_and_bot_user(socket_mode: bool, multi_workspace: bool) -> None:
    manifest = build_manifest(URL, socket_mode=socket_mode, multi_workspace=multi_workspace)
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == NEEDED_EVENTS
    assert "user_events" not in manifest["settings"]["event_subscriptions"]
    assert manifest["features"]["app_home"] == {
        "home_tab_enabled": True,
        "messages_tab_enabled": True,
        "messages_tab_read_only_enabled": True,
    }
    assert manifest["features"]["bot_user"] == {"display_name": "Boeket", "always_online": True}
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    assert settings["socket_mode_enabled"] is socket_mode


def test_display_information_is_dutch_and_within_slacks_limits() -> None:
    info = build_manifest(URL)["display_information"]
    assert info["name"] == "Boeket"
    assert 1 <= len(info["description"]) <= 140
    assert LONG_DESCRIPTION_MIN <= len(info["long_description"]) <= LONG_DESCRIPTION_MAX
    assert "/deel" in info["long_description"]
    assert "overleg" in info["long_description"]
    assert info["background_color"].startswith("#")
    assert len(info["background_color"]) in {4, 7}


def test_deel_command() -> None:
    (command,) = build_manifest(URL)["features"]["slash_commands"]
    assert command == {
        "command": "/deel",
        "url": f"{URL}/slack/events",
        "description": "Deel een succes met je team en de rest van de organisatie",
        "usage_hint": "[help | mijn | zoek WOORDEN | verwijder CODE]",
        "should_escape": False,
    }


def test_http_mode_sends_everything_to_one_endpoint() -> None:
    manifest = build_manifest(URL)
    events = f"{URL}/slack/events"
    assert manifest["settings"]["event_subscriptions"]["request_url"] == events
    assert manifest["settings"]["interactivity"]["request_url"] == events
    assert manifest["features"]["slash_commands"][0]["url"] == events
    assert "redirect_urls" not in manifest["oauth_config"]
    assert set(_urls(manifest)) == {events}


def test_socket_mode_has_no_request_urls() -> None:
    manifest = build_manifest(URL, socket_mode=True)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in manifest["settings"]["event_subscriptions"]
    assert "request_url" not in manifest["settings"]["interactivity"]
    assert "url" not in manifest["features"]["slash_commands"][0]
    assert _urls(manifest) == []


@pytest.mark.parametrize("socket_mode", [False, True])
def test_multi_workspace_adds_the_oauth_redirect(socket_mode: bool) -> None:
    manifest = build_manifest(URL, multi_workspace=True, socket_mode=socket_mode)
    redirect = f"{URL}/slack/oauth_redirect"
    assert manifest["oauth_config"]["redirect_urls"] == [redirect]
    expected = {redirect} if socket_mode else {redirect, f"{URL}/slack/events"}
    assert set(_urls(manifest)) == expected


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://boeket.example.nl/", "https://boeket.example.nl"),
        ("https://boeket.example.nl", "https://boeket.example.nl"),
        ("HTTPS://Boeket.Example.NL:8443/boeket/", "https://boeket.example.nl:8443/boeket"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ],
)
def test_good_urls(url: str, base: str) -> None:
    assert base_url(url) == base
    manifest = build_manifest(url, multi_workspace=True)
    assert all(u.startswith(base + "/slack/") for u in _urls(manifest))
    assert not [u for u in _urls(manifest) if "//slack" in u]


BAD_URLS = [
    "",
    "boeket.example.nl",
    "http://boeket.example.nl",
    "ftp://boeket.example.nl",
    "https://",
    "https:///slack",
    " https://boeket.example.nl",
    "https://boeket example.nl",
    "https://boeket.example.nl//",
    "https://boeket.example.nl/slack/events",
    "https://user:secret@boeket.example.nl",
    "https://boeket.example.nl/?team=1",
    "https://boeket.example.nl/#top",
    "https://boeket.example.nl:99999",
    "https://-boeket.example.nl",
    "https://boeket.example.nl/" + "a" * 2100,
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"^url ") as info:
        build_manifest(url)
    assert isinstance(info.value, ManifestError)
    assert info.value.field == "url"


@pytest.mark.parametrize("name", ["", " Boeket", "x" * 36])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ManifestError, match=r"^name "):
        build_manifest(URL, name=name)


def test_name_names_the_app_and_its_bot(validators: dict[str, Any]) -> None:
    manifest = build_manifest(URL, name="Boeket (test)")
    _assert_valid(validators, manifest)
    assert manifest["display_information"]["name"] == "Boeket (test)"
    assert manifest["features"]["bot_user"]["display_name"] == "Boeket (test)"


def test_yaml_and_json_round_trip() -> None:
    manifest = build_manifest(URL, multi_workspace=True)
    text = manifest_yaml(manifest)
    assert yaml.safe_load(text) == manifest
    assert "één" in text, "allow_unicode: Dutch stays readable"
    assert text.splitlines()[0] == "_metadata:", "keys keep their order"
    assert json.loads(manifest_json(manifest)) == manifest
    assert "één" in manifest_json(manifest)


# --- the CLI ------------------------------------------------------------------------------------


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["slack", "manifest", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: boeket slack manifest")
    for flag in ("--url", "--json", "--socket-mode", "--multi-workspace", "--name"):
        assert flag in out


def test_url_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["slack", "manifest"])
    assert info.value.code == 2
    assert "--url" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--socket-mode"],
        ["--multi-workspace"],
        ["--socket-mode", "--multi-workspace", "--name", "Boeket test"],
    ],
)
def test_cli_prints_yaml(capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    assert main(["slack", "manifest", "--url", URL + "/", *flags]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    expected = build_manifest(
        URL,
        socket_mode="--socket-mode" in flags,
        multi_workspace="--multi-workspace" in flags,
        name="Boeket test" if "--name" in flags else "Boeket",
    )
    assert yaml.safe_load(out) == expected
    assert out == manifest_yaml(expected)


def test_cli_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slack", "manifest", "--url", URL, "--json", "--multi-workspace"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == build_manifest(URL, multi_workspace=True)
    assert out.startswith("{\n  ")


@pytest.mark.parametrize("lang", ["nl", "en"])
@pytest.mark.parametrize("url", ["http://boeket.example.nl", "boeket.example.nl", ""])
def test_cli_refuses_a_bad_url_in_the_users_language(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, lang: str, url: str
) -> None:
    monkeypatch.setenv("BOEKET_LANG", lang)
    assert main(["slack", "manifest", "--url", url]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert err.strip() == PromptLibrary.load().text(lang, "cli.slack_url_invalid", value=url)
    assert "https://boeket.example.nl" in err


def test_cli_refuses_a_bad_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slack", "manifest", "--url", URL, "--name", "x" * 36]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert "35" in err
