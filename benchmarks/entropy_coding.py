"""How much the `.rvq` range coder saves over bit packing, clip by clip, with a model's real codes.

    python benchmarks/entropy_coding.py [--model DIR] [CLIP_OR_DIR ...]

Default model: the shipped one; default clips: `examples/audio` and the ALSA test voice. Each clip is compressed
twice with `rvqgan.compress` (bit-packed, then entropy-coded: same header) and the codes checked equal. The table
gives both sizes in bytes, their ratio, the share of codes that repeat the previous frame's (codebook 1, and the
mean of the others) and the mean per-codebook entropy of the clip's own code histogram (bits of `bits_per_codebook`:
an optimistic bound for short clips).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rvqgan.feature_extraction.audio_io import read_audio  # noqa: E402

from rvqgan.codec import compress  # noqa: E402
from rvqgan.container import read  # noqa: E402
from rvqgan.models import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLIPS = [ROOT / "examples" / "audio", Path("/usr/share/sounds/alsa/Front_Center.wav")]
SUFFIXES = {".flac", ".wav", ".ogg", ".mp3"}


def histogram_entropy(codes: np.ndarray, bits: int) -> float:
    """Mean over codebooks of the entropy (bits) of each codebook's code histogram; codes (channels, n_q, frames)."""
    entropies = []
    for k in range(codes.shape[1]):
        p = np.bincount(codes[:, k].ravel(), minlength=1 << bits) / codes[:, k].size
        p = p[p > 0]
        entropies.append(-(p * np.log2(p)).sum())
    return float(np.mean(entropies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", type=Path, help="audio files or folders (default: the example clips)")
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: the shipped model)")
    args = parser.parse_args()
    model, _ = load_model(args.model)
    bits = model.config.bits_per_codebook
    clips = []
    for path in args.clips or DEFAULT_CLIPS:
        clips += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES) if path.is_dir() else [path]
    print("| clip | frames | bit-packed bytes | entropy-coded bytes | ratio | repeats cb 1 | repeats cb 2+ | entropy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    packed_total = coded_total = 0
    for clip in clips:
        audio, rate = read_audio(clip)
        packed, coded = compress(model, audio, rate, entropy=False), compress(model, audio, rate)
        codes = read(packed)[1]
        if not np.array_equal(codes, read(coded)[1]):
            raise SystemExit(f"{clip}: the entropy-coded file does not decode to the same codes")
        repeats = (codes[..., 1:] == codes[..., :-1]).mean(axis=(0, 2))
        packed_total, coded_total = packed_total + len(packed), coded_total + len(coded)
        print(
            f"| {clip.name} | {codes.shape[-1]} | {len(packed)} | {len(coded)} | {len(coded) / len(packed):.3f} "
            f"| {repeats[0]:.0%} | {repeats[1:].mean():.0%} | {histogram_entropy(codes, bits):.2f} |"
        )
    print(f"| all | | {packed_total} | {coded_total} | {coded_total / packed_total:.3f} | | | |")


if __name__ == "__main__":
    main()
