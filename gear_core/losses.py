"""GeAR's training losses as pure tensor functions (no modules, no state).

``contrastive_loss`` is the ALBEF/BLIP image-text contrastive loss transposed to queries and documents:
in-batch and queued negatives, positives decided by document id (several SQuAD questions share a
paragraph, so the diagonal alone would mark true positives as negatives), and soft labels from the
momentum model. ``lm_loss`` is the decoder's next-token cross-entropy. ``localization_loss`` goes beyond the
paper: it supervises the ranking layer's cross-attention directly with the gold sentences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def positive_targets(ids: torch.Tensor, candidate_ids: torch.Tensor) -> torch.Tensor:
    """Row-normalised matrix marking, for each row id, the candidates with the same id."""
    positives = (ids[:, None] == candidate_ids[None, :]).to(torch.float32)
    return positives / positives.sum(dim=1, keepdim=True).clamp_min(1.0)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum_j targets[i, j] * log_softmax(logits[i])_j``."""
    return -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()


def contrastive_loss(
    query_embeds: torch.Tensor,
    document_embeds: torch.Tensor,
    document_ids: torch.Tensor,
    temperature: torch.Tensor | float,
    momentum_query_embeds: torch.Tensor | None = None,
    momentum_document_embeds: torch.Tensor | None = None,
    queued_query_embeds: torch.Tensor | None = None,
    queued_document_embeds: torch.Tensor | None = None,
    queued_ids: torch.Tensor | None = None,
    soft_label_weight: float = 0.0,
) -> torch.Tensor:
    """Symmetric query->document and document->query contrastive loss.

    Args:
        query_embeds, document_embeds: (B, D) L2-normalised embeddings of the pairs (with gradient).
        document_ids: (B,) id of each pair's document; equal ids are positives of each other.
        temperature: softmax temperature (a learnable scalar in GeAR).
        momentum_query_embeds, momentum_document_embeds: (B, D) the momentum encoder's embeddings of the
            same batch. When given they replace the live embeddings as candidates (as in MoCo/ALBEF) and
            their similarities give the soft labels. When absent, candidates are the live in-batch
            embeddings and labels are hard.
        queued_*: (Q, D) and (Q,) features and ids from earlier batches, used as extra candidates.
        soft_label_weight: weight of the momentum model's softmax in the targets (0 = hard labels).
    """
    if momentum_query_embeds is None or momentum_document_embeds is None:
        if soft_label_weight:
            raise ValueError("soft labels need the momentum model's embeddings")
        query_candidates, document_candidates = query_embeds, document_embeds
    else:
        query_candidates, document_candidates = momentum_query_embeds, momentum_document_embeds
    candidate_ids = document_ids
    if queued_ids is not None and queued_ids.numel():
        query_candidates = torch.cat([query_candidates, queued_query_embeds], dim=0)
        document_candidates = torch.cat([document_candidates, queued_document_embeds], dim=0)
        candidate_ids = torch.cat([document_ids, queued_ids], dim=0)

    query_to_document = query_embeds @ document_candidates.T / temperature
    document_to_query = document_embeds @ query_candidates.T / temperature
    targets = positive_targets(document_ids, candidate_ids)
    query_targets, document_targets = targets, targets
    if soft_label_weight:
        with torch.no_grad():
            soft_q2d = F.softmax(momentum_query_embeds @ document_candidates.T / temperature, dim=1)
            soft_d2q = F.softmax(momentum_document_embeds @ query_candidates.T / temperature, dim=1)
        query_targets = soft_label_weight * soft_q2d + (1 - soft_label_weight) * targets
        document_targets = soft_label_weight * soft_d2q + (1 - soft_label_weight) * targets
    return (
        soft_cross_entropy(query_to_document, query_targets) + soft_cross_entropy(document_to_query, document_targets)
    ) / 2


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts ``labels[t + 1]``; ``ignore_index`` (padding) is skipped.

    Returns the mean over predicted tokens; 0 (with gradient) if no token is predicted.
    """
    shifted_logits = logits[:, :-1].reshape(-1, logits.size(-1))
    shifted_labels = labels[:, 1:].reshape(-1)
    if not (shifted_labels != ignore_index).any():
        return shifted_logits.sum() * 0.0
    return F.cross_entropy(shifted_logits.float(), shifted_labels, ignore_index=ignore_index)


def next_token_positions(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(B, T) bool: the positions t whose next label (t + 1) is a token to predict, the ones :func:`lm_loss`
    scores. Computing the vocabulary scores at these positions only saves most of the output layer's cost when
    targets of different lengths share a batch."""
    positions = torch.zeros_like(labels, dtype=torch.bool)
    positions[:, :-1] = labels[:, 1:] != ignore_index
    return positions


