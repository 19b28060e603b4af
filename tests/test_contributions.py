"""Flow tests: people answer, share, edit and delete through the local adapter's fake helpers."""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime

import pytest

from adapters.local.render import message_text
from bot.app import Boeket
from bot.cli import configure_logging
from bot.clock import ManualClock
from bot.contributions import (
    ANSWER_FORM,
    DELETE_ACTION,
    EDIT_ACTION,
    EDIT_FORM,
    SHARE_FORM,
    THEMES_ACTION,
    THEMES_FORM,
)
from bot.cycle import ANSWER_ACTION
from bot.domain import Kind, Source, Step
from bot.messages import Actions, Button, Ephemeral, FormDone, FormErrors, Message, ShowForm
from storage.repositories import ContributionRepository

ORG = "ziekenhuis-de-linde"
ROUND = date(2027, 3, 2)  # the Operatiekamer's Tuesday meeting
PROMPT_TIME = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)  # its prompt is due Monday 07:30 CET

SHARE = {
    "what": "Een vaste buddy voor elke nieuwe collega, de eerste zes weken.",
    "preconditions": "Buddy's krijgen er tijd voor in het rooster.",
    "effect": "Niemand van de nieuwe collega's is vertrokken.",
    "goal": "gezond-werken",
    "theme": "inwerken",
}


async def _prompt(boeket: Boeket, clock: ManualClock) -> str:
    clock.set(PROMPT_TIME)
    await boeket.cycle.tick()
    messages = boeket.local.messages("operatiekamer")
    assert len(messages) == 1
    return messages[0].id


def _repo(boeket: Boeket) -> ContributionRepository:
    return ContributionRepository(boeket.db)


async def test_thread_reply_is_stored_once_per_event(boeket: Boeket, clock: ManualClock) -> None:
    prompt = await _prompt(boeket, clock)
    for _ in range(3):  # the platform delivers the same event three times
        await boeket.local.say(
            "fatima", "operatiekamer", "De huddle werkt.", thread_id=prompt, event_id="Ev42"
        )
    stored = await _repo(boeket).all(ORG)
    assert len(stored) == 1
    c = stored[0]
    assert (c.kind, c.source, c.round_date, c.department_id) == (
        Kind.SUCCES,
        Source.REPLY,
        ROUND,
        "ok",
    )
    assert c.author is not None and c.author.name == "Fatima el Amrani"
    # The follow-up question reaches only the person who answered.
    nudges = boeket.local.ephemerals("operatiekamer", "fatima")
    assert len(nudges) == 1 and "randvoorwaarden" in nudges[0].text
    assert boeket.local.ephemerals("operatiekamer", "jeroen") == []


async def test_chatter_outside_a_prompt_thread_is_not_kept(
    boeket: Boeket, clock: ManualClock
) -> None:
    await _prompt(boeket, clock)
    await boeket.local.say("fatima", "operatiekamer", "Wie heeft de sleutel van kast 3?")
    await boeket.local.say("fatima", "leren-over-grenzen", "Hallo allemaal")
    assert await _repo(boeket).all(ORG) == []


async def test_too_long_reply_is_refused_kindly(boeket: Boeket, clock: ManualClock) -> None:
    prompt = await _prompt(boeket, clock)
    response = await boeket.local.say("fatima", "operatiekamer", "x" * 5000, thread_id=prompt)
    assert isinstance(response, Ephemeral)
    assert "5000" in response.message.text and "4000" in response.message.text
    assert await _repo(boeket).all(ORG) == []


async def test_answer_button_opens_a_form_with_the_followup_and_anonymity(
    boeket: Boeket, clock: ManualClock
) -> None:
    prompt = await _prompt(boeket, clock)
    response = await boeket.local.click(
        "jeroen", "operatiekamer", ANSWER_ACTION, ROUND.isoformat(), message_id=prompt
    )
    assert isinstance(response, ShowForm)
    names = [f.name for f in response.form.fields]
    assert names == ["text", "followup", "not_shared", "anonymous"]
    assert "randvoorwaarden" in response.form.fields[1].label  # a success asks for them
    done = await boeket.local.submit(
        "jeroen",
        "operatiekamer",
        ANSWER_FORM,
        {"text": "Minder uitloop.", "followup": "Een bufferuur.", "anonymous": "true"},
        meta=response.form.meta,
        submission_id="view-1",
    )
    assert isinstance(done, FormDone)
    again = await boeket.local.submit(
        "jeroen",
        "operatiekamer",
        ANSWER_FORM,
        {"text": "Minder uitloop.", "anonymous": "true"},
        meta=response.form.meta,
        submission_id="view-1",
    )
    assert isinstance(again, FormDone) and "al ontvangen" in again.confirmation.text
    stored = await _repo(boeket).all(ORG)
    assert len(stored) == 1
    assert stored[0].anonymous and stored[0].author is None
    assert stored[0].fields == {"followup": "Een bufferuur."}


