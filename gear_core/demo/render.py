"""Rendering the report: to the terminal (ANSI colour only when asked) and to one self-contained HTML page."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Sequence
from string import Template
from typing import TYPE_CHECKING, TextIO

from gear_core.demo.passages import Passage
from gear_core.demo.report import DemoReport
from gear_core.evidence import GroundedEvidence
from gear_core.text import NOT_ENGLISH_NOTE, PARAGRAPH_BREAK, Sentence, looks_english

if TYPE_CHECKING:
    from gear_core.retrieval import SearchResult

# SGR codes: rank 1 black on yellow (bold), rank 2 black on cyan, lower ranks black on grey.
_HIGHLIGHTS = ("1;30;43", "30;46", "30;47")
_BOLD, _DIM, _TITLE, _EVIDENCE = "1", "2", "1;36", "32"


SCORES_LEGEND = (
    "passage score: GeAR's and BM25's scores, each standardised over the passages either found, then summed "
    "(--mode dense: GeAR's own, the cosine of question and passage plus, with the shipped model, the cosine of "
    "question and the passage's best sentence); sentence score: the sentence's share of the passage's "
    "relevance (a passage's sentence scores sum to 1): the model's cross-attention, mixed with BM25 over the "
    "passage's sentences as the model's ranking_lexical_weight sets (the shipped model: half each)"
)
MARKS_LEGEND = "marks: yellow = best sentence, cyan = second, grey = third and lower"


# ----------------------------------------------------------------------------------------------------------
# Rendering, shared: which parts of a passage to show, cut into runs that are or are not a ranked sentence.


def excerpt_windows(
    text: str, sentences: Sequence[Sentence], max_chars: int = 700, context: int = 180
) -> list[tuple[int, int]]:
    """The ``[start, end)`` parts of ``text`` to show: all of it when short, else each highlighted sentence with
    about ``context`` characters either side (cut at word boundaries, overlapping parts merged)."""
    if len(text) <= max_chars:
        return [(0, len(text))]
    if not sentences:
        return [(0, _word_end(text, max_chars, 0))]
    windows: list[tuple[int, int]] = []
    for sentence in sorted(sentences, key=lambda s: s.start_char):
        start = _word_start(text, sentence.start_char - context, sentence.start_char)
        end = _word_end(text, sentence.end_char + context, sentence.end_char)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
        else:
            windows.append((start, end))
    return windows


def _word_start(text: str, position: int, limit: int) -> int:
    """``position`` moved forward (never past ``limit``) to the start of a word."""
    position = max(position, 0)
    while 0 < position < limit and not text[position - 1].isspace():
        position += 1
    return position


def _word_end(text: str, position: int, limit: int) -> int:
    """``position`` moved back (never before ``limit``) to the end of a word."""
    position = min(position, len(text))
    while limit < position < len(text) and not text[position].isspace():
        position -= 1
    return position


def passage_runs(text: str, sentences: Sequence[Sentence], windows: Sequence[tuple[int, int]]) -> list[tuple[str, int]]:
    """``(text, rank)`` runs of the windows of ``text``: ``rank`` is the 1-based rank of the ranked sentence the
    run belongs to, 0 for other text; gaps between windows (and cut ends) become ``"…"`` runs."""
    marks = sorted((s.start_char, s.end_char, rank) for rank, s in enumerate(sentences, start=1))
    runs: list[tuple[str, int]] = [("… ", 0)] if windows[0][0] > 0 else []
    for number, (start, end) in enumerate(windows):
        if number:
            runs.append((" … ", 0))
        position = start
        for mark_start, mark_end, rank in marks:
            cut_start, cut_end = max(mark_start, start), min(mark_end, end)
            if cut_start < cut_end:
                runs += [(text[position:cut_start], 0), (text[cut_start:cut_end], rank)]
                position = cut_end
        runs.append((text[position:end], 0))
    if windows[-1][1] < len(text):
        runs.append((" …", 0))
    return [run for run in runs if run[0]]


# ----------------------------------------------------------------------------------------------------------
# Rendering to the terminal.


def use_color(stream: TextIO, no_color: bool = False) -> bool:
    """ANSI colour only for a terminal, and never with --no-color or a non-empty NO_COLOR (no-color.org)."""
    return not no_color and not os.environ.get("NO_COLOR") and stream.isatty()


def _highlight(rank: int) -> str:
    return _HIGHLIGHTS[min(rank, len(_HIGHLIGHTS)) - 1]


def _paint(text: str, code: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if code and text else text


def _wrap(runs: Sequence[tuple[str, str]], width: int, indent: str) -> list[str]:
    """Fill ``(text, SGR code)`` runs into lines of at most ``width`` visible characters (a longer word gets a
    line of its own). Whitespace is collapsed; a space between two words of the same style takes that style, so
    a highlighted sentence reads as one bar."""
    words: list[list[tuple[str, str]]] = []
    glued = False  # whether the next token continues the last word (runs can meet inside a word)
    for text, code in runs:
        for token in re.findall(r"\s+|\S+", text):
            if token.isspace():
                glued = False
            elif glued:
                words[-1].append((token, code))
            else:
                words.append([(token, code)])
                glued = True
    lines: list[list[list[tuple[str, str]]]] = []
    used = 0
    for word in words:
        size = sum(len(token) for token, _ in word)
        if lines and lines[-1] and used + 1 + size <= width:
            lines[-1].append(word)
            used += 1 + size
        else:
            lines.append([word])
            used = size
    rendered = []
    for line in lines:
        parts: list[tuple[str, str]] = []
        for i, word in enumerate(line):
            if i:
                before, after = line[i - 1][-1][1], word[0][1]
                parts.append((" ", after if before == after else ""))
            parts += word
        merged: list[tuple[str, str]] = []  # one escape sequence per run of a style, not per word
        for text, code in parts:
            if merged and merged[-1][1] == code:
                merged[-1] = (merged[-1][0] + text, code)
            else:
                merged.append((text, code))
        rendered.append(indent + "".join(_paint(text, code) for text, code in merged))
    return rendered


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 1, 0)].rstrip() + "…"


def render_terminal(report: DemoReport, color: bool, width: int = 100) -> str:
    """The report as terminal text: ANSI-coloured highlights with ``color``, ``[[...]]`` marks without."""

    def paint(text: str, code: str) -> str:
        return _paint(text, code) if color else text

    lines = [
        paint("GeAR demo", _BOLD),
        f"  model   {report.model}",
        f"  corpus  {report.corpus}: {report.documents} documents, {report.passages} passages",
        f"  index   {'built' if report.index_built else 'loaded'} in {report.index_seconds:.1f} s ({report.index_dir})",
        paint(f"  scores  {SCORES_LEGEND}", _DIM),
        paint(f"  {MARKS_LEGEND if color else 'marks: [[best sentences]]'}", _DIM),
    ]
    for number, answer in enumerate(report.answers, start=1):
        lines += ["", paint(f"Q{number}. {answer.question}", _BOLD) + paint(f"   ({answer.seconds:.2f} s)", _DIM)]
        if not looks_english(answer.question):
            lines.append(paint(f"  note: {NOT_ENGLISH_NOTE}", _DIM))
        if not answer.results:
            lines.append("  (no documents)")
        for result in answer.results:
            lines += _terminal_hit(result, color, width, paint, report.search_mode == "hybrid")
    if report.answers:
        times = [a.seconds for a in report.answers]
        lines += [
            "",
            paint(
                f"timing: model {report.model_seconds:.1f} s · index {'built' if report.index_built else 'loaded'} "
                f"in {report.index_seconds:.1f} s · search {sum(times) / len(times):.2f} s per question "
                f"({min(times):.2f}–{max(times):.2f} s)",
                _DIM,
            ),
        ]
    if report.attribution:
        lines.append(paint(report.attribution, _DIM))
    return "\n".join(lines)


def _terminal_hit(
    result: SearchResult, color: bool, width: int, paint: Callable[[str, str], str], hybrid: bool
) -> list[str]:
    passage = Passage.from_id(result.id, result.text)
    indent = "     "
    lines = [
        f"  {result.rank}. "
        + paint(passage.source, _TITLE)
        + paint(f"  score {result.score:.3f}{_found_by(result, hybrid)} · chars {passage.start}-{passage.end}", _DIM)
    ]
    runs = passage_runs(result.text, result.sentences, excerpt_windows(result.text, result.sentences))
    if color:
        styled = [(text, _highlight(rank) if rank else "") for text, rank in runs]
    else:  # visible marks instead of colour
        styled = [(f"[[{text}]]" if rank else text, "") for text, rank in runs]
    lines += _wrap(styled, width - len(indent), indent)
    for rank, sentence in enumerate(result.sentences, start=1):
        marker = paint(f"#{rank}", _highlight(rank))
        where = passage.location(sentence.start_char, sentence.end_char)
        prefix = f"{sentence.score:.3f}  {where}  "
        room = width - len(indent) - len(f"#{rank} ") - len(prefix)
        lines.append(f"{indent}{marker} " + paint(prefix, _DIM) + _shorten(sentence.text, max(room, 20)))
    if result.evidence is not None:
        evidence = "evidence: " + (result.evidence.text or "-") + "  " + _grounding(result.evidence, passage)
        lines += _wrap([(evidence, _EVIDENCE if color else "")], width - len(indent), indent)
    return lines


def _grounding(evidence: GroundedEvidence, passage: Passage) -> str:
    """Where the evidence stands in the passage and how well that span supports it."""
    if not evidence.text:  # the span reader abstained: its best span was too unlikely to show
        return f"(no answer in this passage: support {evidence.support:.2f})"
    if not evidence.grounded:
        return f"(ungrounded: support {evidence.support:.2f})"
    return f"(support {evidence.support:.2f} at {passage.location(evidence.start_char, evidence.end_char)})"


# ----------------------------------------------------------------------------------------------------------
# Rendering to HTML: one self-contained page (inline CSS, no scripts, no external resources).

_HTML_PAGE = Template(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GeAR demo</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; }
.meta, .time, .where, .attribution { color: #666; font-size: .9rem; }
section { border-top: 1px solid #ddd; margin-top: 1.5rem; }
article { margin: 1rem 0 1.5rem 1rem; }
h3 { margin: .2rem 0; font-size: 1.05rem; }
.note { color: #a60; }
mark { padding: 0 .1rem; border-radius: .2rem; }
mark.r1 { background: #ffe066; }
mark.r2 { background: #b5e8f0; }
mark.r3 { background: #e3e3e3; }
ol.sentences { font-size: .92rem; }
.score { font-variant-numeric: tabular-nums; color: #555; }
.evidence { background: #eef8ee; border-left: 3px solid #5a5; padding: .3rem .6rem; }
</style>
</head>
<body>
<h1>GeAR demo</h1>
<p class="meta">$meta</p>
$sections
<p class="meta">$timing</p>
$attribution
</body>
</html>
"""
)


