"""Audio in, model inputs out; datasets in, tokens out. Importing registers the feature extractor with
`AutoFeatureExtractor`."""

from rvqgan.modeling import RvqganConfig
from transformers import AutoFeatureExtractor

from .feature_extraction_rvqgan import AudioError, RvqganFeatureExtractor, check_rate, validate_audio
from .layouts import LAYOUTS, from_layout, to_layout, vocab_size
from .tokenizer import AudioTokenizer, load_audio

AutoFeatureExtractor.register(RvqganConfig, RvqganFeatureExtractor, exist_ok=True)
RvqganFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = [
    "RvqganFeatureExtractor",
    "AudioError",
    "check_rate",
    "validate_audio",
    "AudioTokenizer",
    "load_audio",
    "LAYOUTS",
    "to_layout",
    "from_layout",
    "vocab_size",
]