async def test_anonymity_is_not_offered_where_the_department_does_not_allow_it(
    boeket: Boeket, clock: ManualClock
) -> None:
    clock.set(datetime(2027, 3, 7, 9, 30, tzinfo=UTC))  # ICT's prompt for Monday 8 March
    await boeket.cycle.tick()
    response = await boeket.local.click("priya", "ict", ANSWER_ACTION, "2027-03-08")
    assert isinstance(response, ShowForm)
    assert "anonymous" not in [f.name for f in response.form.fields]
    # Even a crafted submission cannot make it anonymous.
    await boeket.local.submit(
        "priya",
        "ict",
        ANSWER_FORM,
        {"text": "Het spreekuur werkt.", "anonymous": "true"},
        meta=response.form.meta,
    )
    stored = await _repo(boeket).all(ORG)
    assert len(stored) == 1 and not stored[0].anonymous
    assert stored[0].author is not None and stored[0].author.name == "Priya Ramdin"


async def test_deel_opens_the_share_form_and_validates_inline(
    boeket: Boeket, clock: ManualClock
) -> None:
    clock.set(PROMPT_TIME)
    response = await boeket.local.say("sanne", "verpleegafdeling", "/deel")
    assert isinstance(response, ShowForm)
    assert [f.name for f in response.form.fields] == [
        "what",
        "preconditions",
        "effect",
        "goal",
        "theme",
        "not_shared",
        "anonymous",
    ]
    goal_options = {o.value for o in response.form.fields[3].options}
    assert goal_options == {"veilige-zorg", "gezond-werken", "samen-met-patient"}
    errors = await boeket.local.submit(
        "sanne",
        "verpleegafdeling",
        SHARE_FORM,
        {"what": "", "preconditions": "x" * 2001, "goal": "wereldvrede", "theme": "inwerken"},
        meta=response.form.meta,
    )
    assert isinstance(errors, FormErrors)
    assert set(errors.errors) == {"what", "preconditions", "goal"}
    assert "2001" in errors.errors["preconditions"]
    assert await _repo(boeket).all(ORG) == []


async def test_share_is_stored_for_the_next_meeting_and_harvested(
    boeket: Boeket, clock: ManualClock
) -> None:
    clock.set(PROMPT_TIME)
    form = await boeket.local.say("sanne", "verpleegafdeling", "/deel de buddy werkt")
    assert isinstance(form, ShowForm)
    assert form.form.fields[0].initial == "de buddy werkt"  # text after /deel pre-fills
    done = await boeket.local.submit(
        "sanne", "verpleegafdeling", SHARE_FORM, SHARE, meta=form.form.meta
    )
    assert isinstance(done, FormDone)
    [share] = await _repo(boeket).all(ORG)
    assert share.source is Source.SHARE and share.kind is Kind.SUCCES
    assert share.round_date == date(2027, 3, 4)  # the ward meets on Thursday
    assert (share.goal_id, share.theme) == ("gezond-werken", "inwerken")
    assert share.themes == ("inwerken",) and share.themes_chosen  # her choice, not Boeket's
    assert share.shareable
    assert share.fields["preconditions"] == SHARE["preconditions"]
    # The confirmation reached only Sanne.
    assert [m.text for m in boeket.local.ephemerals("verpleegafdeling", "sanne")]
    # Thursday 14:00 CET: the harvest shows the share with its preconditions and her name.
    clock.set(datetime(2027, 3, 4, 13, 0, tzinfo=UTC))
    await boeket.cycle.tick()
    harvest = boeket.local.messages("verpleegafdeling")[-1].text
    assert SHARE["what"] in harvest and SHARE["preconditions"] in harvest
    assert "Sanne Bakker" in harvest


