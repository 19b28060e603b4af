"""`boeket config check`: the example passes; every mistake is named, located and explained."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from bot.cli import main
from bot.config import Meeting, load_config, parse_duration
from bot.settings import EXAMPLE_CONFIG
from prompts.library import PromptLibrary

Data = dict[str, Any]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from BOEKET_* variables; the developer's own must not leak into a test."""
    for name in list(os.environ):
        if name.startswith("BOEKET_"):
            monkeypatch.delenv(name)


def example_data() -> Data:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return copy.deepcopy(data)


def write(tmp_path: Path, data: object, name: str = "org.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["config", "check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def problem_lines(err: str) -> Iterator[str]:
    return (line.strip() for line in err.splitlines()[1:])


def assert_problem(err: str, path: Path, location: str, *phrases: str) -> None:
    """stderr names the file, then a line `location: message` with every phrase in it."""
    assert "Traceback" not in err
    assert str(path) in err.splitlines()[0], err
    lines = [line for line in problem_lines(err) if line.startswith(f"{location}: ")]
    assert lines, f"no problem reported at {location!r}:\n{err}"
    assert any(all(phrase in line for phrase in phrases) for line in lines), (
        f"expected {phrases!r} at {location!r}:\n{err}"
    )


# --- the valid example --------------------------------------------------------------------------


def test_example_passes(capsys: pytest.CaptureFixture[str], prompts: PromptLibrary) -> None:
    code, out, err = check(EXAMPLE_CONFIG, capsys)
    config = load_config(EXAMPLE_CONFIG)
    assert code == 0
    assert "Traceback" not in err
    expected = prompts.text(
        "nl",
        "config.valid",
        file=str(EXAMPLE_CONFIG),
        departments=len(config.departments),
        goals=len(config.goals),
        themes=len(config.themes),
    )
    assert out.strip() == expected
    assert str(EXAMPLE_CONFIG) in out
    assert "5 afdelingen" in out


def test_example_round_trip_through_yaml_dump_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The mistakes below are made on a dumped copy; the unchanged copy must itself be valid."""
    path = write(tmp_path, example_data())
    code, out, err = check(path, capsys)
    assert (code, err) == (0, "")
    assert out.startswith(f"{path}: ")


# --- one mistake at a time ----------------------------------------------------------------------


def _set(*keys: str | int, value: object) -> Callable[[Data], None]:
    def change(data: Data) -> None:
        node: Any = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def _drop(*keys: str | int) -> Callable[[Data], None]:
    def change(data: Data) -> None:
        node: Any = data
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return change


def _rename_top(old: str, new: str) -> Callable[[Data], None]:
    def change(data: Data) -> None:
        data[new] = data.pop(old)

    return change


def _no_goals(data: Data) -> None:
    data["goals"] = []
    for dept in data["departments"]:
        dept["goals"] = []


def _add_theme(data: Data) -> None:
    data["departments"][4]["themes"].append("kwaliteit")


MISTAKES: list[tuple[str, Callable[[Data], None], str, tuple[str, ...]]] = [
    (
        "unknown-timezone",
        _set("departments", 1, "timezone", value="Europe/Amsterdm"),
        "departments[1].timezone",
        ("'Europe/Amsterdm'", "geen bekende tijdzone", "Europe/Amsterdam"),
    ),
    (
        "unknown-org-timezone",
        _set("timezone", value="Amsterdam"),
        "timezone",
        ("'Amsterdam'", "IANA", "Europe/Amsterdam"),
    ),
    (
        "duplicate-department",
        _set("departments", 3, "id", value="ok"),
        "departments[3].id",
        ("afdeling-id 'ok' komt twee keer voor",),
    ),
    (
        "unknown-goal",
        _set("departments", 0, "goals", 0, value="veiligheid"),
        "departments[0].goals[0]",
        (
            "'veiligheid' bestaat niet",
            "Bekende doelen: gezond-werken, samen-met-patient, veilige-zorg",
        ),
    ),
    (
        "unknown-theme",
        _add_theme,
        "departments[4].themes[3]",
        ("'kwaliteit' bestaat niet", "Bekende thema's:", "overdracht", "werkdruk"),
    ),
    (
        "bad-rrule",
        _set("departments", 3, "meeting", "rrule", value="FREQ=WEEKLIES;BYDAY=WE"),
        "departments[3].meeting.rrule",
        ("geen geldige RRULE", "WEEKLIES", "FREQ=WEEKLY;INTERVAL=2;BYDAY=WE"),
    ),
    (
        "rrule-with-byhour",
        _set("departments", 3, "meeting", "rrule", value="FREQ=WEEKLY;BYDAY=WE;BYHOUR=9"),
        "departments[3].meeting.rrule",
        ("zet het tijdstip in het veld time", "BYHOUR"),
    ),
    (
        "rrule-hourly",
        _set("departments", 3, "meeting", "rrule", value="FREQ=HOURLY;INTERVAL=168"),
        "departments[3].meeting.rrule",
        ("zet het tijdstip in het veld time",),
    ),
    (
        "missing-channel",
        _drop("departments", 2, "channel"),
        "departments[2].channel",
        ("dit veld ontbreekt",),
    ),
    (
        "missing-cross-department-channel",
        _drop("cross_department", "channel"),
        "cross_department.channel",
        ("dit veld ontbreekt",),
    ),
    (
        "both-weekday-and-rrule",
        _set("departments", 0, "meeting", "rrule", value="FREQ=WEEKLY;BYDAY=TU"),
        "departments[0].meeting",
        ("óf weekday óf rrule",),
    ),
    (
        "neither-weekday-nor-rrule",
        _drop("departments", 0, "meeting", "weekday"),
        "departments[0].meeting",
        ("óf weekday óf rrule",),
    ),
    (
        "bad-weekday",
        _set("departments", 0, "meeting", "weekday", value="dinsdg"),
        "departments[0].meeting.weekday",
        ("'dinsdg' is geen weekdag", "maandag"),
    ),
    (
        "bad-time",
        _set("departments", 1, "meeting", "time", value="25:00"),
        "departments[1].meeting.time",
        ("'25:00' is geen tijd", "HH:MM"),
    ),
    (
        "bad-duration",
        _set("cycle", "lead_time", value="twee dagen"),
        "cycle.lead_time",
        ("'twee dagen' is geen duur", "2d, 4h, 90m"),
    ),
    (
        "meeting-too-long",
        _set("departments", 2, "meeting", "duration", value="13h"),
        "departments[2].meeting.duration",
        ("tussen 5m en 12h",),
    ),
    (
        "typo-departments",
        _rename_top("departments", "departmens"),
        "departmens",
        ("dit veld ken ik niet", "spelling"),
    ),
    (
        "typo-anonymous-answers",
        _set("departments", 2, "anonymus_answers", value=True),
        "departments[2].anonymus_answers",
        ("dit veld ken ik niet",),
    ),
    (
        "bad-language",
        _set("language", value="de"),
        "language",
        ("'de' kan hier niet", "kies uit", "nl", "en"),
    ),
    (
        "bad-department-language",
        _set("departments", 4, "language", value="fr"),
        "departments[4].language",
        ("'fr' kan hier niet", "kies uit"),
    ),
    (
        "bad-symbolism",
        _set("symbolism", value="tulpen"),
        "symbolism",
        ("'tulpen' kan hier niet", "bloemen", "briljanten", "bouwstenen"),
    ),
    (
        "koers-without-goals",
        _no_goals,
        "cycle.rotation",
        ("de rotatie bevat koers, maar er zijn geen goals",),
    ),
    (
        "reminder-not-shorter-than-lead-time",
        _set("cycle", "reminder", value="1d"),
        "cycle",
        ("maak reminder korter dan lead_time",),
    ),
    (
        "shared-department-channel",
        _set("departments", 1, "channel", value="operatiekamer"),
        "departments[1].channel",
        ("'operatiekamer' wordt al gebruikt door ok",),
    ),
    (
        "cross-department-on-department-channel",
        _set("cross_department", "channel", value="hr"),
        "cross_department.channel",
        ("'hr' wordt al gebruikt door hr",),
    ),
    (
        "id-with-space-and-capitals",
        _set("departments", 2, "id", value="IC T"),
        "departments[2].id",
        ("'IC T' is geen geldige id", "kleine letters"),
    ),
    (
        "unknown-person-department",
        _set("local", "people", 0, "department", value="okk"),
        "local.people[0].department",
        ("'okk' bestaat niet", "Bekende afdelingen:"),
    ),
    (
        "empty-departments",
        _set("departments", value=[]),
        "departments",
        ("minstens één item",),
    ),
    (
        "bad-boolean",
        _set("departments", 0, "anonymous_answers", value="misschien"),
        "departments[0].anonymous_answers",
        ("gebruik true of false",),
    ),
]


@pytest.mark.parametrize(
    ("change", "location", "phrases"),
    [pytest.param(change, loc, phrases, id=name) for name, change, loc, phrases in MISTAKES],
)
def test_mistake_is_located_and_explained(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[Data], None],
    location: str,
    phrases: tuple[str, ...],
) -> None:
    data = example_data()
    change(data)
    path = write(tmp_path, data)
    code, out, err = check(path, capsys)
    assert code == 2, out + err
    assert out == ""
    assert_problem(err, path, location, *phrases)
    assert "deze configuratie is niet bruikbaar" in err


def test_unknown_top_level_field_is_named_and_the_missing_one_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = example_data()
    data["departmens"] = data.pop("departments")
    path = write(tmp_path, data)
    code, _, err = check(path, capsys)
    assert code == 2
    assert_problem(err, path, "departmens", "dit veld ken ik niet")
    assert_problem(err, path, "departments", "dit veld ontbreekt")


def test_yaml_syntax_error_reports_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = EXAMPLE_CONFIG.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("symbolism:"))
    lines[index] = "symbolism: bloemen: rozen"
    path = tmp_path / "broken.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = check(path, capsys)
    assert code == 2
    assert out == ""
    assert_problem(err, path, f"line {index + 1}", "geen geldige YAML", "inspringing")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nergens" / "org.yaml"
    code, out, err = check(path, capsys)
    assert code == 2
    assert out == ""
    assert_problem(err, path, "(file)", "bestaat niet", "boeket config example")


def test_top_level_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, [example_data()])
    code, _, err = check(path, capsys)
    assert code == 2
    assert_problem(err, path, "(root)", "YAML-mapping", "departments")


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "leeg.yaml"
    path.write_text("", encoding="utf-8")
    code, _, err = check(path, capsys)
    assert code == 2
    assert_problem(err, path, "(root)", "YAML-mapping")


def test_several_problems_are_all_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = example_data()
    data["departments"][0]["meeting"]["weekday"] = "dinsdg"
    data["departments"][1]["timezone"] = "Mars/Olympus"
    data["departments"][2]["anonymus_answers"] = False
    data["cycle"]["lead_time"] = "twee dagen"
    path = write(tmp_path, data)
    code, _, err = check(path, capsys)
    assert code == 2
    assert "(4 probleem/problemen)" in err.splitlines()[0]
    assert_problem(err, path, "departments[0].meeting.weekday", "'dinsdg' is geen weekdag")
    assert_problem(err, path, "departments[1].timezone", "Europe/Amsterdam")
    assert_problem(err, path, "departments[2].anonymus_answers", "dit veld ken ik niet")
    assert_problem(err, path, "cycle.lead_time", "'twee dagen' is geen duur")
    assert len(list(problem_lines(err))) == 4


def test_english_messages_with_boeket_lang(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    prompts: PromptLibrary,
) -> None:
    monkeypatch.setenv("BOEKET_LANG", "en")
    data = example_data()
    data["departments"][1]["timezone"] = "Mars/Olympus"
    path = write(tmp_path, data)
    code, _, err = check(path, capsys)
    assert code == 2
    english = prompts.text("en", "config.errors.timezone", value="Mars/Olympus")
    dutch = prompts.text("nl", "config.errors.timezone", value="Mars/Olympus")
    assert english != dutch, "prompts/en/ui.yaml has no English text for config.errors.timezone"
    assert_problem(err, path, "departments[1].timezone", english)
    assert dutch not in err
    assert "geen bekende tijdzone" not in err
    assert "Mars/Olympus" in err
    header_nl = prompts.text("nl", "config.header", file=str(path), count=1)
    assert err.splitlines()[0] == prompts.text("en", "config.header", file=str(path), count=1)
    assert err.splitlines()[0] != header_nl


# --- the parsers behind the fields --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2d", timedelta(days=2)),
        ("4h", timedelta(hours=4)),
        ("90m", timedelta(minutes=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 1D 2H 30M ", timedelta(days=1, hours=2, minutes=30)),
        ("0m", timedelta(0)),
        (45, timedelta(minutes=45)),
        (0, timedelta(0)),
        (timedelta(hours=3), timedelta(hours=3)),
    ],
)
def test_parse_duration(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value", ["twee dagen", "", "  ", "2x", "h", "1h2d", "1.5h", -5, True, 1.5, None]
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(PydanticCustomError) as info:
        parse_duration(value)
    assert info.value.type == "duration"
    assert info.value.context == {"value": str(value)}


@pytest.mark.parametrize("weekday", ["dinsdag", "Dinsdag", " TU ", "tu", "tuesday", "Tuesday", 1])
def test_weekday_names_all_mean_tuesday(weekday: object) -> None:
    assert Meeting(weekday=weekday, time="07:30").weekday == 1


@pytest.mark.parametrize(
    ("name", "number"), [("maandag", 0), ("sunday", 6), ("zondag", 6), ("SU", 6)]
)
def test_weekday_ends_of_the_week(name: str, number: int) -> None:
    assert Meeting(weekday=name, time="07:30").weekday == number


@pytest.mark.parametrize("weekday", ["dinsdg", "tuesdy", 7, -1, True, "1"])
def test_bad_weekday_rejected(weekday: object) -> None:
    with pytest.raises(ValidationError):
        Meeting(weekday=weekday, time="07:30")


def test_time_as_yaml_sexagesimal_integer() -> None:
    # YAML 1.1 reads an unquoted 9:30 as a base-60 integer, 9 * 60 + 30.
    fields = yaml.safe_load("weekday: dinsdag\ntime: 9:30\n")
    assert fields["time"] == 570
    meeting = Meeting(**fields)
    assert meeting.time == time(9, 30)
    assert meeting.weekday == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("09:30", time(9, 30)),
        ("9:30", time(9, 30)),
        ("9.30", time(9, 30)),
        (" 23:59 ", time(23, 59)),
        ("00:00", time(0, 0)),
        (570, time(9, 30)),
        (0, time(0, 0)),
        (1439, time(23, 59)),
        (time(14, 0), time(14, 0)),
    ],
)
def test_meeting_time(value: object, expected: time) -> None:
    assert Meeting(weekday=1, time=value).time == expected


@pytest.mark.parametrize("value", ["25:00", "24:00", "12:60", "9", "negen uur", 1440, -1, True])
def test_bad_meeting_time_rejected(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        Meeting(weekday=1, time=value)
    assert [e["type"] for e in info.value.errors()] == ["time"]


def test_meeting_defaults_and_rrule_prefix() -> None:
    meeting = Meeting(rrule="RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=WE", time="09:30")
    assert meeting.rrule == "FREQ=WEEKLY;INTERVAL=2;BYDAY=WE"
    assert meeting.weekday is None
    assert meeting.duration == timedelta(hours=1)
    assert Meeting(weekday="vrijdag", time="08:00", duration="30m").duration == timedelta(
        minutes=30
    )


def test_unquoted_meeting_time_in_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert 'time: "14:00"' in text
    path = tmp_path / "unquoted.yaml"
    path.write_text(text.replace('time: "14:00"', "time: 14:00"), encoding="utf-8")
    code, out, err = check(path, capsys)
    assert (code, err) == (0, "")
    assert str(path) in out
    assert load_config(path).department("verpleging").meeting.time == time(14, 0)
