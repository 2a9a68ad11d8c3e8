"""GeAREmbedding: GeAR's bi-encoder as a LlamaIndex embedding model.

Queries go through GeAR's query encoder, texts (nodes) through its document encoder; both give L2-normalised
vectors in one space, so cosine similarity (LlamaIndex's default) and inner product (``faiss.IndexFlatIP``) agree.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from gear_core import GeARModel
from llama_index_gear._model import load_model, model_label

DEFAULT_EMBED_BATCH_SIZE = 32


class GeAREmbedding(BaseEmbedding):
    """Embeddings from a GeARModel (query encoder for queries, document encoder for texts).

    Pass ``model=`` a loaded :class:`gear_core.GeARModel`, or ``model_name=`` the folder of a saved one
    (default: ``gear_core.DEFAULT_MODEL``). The model is a private attribute: it is never serialised.

    Example:
        >>> embed_model = GeAREmbedding(model_name="path/to/gear-model")
        >>> index = VectorStoreIndex(nodes, embed_model=embed_model)
    """

    embed_batch_size: int = Field(default=DEFAULT_EMBED_BATCH_SIZE, gt=0, le=2048)
    device: str | None = Field(default=None, description="Device to run on (None: where the model already is).")

    _model: GeARModel = PrivateAttr()

    def __init__(
        self,
        model: GeARModel | None = None,
        model_name: str | os.PathLike | None = None,
        device: str | None = None,
        embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        **kwargs: Any,
    ) -> None:
        gear_model = load_model(model, model_name, device)
        super().__init__(
            model_name=os.fspath(model_name) if model_name is not None else model_label(gear_model),
            device=device,
            embed_batch_size=embed_batch_size,
            **kwargs,
        )
        self._model = gear_model

    @classmethod
    def class_name(cls) -> str:
        return "GeAREmbedding"

    @property
    def model(self) -> GeARModel:
        """The wrapped GeARModel (shared, e.g. with a GeARRetriever or GeARHighlighter)."""
        return self._model

    @property
    def dimension(self) -> int:
        """Embedding size (``model.config.hidden_size``), e.g. for ``faiss.IndexFlatIP(dimension)``."""
        return self._model.config.hidden_size

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._model.encode_queries([query])[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._model.encode_documents([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._model.encode_documents(texts, batch_size=self.embed_batch_size).tolist()

    # The model runs on CPU/GPU in this process: async callers get it in a worker thread.
    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
