"""The prompt library: every user-facing text of Boeket, as data, in Dutch and English.

Files per language (``prompts/<lang>/``):

- ``kinds.yaml``: per prompt kind a title, the Senge discipline it serves, and variants, each a
  ``question`` and its ``followup``;
- ``symbolism.yaml``: per symbolism (bloemen, briljanten, bouwstenen) the words and emoji that
  templates use as ``{sym.item}``, ``{sym.items}``, ``{sym.whole}``, ``{sym.emoji}``, …;
- ``ui.yaml``: every other text, addressed by dotted key (``harvest.title``);
- ``digest.yaml``: the texts of the weekly digest, addressed the same way (``digest.title``).

Templates are ``str.format`` strings. Only named fields are allowed; the values are plain text that
each adapter escapes for its platform.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent
LANGUAGES = ("nl", "en")
KINDS = ("succes", "les", "casus", "koers", "waardering", "perspectief")
SYMBOLISMS = ("bloemen", "briljanten", "bouwstenen")
UI_FILES = ("ui.yaml", "digest.yaml", "poster.yaml")  # texts addressed by dotted key, in this order


class PromptError(Exception):
    """The prompt library on disk is incomplete or a template cannot be rendered."""


@dataclass(frozen=True, slots=True)
class Variant:
    question: str
    followup: str


@dataclass(frozen=True, slots=True)
class KindText:
    title: str
    discipline: str
    variants: tuple[Variant, ...]


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    kind: str
    title: str
    question: str
    followup: str
    emoji: str


class _Sym:
    """Gives templates attribute access (``{sym.item}``) to a symbolism's vocabulary."""

    def __init__(self, words: Mapping[str, str]) -> None:
        self._words = words

    def __getattr__(self, name: str) -> str:
        try:
            return self._words[name]
        except KeyError:
            raise AttributeError(name) from None


class _Formatter(string.Formatter):
    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, int):
            raise PromptError("templates use named fields only")
        try:
            return kwargs[key]
        except KeyError:
            raise PromptError(f"unknown field {{{key}}}") from None


_FORMATTER = _Formatter()


