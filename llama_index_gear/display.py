"""Showing what GeARHighlighter found: a node's text as HTML with its highlights marked (for notebooks and
web pages). String work only: the offsets come from the node's ``gear_highlights`` metadata."""

from __future__ import annotations

import html

from llama_index.core.schema import BaseNode, NodeWithScore

from llama_index_gear.highlighter import EVIDENCE_KEY, HIGHLIGHTS_KEY

# Rank 1 is the strongest colour.
_COLORS = ("#ffd54f", "#80deea", "#e0e0e0")


def highlights_html(node: BaseNode | NodeWithScore, title: str | None = None) -> str:
    """The node's text with each highlight in a ``<mark>`` (colour by rank, score as a tooltip), then its grounded
    evidence if any. Offsets index ``node.get_content()``, as the highlighter's contract says."""
    score = node.score if isinstance(node, NodeWithScore) else None
    node = node.node if isinstance(node, NodeWithScore) else node
    text = node.get_content()
    highlights = sorted(
        enumerate(node.metadata.get(HIGHLIGHTS_KEY, []), start=1), key=lambda item: item[1]["start_char_idx"]
    )
    parts, position = [], 0
    for rank, h in highlights:
        start, end = h["start_char_idx"], h["end_char_idx"]
        if start < position:  # overlapping highlights cannot happen (sentences do not overlap); keep the first
            continue
        color = _COLORS[min(rank, len(_COLORS)) - 1]
        parts.append(html.escape(text[position:start]))
        parts.append(
            f'<mark style="background: {color}" title="#{rank} · score {h["score"]:.4f} · chars {start}-{end}">'
            f"{html.escape(text[start:end])}</mark>"
        )
        position = end
    parts.append(html.escape(text[position:]))
    heading = html.escape(title or node.node_id) + (f" <small>(score {score:.3f})</small>" if score is not None else "")
    page = f'<div style="font-family: sans-serif; line-height: 1.6"><b>{heading}</b><p>{"".join(parts)}</p>'
    evidence = node.metadata.get(EVIDENCE_KEY)
    if evidence:
        where = (
            f"chars {evidence['start_char_idx']}-{evidence['end_char_idx']}" if evidence["grounded"] else "ungrounded"
        )
        support = f"{where}, support {evidence['support']:.2f}"
        page += f"<p><i>evidence:</i> {html.escape(evidence['text'])} <small>({support})</small></p>"
    return page + "</div>"
