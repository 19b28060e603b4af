"""The pure Slack translations: escaping, Block Kit limits, modals and payload parsing.

Every payload the module produces is checked with `block_problems` (slack_sdk's models plus our own
limit checks). Payload fixtures are modelled on bolt-python's tests/scenario_tests_async.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

import pytest

from adapters.slack.translate import (
    MAX_OPTIONS,
    MESSAGE_BUDGET,
    action_base,
    action_event,
    block_problems,
    clean_incoming,
    command_event,
    decode_metadata,
    encode_metadata,
    escape_mrkdwn,
    form_errors,
    message_event,
    message_payload,
    modal_view,
    view_event,
    view_problems,
    view_values,
)
from bot.domain import ChannelRef, Person
from bot.messages import (
    Actions,
    Block,
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

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
LONG = "Dit ging goed & <!channel> zag het 🌷. " * 300  # ~11,000 characters
EVIL = "<!channel> <!here> <@U123> <https://evil.example|klik hier> & co"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def payload(message: Message) -> tuple[str, list[dict[str, Any]]]:
    """message_payload, with the guarantee every test relies on: Slack accepts the result."""
    text, blocks = message_payload(message)
    assert block_problems(blocks, surface="message") == []
    assert len(text) <= 3000
    assert_no_markup(text)
    for mrkdwn in mrkdwn_texts(blocks):
        assert_no_markup(mrkdwn)
    return text, blocks


def modal(form: Form, **kwargs: Any) -> dict[str, Any]:
    view = modal_view(form, callback_id=form.form_id, private_metadata="{}", **kwargs)
    assert view_problems(view) == []
    assert block_problems(view["blocks"], surface="modal") == []
    for mrkdwn in mrkdwn_texts(view["blocks"]):
        assert_no_markup(mrkdwn)
    return view


def mrkdwn_texts(blocks: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def assert_no_markup(mrkdwn: str) -> None:
    """No mention, broadcast or link can come out of it: `<`/`>` only as our quote marker."""
    unquoted = re.sub(r"^>", "", mrkdwn, flags=re.MULTILINE)
    assert "<" not in unquoted and ">" not in unquoted, mrkdwn
    # Every `&` starts a whole entity: nothing was cut in half or double-escaped into garbage.
    assert re.fullmatch(r"(?:[^&]|&amp;|&lt;|&gt;)*", mrkdwn, flags=re.DOTALL), mrkdwn[-40:]


def section_text(block: dict[str, Any]) -> str:
    assert block["type"] == "section"
    text: str = block["text"]["text"]
    return text


# --- escaping ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<!here>", "&lt;!here&gt;"),
        ("<!everyone>", "&lt;!everyone&gt;"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("<https://evil.example|klik hier>", "&lt;https://evil.example|klik hier&gt;"),
        ("Tom & Jerry", "Tom &amp; Jerry"),
        ("&lt; is already an entity", "&amp;lt; is already an entity"),
        ("<&>", "&lt;&amp;&gt;"),
        ("geen opmaak 🌷 *vet*", "geen opmaak 🌷 *vet*"),
    ],
)
def test_escape_mrkdwn(text: str, escaped: str) -> None:
    assert escape_mrkdwn(text) == escaped


@pytest.mark.parametrize(
    ("incoming", "plain"),
    [
        ("<!channel> kijk even", "kijk even"),
        ("kijk <!here> even", "kijk even"),
        ("<!everyone>", ""),
        ("<!here|here> hoi", "hoi"),
        ("<!channel|@channel>: hoi", ": hoi"),
        ("vraag aan <!subteam^S123|@ic-team>", "vraag aan @ic-team"),
        ("vraag aan <!subteam^S123>!", "vraag aan !"),
        ("dank <@U123>", "dank @U123"),
        ("dank <@U123|sanne>!", "dank @sanne!"),
        ("dank <@W123|>", "dank @W123"),
        ("zie <#C123|algemeen>", "zie #algemeen"),
        ("zie <#C123>", "zie #C123"),
        ("zie <#C123|>", "zie #C123"),
        ("<https://evil.example|klik hier>", "klik hier (https://evil.example)"),
        ("<https://boeket.example>", "https://boeket.example"),
        ("<http://boeket.example|boeket.example>", "boeket.example"),
        ("<mailto:sanne@zkh.example|sanne@zkh.example>", "sanne@zkh.example"),
        ("<https://x.example/?a=1&amp;b=2|zoek>", "zoek (https://x.example/?a=1&b=2)"),
        ("<!date^1392734382^{date_short}|13 feb 2014>", "13 feb 2014"),
        ("a &lt; b &gt; c &amp; d", "a < b > c & d"),
        ("&amp;lt; blijft letterlijk", "&lt; blijft letterlijk"),
        ("&amp;amp;", "&amp;"),
        ("&lt;!channel&gt; getypt", "<!channel> getypt"),
        ("  ruimte rondom \n", "ruimte rondom"),
        ("regel 1\nregel 2", "regel 1\nregel 2"),
    ],
)
def test_clean_incoming(incoming: str, plain: str) -> None:
    assert clean_incoming(incoming) == plain


@pytest.mark.parametrize(
    "event_text",
    [
        "Tom &amp; Jerry",
        "a &lt; b &gt; c",
        "&amp;lt; stays literal",
        "&lt;!channel&gt; typed as text",
        "&lt;https://evil.example|klik hier&gt;",
        "emoji 🌷 and *bold* _italic_",
    ],
)
def test_round_trip_does_not_double_escape(event_text: str) -> None:
    """Slack's encoded text → stored plain text → escaped again is exactly what Slack sent."""
    assert escape_mrkdwn(clean_incoming(event_text)) == event_text


