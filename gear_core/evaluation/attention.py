"""What the fusion encoder looks at: each document token's share of a query's cross-attention (the paper's
Figure 3), and the sentence scorings of every fusion layer (its Figure 4).

The weights are the ones sentence ranking reads (``gear_core.ranking.document_token_scores``, the config's poolings),
so a token that carries much weight here is what puts its sentence on top.
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from gear_core.scoring import SentenceScoring
from gear_core.tokenization import TOKENIZER_LOCK, tokenizable

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel


@dataclass(frozen=True)
class TokenWeight:
    """A document token (``document[start_char:end_char] == text``) and its share of the query's attention."""

    text: str
    start_char: int
    end_char: int
    weight: float


def layer_scorings(model: GeARModel) -> list[SentenceScoring]:
    """The configured scoring read at every fusion layer that has cross-attention (Figure 4's rows), attention
    alone: no lexical share, so each row measures that layer."""
    configured = dataclasses.replace(model.config.sentence_scoring, lexical_weight=0.0)
    return [dataclasses.replace(configured, layer=layer) for layer in model.config.cross_attention_layer_indices]


@torch.no_grad()
def token_attention(model: GeARModel, query: str, document: str, layer: int | None = None) -> list[TokenWeight]:
    """Each token of ``document``'s first window with its share of ``query``'s cross-attention at ``layer``
    (0-based; default: the ranking layer), pooled over heads and query tokens as the config says. Special tokens
    are left out, so the weights sum to less than 1 (the rest rests on [CLS] and [SEP])."""
    scoring = model.config.sentence_scoring
    if layer is not None:
        if layer not in model.config.cross_attention_layer_indices:
            raise ValueError(
                f"layer {layer} has no cross-attention (layers {model.config.cross_attention_layer_indices})"
            )
        scoring = dataclasses.replace(scoring, layer=layer)
    tokenizer = model._require_tokenizer()
    with TOKENIZER_LOCK:
        encoded = tokenizer(
            tokenizable(document),
            truncation=True,
            max_length=model.config.max_document_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
    query_inputs = model._tokenize([query], model.config.max_query_length)
    was_training = model.training
    model.eval()
    scores = model.document_token_scores(
        query_inputs["input_ids"],
        query_inputs["attention_mask"],
        encoded["input_ids"].to(model.device),
        encoded["attention_mask"].to(model.device),
        [scoring],
    ).token_scores[0][0]
    model.train(was_training)
    tokens = []
    for (start, end), special, weight in zip(
        encoded["offset_mapping"][0].tolist(), encoded["special_tokens_mask"][0].tolist(), scores.tolist(), strict=True
    ):
        if not special and end > start:
            tokens.append(TokenWeight(document[start:end], start, end, float(weight)))
    return tokens


def attention_html(document: str, tokens: list[TokenWeight], top_k: int = 8, color: str = "255, 170, 0") -> str:
    """``document`` as HTML with each token shaded by its weight (relative to the largest) and the ``top_k``
    heaviest in bold with their weight as a tooltip: the paper's Figure 3 for one query."""
    largest = max((t.weight for t in tokens), default=0.0) or 1.0
    top = {id(t) for t in sorted(tokens, key=lambda t: -t.weight)[:top_k]}
    parts, position = [], 0
    for token in tokens:
        parts.append(html.escape(document[position : token.start_char]))
        style = f"background: rgba({color}, {token.weight / largest:.3f})"
        text = html.escape(token.text)
        if id(token) in top:
            text = f"<b>{text}</b>"
        parts.append(f'<span style="{style}" title="{token.weight:.4f}">{text}</span>')
        position = token.end_char
    parts.append(html.escape(document[position:]))
    return '<div style="line-height: 1.8; font-family: sans-serif">' + "".join(parts) + "</div>"
