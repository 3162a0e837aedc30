"""The Improved RVQGAN neural audio codec as a transformers model. Importing registers it with the Auto classes."""

from transformers import AutoConfig, AutoModel

from .configuration_rvqgan import RvqganConfig, kbps_on_disk
from .loading_rvqgan import ModelLoadError, load_pretrained
from .modeling_rvqgan import RvqganDecoderOutput, RvqganEncoderOutput, RvqganModel, RvqganOutput, RvqganPreTrainedModel

AutoConfig.register(RvqganConfig.model_type, RvqganConfig, exist_ok=True)
AutoModel.register(RvqganConfig, RvqganModel, exist_ok=True)
RvqganConfig.register_for_auto_class()
RvqganModel.register_for_auto_class("AutoModel")

__all__ = [
    "RvqganConfig",
    "RvqganModel",
    "RvqganPreTrainedModel",
    "RvqganEncoderOutput",
    "RvqganDecoderOutput",
    "RvqganOutput",
    "ModelLoadError",
    "load_pretrained",
    "kbps_on_disk",
]
