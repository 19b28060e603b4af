"""Bad input, fuzzed: the config loader, Teams activities and Slack payloads never crash.

What a person, an admin or a platform can send — malformed JSON, missing fields, wrong types,
texts beyond Slack's and Teams' limits, emoji, right-to-left and zero-width characters — gets a
clear refusal (a `ConfigError` with its problems, a 4xx, a message that says what is wrong) or is
handled; never another exception, never a 500 with a stack trace, never half a contribution.
"""

from __future__ import annotations

import copy
import html
import json
import re
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.slack import translate
from adapters.slack.settings import SlackSettings
from adapters.teams import cards
from bot.app import build, web_app
from bot.cli import format_config_error
from bot.clock import ManualClock
from bot.config import ConfigError, OrgConfig, load_config, parse_config
from bot.contributions import MAX_TEXT as MAX_ANSWER
from bot.embedders import LexicalEmbedder
from bot.messages import (
    Actions,
    Bullets,
    Button,
    ButtonEvent,
    CommandEvent,
    Context,
    Divider,
    Field,
    Form,
    FormEvent,
    Header,
    Message,
    MessageEvent,
    Option,
    Section,
)
from bot.settings import EXAMPLE_CONFIG, Settings
from prompts.library import PromptLibrary
from storage.db import Database
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.test_slack_http import OK_PROMPT_AT as SLACK_PROMPT_AT
from tests.test_slack_http import SECRET, SlackEnv, slack_config
from tests.test_slack_http import button_click as slack_button_click
from tests.test_slack_http import prompt_ts as slack_prompt_ts
from tests.test_slack_http import reply_event as slack_reply_event
from tests.test_teams_http import DEV, TeamsEnv, _env, card_problems
from tests.test_teams_http import OK_CHANNEL as TEAMS_CHANNEL
from tests.test_teams_http import OK_PROMPT_AT as TEAMS_PROMPT_AT
from tests.test_teams_http import dialog_card as teams_dialog_card
from tests.test_teams_http import fixture as teams_fixture
from tests.test_teams_http import submit_data as teams_submit_data

# microsoft-agents-hosting-msteams 1.9 warns about its own deprecated BotClient on every Teams turn.
pytestmark = pytest.mark.filterwarnings("ignore:The bot client is deprecated:DeprecationWarning")

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


# --- JSON of any shape --------------------------------------------------------------------------

