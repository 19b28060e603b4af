"""The `boeket` command: help, config example, db upgrade, settings errors, the demo, the script."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.config import load_config, parse_config
from bot.settings import EXAMPLE_CONFIG
from prompts.library import PromptLibrary

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from BOEKET_* variables; the developer's own must not leak into a test."""
    for name in list(os.environ):
        if name.startswith("BOEKET_"):
            monkeypatch.delenv(name)


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BOEKET_")}


# --- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "usage", "mentions"),
    [
        pytest.param([], "usage: boeket", ["run", "demo", "db", "config", "BOEKET_"], id="top"),
        pytest.param(["run"], "usage: boeket run", ["--config", "--port", "--speed"], id="run"),
        pytest.param(["demo"], "usage: boeket demo", ["--days", "--start", "--quiet"], id="demo"),
        pytest.param(["db"], "usage: boeket db", ["upgrade"], id="db"),
        pytest.param(["db", "upgrade"], "usage: boeket db upgrade", ["--database"], id="upgrade"),
        pytest.param(["config"], "usage: boeket config", ["check", "example"], id="config"),
        pytest.param(["config", "check"], "usage: boeket config check", ["file"], id="check"),
        pytest.param(["config", "example"], "usage: boeket config example", [], id="example"),
    ],
)
def test_help(
    capsys: pytest.CaptureFixture[str], argv: list[str], usage: str, mentions: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(usage), out
    for word in mentions:
        assert word in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: boeket" in capsys.readouterr().err


# --- config example -----------------------------------------------------------------------------


def test_config_example_prints_a_valid_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "example"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == EXAMPLE_CONFIG.read_text(encoding="utf-8")
    config = parse_config(yaml.safe_load(out), Path("<stdout>"))
    assert len(config.departments) == 5
    assert config.cross_department.channel == "leren-over-grenzen"


def test_config_example_output_passes_config_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "example"]) == 0
    path = tmp_path / "mijn-organisatie.yaml"
    path.write_text(capsys.readouterr().out, encoding="utf-8")
    assert main(["config", "check", str(path)]) == 0
    assert str(path) in capsys.readouterr().out


# --- db upgrade ---------------------------------------------------------------------------------


