"""GeARPreTrainedModel: how a GeAR model is made, loaded and saved (the transformers ``PreTrainedModel`` side of
:class:`~gear_core.modeling.GeARModel`, as ``BertPreTrainedModel`` is BERT's): a fresh model from a BERT-family
encoder's weights, a saved folder verified and loaded (float or int8 storage), an atomic save, and the
initialisation of what GeAR adds to BERT."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, BertModel, PreTrainedModel

from gear_core.config import GeARConfig
from gear_core.folders import (
    MODEL_FILE_PATTERNS,
    adds_retrieval_layers,
    adds_span_reader,
    check_finite,
    finish_model_folder,
    quiet_transformers,
    resolve_encoder_path,
    saved_config,
    shipped_model_folder,
    verify_model_folder,
)
from gear_core.layers import CopyHead, CrossAttention
from gear_core.quantization import load_int8_model
from gear_core.tokenization import gear_tokenizer


class GeARPreTrainedModel(PreTrainedModel):
    """Construction and persistence of a GeAR model; :class:`~gear_core.modeling.GeARModel` holds the network."""

    config: GeARConfig
    config_class = GeARConfig
    base_model_prefix = "gear"
    supports_gradient_checkpointing = False
    _supports_sdpa = True

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

    @classmethod
    def from_encoder(cls, name_or_path: str, **config_overrides: Any) -> Any:
        """A new GeAR from a plain BERT-family encoder (a local folder or a hub name).

        Query and document encoders (and the decoder, with ``decoder_init="encoder"``) start from the encoder's
        weights; with ``cross_attention_init="self_attention"`` each cross-attention block starts as a copy of
        its layer's self-attention. ``config_overrides`` are GeARConfig fields.
        """
        name_or_path = resolve_encoder_path(name_or_path)
        with quiet_transformers():  # the pooler weights GeAR does not use are reported as unexpected
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
        if config.retrieval_layers:
            model._start_retrieval_layers()
        model.decoder.tie_weights()
        model.tie_weights()
        return model

    def _start_reader(self) -> None:
        """Reader layer i starts as encoder layer ``L - n + i`` (the top layers, which made the states it reads),
        its cross-attention as that layer's self-attention (as the fusion encoder's blocks start)."""
        top = self.config.num_encoder_layers - len(self.reader)
        self._copy_encoder_layers([reader_layer.layer for reader_layer in self.reader], top)
        for i, reader_layer in enumerate(self.reader):
            self._copy_self_attention(top + i, reader_layer.crossattention)

    def _start_span_reader(self) -> None:
        """The span reader's layer i starts as encoder layer ``shared + i``: the reader continues the shared bottom
        layers with copies of the layers that followed them; its head starts fresh."""
        self._copy_encoder_layers(self.span_reader.layers, self.config.shared_span_reader_layers)
        with torch.no_grad():
            self.span_reader.span_head.apply(self._init_weights)

    def _start_retrieval_layers(self) -> None:
        """Retrieval layer i starts as encoder layer ``L - n + i``: the branch is a copy of the layers it replaces,
        so the embeddings do not change until the towers stage trains it."""
        self._copy_encoder_layers(self.retrieval_layers, self.config.num_encoder_layers - len(self.retrieval_layers))

    def _copy_encoder_layers(self, layers: Iterable[nn.Module], first: int) -> None:
        """Layer i of ``layers`` becomes a copy of the encoder's layer ``first + i`` (how each branch starts)."""
        with torch.no_grad():
            for i, layer in enumerate(layers):
                layer.load_state_dict(self.query_encoder.encoder.layer[first + i].state_dict())

    def _copy_self_attention(self, layer_index: int, block: CrossAttention) -> None:
        attention = self.query_encoder.encoder.layer[layer_index].attention
        with torch.no_grad():
            for name in ("query", "key", "value"):
                getattr(block, name).load_state_dict(getattr(attention.self, name).state_dict())
            block.dense.load_state_dict(attention.output.dense.state_dict())
            block.LayerNorm.load_state_dict(attention.output.LayerNorm.state_dict())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        """Load a model saved with :meth:`save_pretrained` (safetensors only, never pickles).

        Also reads a local folder written by ``gear export --dtype int8`` (``storage_dtype: "int8"`` in its
        config.json): its int8 matrices are dequantised to float32 (:mod:`gear_core.quantization`).

        A local folder is verified first (:func:`verify_model_folder`): every model file must match its
        ``checksums.sha256``. ``verify=False`` loads a folder written by other tools, or edited by hand, unchecked.
        """
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
        if saved_config(path).get("storage_dtype") == "int8":
            model = load_int8_model(cls, path, *args, **kwargs)
        else:
            model = super().from_pretrained(path, *args, **kwargs)
            # Asked for by an override: they start as from_encoder starts them.
            if adds_span_reader(model.config, path):
                model._start_span_reader()
            if adds_retrieval_layers(model.config, path):
                model._start_retrieval_layers()
        check_finite(model, path)
        model.tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
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