def render_html(report: DemoReport) -> str:
    """The report as one HTML page: each ranked sentence a ``<mark>`` with its score as a tooltip."""
    esc = html.escape
    meta = (
        f"model <b>{esc(report.model)}</b>"
        f"<br>corpus {esc(report.corpus)}: {report.documents} documents, {report.passages} passages"
        + f"<br>index {'built' if report.index_built else 'loaded'} in {report.index_seconds:.1f} s"
        + f"<br>{esc(SCORES_LEGEND)}"
        + '<br>marks: <mark class="r1">best sentence</mark> <mark class="r2">second</mark> '
        + '<mark class="r3">third and lower</mark> (hover a mark for its score and offsets)'
    )
    sections = []
    for number, answer in enumerate(report.answers, start=1):
        hybrid = report.search_mode == "hybrid"
        hits = "\n".join(_html_hit(result, hybrid) for result in answer.results) or "<p>(no documents)</p>"
        note = "" if looks_english(answer.question) else f'<p class="note">note: {esc(NOT_ENGLISH_NOTE)}</p>\n'
        sections.append(
            f'<section>\n<h2>Q{number}. {esc(answer.question)}</h2>\n{note}<p class="time">search '
            f"{answer.seconds:.2f} s</p>\n{hits}\n</section>"
        )
    timing = f"model loaded in {report.model_seconds:.1f} s"
    if report.answers:
        mean = sum(a.seconds for a in report.answers) / len(report.answers)
        timing += f" · search {mean:.2f} s per question"
    attribution = f'<p class="attribution">{esc(report.attribution)}</p>' if report.attribution else ""
    return _HTML_PAGE.substitute(meta=meta, sections="\n".join(sections), timing=timing, attribution=attribution)


