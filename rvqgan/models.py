"""Finding the model a command runs: a local directory, a Hub repo id, or the default model."""

import hashlib
from pathlib import Path

import torch

from modeling_rvqgan import RvqganModel

DEFAULT_MODEL = Path(__file__).with_name("default_model")  # package data: the shipped 44.1 kHz model


def load_model(name_or_path: str | None = None, device: str = "cpu") -> tuple[RvqganModel, str]:
    """The model in eval mode and its identity, `"<name>@sha256:<digest of the weights>"`, which `.rvq` files record.

    Without a name: the default model shipped inside the package (`rvqgan/default_model`), named `default`.
    """
    if name_or_path is None:
        model, name = RvqganModel.from_pretrained(DEFAULT_MODEL), "default"
    else:
        model, name = RvqganModel.from_pretrained(name_or_path), str(name_or_path)
    return model.eval().to(device), f"{name}@sha256:{weights_digest(model)}"


def weights_digest(model: torch.nn.Module) -> str:
    """First 16 hex digits of a SHA-256 over the parameter names and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