def _flatten(prefix: str, node: object, out: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    elif isinstance(node, str):
        out[prefix] = node
    else:
        raise PromptError(f"{prefix}: expected text, found {type(node).__name__}")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PromptError(f"{path}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _Language:
    ui: Mapping[str, str]
    kinds: Mapping[str, KindText]
    symbolism: Mapping[str, Mapping[str, str]]
    demo: Mapping[str, Any]


def _text(node: object, where: str) -> str:
    if not isinstance(node, str) or not node.strip():
        raise PromptError(f"{where}: expected a non-empty text")
    return node.strip()


def _load_kinds(path: Path) -> dict[str, KindText]:
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected a mapping of prompt kinds")
    missing = set(KINDS) - set(data)
    if missing:
        raise PromptError(f"{path}: missing prompt kinds {sorted(missing)}")
    kinds: dict[str, KindText] = {}
    for kind, node in data.items():
        where = f"{path}: {kind}"
        if not isinstance(node, dict) or not isinstance(node.get("variants"), list):
            raise PromptError(f"{where}: expected title, discipline and a list of variants")
        if not node["variants"]:
            raise PromptError(f"{where}: needs at least one variant")
        variants = tuple(
            Variant(
                question=_text(v.get("question") if isinstance(v, dict) else None, f"{where}[{i}]"),
                followup=_text(v.get("followup") if isinstance(v, dict) else None, f"{where}[{i}]"),
            )
            for i, v in enumerate(node["variants"])
        )
        kinds[kind] = KindText(
            _text(node.get("title"), f"{where}.title"),
            _text(node.get("discipline"), f"{where}.discipline"),
            variants,
        )
    return kinds


def _load_symbolism(path: Path) -> dict[str, Mapping[str, str]]:
    data = _read_yaml(path)
    if not isinstance(data, dict) or set(SYMBOLISMS) - set(data):
        raise PromptError(f"{path}: expected the symbolisms {list(SYMBOLISMS)}")
    return {
        name: MappingProxyType(
            {k: _text(v, f"{path}: {name}.{k}") for k, v in (words or {}).items()}
        )
        for name, words in data.items()
    }


def _load_language(folder: Path) -> _Language:
    ui: dict[str, str] = {}
    for name in UI_FILES:
        part: dict[str, str] = {}
        _flatten("", _read_yaml(folder / name) or {}, part)
        if clash := sorted(set(part) & set(ui)):
            raise PromptError(f"{folder / name}: keys defined twice: {', '.join(clash)}")
        ui.update(part)
    demo_path = folder / "demo.yaml"
    demo = _read_yaml(demo_path) if demo_path.exists() else {}
    return _Language(
        MappingProxyType(ui),
        MappingProxyType(_load_kinds(folder / "kinds.yaml")),
        _load_symbolism(folder / "symbolism.yaml"),
        demo or {},
    )


class PromptLibrary:
    """Loaded prompt texts for every language; cheap to share, never mutated."""

    def __init__(self, languages: Mapping[str, _Language]) -> None:
        self._languages = dict(languages)

    @classmethod
    def load(cls, root: Path = ROOT) -> PromptLibrary:
        return cls({lang: _load_language(root / lang) for lang in LANGUAGES})

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self._languages)

    def _lang(self, lang: str) -> _Language:
        try:
            return self._languages[lang]
        except KeyError:
            raise PromptError(f"no prompts for language {lang!r}") from None

    def ui_keys(self, lang: str) -> frozenset[str]:
        return frozenset(self._lang(lang).ui)

    def kinds(self, lang: str) -> Mapping[str, KindText]:
        return self._lang(lang).kinds

    def vocabulary(self, lang: str, symbolism: str) -> Mapping[str, str]:
        try:
            return self._lang(lang).symbolism[symbolism]
        except KeyError:
            raise PromptError(f"no symbolism {symbolism!r} in {lang}") from None

    def demo(self, lang: str) -> Mapping[str, Any]:
        return self._lang(lang).demo

    def format(self, template: str, lang: str, symbolism: str, **params: object) -> str:
        """Fill a template; ``{sym.*}`` comes from the symbolism, the rest from `params`."""
        fields = {"sym": _Sym(self.vocabulary(lang, symbolism)), **params}
        try:
            return _FORMATTER.vformat(template, (), fields).strip()
        except (AttributeError, IndexError, ValueError) as exc:
            raise PromptError(f"cannot render {template!r}: {exc}") from exc

    def template(self, lang: str, key: str) -> str:
        """The unrendered UI template under dotted `key`."""
        try:
            return self._lang(lang).ui[key]
        except KeyError:
            raise PromptError(f"no text {key!r} in {lang}") from None

    def text(self, lang: str, key: str, *, symbolism: str = "bloemen", **params: object) -> str:
        """The UI text under dotted `key`, rendered."""
        return self.format(self.template(lang, key), lang, symbolism, **params)

    def kind_title(self, lang: str, kind: str) -> str:
        return self._kind(lang, kind).title

    def _kind(self, lang: str, kind: str) -> KindText:
        try:
            return self._lang(lang).kinds[kind]
        except KeyError:
            raise PromptError(f"no prompt kind {kind!r} in {lang}") from None

    def variant_count(self, lang: str, kind: str) -> int:
        return len(self._kind(lang, kind).variants)

    def render_prompt(
        self,
        lang: str,
        kind: str,
        variant: int,
        *,
        symbolism: str,
        department: str,
        goal: str = "",
        theme: str = "",
        other_department: str = "",
    ) -> RenderedPrompt:
        """Render variant number `variant` (wrapping around) of `kind` for one department."""
        text = self._kind(lang, kind)
        chosen = text.variants[variant % len(text.variants)]
        params = {
            "department": department,
            "goal": goal,
            "theme": theme,
            "other_department": other_department,
        }
        return RenderedPrompt(
            kind=kind,
            title=self.format(text.title, lang, symbolism, **params),
            question=self.format(chosen.question, lang, symbolism, **params),
            followup=self.format(chosen.followup, lang, symbolism, **params),
            emoji=self.vocabulary(lang, symbolism).get(f"emoji_{kind}", ""),
        )


def pick_variant(seed: str, count: int) -> int:
    """A stable variant choice for a round, so every replica renders the same text."""
    return random.Random(seed).randrange(count)  # noqa: S311 - choice of wording, not security