def test_repeated_event_text_pings_nobody() -> None:
    stored = clean_incoming("<!channel> <@U123|sanne> zag <https://evil.example|klik hier> &amp;")
    _, blocks = payload(Message("x", (Section(stored, quote=True),)))
    assert section_text(blocks[0]) == "> @sanne zag klik hier (https://evil.example) &amp;"


# --- messages: each block type ------------------------------------------------------------------


def test_header() -> None:
    _, blocks = payload(Message("t", (Header("🌷 Wat ging goed? <!here> & zo"),)))
    assert blocks == [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": "🌷 Wat ging goed? <!here> & zo", "emoji": True},
        }
    ]


def test_header_is_one_line_and_truncated_at_150() -> None:
    _, blocks = payload(Message("t", (Header("regel\nregel " + "x" * 300),)))
    text = blocks[0]["text"]["text"]
    assert len(text) == 150 and text.endswith("…") and "\n" not in text
    assert text.startswith("regel regel x")


def test_header_of_exactly_150_is_kept() -> None:
    _, blocks = payload(Message("t", (Header("x" * 150),)))
    assert blocks[0]["text"]["text"] == "x" * 150


def test_section_with_title_is_escaped() -> None:
    _, blocks = payload(Message("t", (Section("<@U123> & <!here>", title="Titel <b>"),)))
    assert blocks == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Titel &lt;b&gt;*\n&lt;@U123&gt; &amp; &lt;!here&gt;",
            },
        }
    ]


def test_section_without_title() -> None:
    _, blocks = payload(Message("t", (Section("gewoon"),)))
    assert section_text(blocks[0]) == "gewoon"


def test_section_quote_prefixes_each_line_after_escaping() -> None:
    _, blocks = payload(
        Message("t", (Section("eerste > regel\n\nderde", title="Sanne", quote=True),))
    )
    assert section_text(blocks[0]) == "*Sanne*\n> eerste &gt; regel\n>\n> derde"


def test_section_truncated_at_3000() -> None:
    _, blocks = payload(Message("t", (Section(LONG, title="Lang"),)))
    text = section_text(blocks[0])
    assert len(text) <= 3000 and text.endswith("…") and text.startswith("*Lang*\nDit ging goed")


def test_truncation_never_cuts_an_entity() -> None:
    for filler in range(0, 6):
        _, blocks = payload(Message("t", (Section("x" * filler + "&" * 3000),)))
        assert section_text(blocks[0]).endswith("&amp;…")


def test_empty_blocks_are_left_out() -> None:
    message = Message("t", (Header("  "), Section(""), Context(" "), Bullets(()), Actions(())))
    assert payload(message)[1] == []


def test_bullets() -> None:
    _, blocks = payload(Message("t", (Bullets(("één <b>", "twee & drie"), title="Punten"),)))
    assert blocks == [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*Punten*\n• één &lt;b&gt;\n• twee &amp; drie"},
        }
    ]


def test_many_bullets_split_over_sections() -> None:
    items = tuple(f"punt {i} met wat tekst & uitleg " * 3 for i in range(200))
    _, blocks = payload(Message("t", (Bullets(items, title="Oogst"),)))
    texts = [section_text(b) for b in blocks if b["type"] == "section"]
    assert len(texts) > 1
    assert all(len(t) <= 3000 for t in texts)
    assert texts[0].startswith("*Oogst*\n• punt 0 ")
    assert not any(t.startswith("*Oogst*") for t in texts[1:])
    lines = [line for t in texts for line in t.split("\n") if line.startswith("• ")]
    # Whatever did not fit the message budget was dropped whole, in order, and marked.
    assert lines == [f"• {escape_mrkdwn(item)}" for item in items[: len(lines)]]
    if len(lines) < len(items):
        assert blocks[-1]["type"] == "context"


def test_one_huge_bullet_is_truncated() -> None:
    _, blocks = payload(Message("t", (Bullets(("kort", LONG, "ook kort")),)))
    texts = [section_text(b) for b in blocks]
    assert texts[0] == "• kort"
    assert 2995 <= len(texts[1]) <= 3000 and texts[1].endswith("&amp;…")
    assert texts[2] == "• ook kort"


def test_context() -> None:
    _, blocks = payload(Message("t", (Context("door <@U1> & co"),)))
    assert blocks == [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "door &lt;@U1&gt; &amp; co"}]}
    ]


def test_context_truncated_at_3000() -> None:
    _, blocks = payload(Message("t", (Context(LONG),)))
    text = blocks[0]["elements"][0]["text"]
    assert len(text) <= 3000 and text.endswith("…")


def test_divider() -> None:
    assert payload(Message("t", (Divider(),)))[1] == [{"type": "divider"}]


def test_buttons() -> None:
    message = Message(
        "t",
        (
            Actions(
                (
                    Button("boeket.answer", "Antwoorden", value="2026-03-02", style="primary"),
                    Button("boeket.delete", "Verwijderen <!here>", value="7", style="danger"),
                    Button("boeket.help", "Hulp"),
                )
            ),
        ),
    )
    _, blocks = payload(message)
    assert blocks == [
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": "boeket.answer",
                    "text": {"type": "plain_text", "text": "Antwoorden", "emoji": True},
                    "value": "2026-03-02",
                    "style": "primary",
                },
                {
                    "type": "button",
                    "action_id": "boeket.delete",
                    "text": {"type": "plain_text", "text": "Verwijderen <!here>", "emoji": True},
                    "value": "7",
                    "style": "danger",
                },
                {
                    "type": "button",
                    "action_id": "boeket.help",
                    "text": {"type": "plain_text", "text": "Hulp", "emoji": True},
                },
            ],
        }
    ]


