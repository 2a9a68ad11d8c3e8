"""GeARConfig: every architecture, scoring and loss choice of a GeAR model in one place.

Defaults follow the paper (Liu et al., 2025, Section 3 and Appendix C) where the paper says something;
where it is silent (how cross-attention becomes a sentence score, how cross-attention is initialised)
the choice is exposed here and documented.
"""

from __future__ import annotations

from typing import Any, Literal

from transformers import BertConfig, PretrainedConfig

from gear_core.scoring import (
    HEAD_POOLINGS,
    QUERY_POOLINGS,
    SENTENCE_POOLINGS,
    WINDOW_WEIGHTINGS,
    HeadPooling,
    QueryPooling,
    SentencePooling,
    SentenceScoring,
    WindowWeighting,
)

DecoderMemory = Literal["query", "query_and_document"]
_CHOICES = {
    "ranking_head_pooling": HEAD_POOLINGS,
    "ranking_query_pooling": QUERY_POOLINGS,
    "ranking_sentence_pooling": SENTENCE_POOLINGS,
    "ranking_window_weighting": WINDOW_WEIGHTINGS,
    "decoder_init": ("random", "encoder"),
    "decoder_memory": ("query", "query_and_document"),
    "decoder_copy": (False, True),
    "decoder_copy_prior": (False, True),
    "decoder_copy_spans": (False, True),
    "generation_spans_only": (False, True),
    "cross_attention_init": ("random", "self_attention"),
    "storage_dtype": (None, "int8"),
    "evidence_from": ("decoder", "span_reader"),
}


_INT_FIELDS = (
    "ranking_layer",
    "queue_size",
    "max_query_length",
    "max_document_length",
    "max_target_length",
    "generation_span_sentences",
    "decoder_reader_layers",
    "retrieval_layers",
    "span_reader_layers",
    "span_reader_sentences",
    "span_reader_max_length",
    "span_reader_max_answer_tokens",
)
_FLOAT_FIELDS = (
    "retrieval_sentence_weight",
    "ranking_window_temperature",
    "ranking_lexical_weight",
    "ranking_lexical_temperature",
    "generation_query_penalty",
    "generation_decoder_vote",
    "span_reader_min_support",
    "contrastive_temperature",
    "momentum",
    "soft_label_weight",
    "lm_loss_weight",
    "localization_loss_weight",
)
_ENCODER_INT_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
# Bounds far above any BERT encoder: a damaged or hand-edited value (10**6 layers) is refused before it allocates.
_ENCODER_INT_LIMITS = {
    "hidden_size": 16_384,
    "num_hidden_layers": 128,
    "num_attention_heads": 256,
    "vocab_size": 2_000_000,
    "intermediate_size": 65_536,
    "max_position_embeddings": 65_536,
}
# Encoder numbers that must be finite and within [low, high) (a NaN layer_norm_eps made every score NaN).
_ENCODER_FLOAT_RANGES = {
    "layer_norm_eps": (1e-30, 1.0),
    "hidden_dropout_prob": (0.0, 1.0),
    "attention_probs_dropout_prob": (0.0, 1.0),
    "initializer_range": (0.0, 10.0),
}
# Keys a config.json may hold besides GeARConfig's own fields: what transformers writes or passes on its own.
_TRANSFORMERS_KEYS = frozenset(PretrainedConfig().to_dict()) | {
    "tie_word_embeddings",
    "torch_dtype",
    "name_or_path",
    "use_cache",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "decoder_start_token_id",
    "attn_implementation",
}