KEYS = ["id", "text", "type", "name", "value", "data", "verb", "f", "n", "k", "m", "o", "spec"]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=3),
    ),
    max_leaves=10,
)


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """`base` with one to four places replaced by any JSON, deleted, or given a long text."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        places = [p for p in paths(data) if p]
        if not places:
            break
        *parent_path, last = draw(st.sampled_from(places))
        parent = data
        for step in parent_path:
            parent = parent[step]
        how = draw(st.sampled_from(["replace", "replace", "delete", "text"]))
        if how == "delete":
            del parent[last]
        elif how == "text":
            parent[last] = draw(any_text)
        else:
            parent[last] = draw(json_values)
    return data


# --- (b) Teams: activities → events -------------------------------------------------------------

TEAMS_FIXTURES = [
    "channel_reply",
    "task_fetch",
    "extension_fetch",
    "install_team",
    "channel_created",
]


def teams_activities() -> list[dict[str, Any]]:
    """Every kind of activity Boeket handles, as Teams sends it, with form data in the invokes."""
    found = [teams_fixture(name, "http://127.0.0.1:9/") for name in TEAMS_FIXTURES]
    form = share_form()
    submit = cards.form_card(form, submission="s1", channel=TEAMS_CHANNEL)["actions"][0]["data"]
    opener = cards.open_form_card(form, channel=TEAMS_CHANNEL)["actions"][0]["data"]
    for data in (submit, opener, {"verb": "boeket.answer", "value": "2027-03-02"}):
        invoke = teams_fixture("task_fetch", "http://127.0.0.1:9/")
        invoke["value"]["data"] = {**data, "what": "Iets", "anonymous": True}
        found.append(invoke)
    return found


def share_form() -> Form:
    return Form(
        form_id="boeket.share",
        title="Deel een succes",
        submit_label="Versturen",
        intro="Wat ging goed?",
        fields=(
            Field("what", "Wat", kind="textarea", required=True, max_length=2000, initial="x"),
            Field("goal", "Doel", kind="select", options=(Option("g1", "Veilig"),)),
            Field("anonymous", "Anoniem", kind="checkbox"),
        ),
        meta={"department": "ok"},
    )


TEAMS_BASES = teams_activities()
EVENTS = (MessageEvent, CommandEvent, ButtonEvent, FormEvent)


@SOME
@given(activity=st.sampled_from(TEAMS_BASES).flatmap(mutated))
def test_teams_activities_of_any_shape_become_an_event_or_nothing(activity: Any) -> None:
    if not isinstance(activity, dict):
        return  # the endpoint refuses what is not a JSON object before any of this
    for parse in (
        cards.message_event,
        cards.interaction_event,
        cards.extension_command,
        cards.extension_submit,
    ):
        event = parse(activity)
        assert event is None or isinstance(event, EVENTS)
    assert all(isinstance(c, str) and c for c in cards.channels_to_remember(activity))
    for text in (
        cards.tenant_of(activity),
        cards.channel_of(activity),
        cards.conversation_type(activity),
        cards.card_message_id(activity),
    ):
        assert isinstance(text, str)
    data = cards.submit_data(activity) or {}
    cards.form_routing(data)
    assert isinstance(cards.routing_card(data), str)
    # A form rebuilt from what the client sent back is shown again: it must make a valid card.
    for rebuilt in (cards.submitted_form(data), (cards.opened_form(data) or (None,))[0]):
        if rebuilt is not None:
            card = cards.form_card(
                rebuilt, submission="s", channel="c", values=cards.submit_values(data)
            )
            assert card_problems(card) == []


@FEW
@given(
    texts=st.lists(any_text, min_size=1, max_size=3),
    buttons=st.lists(st.tuples(st.text(min_size=1, max_size=20), any_text), max_size=3),
)
def test_teams_cards_show_any_text_as_typed_and_stay_valid(
    texts: list[str], buttons: list[tuple[str, str]]
) -> None:
    message = Message(
        text=texts[0],
        blocks=(
            Header(texts[0]),
            Section(texts[-1], title=texts[0], quote=True),
            Bullets(tuple(texts)),
            Context(texts[-1]),
            Divider(),
            Actions(tuple(Button(f"a{i}", label) for i, (label, _) in enumerate(buttons))),
        ),
    )
    card = cards.message_card(message)
    assert card_problems(card) == []
    assert len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode()) <= (
        cards.CARD_BUDGET
    )
    for text in (cards.escape_markdown(t) for t in texts):
        # No markdown link or list survives escaping: `](` and a line-start "- " are escaped.
        assert "](" not in text.replace("\\](", "").replace("\\]\\(", "")
        assert not re.search(r"^[ \t]*[-+] ", text, re.MULTILINE)


@pytest.mark.parametrize("text", [*HUGE, "\n" * 40_000, "a" + "\n" * 3_998 + "a"])
def test_teams_text_functions_take_linear_time_on_huge_texts(text: str) -> None:
    """Thousands of `<at>`, `<` or empty lines once cost minutes of regex backtracking."""
    started = time.process_time()
    cards.clean_incoming(text, ["Boeket"])
    cards.escape_markdown(text)
    cards.message_card(Message(text=text, blocks=(Section(text),)))
    assert time.process_time() - started < 2.0


# --- platforms over HTTP: Boeket running, the platforms' clouds faked ---------------------------


@pytest.fixture
async def teams(
    db: Database, prompts: PromptLibrary, clock: ManualClock
) -> AsyncIterator[TeamsEnv]:
    async for env in _env(db, prompts, clock, DEV):
        yield env


@pytest.fixture
async def slack(
    db: Database, prompts: PromptLibrary, clock: ManualClock
) -> AsyncIterator[SlackEnv]:
    fake = FakeSlack(users={"U1": {"name": "fatima", "real_name": "Fatima el Amrani"}})
    fake_server = TestServer(fake.app())
    await fake_server.start_server()
    fake.server = fake_server
    settings = Settings(
        database_url=db.url,
        worker_id="slack-fuzz",
        auto_migrate=True,
        slack=SlackSettings(
            signing_secret=SECRET, bot_token=BOT_TOKEN, api_url=fake.api_url, pace_seconds=0
        ),
    )
    boeket = build(
        settings, slack_config(), clock=clock, prompts=prompts, db=db, embedder=LexicalEmbedder()
    )
    client: TestClient[Any, Any] = TestClient(TestServer(web_app(boeket, timer=False)))
    await client.start_server()
    try:
        yield SlackEnv(fake, client, boeket, clock, db)
    finally:
        await client.close()
        await fake_server.close()


# --- (b) Teams over HTTP ------------------------------------------------------------------------

HTTP_SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def no_trace(status: int, body: str, *, invoke: bool = False) -> None:
    # 501 is the Bot Framework's answer to an invoke a bot does not implement (the SDK's own).
    assert status < 500 or (invoke and status == 501), (status, body[:500])
    assert "Traceback" not in body and 'File "' not in body, body[:500]


def is_invoke(raw: str) -> bool:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(body, dict) and body.get("type") == "invoke"


@HTTP_SETTINGS
@given(
    raw=st.one_of(
        st.sampled_from(TEAMS_BASES).flatmap(mutated).map(json.dumps),
        st.sampled_from(
            [
                "",
                "{",
                "[]",
                "null",
                '"activity"',
                '{"type": "message", "text": NaN}',
                '{"type": "message", "text": Infinity, "from": {"id": 1}}',
                "[" * 5000 + "]" * 5000,
                '{"type": "message"' + ', "x": 1' * 20_000 + "}",
            ]
        ),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    )
)
async def test_teams_endpoint_answers_any_body_without_a_500_or_a_trace(
    teams: TeamsEnv, raw: str
) -> None:
    before = await teams.contributions()
    response = await teams.client.post(
        "/api/messages", data=raw.encode(), headers={"Content-Type": "application/json"}
    )
    no_trace(response.status, await response.text(), invoke=is_invoke(raw))
    after = await teams.contributions()
    assert len(after) - len(before) in {0, 1}
    for c in after[len(before) :]:
        assert c.text.strip() and len(c.text) <= MAX_ANSWER


@HTTP_SETTINGS
@given(text=any_text)
async def test_teams_answers_of_any_text_are_stored_whole_or_refused_with_a_reason(
    teams: TeamsEnv, text: str
) -> None:
    if not teams.fake.of("create"):
        await teams.install()
        await teams.tick(TEAMS_PROMPT_AT)
    [root] = [
        c.answer["activityId"]
        for c in teams.fake.of("create")
        if (c.body.get("channelData") or {}).get("channel", {}).get("id") == TEAMS_CHANNEL
    ]
    activity = teams.load("channel_reply", ROOT=root)
    activity["id"] = f"17{time.monotonic_ns()}"
    activity["text"] = f"<at>Boeket</at>&nbsp;{html.escape(text, quote=False)}"
    before = await teams.contributions()
    sent = len(teams.fake.of("send"))
    response = await teams.send(activity)
    no_trace(response.status, await response.text())
    after = await teams.contributions()
    said = " ".join(c.text for c in after[len(before) :])
    # NUL is the one character no database keeps (PostgreSQL refuses it): it is dropped.
    expected = cards.clean_incoming(activity["text"], ["Boeket"]).replace("\x00", "").strip()
    if len(expected) > MAX_ANSWER:
        assert len(after) == len(before)  # refused whole, and told why
        [told] = teams.fake.of("send")[sent:]
        assert "tekens" in json.dumps(told.body, ensure_ascii=False)
    elif len(expected) >= 3:
        assert len(after) == len(before) + 1 and said == expected, (said, expected)
    else:
        assert len(after) == len(before)


@HTTP_SETTINGS
@given(what=any_text, preconditions=any_text, effect=any_text)
async def test_teams_share_dialog_stores_any_text_whole_or_shows_what_is_wrong(
    teams: TeamsEnv, what: str, preconditions: str, effect: str
) -> None:
    if not teams.fake.of("create"):
        await teams.install()
    opened = await teams.send(teams.load("extension_fetch"))
    assert opened.status == 200
    card = teams_dialog_card(await opened.json())
    submit = teams.load("extension_fetch")
    submit.update(name="composeExtension/submitAction", id=f"f:{time.monotonic_ns()}")
    submit["value"] = {
        "commandId": "deel",
        "commandContext": "compose",
        "data": teams_submit_data(
            card, what=what, preconditions=preconditions, effect=effect, anonymous="false"
        ),
    }
    before = await teams.contributions()
    response = await teams.send(submit)
    body = await response.text()
    no_trace(response.status, body)
    after = await teams.contributions()
    shown = teams_dialog_card(json.loads(body))
    errors = [e for e in shown["body"] if e.get("color") == "Attention"]
    assert card_problems(shown) == []
    if errors:
        assert len(after) == len(before)  # nothing half stored
    else:
        [share] = after[len(before) :]
        assert share.text == what.replace("\x00", "").strip()
        assert share.fields["preconditions"] == preconditions.replace("\x00", "").strip()
        assert share.fields.get("effect", "") == effect.replace("\x00", "").strip()


# --- (c) Slack: payloads → events, and escaping ------------------------------------------------

SLACK_BASES: list[dict[str, Any]] = [
    {
        "type": "event_callback",
        "team_id": "T0TEST",
        "event_id": "Ev1",
        "event": slack_reply_event("Het werkt.", "1700000000.000001"),
    },
    {
        "team_id": "T0TEST",
        "channel_id": "C0OPERATIE",
        "user_id": "U1",
        "user_name": "fatima",
        "command": "/deel",
        "text": "mijn",
        "trigger_id": "t1",
    },
    slack_button_click("boeket.answer", "2027-03-02", message_ts="1700000000.000001"),
    {
        "type": "view_submission",
        "team": {"id": "T0TEST"},
        "user": {"id": "U1", "name": "fatima"},
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": "boeket.share",
            "team_id": "T0TEST",
            "private_metadata": translate.encode_metadata(
                "boeket.share", "C1", {"department": "ok"}
            ),
            "state": {
                "values": {
                    "what": {"what": {"type": "plain_text_input", "value": "Iets"}},
                    "goal": {"goal": {"type": "static_select", "selected_option": {"value": "g"}}},
                    "anonymous": {"anonymous": {"type": "checkboxes", "selected_options": []}},
                }
            },
        },
    },
]


@SOME
@given(body=st.sampled_from(SLACK_BASES).flatmap(mutated))
def test_slack_payloads_of_any_shape_become_an_event_or_nothing(body: Any) -> None:
    if not isinstance(body, dict):
        return  # Bolt hands the adapter a dict, or nothing
    event = translate.message_event(body)
    assert event is None or isinstance(event, MessageEvent)
    assert isinstance(translate.command_event(body), CommandEvent)
    click = translate.action_event(body)
    assert click is None or isinstance(click, ButtonEvent)
    view: dict[str, Any] = body["view"] if isinstance(body.get("view"), dict) else {}
    try:
        channel, meta = translate.decode_metadata(view.get("private_metadata", ""))
    except ValueError:
        channel, meta = "", {}  # the adapter's refusal: "this form has expired"
    assert isinstance(translate.view_event(body, meta, channel), FormEvent)


def slack_markup(text: str) -> list[str]:
    """Slack markup a person's text must never produce: mentions, broadcasts, links."""
    return re.findall(r"<[!@#]|<https?:|<mailto:|<[^>]*\|", text)