def test_button_label_truncated_at_75() -> None:
    _, blocks = payload(Message("t", (Actions((Button("a", "🌷" * 100),)),)))
    label = blocks[0]["elements"][0]["text"]["text"]
    assert len(label) == 75 and label.endswith("…")


def test_button_value_of_2000_is_kept_and_longer_raises() -> None:
    _, blocks = payload(Message("t", (Actions((Button("a", "A", value="v" * 2000),)),)))
    assert blocks[0]["elements"][0]["value"] == "v" * 2000
    with pytest.raises(ValueError, match="2000"):
        message_payload(Message("t", (Actions((Button("a", "A", value="v" * 2001),)),)))


def test_action_ids_that_action_base_would_strip_are_refused() -> None:
    with pytest.raises(ValueError, match="action_base"):
        message_payload(Message("t", (Actions((Button("boeket.edit:3", "A"),)),)))


def test_action_id_longer_than_255_is_refused() -> None:
    with pytest.raises(ValueError, match="255"):
        message_payload(Message("t", (Actions((Button("a" * 256, "A"),)),)))


def test_duplicate_action_ids_get_a_suffix_that_action_base_strips() -> None:
    rows = tuple(
        Actions(
            (Button("boeket.edit", "Aanpassen", str(i)), Button("boeket.delete", "Weg", str(i)))
        )
        for i in range(3)
    )
    _, blocks = payload(Message("Mijn bijdragen", rows))
    ids = [e["action_id"] for b in blocks for e in b["elements"]]
    assert ids == [
        "boeket.edit",
        "boeket.delete",
        "boeket.edit:2",
        "boeket.delete:3",
        "boeket.edit:4",
        "boeket.delete:5",
    ]
    assert [action_base(i) for i in ids] == ["boeket.edit", "boeket.delete"] * 3


@pytest.mark.parametrize(
    ("action_id", "base"),
    [
        ("boeket.answer", "boeket.answer"),
        ("boeket.edit:12", "boeket.edit"),
        ("boeket.edit:x", "boeket.edit:x"),
        ("a:1:2", "a:1"),
        ("", ""),
    ],
)
def test_action_base(action_id: str, base: str) -> None:
    assert action_base(action_id) == base


def test_eighty_buttons_make_four_actions_blocks_of_at_most_25() -> None:
    buttons = tuple(Button("boeket.pick", f"Keuze {i} 🌷", value=str(i)) for i in range(80))
    _, blocks = payload(Message("t", (Actions(buttons),)))
    assert [len(b["elements"]) for b in blocks] == [25, 25, 25, 5]
    ids = [e["action_id"] for b in blocks for e in b["elements"]]
    assert len(set(ids)) == 80
    assert {action_base(i) for i in ids} == {"boeket.pick"}


def test_fallback_text_is_escaped_and_truncated() -> None:
    text, _ = payload(Message(EVIL))
    assert text == escape_mrkdwn(EVIL)
    text, _ = payload(Message(LONG * 2))
    assert 2995 <= len(text) <= 3000 and text.endswith("&amp;…")
    text, _ = payload(Message("x" * 5000))
    assert text == "x" * 2999 + "…"


def test_fallback_text_comes_from_the_blocks_when_empty() -> None:
    assert payload(Message("", (Divider(), Header("Oogst & zo"))))[0] == "Oogst &amp; zo"
    assert payload(Message("", (Section("", title="Titel"),)))[0] == "Titel"


def test_a_message_without_blocks_has_only_text() -> None:
    assert payload(Message("hallo <!channel>")) == ("hallo &lt;!channel&gt;", [])


# --- messages: the message as a whole -----------------------------------------------------------


def test_at_most_50_blocks_with_a_marker() -> None:
    message = Message("t", tuple(Section(f"deel {i}") for i in range(80)))
    _, blocks = payload(message)
    assert len(blocks) == 50
    assert [section_text(b) for b in blocks[:49]] == [f"deel {i}" for i in range(49)]
    assert blocks[49] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "…"}]}


def test_exactly_50_blocks_are_kept() -> None:
    _, blocks = payload(Message("t", tuple(Divider() for _ in range(50))))
    assert blocks == [{"type": "divider"}] * 50


def test_long_sections_give_way_to_the_budget_but_buttons_stay() -> None:
    message = Message(
        "t",
        (
            Header("Oogst"),
            *(Section(LONG, title=f"Bijdrage {i}") for i in range(6)),
            Actions((Button("boeket.answer", "Antwoorden", style="primary"),)),
        ),
    )
    _, blocks = payload(message)
    size = len(json.dumps(blocks, ensure_ascii=False, separators=(",", ":")))
    assert size <= MESSAGE_BUDGET
    assert blocks[0]["type"] == "header"
    assert blocks[-1]["type"] == "actions"
    assert blocks[-2] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "…"}]}
    kept = [section_text(b) for b in blocks if b["type"] == "section"]
    assert 1 <= len(kept) < 6
    assert [t.split("\n")[0] for t in kept] == [f"*Bijdrage {i}*" for i in range(len(kept))]


