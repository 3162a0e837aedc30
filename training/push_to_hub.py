"""Publish a checkpoint folder to the Hub: safetensors weights, config, feature extractor, remote code and a card,
with the folder's `discriminator/` (safetensors) and `curves.png` when it has them (as `rvqgan/default_model` does).

    python -m rvqgan.training.push_to_hub CHECKPOINT_DIR --repo-id org/rvqgan-44khz [--private] [--revision BRANCH]

Everything is checked before anything is uploaded, and the upload is one commit.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from huggingface_hub import HfApi
from rvqgan.feature_extraction import RvqganFeatureExtractor
from rvqgan.modeling import RvqganConfig, RvqganModel
from rvqgan.modeling.convert import load_strict
from safetensors import SafetensorError
from safetensors.torch import load_file

from .discriminators import RvqganDiscriminator
from .model_card import model_card


def load_discriminator(checkpoint_dir: Path) -> RvqganDiscriminator | None:
    """The folder's `discriminator/`, if any, refusing any but safetensors weights."""
    folder = checkpoint_dir / "discriminator"
    if not folder.is_dir():
        return None
    if not (folder / "model.safetensors").is_file() or not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: no model.safetensors and config.json (weights are published as safetensors only)")
    try:
        return RvqganDiscriminator.from_pretrained(folder)
    except (SafetensorError, RuntimeError, TypeError) as error:
        raise ValueError(f"{folder}: not a discriminator of this package ({error})") from None


def load_checkpoint(checkpoint_dir: str | Path) -> tuple[RvqganModel, RvqganFeatureExtractor]:
    """The model and feature extractor of a folder, refusing missing weights and a config they do not fit."""
    checkpoint_dir = Path(checkpoint_dir)
    weights = checkpoint_dir / "model.safetensors"
    if not (checkpoint_dir / "config.json").is_file():
        raise ValueError(f"{checkpoint_dir}: no config.json")
    if not weights.is_file():
        raise ValueError(f"{checkpoint_dir}: no model.safetensors (weights are published as safetensors only)")
    config = RvqganConfig.from_pretrained(checkpoint_dir)
    model = RvqganModel(config)
    try:
        load_strict(model, load_file(weights), str(weights))
    except SafetensorError as error:
        raise ValueError(f"{weights}: unreadable safetensors file ({error})") from None
    if (checkpoint_dir / "preprocessor_config.json").is_file():
        extractor = RvqganFeatureExtractor.from_pretrained(checkpoint_dir)
        if (extractor.sampling_rate, extractor.hop_length) != (config.sampling_rate, config.hop_length):
            raise ValueError(
                f"{checkpoint_dir}: preprocessor_config.json ({extractor.sampling_rate} Hz, "
                f"hop {extractor.hop_length}) "
                f"does not match config.json ({config.sampling_rate} Hz, hop {config.hop_length})"
            )
    else:
        extractor = RvqganFeatureExtractor(sampling_rate=config.sampling_rate, hop_length=config.hop_length)
    return model.eval(), extractor


def push(checkpoint_dir: str | Path, repo_id: str, private: bool = False, revision: str | None = None) -> str:
    """Upload the checkpoint as one commit; returns the commit id."""
    checkpoint_dir = Path(checkpoint_dir)
    model, extractor = load_checkpoint(checkpoint_dir)
    discriminator = load_discriminator(checkpoint_dir)
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        extractor.save_pretrained(folder)
        model_card(model.config, repo_id, checkpoint_dir).save(Path(folder) / "README.md")
        if discriminator is not None:
            discriminator.save_pretrained(Path(folder) / "discriminator")
        if (checkpoint_dir / "curves.png").is_file():
            shutil.copy2(checkpoint_dir / "curves.png", folder)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, revision=revision, commit_message=f"Upload {Path(checkpoint_dir).name}"
        )
    return commit.oid


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m rvqgan.training.push_to_hub", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint_dir")
    parser.add_argument("--repo-id", required=True, help="e.g. org/rvqgan-44khz")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", help="branch to push to (default: main)")
    args = parser.parse_args(argv)
    try:
        oid = push(args.checkpoint_dir, args.repo_id, args.private, args.revision)
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")
    print(f"pushed {args.checkpoint_dir} to {args.repo_id} at {oid}")


if __name__ == "__main__":
    main()
