"""`boeket export`: a period's contributions for a strategy session, per goal, theme and department.

Markdown to read and print, CSV for a spreadsheet, JSON for other tools. Built on the overview, so
it keeps the same privacy: no "don't share" contributions, no names of anonymous contributors, and
names of others only when they agreed to be named outside their team.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from typing import Any

from bot.overview import Entry, Overview

Text = Callable[..., str]
FORMATS = ("md", "csv", "json")
# A cell starting with one of these is read as a formula by spreadsheet programs.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def export(overview: Overview, fmt: str, t: Text) -> str:
    if fmt == "md":
        return markdown(overview, t)
    if fmt == "csv":
        return to_csv(overview, t)
    if fmt == "json":
        return json.dumps(to_json(overview), ensure_ascii=False, indent=2) + "\n"
    raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")


def _entry_json(e: Entry) -> dict[str, Any]:
    return {
        "id": e.id,
        "date": e.created_at.date().isoformat(),
        "department": e.department_id,
        "department_name": e.department,
        "kind": e.kind.value,
        "source": e.source.value,
        "themes": list(e.themes),
        "goal": e.goal_id,
        "text": e.text,
        "preconditions": e.preconditions,
        "effect": e.effect,
        "anonymous": e.anonymous,
        "author": e.author or None,
        "travelled_to": [
            {
                "target": s.target,
                "posted": s.posted,
                "verdicts": list(s.verdicts),
                "translations": list(s.translations),
            }
            for s in e.journey
        ],
    }


def to_json(o: Overview) -> dict[str, Any]:
    return {
        "organisation": o.organisation,
        "from": o.since.isoformat(),
        "to": o.until.isoformat(),
        "contributions": [_entry_json(e) for e in o.entries],
        "withheld": o.withheld,
        "per_goal": {goal: [e.id for e in items] for goal, items in o.per_goal().items()},
        "per_theme": {theme: [e.id for e in items] for theme, items in o.per_theme().items()},
        "per_department": {
            dept: {kind.value: n for kind, n in counts.items()}
            for dept, counts in o.per_department().items()
        },
    }


def _cell(value: str) -> str:
    """Plain text in a spreadsheet: a leading formula character is quoted away."""
    return "'" + value if value.startswith(_FORMULA) else value


def to_csv(o: Overview, t: Text) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "id",
            "date",
            "department",
            "kind",
            "source",
            "themes",
            "goal",
            "text",
            "preconditions",
            "effect",
            "author",
            "travelled_to",
        ]
    )
    for e in o.entries:
        writer.writerow(
            [
                str(e.id),
                e.created_at.date().isoformat(),
                _cell(e.department),
                e.kind.value,
                e.source.value,
                ";".join(e.themes),
                e.goal_id or "",
                _cell(e.text),
                _cell(e.preconditions),
                _cell(e.effect),
                _cell(e.author if e.author else (t("common.anonymous") if e.anonymous else "")),
                ";".join(s.target for s in e.journey if s.posted),
            ]
        )
    return out.getvalue()


def _md(text: str) -> str:
    """A person's words in Markdown: no headings, links, emphasis or HTML of their making."""
    text = " ".join(text.split())
    for ch in "\\`*_[]<>|":
        text = text.replace(ch, "\\" + ch)
    if text[:1] in ("#", "-", "+") or re.match(r"\d+[.)]", text):
        text = "\\" + text  # not a heading or a list item
    return text


def _md_line(e: Entry, t: Text) -> str:
    who = e.author or (t("common.anonymous") if e.anonymous else "")
    parts = [f"- {_md(e.text)}"]
    if e.preconditions:
        parts.append(t("export.preconditions", text=_md(e.preconditions)))
    if e.effect:
        parts.append(t("export.effect", text=_md(e.effect)))
    meta = [_md(e.department), e.kind_title, e.created_at.date().isoformat()]
    if who:
        meta.append(_md(who))
    line = " ".join(parts) + f" — _{' · '.join(meta)}_"
    travelled = [s for s in e.journey if s.posted]
    if travelled:
        line += "\n  " + t("export.travelled", targets=", ".join(_md(s.target) for s in travelled))
        for s in travelled:
            for said in s.translations:
                line += "\n  " + t("export.translated", target=_md(s.target), text=_md(said))
    return line


def markdown(o: Overview, t: Text) -> str:
    lines = [
        "# " + t("export.title", organisation=_md(o.organisation)),
        "",
        t(
            "export.period",
            start=o.since.isoformat(),
            end=o.until.isoformat(),
            count=len(o.entries),
        ),
    ]
    if o.withheld:
        lines += ["", t("export.withheld", count=o.withheld)]
    by_goal = o.per_goal()
    lines += ["", "## " + t("export.per_goal")]
    for goal_id, title in o.goals:
        items = by_goal.get(goal_id, [])
        lines += ["", f"### {_md(title)} ({len(items)})", ""]
        lines += [_md_line(e, t) for e in items] or [t("export.none")]
    by_theme = o.per_theme()
    lines += ["", "## " + t("export.per_theme")]
    for theme_id, title in o.themes:
        items = by_theme.get(theme_id, [])
        if items:
            lines += ["", f"### {_md(title)} ({len(items)})", ""]
            lines += [_md_line(e, t) for e in items]
    lines += ["", "## " + t("export.per_department")]
    counts = o.per_department()
    titles = {e.kind: e.kind_title for e in o.entries}
    for dept_id, name in o.departments:
        items = [e for e in o.entries if e.department_id == dept_id]
        summary = ", ".join(
            t("export.kind_count", kind=titles.get(k, k.value), count=n)
            for k, n in sorted(counts.get(dept_id, {}).items(), key=lambda kv: kv[0].value)
            if n
        )
        lines += ["", f"### {_md(name)} ({len(items)})", ""]
        if summary:
            lines += [summary, ""]
        lines += [_md_line(e, t) for e in items] or [t("export.none")]
    return "\n".join(lines) + "\n"
