"""Streaming encode + decode (`model.streaming_encoder()` / `streaming_decoder()`): speed against the offline pass,
and the quality a lookahead below the exact context costs.

    python benchmarks/streaming.py speed [--models default 44khz] [--threads 1 2] [--chunks-ms 10 20 40 80]
        [--seconds 10] [--preset-seconds 3] [--repeats 2]
    python benchmarks/streaming.py latency [--lookahead-ms 0 20 40 80] [--seconds 10]

speed: the shipped default model (`rvqgan.load_model()`) and the 44.1 kHz preset (`RvqganConfig.from_preset("44khz")`,
random weights, seed 0), on `--seconds` (default model) or `--preset-seconds` of noise and tones at 44.1 kHz. For
each torch thread count, the offline pass (`encode` then `decode` of the whole signal, in eval mode under
`torch.inference_mode`: the tiled path) and, for each chunk length, the exact streams: audio pushed into the encoder
chunk by chunk, the codes it returns pushed into the decoder at once, then both flushed. Offline and streamed runs
alternate, `--repeats` times; the table gives the fastest of each. "RTF": seconds of computing per second of audio
(real time below 1); "x offline": the streamed time over the offline time.

latency: the default model on real clips (`examples/audio`, the alsa-utils voices in /usr/share/sounds/alsa and
sonic-pi samples in /usr/share/sonic-pi/samples; mono, 44.1 kHz, at most `--seconds` each). For the encoder, audio
pushed a frame at a time into streams of each lookahead (samples past a frame's end before its codes are returned,
the future zero-padded), the codes decoded offline; for the decoder, the exact codes pushed a frame at a time into
streams of each lookahead in frames (at least the milliseconds asked). Mel distance
(`rvqgan.evaluation.metrics.mel_distance`, lower is better) and SI-SDR (dB, higher is better) against the input and
against the exact stream's output (the offline decode of the offline codes), averaged over the clips.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rvqgan.evaluation.metrics import mel_distance, si_sdr  # noqa: E402
from rvqgan.feature_extraction.audio import mono_at  # noqa: E402
from rvqgan.feature_extraction.audio_io import read_audio  # noqa: E402
from rvqgan.modeling import RvqganConfig, RvqganModel  # noqa: E402

from rvqgan import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLIPS = [
    *sorted((ROOT / "examples" / "audio").glob("*.flac")),
    *(Path("/usr/share/sounds/alsa") / f"{name}.wav" for name in ("Front_Center", "Front_Left", "Rear_Right")),
    *(Path("/usr/share/sonic-pi/samples") / f"{name}.flac" for name in ("ambi_piano", "loop_tabla", "guit_em9")),
]


def tones_and_noise(seconds: float, rate: int = 44100) -> torch.Tensor:
    """(1, samples): two tones under a slow envelope, and noise."""
    t = torch.arange(round(seconds * rate)) / rate
    tones = 0.2 * (torch.sin(2 * math.pi * 220 * t) + torch.sin(2 * math.pi * 1375 * t)) * torch.sin(math.pi * t / 2)
    return (tones + 0.05 * torch.randn(t.shape, generator=torch.Generator().manual_seed(0)))[None]


def offline(model, audio: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.decode(audio_codes=model.encode(audio[:, None]).audio_codes).audio_values


def streamed(model, audio: torch.Tensor, chunk: int) -> torch.Tensor:
    encoder, decoder = model.streaming_encoder(), model.streaming_decoder()
    outputs = [
        decoder.push(encoder.push(audio[:, start : start + chunk])) for start in range(0, audio.shape[-1], chunk)
    ]
    return torch.cat(outputs + [decoder.push(encoder.flush()), decoder.flush()], -1)


def seconds_taken(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def speed(args):
    default, _ = load_model()
    torch.manual_seed(0)
    preset = RvqganModel(RvqganConfig.from_preset("44khz")).eval()
    print("| model | audio | threads | offline RTF | chunk | stream RTF | x offline |")
    print("|---|---|---|---|---|---|---|")
    models = (("default", default, args.seconds), ("44khz", preset, args.preset_seconds))
    for name, model, seconds in [entry for entry in models if entry[0] in args.models]:
        audio = tones_and_noise(seconds)
        for threads in args.threads:
            torch.set_num_threads(threads)
            streamed(model, audio[:, :44100], 882)  # warm-up: weights' spectra, allocator
            offline(model, audio[:, :44100])
            times = {chunk: [] for chunk in args.chunks_ms}
            best_offline = float("inf")
            for _ in range(args.repeats):
                for chunk_ms in args.chunks_ms:
                    best_offline = min(best_offline, seconds_taken(offline, model, audio))
                    times[chunk_ms].append(seconds_taken(streamed, model, audio, round(chunk_ms * 44.1)))
            for chunk_ms, measured in times.items():
                print(
                    f"| {name} | {seconds:g} s | {threads} | {best_offline / seconds:.3f} | {chunk_ms:g} ms "
                    f"| {min(measured) / seconds:.3f} | {min(measured) / best_offline:.2f} |",
                    flush=True,
                )


def frame_by_frame(stream, values: torch.Tensor, first: int, step: int) -> torch.Tensor:
    """`values` pushed along the last axis, `first` then `step` at a time, then flushed."""
    bounds = [0, *range(first, values.shape[-1], step), values.shape[-1]]
    outputs = [stream.push(values[..., a:b]) for a, b in zip(bounds, bounds[1:]) if b > a]
    return torch.cat(outputs + [stream.flush()], -1)


def latency(args):
    model, _ = load_model()
    rate, hop = model.config.sampling_rate, model.config.hop_length
    clips = [torch.from_numpy(mono_at(*read_audio(path), rate)[: round(args.seconds * rate)].copy()) for path in CLIPS]
    exact = model.streaming_encoder().lookahead, model.streaming_decoder().lookahead
    rows = [(ms, round(ms * rate / 1000), math.ceil(ms * rate / 1000 / hop)) for ms in args.lookahead_ms]
    rows.append(("exact", exact[0], exact[1]))
    print(f"{len(clips)} clips, {sum(len(c) for c in clips) / rate:.1f} s")
    print("| lookahead | encoder delay (ms) | mel vs input | SI-SDR vs input | mel vs exact | SI-SDR vs exact "
          "| decoder delay (ms) | mel vs input | SI-SDR vs input | mel vs exact | SI-SDR vs exact |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, samples, frames in rows:
        scores = []
        for clip in clips:
            audio = clip[None]
            with torch.inference_mode():
                codes = model.encode(audio[:, None]).audio_codes
                reference = model.decode(audio_codes=codes).audio_values[0, : audio.shape[-1]].numpy()
                coded = frame_by_frame(model.streaming_encoder(lookahead=samples), audio, hop + samples, hop)
                encoder_out = model.decode(audio_codes=coded).audio_values[0, : audio.shape[-1]].numpy()
            decoder_out = frame_by_frame(model.streaming_decoder(lookahead=frames), codes, 1, 1)[0, : audio.shape[-1]]
            row = []
            for out in (encoder_out, decoder_out.numpy()):
                for target in (clip.numpy(), reference):
                    row += [mel_distance(target, out, rate), si_sdr(target, out)]
            scores.append(row)
        mean = np.mean(scores, axis=0)
        cells = [f"{value:.3f}" if index % 2 == 0 else f"{value:.1f}" for index, value in enumerate(mean)]
        encoder_ms, decoder_ms = 1000 * (samples + hop) / rate, 1000 * frames * hop / rate
        print(f"| {label} | {encoder_ms:.0f} | {' | '.join(cells[:4])} | {decoder_ms:.0f} | {' | '.join(cells[4:])} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    speed_parser = commands.add_parser("speed")
    speed_parser.add_argument("--models", nargs="+", choices=["default", "44khz"], default=["default", "44khz"])
    speed_parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    speed_parser.add_argument("--chunks-ms", type=float, nargs="+", default=[10, 20, 40, 80])
    speed_parser.add_argument("--seconds", type=float, default=10.0)
    speed_parser.add_argument("--preset-seconds", type=float, default=3.0)
    speed_parser.add_argument("--repeats", type=int, default=2)
    latency_parser = commands.add_parser("latency")
    latency_parser.add_argument("--lookahead-ms", type=float, nargs="+", default=[0, 20, 40, 80])
    latency_parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    speed(args) if args.command == "speed" else latency(args)


if __name__ == "__main__":
    main()