@SOME
@given(text=any_text)
def test_slack_escaping_leaves_no_mention_broadcast_or_link(text: str) -> None:
    for escaped in (
        translate.escape_mrkdwn(text),
        translate.escape_mrkdwn(translate.clean_incoming(text)),
    ):
        assert "<" not in escaped and ">" not in escaped
        # Every `&` starts one of the three entities: no half entity after a cut.
        assert "&" not in re.sub(r"&(amp|lt|gt);", "", escaped)
    # A broadcast Slack sends as markup is dropped; one a person typed (`&lt;!here&gt;`) is
    # kept as the plain text it is, and escaped whenever it is repeated (above).
    encoded = html.escape(text, quote=False)
    assert "<!here>" not in translate.clean_incoming(f"<!here> {encoded} <!channel>").replace(
        translate.clean_incoming(encoded), ""
    )


@FEW
@given(texts=st.lists(any_text, min_size=1, max_size=3))
def test_slack_messages_of_any_text_escape_it_and_fit(texts: list[str]) -> None:
    message = Message(
        text=texts[0],
        blocks=(
            Header(texts[0]),
            Section(texts[-1], title=texts[0], quote=True),
            Bullets(tuple(texts)),
            Context(texts[-1]),
            Actions((Button("boeket.answer", texts[0], "2027-03-02"),)),
        ),
    )
    fallback, blocks = translate.message_payload(message)
    assert translate.block_problems(blocks, surface="message") == []
    mrkdwn = [fallback] + [o["text"] for o in mrkdwn_objects(blocks) if o.get("type") == "mrkdwn"]
    for text in mrkdwn:
        assert slack_markup(text) == [] and "<" not in text
        assert "&" not in re.sub(r"&(amp|lt|gt);", "", text), text[-20:]


