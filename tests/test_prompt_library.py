"""The prompt library's content: both languages complete, parallel and renderable."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import OrgConfig, load_config
from prompts.library import KINDS, LANGUAGES, SYMBOLISMS, PromptError, PromptLibrary
from prompts.library import ROOT as LIBRARY

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "bot" / "examples" / "ziekenhuis.yaml"

VOCABULARY_KEYS = frozenset(
    {"name", "item", "items", "whole", "emoji", "whole_emoji", "harvest"}
    | {f"emoji_{kind}" for kind in KINDS}
)
DISCIPLINES = {
    "nl": {
        "persoonlijk meesterschap",
        "mentale modellen",
        "gedeelde visie",
        "teamleren",
        "systemisch denken",
    },
    "en": {
        "personal mastery",
        "mental models",
        "shared vision",
        "team learning",
        "systems thinking",
    },
}
# Disciplines the brief fixes per kind (waardering is free to be either of two).
FIXED_DISCIPLINES = {
    "nl": {
        "succes": "persoonlijk meesterschap",
        "les": "mentale modellen",
        "casus": "teamleren",
        "koers": "gedeelde visie",
        "perspectief": "systemisch denken",
    },
    "en": {
        "succes": "personal mastery",
        "les": "mental models",
        "casus": "team learning",
        "koers": "shared vision",
        "perspectief": "systems thinking",
    },
}
# Blame-shaped wording has no place in a reflection prompt (psychological safety).
BLAME_WORDS = {
    "nl": ("schuld", "wiens", "wie heeft", "wie deed", "verwijt", "fout gedaan"),
    "en": ("blame", "fault", "whose", "who did", "who made", "screwed"),
}


@pytest.fixture(scope="module")
def library() -> PromptLibrary:
    return PromptLibrary.load()


@pytest.fixture(scope="module")
def config() -> OrgConfig:
    return load_config(EXAMPLE)


def test_both_languages_are_loaded(library: PromptLibrary) -> None:
    assert set(library.languages) == set(LANGUAGES)


def test_ui_keys_match_across_languages(library: PromptLibrary) -> None:
    nl, en = library.ui_keys("nl"), library.ui_keys("en")
    assert nl - en == set(), f"only in nl/ui.yaml: {sorted(nl - en)}"
    assert en - nl == set(), f"only in en/ui.yaml: {sorted(en - nl)}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_kind_is_present(library: PromptLibrary, lang: str) -> None:
    assert set(library.kinds(lang)) == set(KINDS)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_kinds_have_title_discipline_and_enough_variants(library: PromptLibrary, lang: str) -> None:
    for kind, text in library.kinds(lang).items():
        assert text.title.strip(), kind
        assert text.discipline in DISCIPLINES[lang], (kind, text.discipline)
        assert len(text.variants) >= 4, kind
        for i, variant in enumerate(text.variants):
            assert variant.question.strip(), (kind, i)
            assert variant.followup.strip(), (kind, i)
        assert len({v.question for v in text.variants}) == len(text.variants), f"{kind}: duplicates"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_kinds_serve_the_intended_discipline(library: PromptLibrary, lang: str) -> None:
    kinds = library.kinds(lang)
    for kind, discipline in FIXED_DISCIPLINES[lang].items():
        assert kinds[kind].discipline == discipline, kind
    assert kinds["waardering"].discipline in {
        kinds["succes"].discipline,
        kinds["casus"].discipline,
    }


def test_disciplines_translate_consistently(library: PromptLibrary) -> None:
    pairs = {
        (library.kinds("nl")[kind].discipline, library.kinds("en")[kind].discipline)
        for kind in KINDS
    }
    nl_to_en = dict(pairs)
    assert len(nl_to_en) == len(pairs), f"one Dutch discipline, two translations: {pairs}"
    assert len(set(nl_to_en.values())) == len(nl_to_en)


@pytest.mark.parametrize("kind", KINDS)
def test_variant_counts_match_across_languages(library: PromptLibrary, kind: str) -> None:
    assert library.variant_count("nl", kind) == library.variant_count("en", kind)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_blame_shaped_wording(library: PromptLibrary, lang: str) -> None:
    for kind, text in library.kinds(lang).items():
        for variant in text.variants:
            for sentence in (variant.question, variant.followup):
                lowered = sentence.lower()
                hits = [word for word in BLAME_WORDS[lang] if word in lowered]
                assert not hits, (kind, sentence)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_symbolism_vocabulary_is_complete(library: PromptLibrary, lang: str) -> None:
    for name in SYMBOLISMS:
        words = library.vocabulary(lang, name)
        assert set(words) == VOCABULARY_KEYS, name
        assert all(value.strip() for value in words.values()), name
        assert "{" not in "".join(words.values()), name
    items = {library.vocabulary(lang, name)["item"] for name in SYMBOLISMS}
    wholes = {library.vocabulary(lang, name)["whole"] for name in SYMBOLISMS}
    assert len(items) == len(SYMBOLISMS)
    assert len(wholes) == len(SYMBOLISMS)


def test_symbolism_keys_match_across_languages(library: PromptLibrary) -> None:
    for name in SYMBOLISMS:
        nl, en = library.vocabulary("nl", name), library.vocabulary("en", name)
        assert set(nl) == set(en), name
        emoji_keys = [key for key in nl if key.startswith("emoji") or key == "whole_emoji"]
        for key in emoji_keys:
            assert nl[key] == en[key], f"{name}.{key}: emoji should not depend on the language"


def test_unknown_symbolism_is_an_error(library: PromptLibrary) -> None:
    with pytest.raises(PromptError):
        library.vocabulary("nl", "tulpenbollen")


def _render_cases(config: OrgConfig) -> list[tuple[str, str, str, str]]:
    """(department name, goal title, theme title, other department name) for every department."""
    cases = []
    for dept in config.departments:
        goals = [g.title for gid in dept.goals if (g := config.goal(gid))]
        goals = goals or [config.goals[0].title]
        themes = [t.title for tid in dept.themes if (t := config.theme(tid))] + [""]
        others = [d.name for d in config.departments if d.id != dept.id]
        for goal, theme, other in itertools.product(goals, themes, others):
            cases.append((dept.name, goal, theme, other))
    return cases


def test_every_variant_renders_for_every_department(
    library: PromptLibrary, config: OrgConfig
) -> None:
    cases = _render_cases(config)
    assert len(cases) >= len(config.departments) * 4
    for dept in config.departments:
        assert config.language_of(dept) in library.languages
    rendered = 0
    for lang, symbolism, kind in itertools.product(LANGUAGES, SYMBOLISMS, KINDS):
        for variant in range(library.variant_count(lang, kind)):
            for department, goal, theme, other in cases:
                prompt = library.render_prompt(
                    lang,
                    kind,
                    variant,
                    symbolism=symbolism,
                    department=department,
                    goal=goal,
                    theme=theme,
                    other_department=other,
                )
                where = (lang, symbolism, kind, variant, department)
                for text in (prompt.title, prompt.question, prompt.followup):
                    assert text, where
                    assert "{" not in text, (where, text)
                    assert "}" not in text, (where, text)
                    assert "  " not in text, (where, text)
                assert prompt.emoji, where
                assert prompt.emoji == library.vocabulary(lang, symbolism)[f"emoji_{kind}"]
                if kind == "koers":
                    assert goal in prompt.question, (where, prompt.question)
                if kind == "perspectief":
                    assert other in prompt.question, (where, prompt.question)
                rendered += 1
    assert rendered > 0


def test_prompts_render_in_each_departments_language(
    library: PromptLibrary, config: OrgConfig
) -> None:
    for dept in config.departments:
        lang = config.language_of(dept)
        goal = config.goal(dept.goals[0]) if dept.goals else config.goals[0]
        assert goal is not None
        other = next(d for d in config.departments if d.id != dept.id)
        for kind in KINDS:
            prompt = library.render_prompt(
                lang,
                kind,
                0,
                symbolism=config.symbolism,
                department=dept.name,
                goal=goal.title,
                other_department=other.name,
            )
            assert prompt.title == library.kind_title(lang, kind)
            assert prompt.question
            assert prompt.followup


@pytest.mark.parametrize("lang", LANGUAGES)
def test_symbolism_changes_the_words(library: PromptLibrary, lang: str) -> None:
    with_sym = 0
    without_sym = 0
    for text in library.kinds(lang).values():
        for variant in text.variants:
            for template in (variant.question, variant.followup):
                if "{sym." not in template:
                    without_sym += 1
                    continue
                with_sym += 1
                rendered = {
                    name: library.format(
                        template,
                        lang,
                        name,
                        department="Afdeling X",
                        goal="Doel Y",
                        theme="",
                        other_department="Afdeling Z",
                    )
                    for name in SYMBOLISMS
                }
                assert rendered["bloemen"] != rendered["bouwstenen"], template
                assert len(set(rendered.values())) == len(SYMBOLISMS), template
    assert with_sym >= 3, "some variants should speak the organisation's symbolism"
    assert without_sym > with_sym, "most variants should read fine without symbolism"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_item_template_follows_symbolism(library: PromptLibrary, lang: str) -> None:
    bloem = library.format("{sym.item} {sym.whole}", lang, "bloemen")
    steen = library.format("{sym.item} {sym.whole}", lang, "bouwstenen")
    assert bloem != steen
    assert library.vocabulary(lang, "bloemen")["item"] in bloem
    assert library.vocabulary(lang, "bouwstenen")["item"] in steen


def _demo(library: PromptLibrary, lang: str) -> dict[str, object]:
    demo = dict(library.demo(lang))
    assert set(demo) >= {"answers", "shares"}, lang
    return demo


def test_demo_answers_cover_every_department_and_kind(
    library: PromptLibrary, config: OrgConfig
) -> None:
    dept_ids = {d.id for d in config.departments}
    for lang in LANGUAGES:
        answers = _demo(library, lang)["answers"]
        assert isinstance(answers, dict)
        assert set(answers) == dept_ids, lang
        for dept_id, per_kind in answers.items():
            assert set(per_kind) == set(KINDS), (lang, dept_id)
            for kind, texts in per_kind.items():
                assert isinstance(texts, list), (lang, dept_id, kind)
                assert len(texts) >= 3, (lang, dept_id, kind)
                for text in texts:
                    assert isinstance(text, str), (lang, dept_id, kind)
                    assert text.strip(), (lang, dept_id, kind)
                    assert "{" not in text, text
                    assert "}" not in text, text
                assert len(set(texts)) == len(texts), (lang, dept_id, kind)


def test_demo_answers_are_parallel_across_languages(library: PromptLibrary) -> None:
    nl = _demo(library, "nl")["answers"]
    en = _demo(library, "en")["answers"]
    assert isinstance(nl, dict)
    assert isinstance(en, dict)
    assert set(nl) == set(en)
    for dept_id in nl:
        assert set(nl[dept_id]) == set(en[dept_id]), dept_id
        for kind in nl[dept_id]:
            assert len(nl[dept_id][kind]) == len(en[dept_id][kind]), (dept_id, kind)
            assert nl[dept_id][kind] != en[dept_id][kind], f"{dept_id}.{kind} not translated"


def test_demo_shares_refer_to_the_example_config(library: PromptLibrary, config: OrgConfig) -> None:
    dept_ids = {d.id for d in config.departments}
    theme_ids = {t.id for t in config.themes}
    goal_ids = {g.id for g in config.goals}
    for lang in LANGUAGES:
        shares = _demo(library, lang)["shares"]
        assert isinstance(shares, list)
        for i, share in enumerate(shares):
            where = (lang, i)
            assert set(share) == {
                "department",
                "what",
                "preconditions",
                "effect",
                "theme",
                "goal",
                "anonymous",
            }, where
            assert share["department"] in dept_ids, where
            assert share["theme"] in theme_ids, where
            assert share["goal"] in goal_ids, where
            assert isinstance(share["anonymous"], bool), where
            for field in ("what", "preconditions", "effect"):
                assert isinstance(share[field], str), where
                assert share[field].strip(), where
        per_department = {d: sum(s["department"] == d for s in shares) for d in dept_ids}
        assert min(per_department.values()) >= 2, (lang, per_department)


def test_demo_shares_are_parallel_across_languages(library: PromptLibrary) -> None:
    nl = _demo(library, "nl")["shares"]
    en = _demo(library, "en")["shares"]
    assert isinstance(nl, list)
    assert isinstance(en, list)
    assert len(nl) == len(en)
    for i, (a, b) in enumerate(zip(nl, en, strict=True)):
        for key in ("department", "theme", "goal", "anonymous"):
            assert a[key] == b[key], (i, key)
        assert a["what"] != b["what"], f"share {i} not translated"


@pytest.mark.parametrize(
    ("file", "damage"),
    [
        ("kinds.yaml", lambda d: d.pop("koers")),
        ("kinds.yaml", lambda d: d["les"].update(variants=[])),
        ("kinds.yaml", lambda d: d["les"]["variants"][0].pop("followup")),
        ("symbolism.yaml", lambda d: d.pop("briljanten")),
        ("symbolism.yaml", lambda d: d["bloemen"].update(item="")),
    ],
)
def test_a_damaged_library_is_refused_at_load(tmp_path: Path, file: str, damage: Any) -> None:
    for lang in ("nl", "en"):
        shutil.copytree(LIBRARY / lang, tmp_path / lang)
    data = yaml.safe_load((tmp_path / "nl" / file).read_text(encoding="utf-8"))
    damage(data)
    (tmp_path / "nl" / file).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PromptError, match=file):
        PromptLibrary.load(tmp_path)
