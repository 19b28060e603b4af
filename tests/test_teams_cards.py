"""Teams' pure parts: cards against the Adaptive Card 1.5 schema, text escaping, activities to
events, settings from the environment, pacing and backoff."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import replace

import pytest

from adapters.teams import cards
from adapters.teams.delivery import Pacer, next_slot, retry_delay
from adapters.teams.settings import TEAMS_LIMITS, TeamsSettings, TeamsSettingsError
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
from tests.test_teams_http import card_problems

TENANT = "0f6d7e3a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
APP = "11111111-2222-4333-8444-555555555555"
CHANNEL = "19:operatiekamer@thread.tacv2"


def test_markdown_in_peoples_words_is_escaped() -> None:
    text = "[klik hier](https://evil.example) **vet** _schuin_ `code`\n- geen lijst\n1. ook niet"
    escaped = cards.escape_markdown(text)
    assert "[klik hier](https://evil.example)" not in escaped
    assert r"\[klik hier\]\(https://evil.example\)" in escaped
    assert r"\*\*vet\*\*" in escaped and r"\_schuin\_" in escaped
    assert "\n\\- geen lijst" in escaped and "\n1\\. ook niet" in escaped


def test_incoming_text_loses_the_bots_mention_keeps_others_and_is_decoded() -> None:
    text = "<at>Boeket</at>&nbsp;Dank <at>Jan de Boer</at> &amp; team &lt;3"
    assert cards.clean_incoming(text, ["Boeket"]) == "Dank @Jan de Boer & team <3"


def test_conversation_root() -> None:
    assert cards.conversation_root(f"{CHANNEL};messageid=1700") == (CHANNEL, "1700")
    assert cards.conversation_root(CHANNEL) == (CHANNEL, None)


def message() -> Message:
    return Message(
        text="De oogst",
        blocks=(
            Header("🌷 De oogst van [OK](https://x)"),
            Section("Iemand schreef: **dit**", title="Titel", quote=True),
            Section("Gewoon"),
            Bullets(("een", "twee"), title="Lijst"),
            Divider(),
            Context("klein"),
            Actions(
                (
                    Button("boeket.answer", "Antwoorden", "2027-03-02", "primary"),
                    Button("boeket.delete", "Verwijder", "7", "danger"),
                    Button("boeket.edit", "Bewerk", "7"),
                )
            ),
        ),
    )


def test_message_card_is_a_valid_adaptive_card_with_task_fetch_buttons() -> None:
    card = cards.message_card(message())
    assert card_problems(card) == []
    assert card["version"] == "1.5"
    assert all(e.get("wrap") for e in card["body"] if e["type"] == "TextBlock")
    [action_set] = [e for e in card["body"] if e["type"] == "ActionSet"]
    styles = [a.get("style") for a in action_set["actions"]]
    assert styles == ["positive", "destructive", None]
    assert action_set["actions"][0]["data"] == {
        "verb": "boeket.answer",
        "value": "2027-03-02",
        "msteams": {"type": "task/fetch"},
    }
    assert "[OK](https://x)" not in str(card)


def test_a_huge_message_is_shortened_but_keeps_its_buttons() -> None:
    long = Message(
        text="x",
        blocks=(
            *(Section("woord " * 600) for _ in range(20)),
            Actions((Button("boeket.answer", "Antwoorden", "v"),)),
        ),
    )
    card = cards.message_card(long)
    assert card_problems(card) == []
    assert len(str(card)) < 30_000
    assert card["body"][-1]["type"] == "ActionSet"
    assert any(e.get("text") == "…" for e in card["body"])


def weekly_digest(sections: int = 40, bullets: int = 300) -> Message:
    """A digest as the core composes one: every block kind, far more than fits in one card."""
    words = "Één team 🌷 leerde dat *overdracht* [aan het bed] werkt — ‘vijf punten’ 🏥 "
    return Message(
        text="Wat groeide er deze week",
        blocks=(
            Header("🌷 Wat groeide er deze week in Ziekenhuis De Linde"),
            Context("Week 9 · 1–7 maart 2027"),
            Divider(),
            *(
                Section(words * 30, title=f"Afdeling {i}", quote=i % 2 == 0)
                for i in range(sections)
            ),
            Bullets(tuple(f"Patroon {i}: {words}" for i in range(bullets)), title="Patronen"),
            Context("Reageer met de knoppen hieronder."),
            Actions(
                (
                    Button("boeket.digest.open", "Open het dashboard", "w9", "primary"),
                    Button("boeket.digest.more", "Meer", "w9"),
                )
            ),
        ),
    )


def test_any_neutral_message_fits_teams_size_limit_and_is_cut_cleanly() -> None:
    digest = weekly_digest()
    card = cards.message_card(digest)
    assert card_problems(card) == []
    encoded = json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(encoded) <= cards.CARD_BUDGET
    activity = json.dumps(cards.message_activity(digest), ensure_ascii=False).encode()
    assert len(activity) < 28 * 1024  # Teams' limit for a whole message
    body = card["body"]
    assert body[0]["text"].startswith("🌷 Wat groeide er")  # the beginning is kept
    assert body[-1]["type"] == "ActionSet"
    assert [a["title"] for a in body[-1]["actions"]] == ["Open het dashboard", "Meer"]
    assert body[-2]["text"] == "…"
    # The last text before the "…" is cut at a word, not in an escape or a word.
    texts = [e for e in body[:-2] if e.get("type") == "TextBlock"] + [
        item for e in body[:-2] if e.get("type") == "Container" for item in e["items"]
    ]
    cut = [t["text"] for t in texts if t["text"].endswith(" …")]
    assert len(cut) <= 1
    for text in cut:
        assert not text[:-2].endswith("\\") and text[:-2] == text[:-2].rstrip()
    # Most of the budget is used: cutting is not dropping whole sections needlessly.
    assert len(encoded) > cards.CARD_BUDGET * 0.9


@pytest.mark.parametrize(("sections", "bullets"), [(0, 0), (1, 0), (0, 1000), (3, 5)])
def test_messages_of_any_size_are_valid_cards_under_the_limit(sections: int, bullets: int) -> None:
    card = cards.message_card(weekly_digest(sections, bullets))
    assert card_problems(card) == []
    size = len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode())
    assert size <= cards.CARD_BUDGET
    assert card["body"][-1]["type"] == "ActionSet"


def test_long_text_is_cut_at_a_word() -> None:
    text = "overdracht " * 500
    card = cards.message_card(Message(text="x", blocks=(Section(text),)))
    shown = card["body"][0]["text"]
    assert len(shown) <= cards.MAX_TEXT and shown.endswith("…")
    assert shown[:-1].rstrip().endswith("overdracht")


def test_received_card_marks_once_and_keeps_the_buttons() -> None:
    card = cards.message_card(message())
    marked = cards.received_card(card, "Ontvangen.")
    assert card_problems(marked) == []
    assert cards.received_card(marked, "Ontvangen.") == marked  # once, however many answers
    assert marked["body"][-1] == card["body"][-1]  # the buttons stay last
    assert [e for e in marked["body"] if e.get("id") != "boeket-received"] == card["body"]
    assert "Ontvangen" not in json.dumps(card)


def share_form() -> Form:
    return Form(
        form_id="boeket.share",
        title="Deel een succes",
        submit_label="Versturen",
        intro="Wat ging goed?",
        fields=(
            Field("what", "Wat", kind="textarea", required=True, max_length=2000, hint="kort"),
            Field("goal", "Doel", kind="select", options=(Option("g1", "Veilig"),)),
            Field("theme", "Thema", kind="select"),
            Field("anonymous", "Anoniem", kind="checkbox", initial="true"),
        ),
        meta={"department": "ok"},
    )


def test_form_card_is_valid_and_round_trips_through_its_submit_data() -> None:
    form = share_form()
    card = cards.form_card(form, submission="abc", channel=CHANNEL)
    assert card_problems(card) == []
    kinds = [(e["type"], e.get("id")) for e in card["body"] if e["type"].startswith("Input.")]
    assert kinds == [
        ("Input.Text", "what"),
        ("Input.ChoiceSet", "goal"),
        ("Input.Toggle", "anonymous"),
    ]
    what = card["body"][1]
    assert what["isMultiline"] and what["isRequired"] and what["maxLength"] == 2000
    assert what["errorMessage"]
    [submit] = card["actions"]
    data = {**submit["data"], "what": "Iets", "goal": "g1", "anonymous": "true"}
    rebuilt = cards.submitted_form(data)
    assert rebuilt is not None
    assert rebuilt == replace(form, fields=tuple(replace(f, initial="") for f in form.fields))
    with_errors = cards.form_card(
        form, submission="abc", channel=CHANNEL, values={"what": "x"}, errors={"what": "Te kort"}
    )
    assert card_problems(with_errors) == []
    assert {
        "type": "TextBlock",
        "text": "Te kort",
        "wrap": True,
        "color": "Attention",
        "spacing": "None",
    } in with_errors["body"]


def test_a_form_asked_for_in_a_message_becomes_a_button_that_opens_it() -> None:
    what, *rest = share_form().fields
    form = replace(share_form(), fields=(replace(what, initial="De **nieuwe** planning"), *rest))
    card = cards.open_form_card(form, channel=CHANNEL)
    assert card_problems(card) == []
    assert not [e for e in card["body"] if e["type"].startswith("Input.")]
    [button] = card["actions"]
    assert button["type"] == "Action.Submit" and button["title"] == "Deel een succes"
    assert button["data"]["msteams"] == {"type": "task/fetch"}
    opened = cards.opened_form(button["data"])
    assert opened is not None
    rebuilt, channel, values = opened
    assert channel == CHANNEL
    assert rebuilt == replace(form, fields=tuple(replace(f, initial="") for f in form.fields))
    assert values == {"what": "De **nieuwe** planning", "anonymous": "true"}
    # The button is not a form: its click is no submission, and damaged data opens nothing.
    assert cards.form_routing(button["data"]) is None
    assert cards.opened_form({"verb": "boeket.open", "boeket_open": {"form": "x"}}) is None
    assert cards.opened_form({"boeket_open": "kapot"}) is None


def activity(**extra: object) -> dict[str, object]:
    return {
        "type": "message",
        "id": "1700000000200",
        "channelId": "msteams",
        "from": {"id": "29:1fatima", "name": "Fatima"},
        "recipient": {"id": f"28:{APP}", "name": "Boeket"},
        "conversation": {
            "conversationType": "channel",
            "tenantId": TENANT,
            "id": f"{CHANNEL};messageid=1700000000100",
        },
        "channelData": {"channel": {"id": CHANNEL}, "tenant": {"id": TENANT}},
        "entities": [
            {
                "type": "mention",
                "mentioned": {"id": f"28:{APP}", "name": "Boeket"},
                "text": "<at>Boeket</at>",
            }
        ],
        **extra,
    }


def test_a_reply_in_a_thread_names_its_root() -> None:
    event = cards.message_event(activity(text="<at>Boeket</at> Het werkt goed."))
    assert isinstance(event, MessageEvent)
    assert event.thread_id == "1700000000100" and event.text == "Het werkt goed."
    assert event.channel.channel == CHANNEL and event.workspace == TENANT


def test_commands_from_the_menu_but_not_answers_that_start_with_deel() -> None:
    top = activity(
        text="<at>Boeket</at> deel De nieuwe planning",
        id="1700000000100",
    )
    command = cards.message_event(top)
    assert isinstance(command, CommandEvent)
    assert (command.command, command.text) == ("deel", "De nieuwe planning")
    answer = cards.message_event(activity(text="<at>Boeket</at> Deel van het team vond het fijn"))
    assert isinstance(answer, MessageEvent)
    assert isinstance(cards.message_event(activity(text="help")), CommandEvent)
    assert cards.message_event(activity(text="<at>Boeket</at>")) is None
    assert cards.message_event(activity(text="x", value={"verb": "a"})) is None


def test_zoek_from_the_menu_is_deel_zoek_but_an_answer_that_starts_with_it_is_an_answer() -> None:
    top = activity(text="<at>Boeket</at> zoek verzuim in de avonddienst", id="1700000000100")
    command = cards.message_event(top)
    assert isinstance(command, CommandEvent)
    assert (command.command, command.text) == ("deel", "zoek verzuim in de avonddienst")
    answer = cards.message_event(activity(text="<at>Boeket</at> Zoek het niet te ver: bel even"))
    assert isinstance(answer, MessageEvent)


def test_clicks_and_dialog_submits() -> None:
    fetch = activity(
        type="invoke",
        name="task/fetch",
        replyToId="1700000000100",
        value={"data": {"verb": "boeket.answer", "value": "2027-03-02", "msteams": {}}},
    )
    click = cards.interaction_event(fetch)
    assert isinstance(click, ButtonEvent)
    assert (click.action_id, click.value, click.message_id) == (
        "boeket.answer",
        "2027-03-02",
        "1700000000100",
    )
    form_card = cards.form_card(share_form(), submission="s1", channel=CHANNEL)
    data = {**form_card["actions"][0]["data"], "what": "Iets", "anonymous": True}
    submit = cards.interaction_event(
        activity(type="invoke", name="task/submit", value={"data": data})
    )
    assert isinstance(submit, FormEvent)
    # One key per person and dialog (a double click stores once), without the person's id in it:
    # it becomes part of an anonymous answer's stored key.
    assert submit.submission_id == cards.submission_key("29:1fatima", "s1")
    assert "fatima" not in submit.submission_id
    assert cards.submission_key("29:1jeroen", "s1") != submit.submission_id
    assert cards.submission_key("29:1fatima", "s2") != submit.submission_id
    assert submit.values == {"what": "Iets", "anonymous": "true"}
    assert submit.meta == {"department": "ok"}


def test_install_and_channel_created_name_the_channels_to_remember() -> None:
    install = activity(
        type="conversationUpdate",
        membersAdded=[{"id": f"28:{APP}"}],
        channelData={
            "team": {"id": "19:general@thread.tacv2"},
            "eventType": "teamMemberAdded",
            "tenant": {"id": TENANT},
        },
        conversation={"id": "19:general@thread.tacv2", "tenantId": TENANT},
    )
    assert cards.channels_to_remember(install) == ["19:general@thread.tacv2"]
    created = activity(
        type="conversationUpdate",
        channelData={
            "team": {"id": "19:general@thread.tacv2"},
            "channel": {"id": CHANNEL},
            "eventType": "channelCreated",
        },
    )
    assert cards.channels_to_remember(created) == ["19:general@thread.tacv2", CHANNEL]
    assert cards.channels_to_remember(activity(type="conversationUpdate")) == []


# --- settings -----------------------------------------------------------------------------------


def test_settings_from_the_environment() -> None:
    assert TeamsSettings.from_env({}) is None
    full = TeamsSettings.from_env(
        {"TEAMS_CLIENT_ID": APP, "TEAMS_CLIENT_SECRET": "s", "TEAMS_TENANT_ID": TENANT}
    )
    assert full is not None and full.authenticated and not full.dev_mode
    dev = TeamsSettings.from_env({"TEAMS_DEV_MODE": "true"})
    assert dev is not None and dev.dev_mode and not dev.authenticated


def test_sovereign_cloud_urls_from_the_environment() -> None:
    base = {"TEAMS_CLIENT_ID": APP, "TEAMS_CLIENT_SECRET": "s", "TEAMS_TENANT_ID": TENANT}
    public = TeamsSettings.from_env(base)
    assert public is not None
    assert public.openid_metadata_url == (
        "https://login.botframework.com/v1/.well-known/openidconfiguration"
    )
    assert public.login_url == "https://login.microsoftonline.com"
    gov = TeamsSettings.from_env(
        {
            **base,
            "TEAMS_OPENID_METADATA_URL": (
                "https://login.botframework.azure.us/v1/.well-known/openidconfiguration"
            ),
            "TEAMS_LOGIN_URL": "https://login.microsoftonline.us",
        }
    )
    assert gov is not None and gov.login_url == "https://login.microsoftonline.us"
    local = TeamsSettings.from_env({**base, "TEAMS_LOGIN_URL": "http://127.0.0.1:8123"})
    assert local is not None and local.login_url == "http://127.0.0.1:8123"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        (
            {"TEAMS_OPENID_METADATA_URL": "http://login.example.org/meta"},
            "TEAMS_OPENID_METADATA_URL",
        ),
        ({"TEAMS_LOGIN_URL": "login.microsoftonline.us"}, "TEAMS_LOGIN_URL"),
    ],
)
def test_token_urls_must_be_https(env: dict[str, str], name: str) -> None:
    base = {"TEAMS_CLIENT_ID": APP, "TEAMS_CLIENT_SECRET": "s", "TEAMS_TENANT_ID": TENANT}
    with pytest.raises(TeamsSettingsError) as caught:
        TeamsSettings.from_env({**base, **env})
    assert caught.value.name == name


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"TEAMS_CLIENT_ID": APP}, "TEAMS_CLIENT_SECRET"),
        ({"TEAMS_CLIENT_SECRET": "s"}, "TEAMS_CLIENT_ID"),
        ({"TEAMS_CLIENT_ID": APP, "TEAMS_CLIENT_SECRET": "s"}, "TEAMS_TENANT_ID"),
        (
            {"TEAMS_CLIENT_ID": "bot", "TEAMS_CLIENT_SECRET": "s", "TEAMS_TENANT_ID": TENANT},
            "TEAMS_CLIENT_ID",
        ),
        ({"TEAMS_TENANT_ID": TENANT}, "TEAMS_CLIENT_ID"),
        ({"TEAMS_DEV_MODE": "misschien"}, "TEAMS_DEV_MODE"),
        ({"TEAMS_DEV_MODE": "true", "TEAMS_TENANT_ID": "contoso"}, "TEAMS_TENANT_ID"),
        (
            {
                "TEAMS_DEV_MODE": "true",
                "TEAMS_CLIENT_ID": APP,
                "TEAMS_CLIENT_SECRET": "s",
                "TEAMS_TENANT_ID": TENANT,
            },
            "TEAMS_DEV_MODE",
        ),
    ],
)
def test_half_set_teams_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(TeamsSettingsError) as caught:
        TeamsSettings.from_env(env)
    assert caught.value.name == name and name in str(caught.value)


# --- pacing and backoff -------------------------------------------------------------------------


def most_in_any_window(moments: list[float], seconds: float) -> int:
    """The largest number of `moments` inside one half-open window (t - seconds, t]."""
    ordered = sorted(moments)
    return max(sum(1 for m in ordered if end - seconds < m <= end) for end in ordered)


def test_pacing_keeps_every_teams_window_even_for_a_long_queue() -> None:
    sent: deque[float] = deque()
    slots = [next_slot(sent, 0.0, TEAMS_LIMITS) for _ in range(200)]
    assert slots[:7] == [0.0] * 7  # a burst goes at once
    assert slots == sorted(slots)
    for count, seconds in TEAMS_LIMITS:
        assert most_in_any_window(slots, seconds) <= count, (count, seconds)
    # Not slower than it must be: the 60-in-30-seconds window is full, not half empty.
    assert most_in_any_window(slots, 30.0) == 60
    # 1800 an hour: the 1801st message of a sustained stream waits for the hour to pass.
    hour: deque[float] = deque()
    moments = [next_slot(hour, 0.0, TEAMS_LIMITS) for _ in range(1801)]
    assert moments[-1] >= 3600.0
    assert most_in_any_window(moments, 3600.0) == 1800


async def test_pacer_waits_per_conversation() -> None:
    now = [0.0]
    waited: dict[str, float] = {}
    current = [""]

    async def sleep(seconds: float) -> None:
        waited[current[0]] = waited.get(current[0], 0.0) + seconds

    pacer = Pacer(TEAMS_LIMITS, monotonic=lambda: now[0], sleep=sleep)
    current[0] = "busy"
    for _ in range(20):
        await pacer.wait("19:busy@thread.tacv2")
    current[0] = "quiet"
    await pacer.wait("19:quiet@thread.tacv2")  # not queued behind the busy channel
    assert waited.get("busy", 0.0) > 0
    assert "quiet" not in waited


def test_retry_delay_honours_retry_after_else_backs_off_with_jitter() -> None:
    assert retry_delay(0, {"Retry-After": "3"}, base=1.0) == 3.0
    assert retry_delay(0, {"Retry-After": "9999"}, base=1.0) == 60.0
    assert retry_delay(2, {}, base=1.0, jitter=1.0) == 4.0
    assert retry_delay(2, None, base=1.0, jitter=0.0) == 2.0
    assert 2.0 <= retry_delay(2, {"Retry-After": "soon"}, base=1.0) <= 4.0


# --- a prompt card with its own answer form --------------------------------------------------


def inline_answer(*, anonymous: bool) -> Message:
    """A prompt as the core composes one: the answer button carries the short answer form."""
    fields = [
        Field("text", "Je antwoord", kind="textarea", required=True, max_length=4000),
        Field("not_shared", "Niet delen buiten ons team", kind="checkbox"),
    ]
    if anonymous:
        fields.append(
            Field(
                "anonymous",
                "Anoniem of op naam?",
                kind="select",
                hint="Kies je niets, dan geldt je eigen instelling.",
                options=(Option("false", "Op naam"), Option("true", "Anoniem")),
            )
        )
    form = Form(
        form_id="boeket.answer",
        title="Jouw antwoord",
        submit_label="Versturen",
        fields=tuple(fields),
        meta={"department": "ok", "round": "2027-03-02"},
        intro="Antwoord hier kort, of kies Antwoorden voor het hele formulier.",
    )
    button = Button("boeket.answer", "Antwoorden", "2027-03-02", "primary", inline=form)
    return Message(
        text="Vraag", blocks=(Header("🌷 Succes"), Section("Wat ging er goed?"), Actions((button,)))
    )


def inline_inputs(card: dict[str, object]) -> dict[str, dict[str, object]]:
    body = card["body"]
    assert isinstance(body, list)
    [container] = [e for e in body if e.get("id") == cards.INLINE_ID]
    return {e["id"]: e for e in container["items"] if e["type"].startswith("Input.")}


def card_actions(card: dict[str, object]) -> list[dict[str, object]]:
    body = card["body"]
    assert isinstance(body, list)
    return [a for e in body if e["type"] == "ActionSet" for a in e["actions"]]


@pytest.mark.parametrize("anonymous", [True, False])
def test_a_prompt_card_holds_its_answer_form_and_a_submit(anonymous: bool) -> None:
    card = cards.message_card(inline_answer(anonymous=anonymous))
    assert card_problems(card) == []
    inputs = inline_inputs(card)
    text = inputs["text"]
    assert text["type"] == "Input.Text" and text["isMultiline"] is True
    assert text["maxLength"] == 4000 and text["isRequired"] is True
    assert inputs["not_shared"]["type"] == "Input.Toggle"
    if anonymous:
        choice = inputs["anonymous"]
        assert choice["type"] == "Input.ChoiceSet"
        choices = choice["choices"]
        assert isinstance(choices, list)
        assert [c["value"] for c in choices] == ["false", "true"]
        assert "value" not in choice and not choice.get("isRequired")
    else:
        assert "anonymous" not in inputs
    send, answer = card_actions(card)
    assert send["type"] == "Action.Submit" and send["title"] == "Versturen"
    data = send["data"]
    assert isinstance(data, dict)
    assert data["verb"] == cards.INLINE_VERB and "msteams" not in data
    assert data[cards.INLINE_KEY]["meta"] == {"department": "ok", "round": "2027-03-02"}
    # The dialog button opens the full form without waiting for the required answer box.
    assert answer["data"]["msteams"] == {"type": "task/fetch"}  # type: ignore[index]
    assert answer["associatedInputs"] == "none"


def test_a_huge_prompt_keeps_its_answer_form_under_the_size_limit() -> None:
    prompt = inline_answer(anonymous=True)
    long = replace(prompt, blocks=(*(Section("woord " * 600) for _ in range(20)), *prompt.blocks))
    card = cards.message_card(long)
    assert card_problems(card) == []
    size = len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode())
    assert size <= cards.CARD_BUDGET
    assert list(inline_inputs(card)) == ["text", "not_shared", "anonymous"]
    assert [a["title"] for a in card_actions(card)] == ["Versturen", "Antwoorden"]
    assert any(e.get("text") == "…" for e in card["body"])


def test_an_answer_sent_from_the_card_is_a_form_submit_keyed_by_its_activity() -> None:
    card = cards.message_card(inline_answer(anonymous=True))
    [send] = [a for a in card_actions(card) if a["data"]["verb"] == cards.INLINE_VERB]  # type: ignore[index]
    data = send["data"]
    assert isinstance(data, dict)
    value = {**data, "text": "Dit werkte.", "not_shared": "false", "anonymous": "true"}
    submit = activity(replyToId="1700000000100", value=value)
    submit.pop("text", None)
    event = cards.interaction_event(submit)
    assert isinstance(event, FormEvent)
    assert event.form_id == "boeket.answer"
    assert event.meta == {"department": "ok", "round": "2027-03-02"}
    assert event.values == {"text": "Dit werkte.", "not_shared": "false", "anonymous": "true"}
    assert event.channel.channel == CHANNEL
    # Teams delivering it again gives the same key; another submit, or another channel's, not.
    assert cards.interaction_event(dict(submit)) == event
    other = cards.interaction_event({**submit, "id": "1700000000300"})
    assert isinstance(other, FormEvent) and other.submission_id != event.submission_id
    # The key names nobody: an anonymous answer is stored with it.
    assert "fatima" not in event.submission_id.lower()
    jeroen = {**submit, "from": {"id": "29:1jeroen", "name": "Jeroen"}}
    assert cards.interaction_event(jeroen) is not None
    # Without an activity id there is no key to store it under once: not taken.
    assert cards.interaction_event({**submit, "id": ""}) is None
    # The card's own submit never arrives as an invoke: one that claims to is not taken.
    assert cards.interaction_event({**submit, "type": "invoke", "value": {"data": value}}) is None
    assert cards.inline_form(value) is not None
    assert cards.inline_form({**value, "verb": "boeket.form"}) is None


def test_marking_a_prompt_card_received_keeps_its_form() -> None:
    card = cards.message_card(inline_answer(anonymous=True))
    once = cards.received_card(card, "1 antwoord ontvangen")
    twice = cards.received_card(once, "2 antwoorden ontvangen")
    assert card_problems(twice) == []
    marks = [e["text"] for e in twice["body"] if e.get("id") == "boeket-received"]
    assert marks == ["✓ 2 antwoorden ontvangen"]
    assert inline_inputs(twice) == inline_inputs(card)
    assert [e for e in twice["body"] if e.get("id") != "boeket-received"] == card["body"]


def test_an_inline_form_may_not_use_the_routing_names() -> None:
    bad = Form("boeket.answer", "T", "S", (Field(cards.INLINE_KEY, "x"),))
    message = Message("m", (Actions((Button("boeket.answer", "A", inline=bad),)),))
    with pytest.raises(ValueError, match="field names"):
        cards.message_card(message)


def test_recent_submits_take_the_same_values_from_the_same_person_and_card_as_one() -> None:
    now = [1000.0]
    recent = cards.RecentSubmits(window=120.0, clock=lambda: now[0])
    values = {"text": "Het werkt.", "anonymous": "true"}

    assert recent.first("29:1fatima", "card1", values, "a") == "a"
    now[0] += 5
    assert recent.first("29:1fatima", "card1", dict(values), "b") == "a"  # a double click
    assert recent.first("29:1jeroen", "card1", values, "c") == "c"  # another person
    assert recent.first("29:1fatima", "card2", values, "d") == "d"  # another card
    assert recent.first("29:1fatima", "card1", {**values, "text": "Anders."}, "e") == "e"
    now[0] += 200  # past the window: a new submit
    assert recent.first("29:1fatima", "card1", values, "f") == "f"
    # Nothing in it names the person: only salted hashes are kept.
    assert "fatima" not in repr(recent._seen)
