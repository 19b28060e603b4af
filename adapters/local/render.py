"""Pure functions from neutral messages and forms to the local chat's HTML, JSON and plain text.

Everything a person typed is escaped with `html.escape`: the browser shows it, never runs it.
"""

from __future__ import annotations

from html import escape
from typing import Any

from bot.messages import (
    Actions,
    Block,
    Bullets,
    Context,
    Divider,
    Form,
    Header,
    Message,
    Section,
)


def block_html(block: Block) -> str:
    match block:
        case Header(text=text):
            return f'<div class="b-header">{escape(text)}</div>'
        case Section(text=text, title=title, quote=quote):
            head = f"<strong>{escape(title)}</strong><br>" if title else ""
            cls = "b-section b-quote" if quote else "b-section"
            return f'<div class="{cls}">{head}{_lines(text)}</div>'
        case Bullets(items=items, title=title):
            head = f"<strong>{escape(title)}</strong>" if title else ""
            lis = "".join(f"<li>{_lines(item)}</li>" for item in items)
            return f'<div class="b-bullets">{head}<ul>{lis}</ul></div>'
        case Context(text=text):
            return f'<div class="b-context">{_lines(text)}</div>'
        case Divider():
            return "<hr>"
        case Actions(buttons=buttons):
            return (
                '<div class="b-actions">'
                + "".join(
                    f'<button class="btn btn-{escape(b.style)}" '
                    f'data-action="{escape(b.action_id)}" data-value="{escape(b.value)}">'
                    f"{escape(b.label)}</button>"
                    for b in buttons
                )
                + "</div>"
            )
    raise TypeError(f"unknown block {block!r}")  # pragma: no cover


def _lines(text: str) -> str:
    return escape(text).replace("\n", "<br>")


def message_html(message: Message) -> str:
    if not message.blocks:
        return f'<div class="b-section">{_lines(message.text)}</div>'
    return "".join(block_html(b) for b in message.blocks)


def block_text(block: Block) -> str:
    match block:
        case Header(text=text):
            return f"*{text}*"
        case Section(text=text, title=title):
            return f"{title}\n{text}" if title else text
        case Bullets(items=items, title=title):
            lines = [title] if title else []
            return "\n".join([*lines, *(f"  • {item}" for item in items)])
        case Context(text=text):
            return f"  ({text})"
        case Divider():
            return "----"
        case Actions(buttons=buttons):
            return "  " + " ".join(f"[{b.label}]" for b in buttons)
    raise TypeError(f"unknown block {block!r}")  # pragma: no cover


def message_text(message: Message) -> str:
    if not message.blocks:
        return message.text
    return "\n".join(block_text(b) for b in message.blocks)


def buttons(message: Message) -> list[dict[str, str]]:
    return [
        {"action_id": b.action_id, "label": b.label, "value": b.value}
        for block in message.blocks
        if isinstance(block, Actions)
        for b in block.buttons
    ]


def form_json(form: Form) -> dict[str, Any]:
    """The form as JSON for the browser, which builds inputs with textContent (no HTML)."""
    return {
        "form_id": form.form_id,
        "title": form.title,
        "intro": form.intro,
        "submit_label": form.submit_label,
        "meta": form.meta,
        "fields": [
            {
                "name": f.name,
                "label": f.label,
                "kind": f.kind,
                "required": f.required,
                "max_length": f.max_length,
                "hint": f.hint,
                "initial": f.initial,
                "options": [{"value": o.value, "label": o.label} for o in f.options],
            }
            for f in form.fields
        ],
    }
