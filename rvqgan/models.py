"""Finding the model a command runs: a local directory, a Hub repo id, or the default model."""

import hashlib
import logging

import torch

from modeling_rvqgan import RvqganConfig, RvqganModel

logger = logging.getLogger(__name__)
RANDOM_DEFAULT = "random-44khz"


def load_model(name_or_path: str | None = None, device: str = "cpu") -> tuple[RvqganModel, str]:
    """The model in eval mode and its identity, `"<name>@sha256:<digest of the weights>"`, which `.rvq` files record.

    Without a name: the default model. No trained default ships yet, so that is a randomly initialised 44.1 kHz
    model (seed 0), announced with a warning: its output is not music.
    """
    if name_or_path is None:
        logger.warning("No trained default model is installed: using a RANDOMLY INITIALISED 44.1 kHz model (seed 0).")
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model, name = RvqganModel(RvqganConfig()), RANDOM_DEFAULT
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
