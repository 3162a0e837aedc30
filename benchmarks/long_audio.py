"""Peak memory and time of `rvqgan encode` and `rvqgan decode` on a long file with the full 44.1 kHz model.

    python benchmarks/long_audio.py [--minutes 60] [--work DIR]

Writes DIR/long.wav (synthetic mono 44.1 kHz audio: noise and three sines, 16-bit), saves the random 44.1 kHz model
(seed 0) to DIR/model, runs `rvqgan encode` then `rvqgan decode` on it, each under `/usr/bin/time -v`, and prints a
table: wall time, seconds per minute of audio and peak RSS (the whole process: Python, torch, the model and the
work). The decoded file is checked for its length.
"""

import argparse
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import soundfile as sf
import torch
from rvqgan.modeling import RvqganConfig, RvqganModel, kbps_on_disk


def synthetic_blocks(samples: int, rate: int, block: int = 1 << 20) -> Iterator[torch.Tensor]:
    """`samples` of float32 noise plus three sines, in blocks of `block` samples."""
    generator = torch.Generator().manual_seed(0)
    for start in range(0, samples, block):
        t = torch.arange(start, min(start + block, samples), dtype=torch.float64) / rate
        tones = sum(0.2 * torch.sin(2 * math.pi * f * t) for f in (110.0, 440.0, 3000.0))
        yield tones.float() + 0.05 * torch.randn(len(t), generator=generator)


def synthetic_audio(samples: int, rate: int) -> torch.Tensor:
    """(1, 1, samples) of `synthetic_blocks`."""
    return torch.cat(list(synthetic_blocks(samples, rate)))[None, None]


def timed(command: list, log: Path) -> tuple[float, float]:
    """Run `command` under `/usr/bin/time -v`: (wall seconds, peak RSS in MB)."""
    subprocess.run(["/usr/bin/time", "-v", "-o", log, *command], check=True)
    report = log.read_text()
    wall = re.search(r"Elapsed \(wall clock\) time .*: (.+)", report).group(1)
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall.split(":"))))
    return seconds, int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", report).group(1)) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of audio (default 60)")
    parser.add_argument(
        "--work", type=Path, default=Path("long_audio"), help="folder for the files (default long_audio/)"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    RvqganModel(RvqganConfig()).save_pretrained(args.work / "model")
    rate, samples = 44100, round(args.minutes * 60 * 44100)
    wav = args.work / "long.wav"
    with sf.SoundFile(wav, "w", rate, 1, "PCM_16") as file:
        for block in synthetic_blocks(samples, rate):
            file.write(block.numpy())

    cli = [sys.executable, "-m", "rvqgan.cli"]
    model = ["--model", args.work / "model", "--force"]
    rows = []
    for name, command in (
        ("encode", ["encode", wav, "-o", args.work]),
        ("decode", ["decode", args.work / "long.rvq", "-o", args.work / "decoded"]),
    ):
        seconds, rss = timed(cli + command + model, args.work / f"{name}.time")
        rows.append(f"| {name} | {args.minutes:g} min | {seconds:.0f} | {seconds / args.minutes:.1f} | {rss:.0f} |")
    size = (args.work / "long.rvq").stat().st_size
    decoded = sf.info(args.work / "decoded" / "long.wav").frames
    print(
        f"\n.rvq: {size} bytes, {kbps_on_disk(size, samples / rate):.2f} kbps on disk; decoded {decoded} samples "
        f"({'the original length' if decoded == samples else f'NOT the original {samples}'})\n"
    )
    print("| command | audio | wall s | s per audio minute | peak RSS MB |\n|---|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
