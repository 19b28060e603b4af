"""Pure functions between Teams activities and Boeket's neutral messages, forms and events.

No I/O, no state and no SDK types: activities come in as the JSON Teams sends, cards go out as the
JSON of an Adaptive Card 1.5 (the version Teams renders). The adapter hands these the payloads.

Text rules:

* Adaptive Card `TextBlock`s render a markdown subset (bold, italic, lists, `[label](url)` links).
  A person's words go through `escape_markdown`, so they are shown as typed and never become a
  hidden link or formatting. Our own emphasis (titles) uses the `weight` property, not markdown.
* Incoming message text carries mentions as `<at>Name</at>` and HTML entities (`&nbsp;` after a
  mention); `clean_incoming` removes Boeket's own mention, keeps others as `@Name`, and decodes.

Threads in a Teams channel: a channel's conversation id is `19:…@thread.tacv2`. Every message in
a thread — the root post and each reply — arrives with the conversation id
`19:…@thread.tacv2;messageid=<root id>`, where `<root id>` is the activity id of the thread's
first post. A root post therefore has `activity.id == <root id>`; a reply has its own id. Boeket's
`thread_id` for a reply is that root id, which is the `message_id` the adapter recorded when it
posted the prompt, so the core finds the prompt the reply belongs to.

Buttons are `Action.Submit` with `data.msteams.type = "task/fetch"`: a click arrives as a
`task/fetch` invoke, whose answer (a dialog, or a card in a dialog) only the person who clicked
sees — Teams has no ephemeral messages, and this is the one private answer a click can get.
The button's own data is `{"verb": action_id, "value": value}`, the shape the SDK's
`adaptive_card.action_submit(verb)` routes on when the same card is submitted as a message.

A button may come with a short form (`Button.inline`, the prompt's answer): its inputs go in
the card itself, with a plain `Action.Submit` that Teams sends as a message activity whose
`value` holds the inputs. Anyone in the channel can answer there without opening a dialog.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from bot.domain import ChannelRef, Person
from bot.messages import (
    Actions,
    Block,
    Bullets,
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

PLATFORM = "teams"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.5"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
ELLIPSIS = "…"
FORM_VERB = "boeket.form"
FORM_KEY = "boeket_form"  # the hidden routing data of a form's submit action
OPEN_VERB = "boeket.open"
OPEN_KEY = "boeket_open"  # the hidden data of a button that opens a form in a dialog
INLINE_VERB = "boeket.inline"
INLINE_KEY = "boeket_inline"  # the hidden routing data of a form shown in a posted card
INLINE_ID = "boeket-inline"  # the Container that holds that form's inputs
KEY_PREFIX = "boeket-key:"  # the id of a hidden Container that carries a post's idempotency key
COMMANDS = frozenset({"deel", "share", "help", "hulp"})
# Sub-commands of `deel` that Teams' command menu offers on their own: "zoek X" is "deel zoek X".
OWN_COMMANDS = frozenset({"zoek", "search"})
SHARE_COMMAND_ID = "deel"  # the message extension's action command (manifest.py)

MAX_TEXT = 4000  # characters of one TextBlock: a person's text is shortened, never refused
MAX_TITLE = 200
MAX_BUTTON = 60
CARD_BUDGET = 24_000
"""Bytes of compact card JSON (UTF-8). Teams refuses a message over about 28 KB, envelope
included; past this budget the text is cut at a word, the rest gives way to "…", and the
buttons stay."""

_RESERVED = frozenset({FORM_KEY, OPEN_KEY, INLINE_KEY, "verb", "value", "msteams"})

# --- text --------------------------------------------------------------------------------------

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!~|<>])")
# Indentation within the line only: `\s*` would span lines, and thousands of empty lines
# would cost minutes of backtracking.
_LIST_START = re.compile(r"^([ \t]*)([-+]|\d+[.)])(\s)", re.MULTILINE)


def escape_markdown(text: str) -> str:
    """Backslash-escape what Teams' card markdown would read as formatting, links or lists.

    `[klik hier](https://…)` stays visible as typed; `**` stays two stars; a line starting with
    "- " or "1. " stays a line, not a list item.
    """
    escaped = _MARKDOWN.sub(r"\\\1", text)

    def unlist(match: re.Match[str]) -> str:
        marker = match.group(2)
        marker = f"\\{marker}" if marker in "-+" else f"{marker[:-1]}\\{marker[-1]}"
        return f"{match.group(1)}{marker}{match.group(3)}"

    return _LIST_START.sub(unlist, escaped)


def _cut(text: str, limit: int) -> str:
    """`text` in at most `limit` characters: cut at a word when one ends near the limit."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space >= limit * 0.8:
        head = head[:space]
    return head.rstrip() + ELLIPSIS


