"""LlamaIndex adapters for GeAR (GeAREmbedding, GeARRetriever, GeARHighlighter).

The adapters arrive with the LlamaIndex integration issue; the model they wrap is ``gear_core.GeARModel``.
"""

__all__: list[str] = []
