"""How evenly a model uses each codebook on real audio: per codebook level, the entropy of its code histogram over
every frame of the clips (bits, of log2(codebook_size)) and the share of its entries used.

    python benchmarks/codebook_usage.py [--model DIR] DATA_DIR

DATA_DIR: audio files, searched recursively (an evaluation set of `rvqgan.evaluation.make_eval_set`, say). Each clip is
encoded whole with every codebook, at the model's rate, mixed to mono; the histograms pool all clips' frames.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rvqgan.feature_extraction import RvqganFeatureExtractor  # noqa: E402
from rvqgan.feature_extraction.audio_io import read_audio  # noqa: E402
from rvqgan.training.train import code_counts, codebook_usage  # noqa: E402

from rvqgan.models import load_model  # noqa: E402

SUFFIXES = {".flac", ".wav", ".ogg", ".mp3"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    args = parser.parse_args()
    model, _ = load_model(args.model)
    config = model.config
    extractor = RvqganFeatureExtractor(sampling_rate=config.sampling_rate, hop_length=config.hop_length)
    clips = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in SUFFIXES)
    codes = []
    for clip in clips:
        audio, rate = read_audio(clip)
        inputs = extractor(audio, sampling_rate=rate, return_tensors="pt")
        with torch.inference_mode():
            codes.append(model.encode(**inputs).audio_codes)
    stats = codebook_usage(code_counts(torch.cat(codes, dim=-1), config.codebook_size))
    frames = sum(c.shape[-1] for c in codes)
    print(f"{len(clips)} clips, {frames} frames; of {np.log2(config.codebook_size):g} bits per codebook")
    print("| codebook | entropy (bits) | entries used |\n|---:|---:|---:|")
    for k in range(config.n_codebooks):
        print(f"| {k + 1} | {stats[f'codebooks/entropy_bits_{k}']:.2f} | {stats[f'codebooks/usage_{k}']:.1%} |")


if __name__ == "__main__":
    main()
