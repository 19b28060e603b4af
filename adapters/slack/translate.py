"""Pure functions between Slack payloads and Boeket's neutral messages, forms and events.

No I/O and no state, like bolt-python's aiohttp adapter: the Slack adapter hands these the payloads
Bolt gives it and sends what they return. The text rules (see PLATFORM-NOTES.md, "Slack"):

* Text we send as mrkdwn goes through `escape_mrkdwn`, so a person's words never become a mention,
  a broadcast or a link. Text in `plain_text` objects (headers, buttons, labels) goes as it is.
* Text Slack sends in message events and slash commands is entity-encoded and carries mentions as
  `<@U…>`; `clean_incoming` turns it into plain text once, on the way in. What Boeket stores is
  plain text, and it is escaped again whenever it is repeated.
* Block Kit limits are kept here: a person's text is shortened with "…" so a post never fails;
  our own ids and values are never cut (that would misroute a click) — they raise `ValueError`.
  `block_problems` and `view_problems` check a payload against the limits.

Slack counts characters; we count Python code points, as slack_sdk's own validators do.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block as SdkBlock
from slack_sdk.models.views import View as SdkView

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
    Section,
)

PLATFORM = "slack"
ELLIPSIS = "…"

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MESSAGE_BUDGET = 12_000
"""Characters of compact block JSON per message. Slack's limit is undocumented (about 13k,
`msg_blocks_too_long`); we stay under it with room to spare."""
MAX_HEADER = 150
MAX_TEXT = 3000  # section text, context element text, message fallback text
MAX_SECTION_TITLE = 500  # our own cap, so a long title never crowds out the text
MAX_CONTEXT_ELEMENTS = 10
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_BUTTONS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000
MAX_ID = 255  # action_id, block_id, callback_id
MAX_VIEW_TEXT = 24  # modal title, submit and close
MAX_METADATA = 3000
MAX_LABEL = 2000  # input label and hint
MAX_INPUT = 3000  # plain_text_input max_length
MAX_OPTIONS = 100
MAX_CHECKBOX_OPTIONS = 10
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_ERROR = 1000

Surface = Literal["message", "modal", "home"]

# --- text --------------------------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """Escape `&`, `<` and `>` (in that order), so mrkdwn shows the text and parses none of it.

    This neutralises `<!channel>`, `<!here>`, `<@U…>` and `<url|text>`.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _decode(text: str) -> str:
    # `&amp;` last, so `&amp;lt;` (a person typing "&lt;") becomes "&lt;", not "<".
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# Slack encodes a literal `<` or `>` as an entity, so every raw `<…>` in event text is markup.
# The optional space after a token is taken along, so a removed token leaves no double space.
_TOKEN = re.compile(r"<([^<>]*)>( ?)")
_BROADCASTS = frozenset({"channel", "here", "everyone"})
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?://)?")


def clean_incoming(text: str) -> str:
    """Turn the text of a Slack message event or slash command into plain text to store.

    Broadcasts (`<!channel>`, `<!here>`, `<!everyone>`) are removed; user groups become their
    `@label`, users `@name` (or `@U…`), channels `#name`, links `label (url)` — the target stays
    visible, so a "klik hier" link cannot hide where it goes. Then the entities are decoded.
    """

    def plain(match: re.Match[str]) -> str:
        replaced = _token_text(match.group(1))
        return replaced + match.group(2) if replaced else ""

    return _decode(_TOKEN.sub(plain, text)).strip()


def _token_text(inner: str) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("!"):
        name = target[1:].split("^", 1)[0]
        if name in _BROADCASTS:
            return ""
        if name == "subteam":
            return "@" + label.removeprefix("@") if label else ""
        # `<!date^…|fallback>` and special commands Slack may add later: their fallback label.
        return label
    if target.startswith("@"):
        return "@" + (label or target[1:])
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if not label:
        return target
    if label in (target, _SCHEME.sub("", target)):
        # Slack's own auto-links (`<http://boeket.nl|boeket.nl>`, `<mailto:a@b.nl|a@b.nl>`).
        return label
    return f"{label} ({target})"


def _cut(text: str, limit: int) -> str:
    """Shorten plain text to `limit` characters, ending in "…" when shortened."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


def _cut_escaped(text: str, limit: int) -> str:
    """Shorten escaped mrkdwn to `limit` characters without cutting an entity in half."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    # Every `&` in escaped text starts an entity of at most 5 characters (`&amp;`).
    amp = head.rfind("&", max(0, len(head) - 4))
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head.rstrip() + ELLIPSIS


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _cut(text, limit) or ELLIPSIS, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