def _tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def _revision(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def test_db_upgrade_creates_the_tables_and_is_repeatable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sub" / "x.sqlite3"
    url = f"sqlite:///{path}"
    assert main(["db", "upgrade", "--database", url]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert path.is_file()
    assert {"occurrences", "contributions", "adapter_state", "alembic_version"} <= _tables(path)
    revisions = _revision(path)
    assert len(revisions) == 1
    assert revisions[0]
    assert revisions[0] in out
    assert str(path) in out

    assert main(["db", "upgrade", "--database", url]) == 0
    again, err = capsys.readouterr()
    assert "Traceback" not in err
    assert _revision(path) == revisions
    assert revisions[0] in again


def test_db_upgrade_reads_boeket_database_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env.sqlite3"
    monkeypatch.setenv("BOEKET_DATABASE_URL", f"sqlite:///{path}")
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert "occurrences" in _tables(path)


def test_unsupported_database_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--database", "mysql://x/y"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert "BOEKET_DATABASE_URL is niet bruikbaar" in err
    assert "mysql" in err
    assert "sqlite" in err
    assert "postgresql" in err


def test_garbage_database_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--database", "geen url"]) == 2
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "BOEKET_DATABASE_URL is niet bruikbaar" in err


# --- settings and flags -------------------------------------------------------------------------


def test_bad_port_in_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOEKET_PORT", "abc")
    assert main(["config", "check", str(EXAMPLE_CONFIG)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert "BOEKET_PORT" in err
    assert "'abc'" in err


@pytest.mark.parametrize("value", ["0", "-5", "abc", ""])
def test_speed_rejected_by_argparse(capsys: pytest.CaptureFixture[str], value: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--speed", value])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "usage: boeket run" in err
    assert "--speed" in err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["run", "--port", "0"], "--port"),
        (["run", "--port", "65536"], "--port"),
        (["demo", "--days", "0"], "--days"),
        (["demo", "--start", "22-03-2027"], "--start"),
    ],
)
def test_other_flags_rejected_by_argparse(
    capsys: pytest.CaptureFixture[str], argv: list[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert flag in capsys.readouterr().err


def test_run_with_a_broken_config_exits_2_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kapot.yaml"
    path.write_text("organisation: [\n", encoding="utf-8")
    # An unresolvable host: should the config ever be accepted, serving fails at once.
    assert main(["run", "--config", str(path), "--host", "256.256.256.256"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert str(path) in err
    assert "geen geldige YAML" in err


# --- demo ---------------------------------------------------------------------------------------


def test_demo(capsys: pytest.CaptureFixture[str], prompts: PromptLibrary) -> None:
    assert main(["demo", "--days", "3", "--start", "2027-03-22", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    config = load_config(EXAMPLE_CONFIG)
    lines = [line for line in out.splitlines() if line.strip()]

    assert lines[0].startswith("Boeket-demo: Ziekenhuis De Linde")
    assert "2027-03-22" in lines[0]

    channels = [(d.channel, d.name) for d in config.departments]
    channels.append((config.cross_department.channel, config.cross_department.name))
    assert len(channels) == 6
    assert ("leren-over-grenzen", "Leren over grenzen") in channels
    headers = [line for line in lines if line.startswith("── #")]
    assert len(headers) == 6, headers
    for channel, name in channels:
        assert prompts.text("nl", "cli.demo_channel", channel=channel, name=name) in headers

    # A prompt (its answer button) and a harvest (the flower symbolism calls it "oogst").
    assert f"[{prompts.text('nl', 'prompt.answer_button')}]" in out
    assert "oogst" in out
    assert "De oogst voor het overleg van Operatiekamer" in out

    summary = re.fullmatch(
        r"(\d+) berichten geplaatst, (\d+) bijdragen bewaard, in [\d.]+ seconden\.", lines[-1]
    )
    assert summary, lines[-1]
    assert int(summary[1]) > 0
    assert int(summary[2]) > 0


def test_demo_with_a_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bestaat-niet.yaml"
    assert main(["demo", "--days", "1", "--config", str(path), "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert str(path) in err
    assert "het bestand bestaat niet" in err


# --- the installed console script ---------------------------------------------------------------


def test_console_script_is_installed(prompts: PromptLibrary) -> None:
    script = Path(sys.executable).parent / "boeket"
    assert script.is_file(), f"{script} is missing: is the package installed (pip install -e .)?"
    relative = "bot/examples/ziekenhuis.yaml"
    result = subprocess.run(  # noqa: S603 - a fixed command, no shell
        [str(script), "config", "check", relative],
        cwd=ROOT,
        env=_clean_environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    config = load_config(ROOT / relative)
    expected = prompts.text(
        "nl",
        "config.valid",
        file=relative,
        departments=len(config.departments),
        goals=len(config.goals),
        themes=len(config.themes),
    )
    assert result.stdout.strip() == expected


# --- boeket run ---------------------------------------------------------------------------------


def test_run_with_an_unreachable_database_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--port", "18999", "--database", "postgresql://postgres@127.0.0.1:1/x"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "BOEKET_DATABASE_URL" in err and "Traceback" not in err
    assert "draait op" not in out  # it never claimed to be serving


def test_run_serves_the_chat_and_health_until_interrupted(tmp_path: Path) -> None:
    import signal
    import socket
    import time
    import urllib.request

    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = Path(sys.executable).parent / "boeket"
    env = {**_clean_environ(), "BOEKET_DATABASE_URL": f"sqlite:///{tmp_path / 'run.sqlite3'}"}
    process = subprocess.Popen(  # noqa: S603 - a fixed command, no shell
        [str(script), "run", "--port", str(port), "--speed", "60"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    health = r.status, r.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert health is not None, process.stderr.read() if process.stderr else ""
        assert health[0] == 200 and '"sqlite"' in health[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert "<html" in page.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out and "x60" in out
    assert "Traceback" not in err


def test_debug_logging_keeps_database_drivers_quiet() -> None:
    """Drivers log statements with their parameters: people's words and ids. Never below WARNING."""
    import logging

    from bot.cli import configure_logging

    configure_logging("DEBUG")
    for name in ("aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BOEKET_EMBEDDER": "word2vec"}, "BOEKET_EMBEDDER"),
        ({"BOEKET_EMBEDDER": "openai"}, "BOEKET_EMBEDDINGS_URL"),
        (
            {"BOEKET_EMBEDDINGS_URL": "ftp://x", "BOEKET_EMBEDDINGS_MODEL": "m"},
            "BOEKET_EMBEDDINGS_URL",
        ),
        ({"BOEKET_EMBEDDINGS_URL": "https://x.example/v1"}, "BOEKET_EMBEDDINGS_MODEL"),
    ],
)
def test_bad_embedder_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    named: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["config", "check", str(EXAMPLE_CONFIG)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_an_embeddings_endpoint_is_read_from_the_environment() -> None:
    from bot.settings import Settings

    settings = Settings.from_env(
        {
            "BOEKET_EMBEDDER": "openai",
            "BOEKET_EMBEDDINGS_URL": "https://x.openai.azure.com/openai/deployments/e",
            "BOEKET_EMBEDDINGS_MODEL": "text-embedding-3-small",
            "BOEKET_EMBEDDINGS_DIMENSIONS": "1536",
            "BOEKET_EMBEDDINGS_KEY": "k",
            "BOEKET_EMBEDDINGS_API_VERSION": "2024-02-01",
        }
    )
    assert settings.embedder == "openai"
    assert settings.embeddings is not None
    assert (
        settings.embeddings.dimensions == 1536 and settings.embeddings.api_version == "2024-02-01"
    )
