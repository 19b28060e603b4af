"""Bad input, fuzzed: the config loader, Teams activities and Slack payloads never crash.

What a person, an admin or a platform can send — malformed JSON, missing fields, wrong types,
texts beyond Slack's and Teams' limits, emoji, right-to-left and zero-width characters — gets a
clear refusal (a `ConfigError` with its problems, a 4xx, a message that says what is wrong) or is
handled; never another exception, never a 500 with a stack trace, never half a contribution.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cli import format_config_error
from bot.config import ConfigError, OrgConfig, load_config, parse_config
from bot.settings import EXAMPLE_CONFIG
from prompts.library import PromptLibrary

FEW = settings(max_examples=60, deadline=None)
SOME = settings(max_examples=80, deadline=None)

# --- text that has broken chat software before --------------------------------------------------

SPECIAL = [
    "🌷💐🧑🏽‍⚕️👩‍👩‍👧",  # emoji, skin tones, joiners
    "مرحبا بالعالم",  # Arabic, right to left
    "שלום עולם",  # Hebrew
    "abc\u202edcba",  # right-to-left override
    "\u200b\u200c\u200d\u2060\ufeff",  # zero-width characters only
    "ze\u200bro\u200dwidth",
    "e\u0301\u0301\u0301",  # stacked combining marks
    "<!channel> <!here> <!everyone> <@U0BOSS> <#C0GEN|algemeen> <https://evil.example|klik>",
    "&lt;!here&gt; &amp;lt; &amp;amp;",
    "<at>Boeket</at> <at>Jan</at> <at x='1'>niet dicht",
    "[klik](https://evil.example) **vet** `code`",
    "\x00\x01\x1b[31m",
    "{value} {0} %s %(x)s",
    "   \t\n  ",
]
HUGE = [
    "x" * 45_000,  # past Slack's 40,000 characters
    "lang woord " * 3_000,  # past Teams' ~28 KB
    "🌷" * 8_000,
    "<" * 30_000,
    "<at>" * 8_000,
    "&amp;" * 9_000,
]
texts = st.one_of(
    st.text(max_size=60),
    st.sampled_from(SPECIAL),
    st.lists(st.sampled_from(SPECIAL), min_size=1, max_size=4).map(" ".join),
)
any_text = st.one_of(texts, st.sampled_from(HUGE))


# --- (a) the config loader ----------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    st.dates(),
    st.sampled_from(
        ["09:30", "25:99", "1d", "99999999999d", "Europe", "Etc", "maandag", "x" * 300]
    ),
)
yamlish = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=16,
)


def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    return data


def paths(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a parsed config: dict keys and list positions, depth first."""
    yield at
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*at, i))


EXAMPLE_PATHS = [p for p in paths(example()) if p]


def accepted_or_explained(result: object, prompts: PromptLibrary) -> None:
    """An OrgConfig; or a ConfigError whose every problem can be told, in Dutch and English."""
    if isinstance(result, OrgConfig):
        return
    assert isinstance(result, ConfigError), f"{type(result).__name__}: {result}"
    assert result.problems
    for problem in result.problems:
        assert isinstance(problem.location, str) and problem.location
        assert all(isinstance(v, str) for v in problem.params.values())
    for lang in ("nl", "en"):
        told = format_config_error(result, prompts, lang).split("\n")
        # One line per problem, whatever the file holds: no line breaks, escape codes or
        # invisible characters from the file in the report.
        assert len(told) == 1 + len(result.problems)
        assert all(line.isprintable() for line in told), told


def outcome(data: object) -> object:
    try:
        return parse_config(data, Path("fuzz.yaml"))
    except ConfigError as exc:
        return exc


@FEW
@given(data=yamlish)
def test_any_yaml_structure_is_a_config_or_a_config_error(
    data: object, prompts: PromptLibrary
) -> None:
    accepted_or_explained(outcome(data), prompts)


@SOME
@given(
    where=st.sampled_from(EXAMPLE_PATHS),
    how=st.sampled_from(["replace", "delete", "extra", "duplicate"]),
    value=yamlish,
)
def test_mutations_of_the_example_are_a_config_or_a_config_error(
    where: tuple[Any, ...], how: str, value: object, prompts: PromptLibrary
) -> None:
    data = example()
    *parent_path, last = where
    parent: Any = data
    for step in parent_path:
        parent = parent[step]
    if how == "replace":
        parent[last] = value
    elif how == "delete":
        del parent[last]
    elif how == "extra" and isinstance(parent, dict):
        parent[f"onbekend_{len(parent)}"] = value
    elif how == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    else:
        parent[last] = value
    accepted_or_explained(outcome(data), prompts)


@SOME
@given(
    cuts=st.lists(
        st.tuples(
            st.floats(0, 1),
            st.integers(0, 12),
            st.one_of(texts, st.sampled_from(":-[]{}&*!|>'\"#%@`\t\n")),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_damaged_config_files_are_a_config_or_a_config_error(
    cuts: list[tuple[float, int, str]], prompts: PromptLibrary
) -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    for where, remove, insert in cuts:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + remove :]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "org.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            result: object = load_config(path)
        except ConfigError as exc:
            result = exc
    accepted_or_explained(result, prompts)


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe\x00o\x00r\x00g",  # UTF-16, not UTF-8
        b"organisation: {id: x, name: \xc3\x28}",  # broken UTF-8
        b"organisation:\n  id: [" + b"[" * 600,
        b"[" * 600 + b"]" * 600,
        b"cycle:\n  grace: 99999999999d\n",
        b"departments:\n  - meeting: {start: 2026-13-45}\n",
        b"timezone: Europe\n",
        b"a: &a [*a, *a]\n",
        b"!!python/object/apply:os.system ['true']\n",
        b"",
    ],
)
def test_files_that_broke_the_loader_are_config_errors(
    content: bytes, prompts: PromptLibrary, tmp_path: Path
) -> None:
    path = tmp_path / "org.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    accepted_or_explained(caught.value, prompts)


def test_a_timezone_that_is_a_folder_and_a_huge_duration_are_named_problems() -> None:
    data = example()
    data["timezone"] = "Europe"
    data["cycle"] = {"grace": "99999999999d", "lead_time": 10**30}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, Path("org.yaml"))
    assert {(p.location, p.key) for p in caught.value.problems} == {
        ("timezone", "timezone"),
        ("cycle.grace", "duration"),
        ("cycle.lead_time", "duration"),
    }