# --- messages ----------------------------------------------------------------------------------

_MORE: dict[str, Any] = {"type": "context", "elements": [{"type": "mrkdwn", "text": ELLIPSIS}]}
_SUFFIX = re.compile(r":\d+$")


def message_payload(message: Message) -> tuple[str, list[dict[str, Any]]]:
    """The fallback text and Block Kit blocks for `chat.postMessage` / `chat.update`.

    A person's text is shortened to fit; when the blocks are too many (50) or too long
    (`MESSAGE_BUDGET`), trailing sections give way to a "…" context block. Buttons are kept as
    long as possible, so a prompt keeps its answer button.

    Action ids must be unique in a message: a repeated one gets the suffix `:<n>` (the button's
    position in the message), which `action_base` removes again. Our own action ids must
    therefore not end in `:<digits>`.

    Raises ValueError for ids and values that do not fit: cutting them would misroute a click.
    """
    blocks = [out for block in message.blocks for out in _slack_blocks(block)]
    _number_duplicate_actions(blocks)
    fallback = message.text or _first_text(message.blocks)
    return _cut_escaped(escape_mrkdwn(fallback), MAX_TEXT), _fit(blocks)


def action_base(action_id: str) -> str:
    """The action id as the core knows it: without the `:<n>` suffix of `message_payload`."""
    return _SUFFIX.sub("", action_id)


def _first_text(blocks: Sequence[Block]) -> str:
    # Slack wants a fallback for notifications and screen readers; slack_sdk warns without one.
    for block in blocks:
        match block:
            case Header(text=text) | Section(text=text) if text.strip():
                return text
            case Section(title=title) | Bullets(title=title) if title.strip():
                return title
    return ""


def _slack_blocks(block: Block) -> list[dict[str, Any]]:
    match block:
        case Header(text=text):
            text = " ".join(text.split())
            if not text:
                return []
            return [{"type": "header", "text": _plain(text, MAX_HEADER)}]
        case Section(text=text, title=title, quote=quote):
            return _section(text, title.strip(), quote=quote)
        case Bullets(items=items, title=title):
            return _bullets(items, title.strip())
        case Context(text=text):
            if not text.strip():
                return []
            return [
                {
                    "type": "context",
                    "elements": [_mrkdwn(_cut_escaped(escape_mrkdwn(text), MAX_TEXT))],
                }
            ]
        case Divider():
            return [{"type": "divider"}]
        case Actions(buttons=buttons):
            elements = [_button(b.action_id, b.label, b.value, b.style) for b in buttons]
            return [
                {"type": "actions", "elements": elements[start : start + MAX_BUTTONS]}
                for start in range(0, len(elements), MAX_BUTTONS)
            ]
    raise TypeError(f"unknown block {block!r}")  # pragma: no cover


def _section(text: str, title: str, *, quote: bool) -> list[dict[str, Any]]:
    if not text.strip() and not title:
        return []
    body = escape_mrkdwn(text)
    if quote:
        # The `>` is our markup: added after escaping, so it is not escaped itself.
        body = "\n".join(f"> {line}" if line else ">" for line in body.split("\n"))
    parts = [f"*{_cut_escaped(escape_mrkdwn(title), MAX_SECTION_TITLE)}*"] if title else []
    if text.strip():
        parts.append(body)
    return [{"type": "section", "text": _mrkdwn(_cut_escaped("\n".join(parts), MAX_TEXT))}]


def _bullets(items: Sequence[str], title: str) -> list[dict[str, Any]]:
    chunks: list[str] = []
    current = f"*{_cut_escaped(escape_mrkdwn(title), MAX_SECTION_TITLE)}*" if title else ""
    for item in items:
        line = _cut_escaped(f"• {escape_mrkdwn(item)}", MAX_TEXT)
        joined = f"{current}\n{line}" if current else line
        if len(joined) <= MAX_TEXT:
            current = joined
        else:
            chunks.append(current)
            current = line
    if current:
        chunks.append(current)
    return [{"type": "section", "text": _mrkdwn(chunk)} for chunk in chunks]