def test_huge_button_values_never_break_the_budget() -> None:
    buttons = tuple(Button("boeket.pick", f"K{i}", value="v" * 2000) for i in range(80))
    _, blocks = payload(Message("t", (Section("intro"), Actions(buttons))))
    assert blocks[-1]["type"] == "context"


def test_pathological_message() -> None:
    message = Message(
        LONG,
        (
            Header(LONG),
            Section(LONG, title=LONG, quote=True),
            Bullets(tuple(EVIL for _ in range(200)), title=EVIL),
            Context(LONG),
            Divider(),
            Actions(tuple(Button("boeket.x", EVIL * 5, value=str(i)) for i in range(80))),
        )
        * 3,
    )
    text, blocks = payload(message)
    assert blocks and text.endswith("…")


# --- modals ------------------------------------------------------------------------------------

GOALS = (Option("veilig", "Veilige zorg"), Option("tijd", "Tijd voor de patiënt 🕐"))
SHARE_FORM = Form(
    form_id="boeket.share",
    title="Deel een succes",
    submit_label="Versturen",
    intro="Wat werkte er bij jullie? <!channel> & anderen leren ervan.",
    fields=(
        Field(
            "what",
            "Wat werkte?",
            kind="textarea",
            required=True,
            max_length=2000,
            hint="Beschrijf het zo dat een andere afdeling het kan proberen.",
            initial="de dagstart & <b>",
        ),
        Field("preconditions", "Randvoorwaarden", kind="textarea", required=True, max_length=2000),
        Field("effect", "Effect", kind="textarea", max_length=2000),
        Field("goal", "Bij welk doel hoort het?", kind="select", options=GOALS, initial="tijd"),
        Field("theme", "Thema", kind="select", options=()),
        Field(
            "anonymous",
            "Anoniem delen",
            kind="checkbox",
            hint="Je naam wordt dan nergens bewaard.",
        ),
    ),
    meta={"department": "ic"},
)


def test_share_form_modal() -> None:
    view = modal(SHARE_FORM, close_label="Annuleren")
    assert {k: v for k, v in view.items() if k != "blocks"} == {
        "type": "modal",
        "callback_id": "boeket.share",
        "title": {"type": "plain_text", "text": "Deel een succes", "emoji": True},
        "submit": {"type": "plain_text", "text": "Versturen", "emoji": True},
        "close": {"type": "plain_text", "text": "Annuleren", "emoji": True},
        "private_metadata": "{}",
    }
    intro, what, preconditions, effect, goal, anonymous = view["blocks"]
    assert intro == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "Wat werkte er bij jullie? &lt;!channel&gt; &amp; anderen leren ervan.",
        },
    }
    assert what == {
        "type": "input",
        "block_id": "what",
        "label": {"type": "plain_text", "text": "Wat werkte?", "emoji": True},
        "optional": False,
        "element": {
            "action_id": "what",
            "type": "plain_text_input",
            "max_length": 2000,
            "multiline": True,
            "initial_value": "de dagstart & <b>",
        },
        "hint": {
            "type": "plain_text",
            "text": "Beschrijf het zo dat een andere afdeling het kan proberen.",
            "emoji": True,
        },
    }
    assert preconditions["optional"] is False and "hint" not in preconditions
    assert effect["optional"] is True and "initial_value" not in effect["element"]
    assert goal["element"] == {
        "action_id": "goal",
        "type": "static_select",
        "options": [
            {
                "text": {"type": "plain_text", "text": "Veilige zorg", "emoji": True},
                "value": "veilig",
            },
            {
                "text": {"type": "plain_text", "text": "Tijd voor de patiënt 🕐", "emoji": True},
                "value": "tijd",
            },
        ],
        "initial_option": {
            "text": {"type": "plain_text", "text": "Tijd voor de patiënt 🕐", "emoji": True},
            "value": "tijd",
        },
    }
    # The theme select had no options: Slack refuses an empty select, so it is left out.
    assert anonymous == {
        "type": "input",
        "block_id": "anonymous",
        "label": {"type": "plain_text", "text": "Anoniem delen", "emoji": True},
        "optional": True,
        "element": {
            "action_id": "anonymous",
            "type": "checkboxes",
            "options": [
                {
                    "text": {"type": "plain_text", "text": "Anoniem delen", "emoji": True},
                    "value": "true",
                }
            ],
        },
        "hint": {"type": "plain_text", "text": "Je naam wordt dan nergens bewaard.", "emoji": True},
    }


def test_modal_defaults_and_plain_text_field() -> None:
    form = Form("f", "Titel", "Ok", (Field("naam", "Naam", initial="Sanne"),))
    view = modal(form)
    assert view["close"]["text"] == "Cancel"
    assert view["blocks"] == [
        {
            "type": "input",
            "block_id": "naam",
            "label": {"type": "plain_text", "text": "Naam", "emoji": True},
            "optional": True,
            "element": {
                "action_id": "naam",
                "type": "plain_text_input",
                "max_length": 3000,
                "initial_value": "Sanne",
            },
        }
    ]


def test_modal_texts_truncated_at_24() -> None:
    form = Form(
        "f", "Een veel te lange titel voor Slack", "Versturen maar, nu meteen!", SHARE_FORM.fields
    )
    view = modal(form, close_label="Nee, toch maar niet annuleren")
    for key in ("title", "submit", "close"):
        assert len(view[key]["text"]) == 24 and view[key]["text"].endswith("…")