def mrkdwn_objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "type" in node and isinstance(node.get("text"), str):
            yield node
        for value in node.values():
            yield from mrkdwn_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from mrkdwn_objects(value)


# --- (c) Slack over HTTP, signed as Slack signs ------------------------------------------------


@st.composite
def slack_bodies(draw: st.DrawFn) -> tuple[str, str]:
    """An event, a slash command, a click or a modal submit whose person-written parts (text,
    values, names) are anything: wrong types, huge, emoji, right-to-left, zero-width.

    The envelope keeps the shape Slack gives it: Bolt reads `type`, `event`, `view` itself
    before Boeket sees anything, and answers 500 for a signed payload of another shape.
    """
    form = "application/x-www-form-urlencoded"
    kind = draw(st.sampled_from(["event", "command", "click", "submit"]))
    if kind == "event":
        envelope = copy.deepcopy(SLACK_BASES[0])
        envelope["event"]["text"] = draw(st.one_of(any_text, json_values))
        return json.dumps(envelope), "application/json"
    if kind == "command":
        command = {**SLACK_BASES[1], "text": draw(any_text), "user_name": draw(texts)}
        return urlencode(command), form
    payload = copy.deepcopy(SLACK_BASES[2] if kind == "click" else SLACK_BASES[3])
    if kind == "click":
        payload["actions"][0]["value"] = draw(st.one_of(any_text, json_values))
    else:
        state = payload["view"]["state"]["values"]
        state["what"]["what"]["value"] = draw(st.one_of(any_text, json_values))
        state["goal"]["goal"]["selected_option"] = draw(json_values)
    payload["user"]["name"] = draw(st.one_of(texts, json_values))
    return urlencode({"payload": json.dumps(payload)}), form


