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
from rvqgan.modeling import RvqganModel

from rvqgan.model_folder import load_discriminator, save_model_folder

from .discriminators import RvqganDiscriminator
from .model_card import model_card


def load_checkpoint(checkpoint_dir: Path) -> tuple[RvqganModel, RvqganFeatureExtractor]:
    """The model of a folder (`RvqganModel.from_pretrained`: strict, safetensors only) and its feature extractor,
    refusing one that does not fit the model."""
    model = RvqganModel.from_pretrained(checkpoint_dir.resolve())  # a path: never taken for a repo id
    config = model.config
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
    discriminator = load_discriminator(checkpoint_dir, RvqganDiscriminator)
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        save_model_folder(folder, model, discriminator, extractor)
        model_card(model.config, repo_id, checkpoint_dir).save(Path(folder) / "README.md")
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