def test_modal_input_caps_at_3000_and_shortens_a_longer_initial_value() -> None:
    field = Field("text", "Tekst", kind="textarea", max_length=4000, initial="x" * 4000)
    element = modal(Form("f", "T", "Ok", (field,)))["blocks"][0]["element"]
    assert element["max_length"] == 3000 and element["initial_value"] == "x" * 3000


def test_modal_labels_hints_and_options_truncated() -> None:
    options = tuple(Option(f"o{i}", f"Optie {i} " + "🌷" * 100) for i in range(150))
    fields = (
        Field("keuze", "L" * 2500, kind="select", options=options, initial="o120", hint="H" * 2500),
        Field("vink", "V" * 200, kind="checkbox", initial="true"),
    )
    select, checkbox = modal(Form("f", "T", "Ok", fields))["blocks"]
    assert len(select["label"]["text"]) == 2000 and len(select["hint"]["text"]) == 2000
    opts = select["element"]["options"]
    assert len(opts) == MAX_OPTIONS
    assert all(len(o["text"]["text"]) <= 75 for o in opts)
    assert "initial_option" not in select["element"]  # o120 did not make the first 100
    assert checkbox["element"]["initial_options"] == checkbox["element"]["options"]
    assert len(checkbox["element"]["options"][0]["text"]["text"]) == 75


def test_modal_checkbox_initial_only_when_true() -> None:
    for initial in ("", "false", "yes"):
        field = Field("vink", "Vink", kind="checkbox", initial=initial)
        assert (
            "initial_options" not in modal(Form("f", "T", "Ok", (field,)))["blocks"][0]["element"]
        )


def test_modal_select_initial_must_match() -> None:
    field = Field("goal", "Doel", kind="select", options=GOALS, initial="onbekend")
    assert "initial_option" not in modal(Form("f", "T", "Ok", (field,)))["blocks"][0]["element"]


def test_modal_private_metadata_limit() -> None:
    modal_view(SHARE_FORM, callback_id="f", private_metadata="m" * 3000)
    with pytest.raises(ValueError, match="3000"):
        modal_view(SHARE_FORM, callback_id="f", private_metadata="m" * 3001)


@pytest.mark.parametrize(
    "form",
    [
        Form("f", "T", "Ok", (Field("a", "A"), Field("a", "B"))),  # duplicate block_id
        Form("f", "T", "Ok", (Field("x" * 256, "A"),)),  # block_id too long
        Form("f", "T", "Ok", tuple(Field(f"f{i}", "A") for i in range(101))),  # > 100 blocks
        Form("f", "T", "Ok", (Field("goal", "Doel", kind="select"),)),  # nothing left to show
        Form("f", "T", "Ok", (Field("g", "G", kind="select", options=(Option("v" * 151, "x"),)),)),
    ],
)
def test_modal_refuses_what_would_lose_answers(form: Form) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        modal_view(form, callback_id="f", private_metadata="")


def test_modal_with_100_fields_is_fine() -> None:
    view = modal(Form("f", "T", "Ok", tuple(Field(f"f{i}", f"Veld {i}") for i in range(100))))
    assert len(view["blocks"]) == 100


def test_modal_callback_id_limit() -> None:
    with pytest.raises(ValueError, match="255"):
        modal_view(SHARE_FORM, callback_id="c" * 256, private_metadata="")


# --- view submissions, errors, metadata ---------------------------------------------------------


def test_view_values_for_each_element_type() -> None:
    state = fixture("view_submission_share.json")["view"]["state"]["values"]
    assert view_values(state) == {
        "what": "Dagstart van vijf minuten <!channel> & meer",
        "preconditions": "Vaste tijd, staand",
        "effect": "",
        "goal": "tijd",
        "theme": "",
        "anonymous": "false",
    }


def test_view_values_selected() -> None:
    state = {
        "anonymous": {
            "anonymous": {
                "type": "checkboxes",
                "selected_options": [
                    {"text": {"type": "plain_text", "text": "A"}, "value": "true"}
                ],
            }
        },
        "naam": {"naam": {"type": "plain_text_input", "value": "Sanne"}},
        "radio": {"radio": {"type": "radio_buttons", "selected_option": {"value": "b"}}},
    }
    assert view_values(state) == {"anonymous": "true", "naam": "Sanne", "radio": "b"}


def test_view_values_nothing_entered() -> None:
    state = {
        "tekst": {"tekst": {"type": "plain_text_input"}},
        "keuze": {"keuze": {"type": "static_select", "selected_option": None}},
        "vink": {"vink": {"type": "checkboxes"}},
        "leeg": {},
    }
    assert view_values(state) == {"tekst": "", "keuze": "", "vink": "false"}
    assert view_values({}) == {}


def test_view_values_prefers_the_action_id_named_after_the_block() -> None:
    state = {"b": {"other": {"type": "plain_text_input", "value": "no"}, "b": {"value": "yes"}}}
    assert view_values(state) == {"b": "yes"}


def test_form_errors() -> None:
    body = form_errors({"what": "Vul dit in (minstens 3 tekens).", "effect": "x" * 1500})
    assert body["response_action"] == "errors"
    assert body["errors"]["what"] == "Vul dit in (minstens 3 tekens)."
    assert len(body["errors"]["effect"]) == 1000 and body["errors"]["effect"].endswith("…")


def test_metadata_round_trip() -> None:
    meta = {"department": "ic", "round": "2026-03-02", "naam": "Zoë 🌷"}
    text = encode_metadata("boeket.share", "C111", meta)
    assert json.loads(text) == {"f": "boeket.share", "c": "C111", "m": meta}
    assert " " not in text.replace("Zoë 🌷", "")
    assert decode_metadata(text) == ("C111", meta)
    assert decode_metadata(text, form_id="boeket.share") == ("C111", meta)
    with pytest.raises(ValueError, match=r"boeket\.answer"):
        decode_metadata(text, form_id="boeket.answer")