def _button(action_id: str, label: str, value: str, style: str) -> dict[str, Any]:
    if _SUFFIX.search(action_id):
        raise ValueError(f"action_id {action_id!r} ends in ':<digits>', which action_base strips")
    if len(value) > MAX_BUTTON_VALUE:
        raise ValueError(
            f"button value of {len(value)} characters; Slack allows {MAX_BUTTON_VALUE}"
        )
    element: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": _plain(label, MAX_BUTTON_TEXT),
    }
    if value:
        element["value"] = value
    if style != "default":
        element["style"] = style
    return element


def _number_duplicate_actions(blocks: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    index = 0
    for block in blocks:
        if block["type"] != "actions":
            continue
        for element in block["elements"]:
            action_id: str = element["action_id"]
            if action_id in seen:
                action_id = element["action_id"] = f"{action_id}:{index}"
            if not action_id or len(action_id) > MAX_ID:
                raise ValueError(f"action_id {action_id!r} must be 1 to {MAX_ID} characters")
            seen.add(action_id)
            index += 1


def _size(blocks: list[dict[str, Any]]) -> int:
    return len(json.dumps(blocks, ensure_ascii=False, separators=(",", ":")))


def _fit(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep at most 50 blocks and `MESSAGE_BUDGET` characters; mark what was dropped with "…"."""
    out = list(blocks)
    marker_at: int | None = None
    if len(out) > MAX_MESSAGE_BLOCKS:
        out = out[: MAX_MESSAGE_BLOCKS - 1]
        marker_at = len(out)
    while out and _size(out) + (0 if marker_at is None else _size([_MORE])) > MESSAGE_BUDGET:
        sections = [i for i, b in enumerate(out) if b["type"] == "section"]
        drop = sections[-1] if sections else len(out) - 1
        del out[drop]
        if marker_at is not None and marker_at > drop:
            marker_at -= 1
        marker_at = drop if marker_at is None else min(marker_at, drop)
    if marker_at is not None:
        out.insert(marker_at, copy.deepcopy(_MORE))
    return out


# --- forms -------------------------------------------------------------------------------------


def modal_view(
    form: Form, *, callback_id: str, private_metadata: str, close_label: str = "Cancel"
) -> dict[str, Any]:
    """A Slack modal for `views.open`: an optional intro, then one input block per field.

    A field's name is its block_id and action_id, so `view_values` maps the answers back.
    Texts are shortened to Slack's limits; a select without options is left out (Slack refuses
    an empty one). Raises ValueError when ids, metadata or the number of blocks do not fit:
    dropping a field or cutting metadata would lose answers.
    """
    if len(private_metadata) > MAX_METADATA:
        raise ValueError(
            f"private_metadata of {len(private_metadata)} characters; Slack allows {MAX_METADATA}"
        )
    if not callback_id or len(callback_id) > MAX_ID:
        raise ValueError(f"callback_id must be 1 to {MAX_ID} characters")
    names = [f.name for f in form.fields]
    if len(set(names)) != len(names):
        raise ValueError(f"field names must be unique in a form: {names}")
    blocks: list[dict[str, Any]] = []
    if form.intro.strip():
        intro = _cut_escaped(escape_mrkdwn(form.intro), MAX_TEXT)
        blocks.append({"type": "section", "text": _mrkdwn(intro)})
    blocks.extend(block for f in form.fields if (block := _input_block(f)) is not None)
    if not blocks or len(blocks) > MAX_VIEW_BLOCKS:
        raise ValueError(f"a modal holds 1 to {MAX_VIEW_BLOCKS} blocks, not {len(blocks)}")
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": _plain(form.title, MAX_VIEW_TEXT),
        "submit": _plain(form.submit_label, MAX_VIEW_TEXT),
        "close": _plain(close_label, MAX_VIEW_TEXT),
        "private_metadata": private_metadata,
        "blocks": blocks,
    }


def _input_block(field: Field) -> dict[str, Any] | None:
    if not field.name or len(field.name) > MAX_ID:
        raise ValueError(f"field name {field.name!r} must be 1 to {MAX_ID} characters")
    label = field.label.strip() or field.name
    element: dict[str, Any] = {"action_id": field.name}
    match field.kind:
        case "text" | "textarea":
            limit = max(1, min(field.max_length, MAX_INPUT))
            element |= {"type": "plain_text_input", "max_length": limit}
            if field.kind == "textarea":
                element["multiline"] = True
            if field.initial:
                # Slack refuses an initial value longer than max_length; a person editing a longer
                # text sees the first `limit` characters (the core's own check still applies).
                element["initial_value"] = field.initial[:limit]
        case "select":
            options = [_option(o.value, o.label) for o in field.options[:MAX_OPTIONS]]
            if not options:
                return None
            element |= {"type": "static_select", "options": options}
            chosen = next((o for o in options if o["value"] == field.initial), None)
            if field.initial and chosen is not None:
                element["initial_option"] = copy.deepcopy(chosen)
        case "checkbox":
            option = _option("true", label)
            element |= {"type": "checkboxes", "options": [option]}
            if field.initial == "true":
                element["initial_options"] = [copy.deepcopy(option)]
    block: dict[str, Any] = {
        "type": "input",
        "block_id": field.name,
        "label": _plain(label, MAX_LABEL),
        "optional": not field.required,
        "element": element,
    }
    if field.hint.strip():
        block["hint"] = _plain(field.hint, MAX_LABEL)
    return block


def _option(value: str, label: str) -> dict[str, Any]:
    if not value or len(value) > MAX_OPTION_VALUE:
        raise ValueError(f"option value {value!r} must be 1 to {MAX_OPTION_VALUE} characters")
    return {"text": _plain(label.strip() or value, MAX_OPTION_TEXT), "value": value}


def view_values(state_values: dict[str, Any]) -> dict[str, str]:
    """Field name → text from a view_submission's `view.state.values`.

    Text inputs give their value ("" when empty: Slack sends null), selects the chosen option's
    value or "", checkboxes "true" or "false".
    """
    values: dict[str, str] = {}
    for block_id, actions in state_values.items():
        if not isinstance(actions, dict) or not actions:
            continue
        # Our action_id is the block_id; take that element, or the only one there is.
        state = actions.get(block_id, next(iter(actions.values())))
        if isinstance(state, dict):
            values[block_id] = _state_text(state)
    return values


def _state_text(state: dict[str, Any]) -> str:
    if state.get("type") == "checkboxes":
        return "true" if state.get("selected_options") else "false"
    if "selected_option" in state:
        return _dig(state, "selected_option", "value")
    return _dig(state, "value")


def form_errors(errors: dict[str, str]) -> dict[str, Any]:
    """The ack body that shows `errors` (field name → message) next to the fields of a modal."""
    return {
        "response_action": "errors",
        "errors": {name: _cut(message, MAX_ERROR) for name, message in errors.items()},
    }


def encode_metadata(form_id: str, channel: str, meta: dict[str, str]) -> str:
    """The modal's `private_metadata`: compact JSON of the form id, channel and meta.

    Raises ValueError beyond Slack's 3000 characters; cutting it would lose the context.
    """
    text = json.dumps(
        {"f": form_id, "c": channel, "m": meta}, ensure_ascii=False, separators=(",", ":")
    )
    if len(text) > MAX_METADATA:
        raise ValueError(f"metadata of {len(text)} characters; Slack allows {MAX_METADATA}")
    return text


def decode_metadata(text: str, *, form_id: str | None = None) -> tuple[str, dict[str, str]]:
    """(channel, meta) from `encode_metadata`'s text; ValueError on anything else.

    With `form_id` (the view's callback_id), metadata written for another form is refused too.
    """
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"private_metadata is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("private_metadata is not a JSON object")
    channel, meta = data.get("c"), data.get("m")
    if not isinstance(channel, str) or not isinstance(meta, dict):
        raise ValueError("private_metadata lacks a channel or meta")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ValueError("private_metadata meta must map text to text")
    if form_id is not None and data.get("f") != form_id:
        raise ValueError(f"private_metadata belongs to form {data.get('f')!r}, not {form_id!r}")
    return channel, dict(meta)


# --- payloads → events -------------------------------------------------------------------------

# Subtypes a person writes: a thread reply also sent to the channel, a message with a file.
# Everything else (edits, deletions, joins, bot messages, topic changes…) is not an answer.
_PERSON_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})
_SLACKBOT = "USLACKBOT"


def _dig(data: Any, *path: str) -> str:
    """The string at `path` in nested dicts, or "" when anything on the way is missing."""
    for key in path:
        if not isinstance(data, dict):
            return ""
        data = data.get(key)
    return data if isinstance(data, str) else ""


def message_event(body: dict[str, Any]) -> MessageEvent | None:
    """A person's message from an Events API envelope; None when it is not one.

    None for bot messages (also Boeket's own), edits, deletions, joins, `app_mention` events and
    messages with no text left after cleaning. The person's name is not in the event: it is the
    user id here, for the adapter to look up.
    """
    event = body.get("event")
    if body.get("type") != "event_callback" or not isinstance(event, dict):
        return None
    if event.get("type") != "message" or event.get("subtype") not in _PERSON_SUBTYPES:
        return None
    if event.get("bot_id") or event.get("bot_profile") or event.get("hidden"):
        return None
    user, channel, ts = _dig(event, "user"), _dig(event, "channel"), _dig(event, "ts")
    text = clean_incoming(_dig(event, "text"))
    if not user or user == _SLACKBOT or not channel or not text:
        return None
    thread_ts = _dig(event, "thread_ts")
    return MessageEvent(
        # Retries carry the same event_id; channel and ts identify the message just as well.
        event_id=_dig(body, "event_id") or f"{channel}:{ts}",
        channel=ChannelRef(PLATFORM, channel),
        person=Person(user, user),
        text=text,
        thread_id=thread_ts if thread_ts and thread_ts != ts else None,
        workspace=_dig(body, "team_id") or _dig(event, "team"),
    )


def command_event(body: dict[str, Any]) -> CommandEvent:
    """A slash command from its form body (as Bolt parses it): `/deel mijn` → ("deel", "mijn").

    The text is encoded like message text, so it is cleaned the same way.
    """
    user_id = _dig(body, "user_id")
    return CommandEvent(
        event_id=_dig(body, "trigger_id"),
        channel=ChannelRef(PLATFORM, _dig(body, "channel_id")),
        person=Person(user_id, _dig(body, "user_name") or user_id),
        command=_dig(body, "command").removeprefix("/"),
        text=clean_incoming(_dig(body, "text")),
        workspace=_dig(body, "team_id"),
    )


def action_event(body: dict[str, Any]) -> ButtonEvent | None:
    """The first button click of a block_actions payload; None when there is none.

    A click on the person's App Home has no channel: it comes back with `home=True` and an empty
    channel. Clicks in a modal are None: Boeket puts no buttons there.
    """
    actions = body.get("actions")
    if body.get("type") != "block_actions" or not isinstance(actions, list):
        return None
    button = next((a for a in actions if isinstance(a, dict) and a.get("type") == "button"), None)
    channel = _dig(body, "channel", "id") or _dig(body, "container", "channel_id")
    home = not channel and _dig(body, "view", "type") == "home"
    user_id = _dig(body, "user", "id")
    if button is None or not user_id or not (channel or home):
        return None
    return ButtonEvent(
        event_id=_dig(body, "trigger_id") or _dig(button, "action_ts"),
        channel=ChannelRef(PLATFORM, channel),
        person=_person(body, user_id),
        action_id=action_base(_dig(button, "action_id")),
        value=_dig(button, "value"),
        message_id=_dig(body, "message", "ts") or _dig(body, "container", "message_ts"),
        workspace=_dig(body, "team", "id") or _dig(body, "user", "team_id"),
        home=home,
    )


def view_event(body: dict[str, Any], meta: dict[str, str], channel: str) -> FormEvent:
    """A submitted modal; `meta` and `channel` come from `decode_metadata`.

    `submission_id` is Slack's view.id, which stays the same for the life of the modal: a double
    submit has the same id, and so does a resubmit after `form_errors` — record it as handled
    only once the submission was stored.
    """
    view = body.get("view")
    view = view if isinstance(view, dict) else {}
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    user_id = _dig(body, "user", "id")
    return FormEvent(
        submission_id=_dig(view, "id"),
        form_id=_dig(view, "callback_id"),
        channel=ChannelRef(PLATFORM, channel),
        person=_person(body, user_id),
        values=view_values(values) if isinstance(values, dict) else {},
        meta=dict(meta),
        workspace=_dig(body, "team", "id") or _dig(view, "team_id"),
    )


def _person(body: dict[str, Any], user_id: str) -> Person:
    name = _dig(body, "user", "name") or _dig(body, "user", "username") or user_id
    return Person(user_id, name)


# --- checks against Block Kit's limits ---------------------------------------------------------


def block_problems(blocks: list[dict[str, Any]], *, surface: Surface) -> list[str]:
    """What Slack would refuse in these blocks, in words; [] when they are fine.

    Each block goes through slack_sdk's models (`Block.parse`, then `to_dict`, which runs
    `validate_json` on the block and every element in it) and through our own checks of the
    limits slack_sdk does not enforce (empty texts, option lists, unique ids, the size budget).
    """
    problems: list[str] = []
    limit = MAX_MESSAGE_BLOCKS if surface == "message" else MAX_VIEW_BLOCKS
    if len(blocks) > limit:
        problems.append(f"{len(blocks)} blocks; a {surface} holds at most {limit}")
    if surface == "message" and (size := _size(blocks)) > MESSAGE_BUDGET:
        problems.append(f"blocks are {size} characters of JSON; keep them under {MESSAGE_BUDGET}")
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            problems.append(f"block {i}: not an object")
            continue
        where = f"block {i} ({block.get('type')})"
        found = [*_sdk_problems(block), *_limit_problems(block)]
        block_id = block.get("block_id")
        if block_id is not None:
            found += _id_problems("block_id", block_id)
            if block_id in block_ids:
                found.append(f"block_id {block_id!r} is used twice")
            block_ids.add(str(block_id))
        own: set[str] = set()
        for action_id in _action_ids(block):
            found += _id_problems("action_id", action_id)
            if action_id in own or action_id in action_ids:
                found.append(f"action_id {action_id!r} is used twice")
            own.add(action_id)
        action_ids |= own
        problems += [f"{where}: {problem}" for problem in found]
    return problems


def view_problems(view: dict[str, Any]) -> list[str]:
    """What Slack would refuse in a modal or Home tab view, blocks included; [] when fine."""
    problems: list[str] = []
    kind = view.get("type")
    if kind not in ("modal", "home"):
        problems.append(f"view type {kind!r}: expected 'modal' or 'home'")
    if kind == "modal" or "title" in view:
        problems += _text_problems(view.get("title"), "title", MAX_VIEW_TEXT, plain=True)
    for key in ("submit", "close"):
        if key in view:
            problems += _text_problems(view[key], key, MAX_VIEW_TEXT, plain=True)
    metadata = view.get("private_metadata", "")
    if not isinstance(metadata, str) or len(metadata) > MAX_METADATA:
        problems.append(f"private_metadata must be text of at most {MAX_METADATA} characters")
    if "callback_id" in view:
        problems += _id_problems("callback_id", view["callback_id"])
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        problems.append("a view needs at least one block")
        blocks = []
    try:
        SdkView(**copy.deepcopy(view)).to_dict()
    except SlackObjectFormationError as exc:
        problems.append(f"view: {exc}")
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        problems.append(f"view: slack_sdk cannot read it ({exc!r})")
    surface: Surface = "home" if kind == "home" else "modal"
    return problems + block_problems(blocks, surface=surface)


def _sdk_problems(block: dict[str, Any]) -> list[str]:
    try:
        parsed = SdkBlock.parse(copy.deepcopy(block))
        if parsed is None:
            return [f"slack_sdk does not know block type {block.get('type')!r}"]
        parsed.to_dict()
    except SlackObjectFormationError as exc:
        return [str(exc)]
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        return [f"slack_sdk cannot read it ({exc!r})"]
    return []


def _limit_problems(block: dict[str, Any]) -> list[str]:
    match block.get("type"):
        case "header":
            return _text_problems(block.get("text"), "text", MAX_HEADER, plain=True)
        case "section":
            return _section_problems(block)
        case "context":
            return _context_problems(block)
        case "actions":
            return _actions_problems(block)
        case "input":
            return _input_problems(block)
    return []


def _text_problems(obj: Any, name: str, limit: int, *, plain: bool = False) -> list[str]:
    kinds = ("plain_text",) if plain else ("plain_text", "mrkdwn")
    if not isinstance(obj, dict):
        return [f"{name} is missing"]
    if obj.get("type") not in kinds:
        return [f"{name} must be a {' or '.join(kinds)} object"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{name} is empty"]
    if len(text) > limit:
        return [f"{name} is {len(text)} characters; at most {limit}"]
    return []


def _id_problems(name: str, value: Any) -> list[str]:
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        return [f"{name} must be 1 to {MAX_ID} characters"]
    return []


def _list(block: dict[str, Any], key: str) -> list[Any]:
    value = block.get(key)
    return value if isinstance(value, list) else []


def _section_problems(block: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    fields = _list(block, "fields")
    if "text" in block or not fields:
        problems += _text_problems(block.get("text"), "text", MAX_TEXT)
    if len(fields) > MAX_SECTION_FIELDS:
        problems.append(f"{len(fields)} fields; at most {MAX_SECTION_FIELDS}")
    for field in fields:
        problems += _text_problems(field, "field", MAX_FIELD_TEXT)
    accessory = block.get("accessory")
    if isinstance(accessory, dict) and accessory.get("type") == "button":
        problems += _button_problems(accessory)
    return problems


def _context_problems(block: dict[str, Any]) -> list[str]:
    elements = _list(block, "elements")
    problems = (
        []
        if 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS
        else [f"{len(elements)} elements; a context holds 1 to {MAX_CONTEXT_ELEMENTS}"]
    )
    for element in elements:
        if isinstance(element, dict) and element.get("type") in ("plain_text", "mrkdwn"):
            problems += _text_problems(element, "element text", MAX_TEXT)
    return problems


def _actions_problems(block: dict[str, Any]) -> list[str]:
    elements = _list(block, "elements")
    problems = (
        []
        if 1 <= len(elements) <= MAX_BUTTONS
        else [f"{len(elements)} elements; an actions block holds 1 to {MAX_BUTTONS}"]
    )
    for element in elements:
        if isinstance(element, dict) and element.get("type") == "button":
            problems += _button_problems(element)
    return problems


def _button_problems(button: dict[str, Any]) -> list[str]:
    problems = _text_problems(button.get("text"), "button text", MAX_BUTTON_TEXT, plain=True)
    value = button.get("value", "")
    if not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE:
        problems.append(f"button value must be text of at most {MAX_BUTTON_VALUE} characters")
    url = button.get("url", "")
    if not isinstance(url, str) or len(url) > MAX_URL:
        problems.append(f"button url must be text of at most {MAX_URL} characters")
    if button.get("style", "primary") not in ("primary", "danger"):
        problems.append(f"button style {button.get('style')!r}: only 'primary' or 'danger'")
    return problems


def _input_problems(block: dict[str, Any]) -> list[str]:
    problems = _text_problems(block.get("label"), "label", MAX_LABEL, plain=True)
    if "hint" in block:
        problems += _text_problems(block.get("hint"), "hint", MAX_LABEL, plain=True)
    element = block.get("element")
    if not isinstance(element, dict):
        return [*problems, "element is missing"]
    match element.get("type"):
        case "plain_text_input":
            limit = element.get("max_length", MAX_INPUT)
            if not isinstance(limit, int) or not 1 <= limit <= MAX_INPUT:
                problems.append(f"max_length must be 1 to {MAX_INPUT}")
                limit = MAX_INPUT
            initial = element.get("initial_value", "")
            if not isinstance(initial, str) or len(initial) > limit:
                problems.append(f"initial_value is longer than max_length {limit}")
        case "static_select" | "radio_buttons" | "checkboxes" as kind:
            problems += _options_problems(element, kind)
    return problems


def _options_problems(element: dict[str, Any], kind: str) -> list[str]:
    options = _list(element, "options")
    most = MAX_CHECKBOX_OPTIONS if kind == "checkboxes" else MAX_OPTIONS
    problems = (
        [] if 1 <= len(options) <= most else [f"{len(options)} options; a {kind} holds 1 to {most}"]
    )
    values: list[Any] = []
    for option in options:
        if not isinstance(option, dict):
            problems.append("an option is not an object")
            continue
        problems += _text_problems(option.get("text"), "option text", MAX_OPTION_TEXT)
        value = option.get("value")
        if not isinstance(value, str) or not value or len(value) > MAX_OPTION_VALUE:
            problems.append(f"option value must be 1 to {MAX_OPTION_VALUE} characters")
        values.append(value)
    if len(set(map(str, values))) != len(values):
        problems.append("option values are not unique")
    initial = [element["initial_option"]] if "initial_option" in element else []
    for chosen in initial + _list(element, "initial_options"):
        if chosen not in options:
            problems.append(f"initial option {chosen!r} is not one of the options")
    return problems


def _action_ids(block: dict[str, Any]) -> Iterator[str]:
    elements = [*_list(block, "elements"), block.get("element"), block.get("accessory")]
    for element in elements:
        if isinstance(element, dict) and "action_id" in element:
            yield str(element["action_id"])
