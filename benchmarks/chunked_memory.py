"""Time and peak memory of windowed encoding and decoding with the full 44.1 kHz model (random weights).

    /usr/bin/time -v python benchmarks/chunked_memory.py --minutes 1

Synthetic audio (noise + sines) is encoded with `encode_chunked`, then freed, as a separate `encode` CLI call would,
and the codes are decoded with `decode_chunked`. Peak RSS (ru_maxrss) is printed after every stage: the model and
window activations are fixed costs; the audio (and the decoded audio) grow by 10.6 MB per minute at 44.1 kHz.
The peak also holds glibc heap fragmentation from the windows' many temporaries (up to ~0.4 GB); run with
MALLOC_MMAP_THRESHOLD_=262144 to see the live set only (about 20-70 % slower from the extra page faults).
"""

import argparse
import math
import resource
import time

import torch

from modeling_rvqgan import RvqganConfig, RvqganModel
from rvqgan.chunking import DEFAULT_WINDOW_SECONDS, decode_chunked, encode_chunked


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def synthetic_audio(samples: int, rate: int, block: int = 1 << 20) -> torch.Tensor:
    """(1, 1, samples) float32 noise plus three sines, generated in blocks to avoid whole-file temporaries."""
    audio = torch.empty(1, 1, samples)
    generator = torch.Generator().manual_seed(0)
    for start in range(0, samples, block):
        t = torch.arange(start, min(start + block, samples), dtype=torch.float64) / rate
        tones = sum(0.2 * torch.sin(2 * math.pi * f * t) for f in (110.0, 440.0, 3000.0))
        audio[0, 0, start : start + len(t)] = tones.float() + 0.05 * torch.randn(len(t), generator=generator)
    return audio


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of audio (default 60)")
    parser.add_argument("--window-seconds", type=float, default=DEFAULT_WINDOW_SECONDS, help="centre of each window")
    args = parser.parse_args()

    model = RvqganModel(RvqganConfig()).eval()
    rate = model.config.sampling_rate
    window_frames = max(1, round(args.window_seconds * model.config.frame_rate))
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; peak RSS {peak_rss_mb():.0f} MB")
    audio = synthetic_audio(round(args.minutes * 60 * rate), rate)
    seconds = audio.shape[-1] / rate
    print(f"audio: {seconds:.1f} s ({audio.numel() * 4 / 2**20:.0f} MB); peak RSS {peak_rss_mb():.0f} MB")

    begin = time.perf_counter()
    codes = encode_chunked(model, audio, window_frames=window_frames, progress=True)
    encode_s = time.perf_counter() - begin
    print(f"encode: {encode_s:.1f} s, {encode_s / (seconds / 60):.1f} s per audio minute; codes {tuple(codes.shape)}; "
          f"peak RSS {peak_rss_mb():.0f} MB")
    del audio

    begin = time.perf_counter()
    decoded = decode_chunked(model, codes, window_frames=window_frames, progress=True)
    decode_s = time.perf_counter() - begin
    print(f"decode: {decode_s:.1f} s, {decode_s / (seconds / 60):.1f} s per audio minute; audio {tuple(decoded.shape)}; "
          f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