class GeARConfig(PretrainedConfig):
    """Configuration of a :class:`~gear_core.GeARModel`.

    Args:
        encoder_name_or_path: where the base encoder came from (a local folder or a hub name); informative.
        encoder_config: the base BERT encoder's config as a dict (``BertConfig.to_dict()``). Query encoder,
            document encoder, fusion encoder and decoder are all shaped from it.
        shared_encoder: one encoder for queries and documents (half the encoder parameters) instead of two.
        retrieval_layers: ``n > 0`` gives the bi-encoder ``n`` layers of its own: query and document embeddings
            are pooled from them, run on the shared encoder's layer ``L - n`` states, instead of from the encoder's
            last ``n`` layers. The fusion encoder, span reader and decoder read the encoder as it is, so the towers
            stage can train retrieval without moving sentence ranking or evidence (as ``span_reader_layers``
            branches the reader off the shared bottom). They start as copies of the encoder's last ``n`` layers
            (the embeddings are then unchanged). 0: the embeddings pool the encoder's last states (the paper).
            Needs ``shared_encoder``.
        retrieval_sentence_weight: ``w > 0`` scores a document for a query by ``cos(query, document) + w * max over
            its sentences of cos(query, sentence)``, each sentence embedded by the document tower on its own
            (:meth:`~gear_core.retrieval.DocumentIndex.add` keeps them beside the document vectors). A question is
            usually answered by one sentence, which the whole document's vector dilutes, and a document longer than
            ``max_document_length`` is still found by the sentences past its first window. 0 (the paper): the
            document vector alone. It changes no embedding (an index survives changing it) and costs a second
            encoder pass over the documents' sentences when indexing.
        cross_attention_layers: encoder layers (0-based) that get a cross-attention block in the fusion
            encoder; ``None`` means every layer, as in the paper.
        cross_attention_init: ``"random"`` (BERT initialisation, as ALBEF/BLIP) or ``"self_attention"``
            (copy the layer's self-attention weights, so an untrained model already attends to lexical
            matches in the document).
        ranking_layer: the fusion layer whose cross-attention ranks sentences; negative counts from the top.
            The paper reads the 10th of 12 layers, i.e. ``-3``.
        ranking_head_pooling: how attention heads are combined (``"mean"`` or ``"max"``).
        ranking_query_pooling: which query tokens' attention counts: all real tokens averaged (``"mean"``),
            the words averaged without ``[CLS]``/``[SEP]`` (``"content"``), their maximum (``"max"``) or the
            ``[CLS]`` token alone (``"cls"``).
        ranking_sentence_pooling: how a sentence's token weights become its score (``"sum"``, ``"mean"``,
            ``"max"``).
        ranking_window_weighting: how the windows of a document longer than ``max_document_length`` compare.
            Each window's cross-attention is a softmax over that window alone, so its sentence scores sum to
            about the same whatever the window holds. ``"none"``: a sentence keeps its best window's score (every
            window's best sentence competes equally). ``"attention"``: each window's scores are multiplied by
            the window's share of the attention the query would give the whole document (a softmax over windows
            of the log of each window's softmax denominator, pooled as the ranking pools attention): scores become
            one distribution over the document. ``"retrieval"``: multiplied by a softmax over windows of the
            bi-encoder's cosine(query, window) / ``ranking_window_temperature`` (the default: it ranks sentences
            of whole articles far better than the other two, benchmarks/results/validation_sources.md). A
            one-window document scores the same under all three.
        ranking_window_temperature: the temperature of ``"retrieval"`` window weighting (lower: the best-matching
            window dominates more).
        ranking_lexical_weight: the share of BM25 in a sentence's score, in [0, 1]. 0 (the default, and the
            paper): cross-attention alone. Otherwise a document's sentence scores become one distribution,
            ``(1 - w)`` of the attention normalised to sum to 1 plus ``w`` of a softmax of BM25 over the
            document's own sentences (:func:`~gear_core.scoring.mix_lexical`; needs ``bm25s``). It costs no
            model pass and helps most on long documents (benchmarks/results/validation_sources.md).
        ranking_lexical_temperature: the temperature of that BM25 softmax (lower: the best lexical match
            dominates the lexical share more).
        decoder_num_layers: layers of the evidence decoder; ``None`` means as many as the encoder.
        decoder_init: ``"random"`` (the paper) or ``"encoder"`` (copy the encoder's weights where they fit).
        decoder_memory: what the decoder's cross-attention reads: the fused query states alone (``"query"``, the
            paper) or the fused query states followed by the document window's token states
            (``"query_and_document"``), so an answer's words can be read where they stand.
        decoder_reader_layers: ``n > 0`` makes the document states the decoder reads (its memory and its copy
            source) know the query: ``n`` reader layers (:class:`~gear_core.layers.ReaderLayer`, started from the
            encoder's last ``n``) in which the window's tokens attend to the fused query states and then to each
            other, as a BERT reader's joint encoding lets each passage token see the question. 0 (the paper): the
            document tower's states as they are, the same for every query. Needs ``"query_and_document"``
            memory or ``decoder_copy``; ranking never reads it.
        decoder_copy: a pointer-generator output (See et al., 2017): each step mixes the vocabulary distribution
            with a copy distribution over the document window's tokens, by a learned gate
            (:func:`~gear_core.layers.copy_mixture_log_probs`). Answers are mostly spans of the document.
        decoder_copy_prior: with ``decoder_copy``, the copy logits add ``w * log(a_j)``, where ``a_j`` is the
            ranking layer's pooled cross-attention on token j (what ranks sentences) and ``w`` is learned
            (starting at 1): the decoder copies from where the fusion encoder found the answer.
        decoder_copy_spans: with ``decoder_copy``, the copy logits of each document token that follows an
            occurrence of the previous output token add a learned bonus (starting at 1), so copies continue a span
            instead of gluing word pieces from different places.
        generation_spans_only: evidence decoding defaults (``generate_batch`` can override each): the output is
            always a span of the document window, quoted as the document writes it
            (:class:`~gear_core.decoding.SpanConstraint`). ``False`` (the paper) decodes freely.
        generation_span_sentences: with ``generation_spans_only``, ``n > 0`` keeps the span inside the window's
            ``n`` best-ranked sentences (the ranking's scores, from the same fusion pass); 0: anywhere.
        generation_decoder_vote: with ``generation_span_sentences`` n > 1, ``w > 0`` quotes from one of those n
            sentences, the one with the highest ``log(its ranking share) + w * (the decoder's best first-token
            log-probability among its words, query penalty included)``: where the decoder would begin an answer can
            overrule a close ranking. 0: the span may lie anywhere in the n sentences.
        generation_query_penalty: subtracted from the score of the query's own words at every step, for
            question-style queries only (:func:`~gear_core.decoding.penalize_query_tokens`); 0: off.
        span_reader_layers: ``n > 0`` adds the span reader (:mod:`gear_core.span_reader`): a cross-encoder over
            ``[CLS] question [SEP] best sentences [SEP]`` made of the towers' embeddings and first ``L - n`` layers
            (shared) and ``n`` layers of its own, with a start/end head; its answer is a span of the document.
            0: no span reader.
        span_reader_shared_layers: how many of the towers' layers the span reader runs before its own; ``None``
            means ``L - span_reader_layers`` (the reader is as deep as the towers). Fewer make a cheaper reader
            (its own layers start as the encoder's layers that follow the shared ones).
        span_reader_sentences: how many of the ranking's best sentences the span reader reads, best first.
        span_reader_max_length: the span reader's token limit (question and sentences; the sentences are cut);
            ``None`` means ``min(256, max_position_embeddings)``.
        span_reader_max_answer_tokens: the longest answer the span reader gives, in tokens.
        span_reader_min_support: the span reader abstains (its evidence is empty, ungrounded) when the support of its
            best span (its probability against giving no answer) is below this; what ``min_support=None`` means for
            its evidence.
        evidence_from: what writes the evidence of ``generate`` / ``rank_and_generate_batch``: ``"decoder"`` (the
            paper's generative decoder) or ``"span_reader"`` (needs ``span_reader_layers``).
        share_decoder_embeddings: the decoder reuses the query encoder's word embeddings (smaller checkpoint).
        decoder_start_token: the token that starts generation (BLIP's ``[DEC]``).
        contrastive_temperature: initial value of the learnable contrastive temperature.
        momentum: EMA coefficient of the momentum encoder.
        queue_size: number of momentum features kept as extra negatives.
        soft_label_weight: final weight of the momentum model's soft labels (ramped up during training).
        lm_loss_weight: alpha in ``loss = L_CL + alpha * L_LM``.
        localization_loss_weight: beyond the paper (0 = the paper's recipe): weight of
            :func:`~gear_core.losses.localization_loss`, which teaches the ranking layer's cross-attention to
            fall on the gold sentences directly instead of only through the decoder's LM loss.
        max_query_length / max_document_length / max_target_length: token limits.
        document_stride: tokens shared by consecutive windows when a document is longer than
            ``max_document_length`` (sentence ranking reads every window); ``None`` means
            ``min(128, max_document_length // 4)``.
        storage_dtype: how the weights files of a saved folder store the weights. ``None`` (the default, what
            ``save_pretrained`` writes): plain tensors of the config's ``dtype``. ``"int8"`` (``gear export
            --dtype int8``): large matrices as int8 with one float32 scale per row (see
            :mod:`gear_core.quantization`), dequantised to float32 by ``from_pretrained``, which resets the
            field to ``None`` on the loaded model (it computes, and would save, in float).
    """

    model_type = "gear"

    def __init__(
        self,
        encoder_name_or_path: str | None = None,
        encoder_config: dict[str, Any] | None = None,
        shared_encoder: bool = False,
        retrieval_layers: int = 0,
        retrieval_sentence_weight: float = 0.0,
        cross_attention_layers: list[int] | None = None,
        cross_attention_init: Literal["random", "self_attention"] = "self_attention",
        ranking_layer: int = -3,
        ranking_head_pooling: HeadPooling = "mean",
        ranking_query_pooling: QueryPooling = "mean",
        ranking_sentence_pooling: SentencePooling = "sum",
        ranking_window_weighting: WindowWeighting = "retrieval",
        ranking_window_temperature: float = 0.07,
        ranking_lexical_weight: float = 0.0,
        ranking_lexical_temperature: float = 1.0,
        decoder_num_layers: int | None = None,
        decoder_init: Literal["random", "encoder"] = "random",
        decoder_memory: DecoderMemory = "query",
        decoder_reader_layers: int = 0,
        decoder_copy: bool = False,
        decoder_copy_prior: bool = False,
        decoder_copy_spans: bool = False,
        generation_spans_only: bool = False,
        generation_span_sentences: int = 0,
        generation_decoder_vote: float = 0.0,
        generation_query_penalty: float = 0.0,
        span_reader_layers: int = 0,
        span_reader_shared_layers: int | None = None,
        span_reader_sentences: int = 3,
        span_reader_max_length: int | None = None,
        span_reader_max_answer_tokens: int = 30,
        span_reader_min_support: float = 0.5,
        evidence_from: Literal["decoder", "span_reader"] = "decoder",
        share_decoder_embeddings: bool = False,
        decoder_start_token: str = "[DEC]",
        contrastive_temperature: float = 0.07,
        momentum: float = 0.995,
        queue_size: int = 57600,
        soft_label_weight: float = 0.4,
        lm_loss_weight: float = 0.25,
        localization_loss_weight: float = 0.0,
        max_query_length: int = 64,
        max_document_length: int = 512,
        max_target_length: int = 64,
        document_stride: int | None = None,
        storage_dtype: Literal["int8"] | None = None,
        **kwargs: Any,
    ) -> None:
        self.encoder_name_or_path = encoder_name_or_path
        encoder_config = dict(encoder_config) if encoder_config else BertConfig().to_dict()
        # Classification labels mean nothing here, and their int keys do not survive a JSON round trip.
        self.encoder_config = {k: v for k, v in encoder_config.items() if k not in ("id2label", "label2id")}
        self.shared_encoder = shared_encoder
        self.retrieval_layers = retrieval_layers
        self.retrieval_sentence_weight = retrieval_sentence_weight
        self.cross_attention_layers = list(cross_attention_layers) if cross_attention_layers is not None else None
        self.cross_attention_init = cross_attention_init
        self.ranking_layer = ranking_layer
        self.ranking_head_pooling = ranking_head_pooling
        self.ranking_query_pooling = ranking_query_pooling
        self.ranking_sentence_pooling = ranking_sentence_pooling
        self.ranking_window_weighting = ranking_window_weighting
        self.ranking_window_temperature = ranking_window_temperature
        self.ranking_lexical_weight = ranking_lexical_weight
        self.ranking_lexical_temperature = ranking_lexical_temperature
        self.decoder_num_layers = decoder_num_layers
        self.decoder_init = decoder_init
        self.decoder_memory = decoder_memory
        self.decoder_reader_layers = decoder_reader_layers
        self.decoder_copy = decoder_copy
        self.decoder_copy_prior = decoder_copy_prior
        self.decoder_copy_spans = decoder_copy_spans
        self.generation_spans_only = generation_spans_only
        self.generation_span_sentences = generation_span_sentences
        self.generation_decoder_vote = generation_decoder_vote
        self.generation_query_penalty = generation_query_penalty
        self.span_reader_layers = span_reader_layers
        self.span_reader_shared_layers = span_reader_shared_layers
        self.span_reader_sentences = span_reader_sentences
        max_positions = self.encoder_config.get("max_position_embeddings", 512)
        if span_reader_max_length is None:  # a bad max_positions is refused by _validate, named
            span_reader_max_length = min(256, max_positions) if isinstance(max_positions, int) else 256
        self.span_reader_max_length = span_reader_max_length
        self.span_reader_max_answer_tokens = span_reader_max_answer_tokens
        self.span_reader_min_support = span_reader_min_support
        self.evidence_from = evidence_from
        self.share_decoder_embeddings = share_decoder_embeddings
        self.decoder_start_token = decoder_start_token
        self.contrastive_temperature = contrastive_temperature
        self.momentum = momentum
        self.queue_size = queue_size
        self.soft_label_weight = soft_label_weight
        self.lm_loss_weight = lm_loss_weight
        self.localization_loss_weight = localization_loss_weight
        self.max_query_length = max_query_length
        self.max_document_length = max_document_length
        self.max_target_length = max_target_length
        self.document_stride = min(128, max_document_length // 4) if document_stride is None else document_stride
        self.storage_dtype = storage_dtype
        # A misspelt field would otherwise become a silent extra attribute and the model would use the default.
        unknown = sorted(k for k in kwargs if k not in _TRANSFORMERS_KEYS and not k.startswith("_"))
        if unknown:
            raise ValueError(f"unknown GeARConfig field(s) {unknown}; see help(GeARConfig) for the fields")
        # Only the decoder-to-encoder embedding tie is declared at this level (see GeARModel).
        kwargs["tie_word_embeddings"] = share_decoder_embeddings
        super().__init__(**kwargs)
        self._validate()

    def _validate(self) -> None:
        import math

        for name in _INT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"GeARConfig.{name} must be an int, got {value!r}")
        for name in ("decoder_num_layers", "document_stride", "span_reader_shared_layers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"GeARConfig.{name} must be a non-negative int or None, got {value!r}")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"GeARConfig.{name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"GeARConfig.{name} must not be negative, got {value!r}")
        if not self.contrastive_temperature > 0:
            raise ValueError(f"contrastive_temperature must be positive, got {self.contrastive_temperature}")
        if not 0 <= self.momentum < 1 or not 0 <= self.soft_label_weight <= 1:
            raise ValueError("momentum must lie in [0, 1) and soft_label_weight in [0, 1]")
        if self.queue_size < 0:
            raise ValueError(f"queue_size must not be negative, got {self.queue_size}")
        for name in ("shared_encoder", "share_decoder_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GeARConfig.{name} must be true or false, got {getattr(self, name)!r}")
        for key in _ENCODER_INT_KEYS:
            value = self.encoder_config.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"encoder_config[{key!r}] must be a positive int, got {value!r}")
        for key, limit in _ENCODER_INT_LIMITS.items():
            value = self.encoder_config.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= limit):
                raise ValueError(f"encoder_config[{key!r}] must be an int in [1, {limit}], got {value!r}")
        for key, (low, high) in _ENCODER_FLOAT_RANGES.items():
            value = self.encoder_config.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
                raise ValueError(f"encoder_config[{key!r}] must be a number in [{low:g}, {high:g}), got {value!r}")
        if not isinstance(self.decoder_start_token, str) or not self.decoder_start_token:
            raise ValueError("decoder_start_token must be a non-empty string")
        layers = self.cross_attention_layers
        if layers is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
            raise ValueError(f"cross_attention_layers must be a list of ints, got {layers!r}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"GeARConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        layers = self.num_encoder_layers
        if not -layers <= self.ranking_layer < layers:
            raise ValueError(f"ranking_layer={self.ranking_layer} is outside the encoder's {layers} layers")
        if self.ranking_layer_index not in self.cross_attention_layer_indices:
            raise ValueError(
                f"ranking layer {self.ranking_layer_index} has no cross-attention; "
                f"cross_attention_layers={self.cross_attention_layers}"
            )
        if not all(0 <= i < layers for i in self.cross_attention_layer_indices):
            raise ValueError(f"cross_attention_layers must lie in [0, {layers}), got {self.cross_attention_layers}")
        max_positions = self.encoder_config.get("max_position_embeddings", 512)
        for name in ("max_query_length", "max_document_length", "max_target_length"):
            value = getattr(self, name)
            if not 2 < value <= max_positions:
                raise ValueError(f"{name}={value} must lie in (2, {max_positions}] for this encoder")
        if not 0 <= self.decoder_reader_layers <= layers:
            raise ValueError(f"decoder_reader_layers must lie in [0, {layers}], got {self.decoder_reader_layers}")
        if self.decoder_reader_layers and self.decoder_memory == "query" and not self.decoder_copy:
            raise ValueError(
                "decoder_reader_layers changes the document states the decoder reads: it needs "
                "decoder_memory='query_and_document' or decoder_copy"
            )
        if not 0 <= self.retrieval_layers <= layers:
            raise ValueError(f"retrieval_layers must lie in [0, {layers}], got {self.retrieval_layers}")
        if self.retrieval_layers and not self.shared_encoder:
            raise ValueError("retrieval_layers needs shared_encoder=True (one branch serves queries and documents)")
        if not 0 <= self.span_reader_layers <= layers:
            raise ValueError(f"span_reader_layers must lie in [0, {layers}], got {self.span_reader_layers}")
        if self.span_reader_shared_layers is not None and not (
            0 <= self.span_reader_shared_layers <= layers - self.span_reader_layers
        ):
            raise ValueError(
                f"span_reader_shared_layers must lie in [0, {layers} - span_reader_layers], "
                f"got {self.span_reader_shared_layers}"
            )
        if self.evidence_from == "span_reader" and not self.span_reader_layers:
            raise ValueError("evidence_from='span_reader' needs a span reader: span_reader_layers > 0")
        for name in ("span_reader_sentences", "span_reader_max_answer_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.span_reader_min_support <= 1:
            raise ValueError(f"span_reader_min_support must lie in [0, 1], got {self.span_reader_min_support}")
        if not 2 < self.span_reader_max_length <= max_positions:
            raise ValueError(f"span_reader_max_length={self.span_reader_max_length} must lie in (2, {max_positions}]")
        for name in ("decoder_copy_prior", "decoder_copy_spans"):
            if getattr(self, name) and not self.decoder_copy:
                raise ValueError(f"{name} needs decoder_copy")
        if self.generation_span_sentences < 0:
            raise ValueError(f"generation_span_sentences must not be negative, got {self.generation_span_sentences}")
        if self.generation_span_sentences and not self.generation_spans_only:
            raise ValueError("generation_span_sentences needs generation_spans_only")
        if self.generation_decoder_vote and self.generation_span_sentences < 2:
            raise ValueError("generation_decoder_vote chooses among generation_span_sentences: it needs 2 or more")
        for name in ("ranking_window_temperature", "ranking_lexical_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.ranking_lexical_weight <= 1:
            raise ValueError(f"ranking_lexical_weight must lie in [0, 1], got {self.ranking_lexical_weight}")
        if not 0 <= self.document_stride < self.max_document_length // 2:
            raise ValueError("document_stride must be smaller than half of max_document_length")

    @property
    def indexes_sentences(self) -> bool:
        """Whether an index of this model's documents keeps their sentence vectors (``retrieval_sentence_weight > 0``:
        the model scores documents by their best sentence too)."""
        return self.retrieval_sentence_weight > 0

    @property
    def num_encoder_layers(self) -> int:
        return int(self.encoder_config["num_hidden_layers"])

    @property
    def shared_span_reader_layers(self) -> int:
        """How many of the towers' layers the span reader runs before its own (``span_reader_shared_layers``)."""
        if self.span_reader_shared_layers is None:
            return self.num_encoder_layers - self.span_reader_layers
        return self.span_reader_shared_layers

    @property
    def sentence_scoring(self) -> SentenceScoring:
        """How serving ranks sentences: the ``ranking_*`` fields as one :class:`~gear_core.scoring.SentenceScoring`."""
        return SentenceScoring(
            self.ranking_layer_index,
            self.ranking_head_pooling,
            self.ranking_query_pooling,
            self.ranking_sentence_pooling,
            self.ranking_window_weighting,
            self.ranking_window_temperature,
            self.ranking_lexical_weight,
            self.ranking_lexical_temperature,
        )

    @property
    def hidden_size(self) -> int:
        return int(self.encoder_config["hidden_size"])

    @property
    def ranking_layer_index(self) -> int:
        """The 0-based index of ``ranking_layer``."""
        return self.ranking_layer % self.num_encoder_layers

    @property
    def cross_attention_layer_indices(self) -> list[int]:
        if self.cross_attention_layers is None:
            return list(range(self.num_encoder_layers))
        return sorted(i % self.num_encoder_layers for i in self.cross_attention_layers)

    def bert_config(self, **overrides: Any) -> BertConfig:
        """The base encoder's BertConfig, with overrides (used to shape every sub-network)."""
        values = {**self.encoder_config, **overrides}
        for key in ("architectures", "_name_or_path", "transformers_version", "model_type"):
            values.pop(key, None)
        return BertConfig(**values)