def _person_text(text: str, limit: int = MAX_TEXT) -> str:
    """A person's (or a prompt's) plain text, shortened and escaped for a TextBlock."""
    return escape_markdown(_cut(text, limit))


# No `<` inside a mention or a tag: Teams sends a typed `<` as `&lt;`, so every raw `<` starts
# markup. It also keeps both linear: `.*?` or `[^>]+` rescan the rest of a long text for each
# unclosed `<at>` or `<`.
_AT = re.compile(r"<at(?:\s[^<>]*)?>([^<]*)</at>", re.IGNORECASE)
_TAG = re.compile(r"<[^<>]+>")


def clean_incoming(text: str, bot_names: Iterable[str] = ()) -> str:
    """Plain text from a Teams message: the bot's mention removed, other mentions as `@Name`."""
    bots = {n.strip().lower() for n in bot_names if n.strip()}

    def mention(match: re.Match[str]) -> str:
        name = html.unescape(match.group(1)).strip()
        return "" if name.lower() in bots else f"@{name}"

    plain = _TAG.sub("", _AT.sub(mention, text))
    plain = html.unescape(plain).replace("\xa0", " ")
    return re.sub(r"[ \t]{2,}", " ", plain).strip()


# --- messages → cards --------------------------------------------------------------------------


def _text_block(text: str, **props: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **props}


def _button_data(action_id: str, value: str) -> dict[str, Any]:
    return {"verb": action_id, "value": value, "msteams": {"type": "task/fetch"}}


def _elements(block: Block) -> list[dict[str, Any]]:
    match block:
        case Header(text=text):
            text = " ".join(text.split())
            if not text:
                return []
            return [
                _text_block(
                    _person_text(text, MAX_TITLE), size="Large", weight="Bolder", style="heading"
                )
            ]
        case Section(text=text, title=title, quote=quote):
            items: list[dict[str, Any]] = []
            if title.strip():
                items.append(_text_block(_person_text(title.strip(), MAX_TITLE), weight="Bolder"))
            if text.strip():
                body = _text_block(_person_text(text))
                if quote:
                    items.append({"type": "Container", "style": "emphasis", "items": [body]})
                else:
                    items.append(body)
            return items
        case Bullets(items=bullets, title=title):
            out: list[dict[str, Any]] = []
            if title.strip():
                out.append(_text_block(_person_text(title.strip(), MAX_TITLE), weight="Bolder"))
            out += [
                _text_block("• " + _person_text(item), spacing="Small")
                for item in bullets
                if item.strip()
            ]
            return out
        case Context(text=text):
            if not text.strip():
                return []
            return [_text_block(_person_text(text), size="Small", isSubtle=True)]
        case Divider():
            return [{"type": "Container", "separator": True, "spacing": "Medium", "items": []}]
        case Actions(buttons=buttons):
            inline = next((b.inline for b in buttons if b.inline is not None), None)
            out = [] if inline is None else [_inline_inputs(inline)]
            actions = [] if inline is None else [_inline_submit(inline)]
            for b in buttons:
                action: dict[str, Any] = {
                    "type": "Action.Submit",
                    "title": _cut(b.label, MAX_BUTTON) or ELLIPSIS,
                    "data": _button_data(b.action_id, b.value),
                }
                if inline is not None:
                    # Teams checks a card's required inputs before any submit: a button that
                    # opens a dialog must not wait for the answer typed next to it.
                    action["associatedInputs"] = "none"
                elif b.style == "primary":
                    action["style"] = "positive"
                if b.style == "danger":
                    action["style"] = "destructive"
                actions.append(action)
            if actions:
                out.append({"type": "ActionSet", "actions": actions})
            return out
    raise TypeError(f"unknown block {block!r}")  # pragma: no cover


def _inline_inputs(form: Form) -> dict[str, Any]:
    """The inputs of a form shown in a posted card, in one Container that `_fit` keeps whole."""
    _check_names(form)
    items: list[dict[str, Any]] = []
    if form.intro.strip():
        items.append(_text_block(_person_text(form.intro), size="Small", isSubtle=True))
    for field in form.fields:
        element = _input(field, field.initial)
        if element is None:
            continue
        if field.kind == "select" and not field.required:
            element["placeholder"] = ELLIPSIS  # nothing chosen is an answer: "my own default"
        items.append(element)
        if field.hint.strip() and field.kind != "checkbox":
            items.append(_text_block(_person_text(field.hint), size="Small", isSubtle=True))
    return {"type": "Container", "id": INLINE_ID, "items": items}


