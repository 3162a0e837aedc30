"""Audio in, model inputs out. Importing registers the feature extractor with `AutoFeatureExtractor`."""

from transformers import AutoFeatureExtractor

from modeling_rvqgan import RvqganConfig

from .feature_extraction_rvqgan import RvqganFeatureExtractor

AutoFeatureExtractor.register(RvqganConfig, RvqganFeatureExtractor, exist_ok=True)
RvqganFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = ["RvqganFeatureExtractor"]
