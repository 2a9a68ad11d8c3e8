"""gear_core: GeAR (Generation Augmented Retrieval) models, training, indexing and evaluation."""

from pathlib import Path

from transformers import AutoConfig, AutoModel

from gear_core.config import GeARConfig
from gear_core.modeling import GeARModel
from gear_core.text import ScoredSentence, Sentence, split_sentences

#: Folder of the trained GeAR-MiniLM shipped inside the package (present once a release ships it).
DEFAULT_MODEL = str(Path(__file__).parent / "checkpoints" / "gear-minilm")

# `AutoModel.from_pretrained(folder)` also finds GeAR once gear_core is imported.
AutoConfig.register("gear", GeARConfig, exist_ok=True)
AutoModel.register(GeARConfig, GeARModel, exist_ok=True)

__all__ = ["DEFAULT_MODEL", "GeARConfig", "GeARModel", "ScoredSentence", "Sentence", "split_sentences"]
__version__ = "0.1.0"
