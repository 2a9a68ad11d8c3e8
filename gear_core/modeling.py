"""GeARModel: bi-encoder retrieval, cross-attention sentence ranking and evidence in one model.

Read top to bottom: construction (``__init__``, ``from_encoder``), persistence (``from_pretrained``,
``save_pretrained``), the network's passes (``fuse``: the query tower's layers with a cross-attention block after
each self-attention; ``document_token_scores``: what sentence ranking reads; ``span_logits``: the span reader; the
decoder's memory, copy source and scores), training (``forward``: contrastive + LM + localization losses;
``fusion_losses``), and the serving API, whose work lives in its own modules: encoding here, sentence ranking in
:mod:`gear_core.ranking`, evidence in :mod:`gear_core.generation`. Layers and pooling: :mod:`gear_core.layers`;
folders, checksums and int8: :mod:`gear_core.folders` and :mod:`gear_core.quantization`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    BertLMHeadModel,
    BertModel,
    PreTrainedTokenizerBase,
)
from transformers.models.bert.modeling_bert import BertLayer
from transformers.utils import ModelOutput

from gear_core.config import GeARConfig
from gear_core.layers import (
    CopyHead,
    CopySource,
    CrossAttention,
    ReaderLayer,
    additive_mask,
    bottom_states,
    copy_mixture_log_probs,
    embed,
    embed_states,
)
from gear_core.losses import (
    IGNORE_INDEX,
    contrastive_loss,
    lm_loss_at_positions,
    localization_loss,
    next_token_positions,
    sentence_distillation_loss,
)
from gear_core.pretrained import GeARPreTrainedModel
from gear_core.serving import GeARServing
from gear_core.span_reader import SpanReader, span_reader_losses

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


class GeARModel(GeARServing, GeARPreTrainedModel):
    """GeAR (Liu et al., 2025): bi-encoder + fusion encoder + decoder sharing one set of weights.

    Build a fresh one from a BERT-family encoder with :meth:`from_encoder`, load a trained one with
    :meth:`from_pretrained` (safetensors only), save with :meth:`save_pretrained`
    (:class:`~gear_core.pretrained.GeARPreTrainedModel`). Serving (:class:`~gear_core.serving.GeARServing`):
    ``encode_queries``, ``encode_documents``, ``rank_sentences_batch``, ``rank_and_generate_batch``, ...
    """

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
        # The bi-encoder's own top layers (GeARConfig.retrieval_layers; none by default): retrieval can then train
        # without moving what the fusion encoder, span reader and decoder read.
        self.retrieval_layers = nn.ModuleList(BertLayer(encoder_config) for _ in range(config.retrieval_layers))
        self.temperature = nn.Parameter(torch.tensor(float(config.contrastive_temperature)))
        self.tokenizer = tokenizer
        self._continuation_ids: torch.Tensor | None = None  # (V,) bool, "##" pieces; read lazily from the tokenizer
        self.post_init()

    # ---- the network's passes ------------------------------------------------------------------------

    @property
    def document_encoder_module(self) -> BertModel:
        return self.query_encoder if self.document_encoder is None else self.document_encoder

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
        hidden, self_mask = bottom_states(
            self.query_encoder, input_ids, attention_mask, self.config.shared_span_reader_layers, token_type_ids
        )
        return self.span_reader(hidden, self_mask)

    span_reader_losses = span_reader_losses  # the span reader's losses on a span-reader batch (a function of the model)

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
        query_embeds = embed(self.query_encoder, query_input_ids, query_attention_mask, self.retrieval_layers)
        encoder, document_states = self.document_encoder_module, None  # None: fusion_losses computes them if needed
        if self.retrieval_layers:
            document_embeds = embed(encoder, document_input_ids, document_attention_mask, self.retrieval_layers)
        else:
            document_states = encoder(document_input_ids, attention_mask=document_attention_mask).last_hidden_state
            document_embeds = embed_states(document_states, document_attention_mask)
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
        document_states: torch.Tensor | None,
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
        if document_states is None:  # ``forward`` with retrieval layers: the encoder's states, only when needed
            document_states = self.document_encoder_module(
                input_ids=document_input_ids, attention_mask=document_attention_mask
            ).last_hidden_state
        ranking = self.config.sentence_scoring
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


# `AutoModel.from_pretrained(folder)` finds GeAR once this module is loaded (`from gear_core import GeARModel`).
AutoConfig.register("gear", GeARConfig, exist_ok=True)
AutoModel.register(GeARConfig, GeARModel, exist_ok=True)