def test_metadata_of_the_fixture() -> None:
    view = fixture("view_submission_share.json")["view"]
    assert decode_metadata(view["private_metadata"], form_id=view["callback_id"]) == (
        "C111",
        {"department": "ic"},
    )


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "This is for you!",
        "[1, 2]",
        "null",
        '{"c": 1, "m": {}}',
        '{"c": "C1"}',
        '{"c": "C1", "m": []}',
        '{"c": "C1", "m": {"a": 1}}',
        "[" * 100_000,
    ],
)
def test_decode_metadata_refuses_garbage(garbage: str) -> None:
    with pytest.raises(ValueError, match="private_metadata"):
        decode_metadata(garbage)


def test_encode_metadata_refuses_more_than_3000() -> None:
    with pytest.raises(ValueError, match="3000"):
        encode_metadata("f", "C1", {"k": "v" * 3000})


# --- payloads → events -------------------------------------------------------------------------


def test_message_event() -> None:
    event = message_event(fixture("event_message.json"))
    assert event == MessageEvent(
        event_id="Ev111",
        channel=ChannelRef("slack", "C111"),
        person=Person("W111", "W111"),
        text=(
            "Bij ons werkte de overdracht & de checklist goed, zie "
            "de notitie (https://intranet.example/overdracht) — dank @sanne en #ic-team! <3"
        ),
        thread_id="1610261000.000100",
        workspace="T111",
    )
    # Repeating it in a harvest pings nobody and shows the text as written.
    _, blocks = payload(Message("t", (Section(event.text, quote=True),)))
    assert "&lt;3" in section_text(blocks[0])


def test_message_event_outside_a_thread() -> None:
    body = fixture("event_message.json")
    body["event"]["thread_ts"] = body["event"]["ts"]  # the parent of a thread
    event = message_event(body)
    assert event is not None and event.thread_id is None
    del body["event"]["thread_ts"]
    event = message_event(body)
    assert event is not None and event.thread_id is None


def test_thread_broadcast_is_a_persons_message() -> None:
    event = message_event(fixture("event_thread_broadcast.json"))
    assert event is not None
    assert event.text == "Ook bij ons: de dagstart van vijf minuten."
    assert event.thread_id == "1633663824.000500" and event.event_id == "Ev666"


@pytest.mark.parametrize(
    "name",
    [
        "event_message_bot.json",
        "event_message_classic_bot.json",
        "event_message_changed.json",
        "event_channel_join.json",
        "event_app_mention.json",
    ],
)
def test_not_for_boeket(name: str) -> None:
    assert message_event(fixture(name)) is None


@pytest.mark.parametrize(
    "change",
    [
        {"subtype": "message_deleted"},
        {"subtype": "channel_topic"},
        {"bot_id": "B1"},
        {"user": "USLACKBOT"},
        {"user": None},
        {"text": "<!channel>"},  # nothing left to store
        {"text": ""},
        {"hidden": True},
    ],
)
def test_other_messages_are_not_for_boeket(change: dict[str, Any]) -> None:
    body = fixture("event_message.json")
    body["event"].update(change)
    assert message_event(body) is None


def test_not_an_event_callback() -> None:
    assert message_event({"type": "url_verification", "challenge": "x"}) is None
    assert message_event({"type": "event_callback"}) is None


def test_command_event() -> None:
    body = dict(
        parse_qsl((FIXTURES / "slash_command.txt").read_text().strip(), keep_blank_values=True)
    )
    assert command_event(body) == CommandEvent(
        event_id="111.111.xxx",
        channel=ChannelRef("slack", "C111"),
        person=Person("W111", "primary-owner"),
        command="deel",
        text="De overdracht & <!here> werkt",
        workspace="T111",
    )


def test_command_event_with_blank_text_and_no_name() -> None:
    body = {"command": "/deel", "text": "", "user_id": "U1", "channel_id": "C1", "trigger_id": "t"}
    event = command_event(body)
    assert event.text == "" and event.person == Person("U1", "U1") and event.workspace == ""


def test_action_event() -> None:
    assert action_event(fixture("block_actions.json")) == ButtonEvent(
        event_id="111.222.valid",
        channel=ChannelRef("slack", "C111"),
        person=Person("W111", "primary-owner"),
        action_id="boeket.delete",
        value="42",
        message_id="111.222",
        workspace="T111",
    )


def test_action_event_from_the_container() -> None:
    body = fixture("block_actions.json")
    del body["channel"], body["message"], body["trigger_id"], body["user"]["name"]
    event = action_event(body)
    assert event is not None
    assert event.channel == ChannelRef("slack", "C111") and event.message_id == "111.222"
    assert event.event_id == "1596530385.194939" and event.person.name == "primary-owner"


def test_action_event_on_the_home_tab() -> None:
    event = action_event(fixture("block_actions_home.json"))
    assert event is not None
    assert event.home is True and event.channel == ChannelRef("slack", "")
    assert event.action_id == "boeket.edit" and event.value == "42"


def test_action_event_takes_the_first_button() -> None:
    body = fixture("block_actions.json")
    select = {"type": "static_select", "action_id": "s", "selected_option": {"value": "x"}}
    body["actions"] = [select, *body["actions"]]
    event = action_event(body)
    assert event is not None and event.action_id == "boeket.delete"


