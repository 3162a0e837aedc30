"""Model folders: the generator as a transformers folder (`config.json`, `model.safetensors`, `preprocessor_config.json`
and the model's code for `trust_remote_code`) and, optionally, its discriminator in `discriminator/` (`config.json`,
`model.safetensors`). The one writer of these folders (the converter, training, `export_default`, `push_to_hub`) and
the one reader of their discriminator; weights are read strictly and from safetensors only (`load_safetensors`)."""

import json
from collections.abc import Callable
from pathlib import Path

from torch import nn
from transformers import PreTrainedModel

from rvqgan.feature_extraction import RvqganFeatureExtractor
from rvqgan.modeling.loading_rvqgan import ModelLoadError, first_line, load_safetensors

DISCRIMINATOR = "discriminator"


def save_model_folder(
    directory: str | Path, model: PreTrainedModel, discriminator: nn.Module | None = None, extractor=None
) -> Path:
    """Write `model` to `directory` with `extractor` (by default the RvqganFeatureExtractor of the model's rate and
    hop) and, when given, `discriminator` (a `PyTorchModelHubMixin` module) in `discriminator/`."""
    directory = Path(directory)
    model.save_pretrained(directory)
    if extractor is None:
        extractor = RvqganFeatureExtractor(sampling_rate=model.config.sampling_rate, hop_length=model.config.hop_length)
    extractor.save_pretrained(directory)
    if discriminator is not None:
        discriminator.save_pretrained(directory / DISCRIMINATOR)
    return directory


def load_discriminator(directory: str | Path, build: Callable[..., nn.Module]) -> nn.Module | None:
    """The folder's discriminator: `build(**kwargs)` (the keyword arguments in `discriminator/config.json`) with the
    weights of `discriminator/model.safetensors`, loaded strictly; None when the folder has no `discriminator/`.
    Anything else is a ModelLoadError naming the file, with the cause chained."""
    folder = Path(directory) / DISCRIMINATOR
    if not folder.is_dir():
        return None
    config = folder / "config.json"
    try:
        discriminator = build(**json.loads(config.read_text()))
    except (OSError, ValueError, TypeError) as error:  # missing, not JSON, or arguments the module does not take
        raise ModelLoadError(f"{config}: cannot build the discriminator ({first_line(error)})") from error
    return load_safetensors(discriminator, folder / "model.safetensors")
