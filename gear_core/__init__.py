"""gear_core: GeAR (Generation Augmented Retrieval) models, training, indexing and evaluation.

The public names load on first use (PEP 562), so ``gear --help`` and other light imports of the package do not
pay for torch and transformers. Loading the model classes also registers them with transformers' Auto classes:
after ``from gear_core import GeARModel``, ``AutoModel.from_pretrained(folder)`` finds a GeAR folder.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

#: Folder of the trained GeAR-MiniLM shipped inside the package (present once a release ships it).
DEFAULT_MODEL = str(Path(__file__).parent / "checkpoints" / "gear-minilm")

# Public name -> the module it is loaded from.
_LAZY = {
    "GeARConfig": "gear_core.modeling",  # the module that registers both with the Auto classes
    "GeARModel": "gear_core.modeling",
    "ScoredSentence": "gear_core.text",
    "Sentence": "gear_core.text",
    "split_sentences": "gear_core.text",
}

if TYPE_CHECKING:
    from gear_core.config import GeARConfig
    from gear_core.modeling import GeARModel
    from gear_core.text import ScoredSentence, Sentence, split_sentences


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gear_core' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["DEFAULT_MODEL", "GeARConfig", "GeARModel", "ScoredSentence", "Sentence", "split_sentences"]
__version__ = "0.1.0"