@pytest.mark.parametrize(
    "change",
    [
        {"type": "view_submission"},
        {"actions": []},
        {"actions": [{"type": "static_select", "action_id": "s"}]},
        {"user": {}},
        {"channel": None, "container": {"type": "view", "view_id": "V1"}},  # a modal
    ],
)
def test_action_event_not_for_boeket(change: dict[str, Any]) -> None:
    body = fixture("block_actions.json")
    body.update(change)
    assert action_event(body) is None


def test_view_event() -> None:
    body = fixture("view_submission_share.json")
    channel, meta = decode_metadata(body["view"]["private_metadata"])
    assert view_event(body, meta, channel) == FormEvent(
        submission_id="V111",
        form_id="boeket.share",
        channel=ChannelRef("slack", "C111"),
        person=Person("W111", "primary-owner"),
        values={
            "what": "Dagstart van vijf minuten <!channel> & meer",
            "preconditions": "Vaste tijd, staand",
            "effect": "",
            "goal": "tijd",
            "theme": "",
            "anonymous": "false",
        },
        meta={"department": "ic"},
        workspace="T111",
    )


def test_view_event_double_submit_has_the_same_submission_id() -> None:
    body = fixture("view_submission_share.json")
    first = view_event(body, {}, "C111")
    body["trigger_id"] = "333.444.other"
    assert view_event(body, {}, "C111").submission_id == first.submission_id == "V111"


def test_view_event_with_empty_state() -> None:
    body = fixture("view_submission_share.json")
    body["view"]["state"] = {}
    assert view_event(body, {}, "C1").values == {}


def test_submitted_text_is_escaped_when_repeated() -> None:
    body = fixture("view_submission_share.json")
    text = view_event(body, {}, "C111").values["what"]
    _, blocks = payload(Message("t", (Section(text, title="Sanne"),)))
    assert (
        section_text(blocks[0]) == "*Sanne*\nDagstart van vijf minuten &lt;!channel&gt; &amp; meer"
    )


# --- block_problems and view_problems ----------------------------------------------------------


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def button(action_id: str = "a", text: str = "Knop", **extra: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": plain(text), **extra}


def test_fixture_blocks_are_fine() -> None:
    view = fixture("view_submission_share.json")["view"]
    assert block_problems(view["blocks"], surface="modal") == []
    assert view_problems(view) == []


@pytest.mark.parametrize(
    ("blocks", "surface", "expected"),
    [
        ([{"type": "divider"}] * 51, "message", "at most 50"),
        ([{"type": "divider"}] * 101, "modal", "at most 100"),
        ([{"type": "divider"}] * 101, "home", "at most 100"),
        ([{"type": "header", "text": plain("x" * 151)}], "message", "150"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}], "message", "plain_text"),
        ([{"type": "header", "text": plain("")}], "message", "empty"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], "message", "3000"),
        ([{"type": "section"}], "message", "missing"),
        ([{"type": "context", "elements": []}], "message", "1 to 10"),
        (
            [{"type": "context", "elements": [{"type": "mrkdwn", "text": "x" * 3001}]}],
            "message",
            "3000",
        ),
        ([{"type": "actions", "elements": [button(text="x" * 76)]}], "message", "75"),
        ([{"type": "actions", "elements": [button(value="v" * 2001)]}], "message", "2000"),
        ([{"type": "actions", "elements": [button(style="default")]}], "message", "style"),
        ([{"type": "actions", "elements": [button(str(i)) for i in range(26)]}], "message", "25"),
        ([{"type": "actions", "elements": [button("a"), button("a")]}], "message", "twice"),
        (
            [
                {"type": "actions", "elements": [button("a")]},
                {"type": "actions", "elements": [button("a")]},
            ],
            "message",
            "twice",
        ),
        ([{"type": "actions", "elements": [button("a" * 256)]}], "message", "255"),
        ([{"type": "divider", "block_id": "b" * 256}], "message", "255"),
        (
            [{"type": "divider", "block_id": "b"}, {"type": "divider", "block_id": "b"}],
            "message",
            "twice",
        ),
        ([{"type": "no_such_block"}], "message", "no_such_block"),
        (["not a block"], "message", "not an object"),
        (
            [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 2900}}] * 5,
            "message",
            "12000",
        ),
        ([{"type": "input", "label": plain("L")}], "modal", "element is missing"),
        (
            [
                {
                    "type": "input",
                    "label": plain("L" * 2001),
                    "element": {"type": "plain_text_input", "action_id": "a"},
                }
            ],
            "modal",
            "2000",
        ),
        (
            [
                {
                    "type": "input",
                    "label": plain("L"),
                    "element": {"type": "plain_text_input", "action_id": "a", "max_length": 3001},
                }
            ],
            "modal",
            "max_length",
        ),
        (
            [
                {
                    "type": "input",
                    "label": plain("L"),
                    "element": {
                        "type": "plain_text_input",
                        "action_id": "a",
                        "max_length": 5,
                        "initial_value": "123456",
                    },
                }
            ],
            "modal",
            "initial_value",
        ),
        (
            [
                {
                    "type": "input",
                    "label": plain("L"),
                    "element": {"type": "static_select", "action_id": "a", "options": []},
                }
            ],
            "modal",
            "1 to 100",
        ),
        (
            [
                {
                    "type": "input",
                    "label": plain("L"),
                    "element": {
                        "type": "static_select",
                        "action_id": "a",
                        "options": [{"text": plain("x" * 76), "value": "v"}],
                    },
                }
            ],
            "modal",
            "75",
        ),
        (
            [
                {
                    "type": "input",
                    "label": plain("L"),
                    "element": {
                        "type": "static_select",
                        "action_id": "a",
                        "options": [{"text": plain("x"), "value": "v" * 151}],
                    },
                }
            ],
            "modal",
            "150",
        ),
        (
            [
                {
                    "type": "input",
                    "label": plain("L"),
                    "element": {
                        "type": "static_select",
                        "action_id": "a",
                        "options": [{"text": plain("x"), "value": "v"}],
                        "initial_option": {"text": plain("y"), "value": "w"},
                    },
                }
            ],
            "modal",
            "not one of the options",
        ),
        (
            [
                {
                    "type": "input",
                    "label": plain("L"),
                    "element": {
                        "type": "checkboxes",
                        "action_id": "a",
                        "options": [{"text": plain(str(i)), "value": str(i)} for i in range(11)],
                    },
                }
            ],
            "modal",
            "1 to 10",
        ),
    ],
)
def test_block_problems_finds(blocks: list[dict[str, Any]], surface: Any, expected: str) -> None:
    problems = block_problems(blocks, surface=surface)
    assert any(expected in problem for problem in problems), problems