def _found_by(result: SearchResult, hybrid: bool) -> str:
    """Which retrievers found a passage (hybrid mode; in dense mode it is always the dense search)."""
    return f" (found by {' + '.join(result.found_by)})" if hybrid else ""


def _flowing(text: str) -> str:
    """``text`` as HTML that flows: a file's hard line breaks become spaces, its blank lines paragraph breaks."""
    return "<br><br>".join(html.escape(re.sub(r"[\r\n]+", " ", p)) for p in PARAGRAPH_BREAK.split(text))


def _html_hit(result: SearchResult, hybrid: bool) -> str:
    esc = html.escape
    passage = Passage.from_id(result.id, result.text)
    by_rank = {rank: s for rank, s in enumerate(result.sentences, start=1)}
    parts = []
    for text, rank in passage_runs(result.text, result.sentences, [(0, len(result.text))]):
        if rank:
            sentence = by_rank[rank]
            tooltip = (
                f"sentence #{rank} · score {sentence.score:.3f} · "
                f"{passage.location(sentence.start_char, sentence.end_char)}"
            )
            parts.append(f'<mark class="r{min(rank, 3)}" title="{esc(tooltip)}">{_flowing(text)}</mark>')
        else:
            parts.append(_flowing(text))
    sentences = "".join(
        f'<li><span class="score">{s.score:.3f}</span> <code>{esc(passage.location(s.start_char, s.end_char))}</code> '
        f"{esc(s.text)}</li>"
        for s in result.sentences
    )
    evidence = (
        f'<p class="evidence"><b>evidence:</b> {esc(result.evidence.text)} '
        f'<span class="where">{esc(_grounding(result.evidence, passage))}</span></p>'
        if result.evidence is not None
        else ""
    )
    heading = (
        f'{result.rank}. {esc(passage.source)} <span class="score">score {result.score:.3f}'
        f"{esc(_found_by(result, hybrid))}</span>"
    )
    return (
        f'<article>\n<h3>{heading}</h3>\n<p class="where">chars {passage.start}-{passage.end}</p>\n'
        f'<p class="passage">{"".join(parts)}</p>\n'
        + (f'<ol class="sentences">{sentences}</ol>\n' if sentences else "")
        + f"{evidence}</article>"
    )