def _inline_submit(form: Form) -> dict[str, Any]:
    """The submit of a form in a posted card: a plain `Action.Submit`, which Teams delivers as
    a message activity whose `value` holds the inputs and this data. The data names no person
    and no submission: the card is the same for everyone in the channel."""
    routing = {"form": form.form_id, "meta": dict(form.meta), "spec": form_spec(form)}
    return {
        "type": "Action.Submit",
        "title": _cut(form.submit_label, MAX_BUTTON) or ELLIPSIS,
        "style": "positive",
        "data": {"verb": INLINE_VERB, INLINE_KEY: routing},
    }


def _card(
    body: list[dict[str, Any]], actions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return card


def _size(data: Any) -> int:
    """Bytes of `data` as compact JSON in UTF-8: what counts against Teams' message size."""
    return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())


def _shorten_to(element: dict[str, Any], room: int) -> dict[str, Any] | None:
    """`element` (a TextBlock, or a quote's Container of one) cut at a word to fit `room` bytes."""
    if element.get("type") == "Container" and len(element.get("items", [])) == 1:
        inner = _shorten_to(
            element["items"][0], room - (_size(element) - _size(element["items"][0]))
        )
        return None if inner is None else {**element, "items": [inner]}
    text = element.get("text")
    if element.get("type") != "TextBlock" or not isinstance(text, str):
        return None
    keep = len(text)
    while keep > 80:
        # Cut where a word ends: escapes (`\*`) hold no spaces, so none is split in two.
        head = text[:keep]
        space = head.rfind(" ")
        head = head[:space] if space > keep // 2 else head.rstrip("\\")
        shorter = {**element, "text": head.rstrip() + " " + ELLIPSIS}
        if _size(shorter) <= room:
            return shorter
        keep = int(keep * min(0.9, room / max(1, _size(shorter))))
    return None


def _answers(element: dict[str, Any]) -> bool:
    """Whether `element` is how people answer (buttons, a form's inputs): never cut."""
    return element["type"] == "ActionSet" or element.get("id") == INLINE_ID


