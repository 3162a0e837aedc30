"""Finding the model a command runs: a local directory, a Hub repo id, or the default model."""

import hashlib
from pathlib import Path

import torch

from rvqgan.modeling import RvqganModel
from rvqgan.modeling.loading_rvqgan import first_line

DEFAULT_MODEL = Path(__file__).with_name("default_model")  # package data: the shipped 44.1 kHz model


def load_model(name_or_path: str | None = None, device: str = "cpu") -> tuple[RvqganModel, str]:
    """The model in eval mode and its identity (`model_identity`), which `.rvq` files record.

    Without a name: the default model shipped inside the package (`rvqgan/default_model`), named `default`.
    Weights that do not fit the config are refused (`RvqganModel.from_pretrained` is strict): ModelLoadError naming the
    model; a device that cannot be used: ValueError.
    """
    model = RvqganModel.from_pretrained(DEFAULT_MODEL if name_or_path is None else name_or_path).eval()
    identity = model_identity(model)
    try:
        return model.to(torch.device(device)), identity
    except (RuntimeError, AssertionError, TypeError) as error:  # an unknown device, or no CUDA here
        raise ValueError(f"device {device!r} cannot be used: {first_line(error)}") from error


def model_identity(model: RvqganModel) -> str:
    """`"<name>@sha256:<digest of the weights>"`: the name it was loaded by (`default` for the default model,
    `unsaved` for a model built in memory) and `weights_digest`."""
    name = model.name_or_path or "unsaved"
    if Path(name) == DEFAULT_MODEL:
        name = "default"
    return f"{name}@sha256:{weights_digest(model)}"


def weights_digest(model: torch.nn.Module) -> str:
    """First 16 hex digits of a SHA-256 over the parameter names and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
