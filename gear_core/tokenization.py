"""Tokenizing for every path: the tokenizer lock, the decoder's inputs, text the fast tokenizer accepts, and the
input checks every batched entry point shares."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from gear_core.folders import resolve_encoder_path
from gear_core.losses import IGNORE_INDEX

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


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def tokenizable(text: str) -> str:
    """``text`` with each lone surrogate (which the fast tokenizer refuses) replaced by U+FFFD. One code point for
    one, so token offsets still index the original string, which sentences and spans are cut from."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def check_positive_int(value: object, name: str) -> None:
    """``value`` must be a positive int (True is not 1): batch sizes, how many results a search returns, index
    parameters."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_batch_size(batch_size: int) -> None:
    """The one batch-size check every batched entry point uses."""
    check_positive_int(batch_size, "batch_size")


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, refusing a single string and any item that is not one."""
    if isinstance(texts, str):
        raise TypeError("expected a list of strings, got a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"item {i} is {type(text).__name__}, expected str")
    return texts