def test_block_problems_reports_the_sdk_validation() -> None:
    problems = block_problems(
        [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], surface="message"
    )
    assert any("text attribute cannot exceed 3000 characters" in p for p in problems), problems


def test_block_problems_accepts_the_limits_exactly() -> None:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain("x" * 150)},
        {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3000}},
        {"type": "actions", "elements": [button(str(i), "y" * 75) for i in range(25)]},
        {"type": "divider", "block_id": "b" * 255},
    ]
    assert block_problems(blocks, surface="message") == []
    assert block_problems([{"type": "divider"}] * 50, surface="message") == []
    assert block_problems([{"type": "divider"}] * 100, surface="modal") == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"title": plain("x" * 25)}, "title"),
        ({"submit": plain("")}, "submit"),
        ({"close": {"type": "mrkdwn", "text": "x"}}, "close"),
        ({"private_metadata": "m" * 3001}, "private_metadata"),
        ({"callback_id": "c" * 256}, "callback_id"),
        ({"blocks": []}, "at least one block"),
        ({"type": "dialog"}, "view type"),
    ],
)
def test_view_problems_finds(change: dict[str, Any], expected: str) -> None:
    view = modal(SHARE_FORM) | change
    problems = view_problems(view)
    assert any(expected in problem for problem in problems), problems


# --- seeded random messages and forms: whatever the core sends, Slack accepts ------------------

ATOMS = (
    "<",
    ">",
    "&",
    "&amp;",
    "&lt;",
    "<!channel>",
    "<@U1|x>",
    "🌷",
    "👩‍👩‍👧",
    "\n",
    "*",
    "é",
    " ",
)
ATOMS_LONG = (*ATOMS, "x" * 50, "a" * 3000)


def random_text(rnd: random.Random, most: int = 40) -> str:
    return "".join(rnd.choice(ATOMS_LONG) for _ in range(rnd.randint(0, most)))


def random_block(rnd: random.Random) -> Block:
    match rnd.randrange(6):
        case 0:
            return Header(random_text(rnd))
        case 1:
            return Section(random_text(rnd), title=random_text(rnd, 3), quote=rnd.random() < 0.5)
        case 2:
            items = tuple(random_text(rnd) for _ in range(rnd.randint(0, 30)))
            return Bullets(items, title=random_text(rnd, 3))
        case 3:
            return Context(random_text(rnd))
        case 4:
            return Divider()
    styles: tuple[Literal["default", "primary", "danger"], ...] = ("default", "primary", "danger")
    return Actions(
        tuple(
            Button(rnd.choice("abc"), random_text(rnd, 5), str(i), rnd.choice(styles))
            for i in range(rnd.randint(0, 30))
        )
    )


@pytest.mark.parametrize("seed", range(10))
def test_random_messages_are_accepted(seed: int) -> None:
    rnd = random.Random(seed)  # noqa: S311 — seeded test data, reproducible on purpose
    for _ in range(10):
        blocks = tuple(random_block(rnd) for _ in range(rnd.randint(0, 70)))
        payload(Message(random_text(rnd), blocks))


@pytest.mark.parametrize("seed", range(5))
def test_random_forms_are_accepted(seed: int) -> None:
    rnd = random.Random(seed)  # noqa: S311 — seeded test data, reproducible on purpose
    kinds: tuple[Literal["text", "textarea", "select", "checkbox"], ...] = (
        "text",
        "textarea",
        "select",
        "checkbox",
    )
    for _ in range(5):
        fields = tuple(
            Field(
                f"f{i}",
                random_text(rnd, 10),
                kind=rnd.choice(kinds),
                required=rnd.random() < 0.5,
                max_length=rnd.choice((1, 10, 2000, 3000, 4000)),
                hint=random_text(rnd, 10),
                options=tuple(
                    Option(f"v{j}", random_text(rnd, 5)) for j in range(rnd.randint(1, 130))
                ),
                initial=rnd.choice(("", "true", "v3", "v120", random_text(rnd, 10))),
            )
            for i in range(rnd.randint(1, 40))
        )
        form = Form("f", random_text(rnd, 10), random_text(rnd, 10), fields, intro=random_text(rnd))
        modal(form, close_label=random_text(rnd, 10))