def lm_loss_at_positions(scores: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """:func:`lm_loss` from (N, V) scores computed at the N :func:`next_token_positions` only (row-major order).

    ``scores`` may be logits or normalised log-probabilities (a copying decoder's): cross-entropy over
    log-probabilities is their negative log-likelihood.
    """
    targets = labels[:, 1:][labels[:, 1:] != ignore_index]
    if scores.shape[0] != targets.shape[0]:
        raise ValueError(f"got scores for {scores.shape[0]} positions and {targets.shape[0]} target tokens")
    if targets.numel() == 0:
        return scores.sum() * 0.0
    return F.cross_entropy(scores.float(), targets)


def localization_loss(
    token_attention: torch.Tensor,
    gold_mask: torch.Tensor,
    candidate_mask: torch.Tensor,
    eps: float = 1e-6,
    prior_gold_share: torch.Tensor | None = None,
    prior_weight: float = 0.0,
) -> torch.Tensor:
    """``-log`` of the share of attention that gold-sentence tokens receive among all sentence tokens.

    Args:
        token_attention: (B, Ld) non-negative attention each document token receives (pooled over heads and
            query tokens exactly as sentence ranking pools it).
        gold_mask: (B, Ld) tokens inside a gold sentence.
        candidate_mask: (B, Ld) tokens inside any sentence (real, not special); a superset of ``gold_mask``.
        prior_gold_share: (B,) the share a fixed second ranker (BM25, mixed in at serving by
            ``ranking_lexical_weight``) gives the gold sentences; with it the loss is
            ``-log((1 - prior_weight) * attention_share + prior_weight * prior_gold_share)``.
        prior_weight: that ranker's weight in the mix, in [0, 1].

    With sum pooling a sentence's score is its attention mass, so this is the cross-entropy of picking a gold
    sentence. With a prior it is the cross-entropy of the mixture serving ranks by: where BM25 already finds the
    gold sentence the gradient fades, so the attention learns what BM25 misses (paraphrase) rather than what it
    already gets right. Rows without gold tokens (e.g. the gold sentence was truncated away) are skipped; 0 (with
    gradient) when no row has one.
    """
    if not 0 <= prior_weight <= 1:
        raise ValueError(f"prior_weight must lie in [0, 1], got {prior_weight}")
    attention = token_attention.float()
    gold = (attention * gold_mask).sum(dim=1)
    total = (attention * candidate_mask).sum(dim=1)
    rows = gold_mask.any(dim=1)
    if not rows.any():
        return attention.sum() * 0.0
    if prior_gold_share is None or prior_weight == 0:
        return -(torch.log(gold[rows] + eps) - torch.log(total[rows] + eps)).mean()
    share = gold[rows] / (total[rows] + eps)
    mixed = (1 - prior_weight) * share + prior_weight * prior_gold_share[rows].to(share.dtype)
    return -torch.log(mixed + eps).mean()


def sentence_distillation_loss(
    token_attention: torch.Tensor, token_sentence: torch.Tensor, teacher_probs: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Cross-entropy of a teacher's sentence distribution against the attention's: ``-sum_s q_s log p_s``.

    Args:
        token_attention: (B, Ld) non-negative attention each document token receives (pooled as ranking pools it).
        token_sentence: (B, Ld) the sentence each token belongs to, -1 for special and padding tokens.
        teacher_probs: (B, S) the teacher's distribution over each document's sentences (rows sum to 1; columns
            past a document's sentences are 0).

    ``p_s`` is sentence ``s``'s share of the attention its document's sentence tokens receive (with sum pooling,
    the sentence ranking's scores, normalised). The localization loss says which sentence answers; this one
    keeps the whole ranking close to what a sentence encoder that never saw the training questions thinks, which
    is what holds the fusion encoder to the pretrained model out of domain. Rows whose teacher row sums to 0 are
    skipped; 0 (with gradient) when none has one.
    """
    attention = token_attention.float()
    inside = token_sentence >= 0
    mass = torch.zeros(teacher_probs.shape, dtype=attention.dtype, device=attention.device)
    mass = mass.scatter_add(1, token_sentence.clamp_min(0), attention * inside)
    share = mass / mass.sum(dim=1, keepdim=True).clamp_min(eps)
    rows = teacher_probs.sum(dim=1) > 0
    if not rows.any():
        return attention.sum() * 0.0
    return -(teacher_probs[rows] * torch.log(share[rows] + eps)).sum(dim=1).mean()


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
    candidates: torch.Tensor,
) -> torch.Tensor:
    """The span reader's loss: the mean of the start and end tokens' cross-entropies (BERT's SQuAD loss).

    Args:
        start_logits, end_logits: (B, L) the reader's scores for each token starting / ending the answer.
        start_positions, end_positions: (B,) the gold tokens; 0 (``[CLS]``) is the null answer (the context holds
            none), which is how the reader learns to abstain.
        candidates: (B, L) the tokens an answer may start or end on (``[CLS]`` and the context's tokens): the
            question's tokens and padding take no probability, as they can never be read out.
    """
    start = start_logits.float().masked_fill(~candidates, -torch.inf)
    end = end_logits.float().masked_fill(~candidates, -torch.inf)
    return (F.cross_entropy(start, start_positions) + F.cross_entropy(end, end_positions)) / 2


def span_distillation_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    teacher_start_logits: torch.Tensor,
    teacher_end_logits: torch.Tensor,
    candidates: torch.Tensor,
    temperature: float = 2.0,
) -> torch.Tensor:
    """A smaller span reader learning from a larger one (Hinton et al., 2015): the mean over start and end of
    ``KL(teacher || student)`` between their distributions over the candidate tokens at ``temperature``, times
    ``temperature ** 2`` (so its gradients keep the hard loss's scale as the temperature changes).

    Why: the teacher's distribution says more than the gold token does: which other tokens are plausible
    boundaries, and how sure it is that the context holds no answer (``[CLS]``), which a reader learns slowly
    from the few contexts without one. Tokens outside ``candidates`` take no probability in either.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    terms = []
    for student, teacher in ((start_logits, teacher_start_logits), (end_logits, teacher_end_logits)):
        student_log = F.log_softmax(student.float().masked_fill(~candidates, -torch.inf) / temperature, dim=-1)
        teacher_log = F.log_softmax(teacher.float().masked_fill(~candidates, -torch.inf) / temperature, dim=-1)
        # masked tokens: both log-probabilities are -inf and their probability 0; zero them before the product
        difference = (teacher_log - student_log).masked_fill(~candidates, 0.0)
        terms.append((teacher_log.exp() * difference).sum(dim=-1).mean())
    return (terms[0] + terms[1]) / 2 * temperature**2