async def test_deel_outside_a_department_and_help(boeket: Boeket) -> None:
    response = await boeket.local.say("ilse", "leren-over-grenzen", "/deel")
    assert isinstance(response, Ephemeral)
    assert "hoort (nog) niet bij een afdeling" in response.message.text
    help_ = await boeket.local.say("ilse", "hr", "/deel help")
    assert isinstance(help_, Ephemeral)
    shown = message_text(help_.message)
    for command in ("/deel —", "/deel mijn", "/deel verwijder", "/deel help"):
        assert command in shown


async def test_people_edit_and_delete_their_own_contributions(
    boeket: Boeket, clock: ManualClock
) -> None:
    prompt = await _prompt(boeket, clock)
    await boeket.local.say("fatima", "operatiekamer", "Eerste versie.", thread_id=prompt)
    [mine] = await _repo(boeket).all(ORG)
    overview = await boeket.local.say("fatima", "operatiekamer", "/deel mijn")
    assert isinstance(overview, Ephemeral) and "Eerste versie." in message_text(overview.message)

    # Someone else cannot touch it.
    refused = await boeket.local.click("jeroen", "operatiekamer", DELETE_ACTION, str(mine.id))
    assert isinstance(refused, Ephemeral) and "niet jouw" in refused.message.text
    hijack = await boeket.local.submit(
        "jeroen",
        "operatiekamer",
        EDIT_FORM,
        {"text": "Gekaapt"},
        meta={"department": "ok", "contribution": str(mine.id)},
    )
    assert isinstance(hijack, Ephemeral)

    form = await boeket.local.click("fatima", "operatiekamer", EDIT_ACTION, str(mine.id))
    assert isinstance(form, ShowForm) and form.form.fields[0].initial == "Eerste versie."
    done = await boeket.local.submit(
        "fatima", "operatiekamer", EDIT_FORM, {"text": "Tweede versie."}, meta=form.form.meta
    )
    assert isinstance(done, FormDone)
    [edited] = await _repo(boeket).all(ORG)
    assert edited.text == "Tweede versie." and edited.updated_at >= edited.created_at

    deleted = await boeket.local.click("fatima", "operatiekamer", DELETE_ACTION, str(mine.id))
    assert isinstance(deleted, Ephemeral)
    assert await _repo(boeket).all(ORG) == []


