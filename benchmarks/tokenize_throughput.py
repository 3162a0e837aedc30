"""Throughput of AudioTokenizer (decode + resample + encode) on real clips: examples/s, audio seconds/s, tokens/s.

    python benchmarks/tokenize_throughput.py [--batch-size 8] [--repeats 3] [--device cpu] [--models tiny full]

"tiny" is the test model (`RvqganConfig.from_preset("tiny")`: hop 32, 4 codebooks of 64) at 44.1 kHz; "full" is the
44.1 kHz model (`RvqganModel(RvqganConfig())`, 9 codebooks). Random weights: the speed does not depend on them.
Clips: examples/audio/*.flac (44.1 kHz) and /usr/share/sounds/alsa/*.wav (48 kHz speech) when present.
"""

import argparse
import glob
import sys
import time
from pathlib import Path

import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rvqgan.feature_extraction.tokenizer import AudioTokenizer  # noqa: E402
from rvqgan.modeling import RvqganConfig, RvqganModel  # noqa: E402


def build(name):
    torch.manual_seed(0)
    config = RvqganConfig.from_preset("tiny", sampling_rate=44100) if name == "tiny" else RvqganConfig()
    return RvqganModel(config).eval()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["tiny", "full"])
    parser.add_argument(
        "--max-batch-seconds",
        type=float,
        nargs="+",
        default=[None],
        help="AudioTokenizer bucket budgets to compare (default: its own, 120 s CUDA / 2 s CPU)",
    )
    args = parser.parse_args()

    files = sorted(glob.glob(str(ROOT / "examples/audio/*.flac"))) + sorted(glob.glob("/usr/share/sounds/alsa/*.wav"))
    files = (files * args.batch_size)[: args.batch_size]
    cells = [{"path": f, "bytes": None} for f in files]
    seconds = sum(sf.info(f).frames / sf.info(f).samplerate for f in files)
    rates = sorted({sf.info(f).samplerate for f in files})
    print(
        f"{len(files)} clips, {seconds:.1f} s of audio at {rates} Hz, batch {args.batch_size}, device {args.device}, "
        f"{torch.get_num_threads()} torch threads"
    )
    print("| model | codebooks | max batch s | examples/s | audio s/s | tokens/s |")
    print("|---|---|---|---|---|---|")
    for name, budget in [(name, budget) for name in args.models for budget in args.max_batch_seconds]:
        model = build(name)
        tokenizer = AudioTokenizer(model, device=args.device, max_batch_seconds=budget)
        tokenizer({"audio": cells[:1]})  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = tokenizer({"audio": cells})
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        tokens = sum(int(n) for n in out["n_frames"]) * tokenizer.n_quantizers
        print(
            f"| {name} (hop {model.config.hop_length}) | {tokenizer.n_quantizers} x {model.config.codebook_size} | "
            f"{tokenizer.batch_seconds(args.device):g} | {len(files) / best:.2f} | {seconds / best:.1f} | "
            f"{tokens / best:,.0f} |"
        )


if __name__ == "__main__":
    main()