@HTTP_SETTINGS
@given(body=slack_bodies(), signed=st.booleans())
async def test_slack_endpoint_answers_any_payload_without_a_500_or_a_trace(
    slack: SlackEnv, body: tuple[str, str], signed: bool
) -> None:
    raw, kind = body
    before = await slack.contributions()
    response = await slack.post(raw, kind, secret=SECRET if signed else "not-the-secret")
    no_trace(response.status, await response.text())
    if not signed:
        assert response.status == 401
    assert len(await slack.contributions()) - len(before) in {0, 1}


@HTTP_SETTINGS
@given(text=any_text)
async def test_slack_answers_and_commands_of_any_text_are_whole_or_refused(
    slack: SlackEnv, text: str
) -> None:
    if not slack.fake.of("chat.postMessage"):
        await slack.tick(SLACK_PROMPT_AT)
    thread = slack_prompt_ts(slack)
    encoded = html.escape(text, quote=False)
    before = await slack.contributions()
    ts = f"1700000200.{time.monotonic_ns() % 10**6:06d}"
    response = await slack.event(
        slack_reply_event(encoded, thread, ts=ts), event_id=f"Ev{time.monotonic_ns()}"
    )
    no_trace(response.status, await response.text())
    after = await slack.contributions()
    expected = translate.clean_incoming(encoded).replace("\x00", "").strip()
    if 3 <= len(expected) <= MAX_ANSWER:
        assert [c.text for c in after[len(before) :]] == [expected]
    else:
        assert len(after) == len(before)
    command = await slack.command(encoded)
    no_trace(command.status, await command.text())