def _fit(body: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The body cut to `budget` bytes: text in order as long as it fits, then "…"; every
    ActionSet and a form's inputs are kept, since that is how people answer."""
    marker = _text_block(ELLIPSIS, isSubtle=True)
    fixed = sum(_size(e) + 1 for e in body if _answers(e))
    room = budget - _size(_card([])) - fixed - _size(marker) - 1
    kept: list[dict[str, Any]] = []
    cut = False
    for element in body:
        if _answers(element):
            kept.append(element)  # in place; after the cut, right after the "…"
            continue
        if cut:
            continue
        size = _size(element) + 1
        if size <= room:
            kept.append(element)
            room -= size
            continue
        shorter = _shorten_to(element, room - 1) if room > 200 else None
        if shorter is not None:
            kept.append(shorter)
        kept.append(marker)
        cut = True
    return kept


def message_card(message: Message) -> dict[str, Any]:
    """An Adaptive Card for a neutral message. Empty containers (a Divider) keep their place.

    Any message fits Teams' size limit: past `CARD_BUDGET` the text is cut cleanly, at a word,
    followed by a "…" line; the buttons stay.
    """
    body = [element for block in message.blocks for element in _elements(block)]
    if not body:
        body = [_text_block(_person_text(message.text or ELLIPSIS))]
    card = _card(body)
    if _size(card) > CARD_BUDGET:
        card = _card(_fit(body, CARD_BUDGET))
    return card


def keyed_card(card: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    """`card` carrying the post's idempotency key, invisibly: the id of an empty, hidden
    Container first in its body. Microsoft Graph returns a channel message's card as sent, so
    the key can be looked for there (`card_key`) after a crash."""
    body = [
        e
        for e in card.get("body", [])
        if not (isinstance(e, dict) and str(e.get("id", "")).startswith(KEY_PREFIX))
    ]
    if key:
        body.insert(
            0, {"type": "Container", "id": KEY_PREFIX + key, "isVisible": False, "items": []}
        )
    return {**card, "body": body}


def card_key(card: Any) -> str | None:
    """The idempotency key `keyed_card` put in `card`, or None."""
    body = card.get("body") if isinstance(card, dict) else None
    for element in body if isinstance(body, list) else []:
        found = element.get("id") if isinstance(element, dict) else None
        if isinstance(found, str) and found.startswith(KEY_PREFIX):
            return found[len(KEY_PREFIX) :]
    return None


def card_attachment(card: dict[str, Any]) -> dict[str, Any]:
    return {"contentType": CARD_CONTENT_TYPE, "content": card}


def message_activity(message: Message, *, key: str | None = None) -> dict[str, Any]:
    """The outgoing activity JSON for a neutral message: one card; the plain text as summary.

    No `text`: Teams would show it above the card as well. `summary` is what notifications show.
    `key`, when given, travels invisibly in the card (`keyed_card`).
    """
    return {
        "type": "message",
        "summary": _cut(" ".join(message.text.split()), 200),
        "attachments": [card_attachment(keyed_card(message_card(message), key))],
    }


def mentions_bot(activity: Mapping[str, Any]) -> bool:
    """Whether a message @mentions Boeket (the activity's recipient)."""
    bot = _dig(activity, "recipient", "id")
    entities = activity.get("entities")
    return bool(bot) and any(
        isinstance(e, dict) and e.get("type") == "mention" and _dig(e, "mentioned", "id") == bot
        for e in (entities if isinstance(entities, list) else [])
    )


# --- forms → dialog cards ----------------------------------------------------------------------


def _check_names(form: Form) -> None:
    names = [f.name for f in form.fields]
    if len(set(names)) != len(names) or _RESERVED & set(names):
        raise ValueError(f"field names must be unique and not one of {sorted(_RESERVED)}: {names}")


def form_card(
    form: Form,
    *,
    submission: str,
    channel: str,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    card: str = "",
) -> dict[str, Any]:
    """An Adaptive Card for a dialog (task module) or, where no dialog can open, a message.

    `submission` is a random id for this form: it travels in the submit action's data and comes
    back with every submit of the same dialog (a double click, a resubmit after errors), so the
    core stores one contribution for it. `values` refill what the person typed; `errors` appear
    under their fields in the "attention" colour — Teams shows an input's own `errorMessage`
    only for its client-side checks (required, length). `card` is the id of the posted card
    the dialog was opened from (Teams leaves `replyToId` out of a dialog's submit), so that
    card can show the form was received.
    """
    values = values or {}
    errors = errors or {}
    _check_names(form)
    body: list[dict[str, Any]] = []
    if form.intro.strip():
        body.append(_text_block(_person_text(form.intro)))
    for field in form.fields:
        element = _input(field, values.get(field.name, field.initial))
        if element is None:
            continue
        body.append(element)
        if field.hint.strip() and field.kind != "checkbox":
            body.append(_text_block(_person_text(field.hint), size="Small", isSubtle=True))
        if field.name in errors:
            body.append(
                _text_block(_person_text(errors[field.name]), color="Attention", spacing="None")
            )
    routing = {
        "form": form.form_id,
        "meta": dict(form.meta),
        "sid": submission,
        "c": channel,
        "spec": form_spec(form),
    }
    if card:
        routing["k"] = card
    data = {"verb": FORM_VERB, FORM_KEY: routing}
    submit = {
        "type": "Action.Submit",
        "title": _cut(form.submit_label, MAX_BUTTON),
        "style": "positive",
        "data": data,
    }
    return _card(body, [submit])


def open_form_card(
    form: Form,
    *,
    channel: str,
    values: Mapping[str, str] | None = None,
    errors: Sequence[str] = (),
    heading: str = "",
) -> dict[str, Any]:
    """A card with one button that opens `form` in a dialog, for a form asked for in a message.

    A bot cannot open a dialog in answer to a typed message (the command menu's `deel`, a
    form submitted in a posted card); a button whose data says `msteams.type = "task/fetch"`
    can: its click arrives as a `task/fetch` invoke, answered with the dialog. The form travels
    in the button's data, like `form_spec` in a submit, so whichever replica gets the click
    opens the same form, with what the person already typed (`values`, else the fields'
    initial values). `channel` is where the form was asked for. `heading` and `errors` say
    why the form comes back: what was wrong with it.
    """
    body: list[dict[str, Any]] = []
    if heading.strip():
        body.append(_text_block(_person_text(heading, MAX_TITLE), weight="Bolder"))
    body += [
        _text_block(_person_text(error), color="Attention", spacing="Small")
        for error in errors
        if error.strip()
    ]
    if not body:
        body.append(_text_block(_person_text(form.intro.strip() or form.title)))
    names = {f.name for f in form.fields}
    values = (
        {k: v for k, v in values.items() if k in names and v}
        if values is not None
        else {f.name: f.initial for f in form.fields if f.initial}
    )
    routing = {
        "form": form.form_id,
        "meta": dict(form.meta),
        "c": channel,
        "spec": form_spec(form),
        "v": values,
    }
    button = {
        "type": "Action.Submit",
        "title": _cut(form.title, MAX_BUTTON) or ELLIPSIS,
        "style": "positive",
        "data": {"verb": OPEN_VERB, "msteams": {"type": "task/fetch"}, OPEN_KEY: routing},
    }
    return _card(body, [button])


def opened_form(data: Mapping[str, Any]) -> tuple[Form, str, dict[str, str]] | None:
    """(form, channel, values typed so far) from an `open_form_card` button's data, or None."""
    routing = data.get(OPEN_KEY)
    if not isinstance(routing, dict):
        return None
    form_id, meta, channel = routing.get("form"), routing.get("meta"), routing.get("c", "")
    if not isinstance(form_id, str) or not form_id or not isinstance(channel, str):
        return None
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        return None
    form = form_from_spec(form_id, meta, routing.get("spec"))
    if form is None:
        return None
    raw = routing.get("v")
    names = {f.name for f in form.fields}
    values = (
        {k: v for k, v in raw.items() if k in names and isinstance(v, str)}
        if isinstance(raw, dict)
        else {}
    )
    return form, channel, values


def form_spec(form: Form) -> dict[str, Any]:
    """The form itself, compact, to travel in the submit data.

    A dialog is stateless on Boeket's side: to show it again with errors, on whichever replica
    the submit lands, the adapter rebuilds it from this. It holds no secrets (like `meta`); a
    person who edits it changes only their own dialog — the core checks every value.
    """
    return {
        "t": form.title,
        "s": form.submit_label,
        "i": form.intro,
        "f": [
            {
                "n": f.name,
                "l": f.label,
                "k": f.kind,
                "r": f.required,
                "m": f.max_length,
                "h": f.hint,
                "o": [[o.value, o.label] for o in f.options],
            }
            for f in form.fields
        ],
    }


def form_from_spec(form_id: str, meta: Mapping[str, str], spec: Any) -> Form | None:
    """The form `form_spec` described, or None when the spec is damaged."""
    if not isinstance(spec, dict) or not isinstance(spec.get("f"), list):
        return None
    try:
        fields = tuple(
            Field(
                name=str(f["n"]),
                label=str(f["l"]),
                kind=f["k"] if f["k"] in ("text", "textarea", "select", "checkbox") else "text",
                required=bool(f["r"]),
                max_length=int(f["m"]),
                hint=str(f["h"]),
                options=tuple(Option(str(v), str(label)) for v, label in f["o"]),
            )
            for f in spec["f"]
        )
        names = [f.name for f in fields]
        if len(set(names)) != len(names) or _RESERVED & set(names):
            return None  # form_card would refuse it
        return Form(
            form_id=form_id,
            title=str(spec["t"]),
            submit_label=str(spec["s"]),
            fields=fields,
            meta=dict(meta),
            intro=str(spec["i"]),
        )
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity)
        return None


def _input(field: Field, value: str) -> dict[str, Any] | None:
    label = _cut(field.label.strip() or field.name, MAX_TITLE)
    common: dict[str, Any] = {"id": field.name, "label": label}
    match field.kind:
        case "text" | "textarea":
            limit = max(1, field.max_length)
            element = {
                "type": "Input.Text",
                **common,
                "isMultiline": field.kind == "textarea",
                "maxLength": limit,
            }
            if field.required:
                element |= {"isRequired": True, "errorMessage": label}
            if value:
                element["value"] = value[:limit]
            return element
        case "select":
            if not field.options:
                return None
            choices = [
                {"title": _cut(o.label or o.value, MAX_TITLE), "value": o.value}
                for o in field.options
            ]
            element = {"type": "Input.ChoiceSet", **common, "style": "compact", "choices": choices}
            if value and any(o.value == value for o in field.options):
                element["value"] = value
            if field.required:
                element |= {"isRequired": True, "errorMessage": label}
            return element
        case "checkbox":
            return {
                "type": "Input.Toggle",
                "id": field.name,
                "title": label,
                "valueOn": "true",
                "valueOff": "false",
                "value": "true" if value == "true" else "false",
            }
    raise TypeError(f"unknown field kind {field.kind!r}")  # pragma: no cover


def dialog_response(title: str, card: dict[str, Any]) -> dict[str, Any]:
    """The invoke body that opens (or keeps open) a dialog showing `card`."""
    return {
        "task": {
            "type": "continue",
            "value": {
                "title": _cut(title, 64),
                "width": "medium",
                "height": "medium",
                "card": card_attachment(card),
            },
        }
    }


def dialog_message(text: str) -> dict[str, Any]:
    """The invoke body that shows a short plain message in place of a dialog."""
    return {"task": {"type": "message", "value": _cut(text, 500)}}


# --- activities → events -----------------------------------------------------------------------


def _dig(data: Any, *path: str) -> str:
    for key in path:
        if not isinstance(data, dict):
            return ""
        data = data.get(key)
    return data if isinstance(data, str) else ""


_MESSAGE_ID = re.compile(r";messageid=([^;]+)")


def conversation_root(conversation_id: str) -> tuple[str, str | None]:
    """(`19:…@thread.tacv2`, root message id or None) from a conversation id."""
    match = _MESSAGE_ID.search(conversation_id)
    base = conversation_id.split(";", 1)[0]
    return base, (match.group(1) if match else None)


def tenant_of(activity: Mapping[str, Any]) -> str:
    return _dig(activity, "conversation", "tenantId") or _dig(
        activity, "channelData", "tenant", "id"
    )


def channel_of(activity: Mapping[str, Any]) -> str:
    """The channel (or chat) the activity is in: a team channel's id without `;messageid=`."""
    channel = _dig(activity, "channelData", "channel", "id")
    if channel:
        return channel
    base, _ = conversation_root(_dig(activity, "conversation", "id"))
    return base


def team_of(activity: Mapping[str, Any]) -> str:
    """The team's thread id (its General channel's id), as the Bot Framework names teams."""
    return _dig(activity, "channelData", "team", "id") or _dig(
        activity, "channelData", "teamsTeamId"
    )


def team_group_of(activity: Mapping[str, Any]) -> str:
    """The team's Microsoft 365 group id, Graph's id of the team (install and channel events)."""
    return _dig(activity, "channelData", "team", "aadGroupId")


def conversation_type(activity: Mapping[str, Any]) -> str:
    """ "channel", "groupChat" or "personal" (Teams leaves it out of some invokes)."""
    kind = _dig(activity, "conversation", "conversationType")
    if kind:
        return kind
    return "channel" if _dig(activity, "channelData", "channel", "id") else "personal"


def person_of(activity: Mapping[str, Any]) -> Person:
    """The sender: Teams' user id for this bot (`29:…`), and the display name Teams sends."""
    user = _dig(activity, "from", "id")
    return Person(user, _dig(activity, "from", "name") or user)


def _channel_ref(activity: Mapping[str, Any]) -> ChannelRef:
    return ChannelRef(PLATFORM, channel_of(activity), tenant_of(activity))


def _bot_names(activity: Mapping[str, Any]) -> list[str]:
    names = [_dig(activity, "recipient", "name")]
    bot_id = _dig(activity, "recipient", "id")
    entities = activity.get("entities")
    for entity in entities if isinstance(entities, list) else []:
        mention = isinstance(entity, dict) and entity.get("type") == "mention"
        if mention and _dig(entity, "mentioned", "id") == bot_id:
            names.append(_dig(entity, "mentioned", "name"))
            names.append(re.sub(r"</?at>", "", _dig(entity, "text")))
    return names


def message_event(activity: Mapping[str, Any]) -> MessageEvent | CommandEvent | None:
    """A person's message: a command from the menu (`deel`, `zoek`, `help`), or text, maybe in a
    thread.

    In a thread a reply whose first word happens to be "deel" is an answer, not a command: only a
    thread reply of just the command word is one. None for Boeket's own messages, card submits
    (they carry `value`) and messages with no text left.
    """
    if activity.get("type") != "message" or activity.get("value") is not None:
        return None
    person = person_of(activity)
    if not person.id or person.id == _dig(activity, "recipient", "id"):
        return None
    text = clean_incoming(_dig(activity, "text"), _bot_names(activity))
    if not text:
        return None
    channel = _channel_ref(activity)
    activity_id = _dig(activity, "id")
    _, root = conversation_root(_dig(activity, "conversation", "id"))
    thread = root if root and root != activity_id else None
    words = text.split()
    first = words[0].lower().strip("/") if words else ""
    if first in COMMANDS | OWN_COMMANDS and (thread is None or len(words) == 1):
        own = first in OWN_COMMANDS
        return CommandEvent(
            event_id=f"{channel.channel}:{activity_id}",
            channel=channel,
            person=person,
            command="deel" if own else first,
            text=" ".join([first, *words[1:]] if own else words[1:]),
            workspace=channel.workspace,
        )
    return MessageEvent(
        event_id=f"{channel.channel}:{activity_id}",
        channel=channel,
        person=person,
        text=text,
        thread_id=thread,
        workspace=channel.workspace,
    )


def submit_values(data: Mapping[str, Any]) -> dict[str, str]:
    """Field name → text from a card submit's data, our own routing keys left out."""
    values: dict[str, str] = {}
    for key, value in data.items():
        if key in _RESERVED:
            continue
        if isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            values[key] = str(value)
    return values


def form_routing(data: Mapping[str, Any]) -> tuple[str, dict[str, str], str, str] | None:
    """(form id, meta, submission id, channel) from a form's submit data; None if not a form."""
    routing = data.get(FORM_KEY)
    if not isinstance(routing, dict):
        return None
    form_id, sid, channel = routing.get("form"), routing.get("sid"), routing.get("c", "")
    meta = routing.get("meta")
    if not isinstance(form_id, str) or not isinstance(sid, str) or not form_id or not sid:
        return None
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        return None
    return form_id, dict(meta), sid, channel if isinstance(channel, str) else ""


def inline_form(data: Mapping[str, Any]) -> Form | None:
    """The form a posted card's inline submit came from, rebuilt from its spec; None if the
    data is not such a submit, or is damaged."""
    routing = data.get(INLINE_KEY)
    if data.get("verb") != INLINE_VERB or not isinstance(routing, dict):
        return None
    form_id, meta = routing.get("form"), routing.get("meta")
    if not isinstance(form_id, str) or not form_id or not isinstance(meta, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        return None
    return form_from_spec(form_id, meta, routing.get("spec"))


def inline_submission_key(activity: Mapping[str, Any]) -> str:
    """The id of one inline submit, or "" when Teams sent no activity id.

    Teams gives every activity in a conversation its own id and sends that id again when it
    delivers the same submit again, so the same submit is stored once. The card is the same for
    everyone, so unlike a dialog's `submission_key` there is no random id to mix in; the key is
    built without the person's id, so an anonymous answer's key names nobody.
    """
    activity_id = _dig(activity, "id")
    if not activity_id:
        return ""
    conversation, _ = conversation_root(_dig(activity, "conversation", "id"))
    digest = hashlib.sha256(f"inline\x00{conversation}\x00{activity_id}".encode()).hexdigest()
    return f"i{digest[:40]}"


class RecentSubmits:
    """Inline submits of the last `window` seconds, so that a double click stores one answer.

    Each click on a card's own submit is a message of its own with its own id, and the card is
    the same for everyone: nothing in the second click says it repeats the first. The same
    person sending the same values from the same card within the window is taken as the same
    submit (its first `submission_id`). Kept in this process's memory only, as hashes with a
    random salt that is never written anywhere, and forgotten after the window: an anonymous
    answer is linked to nobody in the database, and not for long in memory. A double click that
    two replicas receive, one each, is not caught.
    """

    def __init__(self, window: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._salt = secrets.token_bytes(16)
        self._seen: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def first(
        self, person_id: str, card_id: str, values: Mapping[str, str], submission: str
    ) -> str:
        """The submission id of the same submit seen within the window, else `submission`."""
        now = self._clock()
        while self._seen and next(iter(self._seen.values()))[0] <= now - self._window:
            self._seen.popitem(last=False)
        what = json.dumps([person_id, card_id, sorted(values.items())], ensure_ascii=False)
        key = hashlib.sha256(self._salt + what.encode()).hexdigest()
        if key in self._seen:
            return self._seen[key][1]
        self._seen[key] = (now, submission)
        return submission


def routing_card(data: Mapping[str, Any]) -> str:
    """The id of the posted card a form's dialog was opened from, or ""."""
    card = _dig(data, FORM_KEY, "k")
    return card if form_routing(data) is not None else ""


def submission_key(person_id: str, sid: str) -> str:
    """The id of one person's submission of one form, from which the person cannot be read.

    It becomes part of the stored contribution's idempotency key, and an anonymous answer must
    not carry its author's id in any column. The random `sid` never reaches the database, so the
    hash cannot be matched to a person by trying every id.
    """
    digest = hashlib.sha256(f"{person_id}\x00{sid}".encode()).hexdigest()
    return f"s{digest[:40]}"


def card_message_id(activity: Mapping[str, Any]) -> str:
    """The id of the message whose card was clicked: `replyToId`, else the thread's root."""
    reply_to = _dig(activity, "replyToId")
    if reply_to:
        return reply_to
    _, root = conversation_root(_dig(activity, "conversation", "id"))
    return root or ""


def received_card(card: Mapping[str, Any], text: str) -> dict[str, Any]:
    """`card` with a small "✓ received" line under its text, once; its buttons stay.

    Only the fact that something was received: never the answer or who gave it, since the card
    is seen by the whole channel and answers can be anonymous.
    """
    marker = _text_block(f"✓ {_person_text(text, MAX_TITLE)}", size="Small", isSubtle=True)
    marker["id"] = "boeket-received"
    body = [
        e for e in card.get("body", []) if not (isinstance(e, dict) and e.get("id") == marker["id"])
    ]
    at = len(body)
    while at > 0 and isinstance(body[at - 1], dict) and body[at - 1].get("type") == "ActionSet":
        at -= 1
    body.insert(at, marker)
    return {**card, "body": body}


def submit_data(activity: Mapping[str, Any]) -> dict[str, Any] | None:
    """The data of a card submit: a message's `value`, or an invoke's `value.data`."""
    value = activity.get("value")
    if not isinstance(value, dict):
        return None
    if activity.get("type") == "invoke":
        data = value.get("data")
        return data if isinstance(data, dict) else None
    return value


def interaction_event(activity: Mapping[str, Any]) -> ButtonEvent | FormEvent | None:
    """A click or a form submit, from a message with `value`, `task/fetch` or `task/submit`.

    A dialog's `submission_id` comes from the person's id and the form's random id: the same for
    a double click and for a resubmit after errors, never shared between two people, and without
    the person's id in it (`submission_key`). A form in a posted card is submitted as a message;
    its `submission_id` comes from that message's id (`inline_submission_key`).
    """
    data = submit_data(activity)
    person = person_of(activity)
    if data is None or not person.id:
        return None
    channel = _channel_ref(activity)
    inline = inline_form(data)
    if inline is not None:
        submission = inline_submission_key(activity)
        if not submission or activity.get("type") != "message":
            return None
        return FormEvent(
            submission_id=submission,
            form_id=inline.form_id,
            channel=channel,
            person=person,
            values=submit_values(data),
            meta=dict(inline.meta),
            workspace=channel.workspace,
        )
    routing = form_routing(data)
    if routing is not None:
        form_id, meta, sid, form_channel = routing
        if form_channel and channel.channel != form_channel:
            channel = ChannelRef(PLATFORM, form_channel, channel.workspace)
        return FormEvent(
            submission_id=submission_key(person.id, sid),
            form_id=form_id,
            channel=channel,
            person=person,
            values=submit_values(data),
            meta=meta,
            workspace=channel.workspace,
        )
    verb = data.get("verb")
    if not isinstance(verb, str) or not verb:
        return None
    value = data.get("value")
    return ButtonEvent(
        event_id=_dig(activity, "id"),
        channel=channel,
        person=person,
        action_id=verb,
        value=value if isinstance(value, str) else "",
        message_id=_dig(activity, "replyToId"),
        workspace=channel.workspace,
        home=conversation_type(activity) == "personal",
    )


def extension_command(activity: Mapping[str, Any]) -> CommandEvent | None:
    """The message extension's "Deel een succes" (`composeExtension/fetchTask`) as `/deel`.

    Opened from a message's "…" menu, that message's text prefills the share form.
    """
    value = activity.get("value")
    if not isinstance(value, dict) or value.get("commandId") != SHARE_COMMAND_ID:
        return None
    person = person_of(activity)
    channel = _channel_ref(activity)
    quoted = clean_incoming(_dig(value, "messagePayload", "body", "content"))
    return CommandEvent(
        event_id=_dig(activity, "id"),
        channel=channel,
        person=person,
        command="deel",
        text=quoted,
        workspace=channel.workspace,
    )


def extension_submit(activity: Mapping[str, Any]) -> FormEvent | None:
    """The share dialog submitted from the message extension (`composeExtension/submitAction`)."""
    event = interaction_event(activity)
    return event if isinstance(event, FormEvent) else None


# --- conversation updates ----------------------------------------------------------------------


def channels_to_remember(activity: Mapping[str, Any]) -> list[str]:
    """Channels a conversationUpdate tells Boeket about: where it was installed, a new channel.

    Installing the app in a team arrives as `installationUpdate` (action `add`) and as
    `conversationUpdate` `teamMemberAdded` with Boeket among `membersAdded`, both in the team's
    General channel; a new channel as `conversationUpdate` `channelCreated` with
    `channelData.channel`.
    """
    kind = _dig(activity, "type")
    if kind not in {"conversationUpdate", "installationUpdate"}:
        return []
    found: list[str] = []
    event = _dig(activity, "channelData", "eventType")
    bot = _dig(activity, "recipient", "id")
    members = activity.get("membersAdded")
    added: Sequence[Any] = members if isinstance(members, list) else []
    installed = kind == "installationUpdate" and _dig(activity, "action").startswith("add")
    if (
        installed
        or any(isinstance(m, dict) and m.get("id") == bot for m in added)
        or event
        in {
            "teamMemberAdded",
            "teamRenamed",
            "channelCreated",
            "channelRenamed",
            "channelRestored",
        }
    ):
        team = _dig(activity, "channelData", "team", "id")
        if team:
            found.append(team)  # a team's General channel has the team's id
        channel = channel_of(activity)
        if channel and channel not in found:
            found.append(channel)
    return found


def submitted_form(data: Mapping[str, Any]) -> Form | None:
    """The form a submit came from, rebuilt from its spec (to show it again with errors)."""
    routing = form_routing(data)
    raw = data.get(FORM_KEY)
    if routing is None or not isinstance(raw, dict):
        return None
    return form_from_spec(routing[0], routing[1], raw.get("spec"))