async def test_anonymous_share_can_be_deleted_with_its_code_only(
    boeket: Boeket, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Boeket's logging as BOEKET_LOG_LEVEL=DEBUG sets it up, and every logger of Boeket at DEBUG.
    configure_logging("DEBUG")
    for logger in ("", "bot", "adapters", "storage"):
        caplog.set_level(logging.DEBUG, logger=logger)
    clock.set(PROMPT_TIME)
    form = await boeket.local.say("kees", "verpleegafdeling", "/deel")
    assert isinstance(form, ShowForm)
    done = await boeket.local.submit(
        "kees",
        "verpleegafdeling",
        SHARE_FORM,
        {**SHARE, "anonymous": "true"},
        meta=form.form.meta,
    )
    assert isinstance(done, FormDone)
    match = re.search(r"/deel verwijder ([0-9A-F]{8})", message_text(done.confirmation))
    assert match, done.confirmation
    # Nothing logged on the way names him.
    assert "Kees" not in caplog.text and "kees" not in caplog.text
    [share] = await _repo(boeket).all(ORG)
    assert share.author is None
    assert await _repo(boeket).by_author(ORG, "local", "kees") == []
    wrong = await boeket.local.say("kees", "verpleegafdeling", "/deel verwijder 00000000")
    assert isinstance(wrong, Ephemeral) and "ken ik niet" in wrong.message.text
    ok = await boeket.local.say("sanne", "verpleegafdeling", f"/deel verwijder {match[1]}")
    assert isinstance(ok, Ephemeral) and "Verwijderd" in ok.message.text
    assert await _repo(boeket).all(ORG) == []


async def test_a_reply_to_an_old_round_counts_for_that_round(
    boeket: Boeket, clock: ManualClock
) -> None:
    prompt = await _prompt(boeket, clock)
    clock.set(datetime(2027, 3, 8, 9, tzinfo=UTC))  # the next week's prompt is out too
    await boeket.cycle.tick()
    await boeket.local.say("fatima", "operatiekamer", "Nog nagekomen.", thread_id=prompt)
    [late] = await _repo(boeket).all(ORG)
    assert late.round_date == ROUND
    occ = await boeket.cycle._occurrences.get(ORG, "ok", Step.PROMPT, date(2027, 3, 9))
    assert occ is not None and occ.message_id != prompt


HANDOVER_REPLY = "We hebben de overdracht ingekort zodat de werkdruk op de avonddienst daalt."


def _buttons(message: Message) -> list[Button]:
    return [b for block in message.blocks if isinstance(block, Actions) for b in block.buttons]


async def test_a_reply_gets_its_themes_and_the_person_corrects_them(
    boeket: Boeket, clock: ManualClock
) -> None:
    prompt = await _prompt(boeket, clock)
    thanks = await boeket.local.say("fatima", "operatiekamer", HANDOVER_REPLY, thread_id=prompt)
    [reply] = await _repo(boeket).all(ORG)
    assert {"werkdruk", "overdracht"} <= set(reply.themes) and not reply.themes_chosen
    assert reply.theme == reply.themes[0]
    # She sees what Boeket found, and can correct it.
    assert isinstance(thanks, Ephemeral)
    shown = message_text(thanks.message)
    assert "Werkdruk" in shown and "Overdracht" in shown
    [correct] = _buttons(thanks.message)
    assert (correct.action_id, correct.value) == (THEMES_ACTION, str(reply.id))

    # Nobody else can.
    refused = await boeket.local.click("jeroen", "operatiekamer", THEMES_ACTION, str(reply.id))
    assert isinstance(refused, Ephemeral) and "niet jouw" in refused.message.text
    hijack = await boeket.local.submit(
        "jeroen",
        "operatiekamer",
        THEMES_FORM,
        {"theme.verzuim": "true", "not_shared": "true"},
        meta={"department": "ok", "contribution": str(reply.id)},
    )
    assert isinstance(hijack, Ephemeral)
    assert (await _repo(boeket).get(ORG, reply.id)) == reply

    form = await boeket.local.click("fatima", "operatiekamer", THEMES_ACTION, str(reply.id))
    assert isinstance(form, ShowForm)
    initial = {f.name: f.initial for f in form.form.fields}
    assert initial["theme.werkdruk"] == "true" and initial["theme.overdracht"] == "true"
    assert initial["theme.innovatie"] == "" and initial["not_shared"] == ""
    assert all(f.kind == "checkbox" for f in form.form.fields)
    # She keeps overdracht, drops werkdruk, adds inwerken.
    done = await boeket.local.submit(
        "fatima",
        "operatiekamer",
        THEMES_FORM,
        {"theme.overdracht": "true", "theme.werkdruk": "false", "theme.inwerken": "true"},
        meta=form.form.meta,
    )
    assert isinstance(done, FormDone) and "Overdracht, Inwerken" in done.confirmation.text + (
        message_text(done.confirmation)
    )
    corrected = await _repo(boeket).get(ORG, reply.id)
    assert corrected is not None
    assert corrected.themes == ("overdracht", "inwerken") and corrected.theme == "overdracht"
    assert corrected.themes_chosen and corrected.shareable

    # Editing the text keeps what she chose.
    form = await boeket.local.click("fatima", "operatiekamer", EDIT_ACTION, str(reply.id))
    assert isinstance(form, ShowForm)
    await boeket.local.submit(
        "fatima",
        "operatiekamer",
        EDIT_FORM,
        {"text": "Minder verzuim sinds de nieuwe roosters."},
        meta=form.form.meta,
    )
    edited = await _repo(boeket).get(ORG, reply.id)
    assert edited is not None and edited.themes == ("overdracht", "inwerken")


async def test_editing_finds_the_themes_again_unless_the_person_chose_them(
    boeket: Boeket, clock: ManualClock
) -> None:
    prompt = await _prompt(boeket, clock)
    await boeket.local.say("fatima", "operatiekamer", HANDOVER_REPLY, thread_id=prompt)
    [reply] = await _repo(boeket).all(ORG)
    form = await boeket.local.click("fatima", "operatiekamer", EDIT_ACTION, str(reply.id))
    assert isinstance(form, ShowForm)
    await boeket.local.submit(
        "fatima",
        "operatiekamer",
        EDIT_FORM,
        {"text": "Sinds we ziekmeldingen samen bespreken, is het verzuim gedaald."},
        meta=form.form.meta,
    )
    edited = await _repo(boeket).get(ORG, reply.id)
    assert edited is not None and edited.theme == "verzuim" and not edited.themes_chosen
    assert "werkdruk" not in edited.themes and "overdracht" not in edited.themes


async def test_a_share_without_a_chosen_theme_gets_boekets_themes(
    boeket: Boeket, clock: ManualClock
) -> None:
    clock.set(PROMPT_TIME)
    form = await boeket.local.say("fatima", "operatiekamer", "/deel")
    assert isinstance(form, ShowForm)
    done = await boeket.local.submit(
        "fatima",
        "operatiekamer",
        SHARE_FORM,
        {
            "what": "Een kortere overdracht aan het bed.",
            "preconditions": "Iedereen gebruikt hetzelfde lijstje.",
            "effect": "De werkdruk aan het eind van de dienst is gedaald.",
        },
        meta=form.form.meta,
    )
    assert isinstance(done, FormDone)
    [share] = await _repo(boeket).all(ORG)
    # Found in the preconditions and effect as well as in what worked.
    assert {"overdracht", "werkdruk"} <= set(share.themes) and not share.themes_chosen
    assert "Werkdruk" in message_text(done.confirmation)
    assert [b.action_id for b in _buttons(done.confirmation)] == [THEMES_ACTION]


async def test_an_unrelated_answer_gets_no_theme(boeket: Boeket, clock: ManualClock) -> None:
    prompt = await _prompt(boeket, clock)
    thanks = await boeket.local.say(
        "fatima", "operatiekamer", "De kerstborrel is dit jaar in de kantine.", thread_id=prompt
    )
    [reply] = await _repo(boeket).all(ORG)
    assert reply.themes == () and reply.theme is None
    assert isinstance(thanks, Ephemeral) and "geen thema" in message_text(thanks.message)


async def test_niet_delen_is_kept_and_said_back(boeket: Boeket, clock: ManualClock) -> None:
    prompt = await _prompt(boeket, clock)
    form = await boeket.local.click(
        "jeroen", "operatiekamer", ANSWER_ACTION, ROUND.isoformat(), message_id=prompt
    )
    assert isinstance(form, ShowForm)
    [field] = [f for f in form.form.fields if f.name == "not_shared"]
    assert field.kind == "checkbox" and field.initial == ""
    done = await boeket.local.submit(
        "jeroen",
        "operatiekamer",
        ANSWER_FORM,
        {"text": "Een vast lijstje bij de overdracht.", "not_shared": "true"},
        meta=form.form.meta,
    )
    assert isinstance(done, FormDone)
    assert "niet delen" in message_text(done.confirmation)
    [answer] = await _repo(boeket).all(ORG)
    assert not answer.shareable
    # The correction form shows it, and he can change his mind.
    again = await boeket.local.click("jeroen", "operatiekamer", THEMES_ACTION, str(answer.id))
    assert isinstance(again, ShowForm)
    assert {f.name: f.initial for f in again.form.fields}["not_shared"] == "true"
    await boeket.local.submit(
        "jeroen",
        "operatiekamer",
        THEMES_FORM,
        {"theme.overdracht": "true", "not_shared": "false"},
        meta=again.form.meta,
    )
    changed = await _repo(boeket).get(ORG, answer.id)
    assert changed is not None and changed.shareable and changed.themes == ("overdracht",)


async def test_an_anonymous_answer_shows_its_themes_without_a_correction_button(
    boeket: Boeket, clock: ManualClock
) -> None:
    prompt = await _prompt(boeket, clock)
    form = await boeket.local.click(
        "jeroen", "operatiekamer", ANSWER_ACTION, ROUND.isoformat(), message_id=prompt
    )
    assert isinstance(form, ShowForm)
    done = await boeket.local.submit(
        "jeroen",
        "operatiekamer",
        ANSWER_FORM,
        {"text": HANDOVER_REPLY, "anonymous": "true"},
        meta=form.form.meta,
    )
    assert isinstance(done, FormDone)
    assert "Werkdruk" in message_text(done.confirmation)
    assert _buttons(done.confirmation) == []  # linked to nobody who could correct it
