"""Encode and decode speed of RvqganModel (eval mode: the tiled fast path) against transformers' DacModel, in one
process.

    python benchmarks/speed.py [--seconds 1 10 60] [--repeats 3] [--threads N]

Same weights (`RvqganModel(RvqganConfig())` with seed 0, the random 44.1 kHz default model, copied into a DacModel
with `rvqgan.modeling.convert.to_dac`), same input (noise and sines, a whole number of 512-sample frames), both in
eval mode under `torch.inference_mode`.
For each input length the variants alternate, `--repeats` times after a 1 s warm-up each; the table gives medians:
- DacModel fp32, and DacModel under `torch.autocast("cpu", dtype=torch.bfloat16)`;
- rvqgan fp32, and rvqgan under the same autocast (its decoder convolves in bf16; encoder and quantizer stay fp32).
"x" is the median over the repeats of DacModel fp32's time over the variant's in the same repeat (robust to load
that changes between repeats on a shared machine). GFLOP/s counts the convolutions' multiply-adds (x2) and is
compared with the measured peak of a 2048 x 2048 float32 or bf16 matrix product on the same threads.
Checks, on the last repeat: codes identical to DacModel fp32's (%), largest |audio difference| between decoding
DacModel's codes with both models; for bf16, codes identical to rvqgan fp32's and the mel distance
(`rvqgan.evaluation.metrics.mel_distance`) of the bf16 decode against the fp32 decode of the same codes.
With `--clips DIR` (e.g. the set of `rvqgan.evaluation.make_eval_set`), the same bf16 checks on every audio file in it,
mixed to mono and resampled to 44.1 kHz.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rvqgan.evaluation.metrics import mel_distance  # noqa: E402
from rvqgan.feature_extraction.audio import mono_at  # noqa: E402
from rvqgan.feature_extraction.audio_io import read_audio  # noqa: E402
from rvqgan.modeling import RvqganConfig, RvqganModel  # noqa: E402
from rvqgan.modeling.convert import to_dac  # noqa: E402

from benchmarks.long_audio import synthetic_audio  # noqa: E402

VARIANTS = ["DacModel fp32", "DacModel bf16", "rvqgan fp32", "rvqgan bf16"]


def matmul_peak(dtype: torch.dtype, repeats: int = 10) -> float:
    """GFLOP/s of the fastest of `repeats` 2048 x 2048 matrix products."""
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best / 1e9


def convolution_flops(model: RvqganModel, frames: int) -> tuple[float, float]:
    """(encode, decode) FLOPs of `frames` code frames: twice the multiply-adds of every convolution, counted with
    hooks on a reference pass over 2 frames (every length is proportional to the frame count)."""
    counts = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.ConvTranspose1d):
            counts.append(2 * module.weight.numel() * inputs[0].shape[-1])
        else:
            counts.append(2 * module.weight.numel() * output.shape[-1])

    convolutions = [m for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))]
    hooks = [m.register_forward_hook(count) for m in convolutions]
    audio = torch.zeros(1, 1, 2 * model.config.hop_length)
    with torch.enable_grad():  # the reference path, module by module
        codes = model.encode(audio).audio_codes
        encode = sum(counts)
        model.decode(audio_codes=codes)
    for hook in hooks:
        hook.remove()
    return encode * frames / 2, (sum(counts) - encode) * frames / 2


def run(model, audio: torch.Tensor, bf16: bool):
    """(encode s, decode s, codes, audio) of one pass."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        start = time.perf_counter()
        codes = model.encode(audio).audio_codes
        middle = time.perf_counter()
        decoded = model.decode(audio_codes=codes).audio_values
        end = time.perf_counter()
    return middle - start, end - middle, codes, decoded.float()


def bf16_checks(model, codes: torch.Tensor, decoded: torch.Tensor, bf16_codes: torch.Tensor) -> str:
    """Table cells: `bf16_codes` identical to the fp32 `codes` (%), and the mel distance of the bf16 decode of `codes`
    against their fp32 decode `decoded`."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_audio = model.decode(audio_codes=codes).audio_values.float()
    distance = mel_distance(decoded[0].numpy(), bf16_audio[0].numpy(), model.config.sampling_rate)
    return f"{100 * (bf16_codes == codes).double().mean():.3f} % | {distance:.4f}"


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3"))


def clip_rows(model, folder: Path) -> list[str]:
    """bf16 checks on every audio file under `folder`, as Markdown table rows."""
    rows = []
    for path in audio_files(folder):
        audio, rate = read_audio(path)
        audio = torch.from_numpy(mono_at(audio, rate, model.config.sampling_rate))[None, None]
        *_, codes, decoded = run(model, audio, bf16=False)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_codes = model.encode(audio).audio_codes
        rows.append(
            f"| {path.relative_to(folder)} | {audio.shape[-1] / model.config.sampling_rate:.1f} s | "
            f"{bf16_checks(model, codes, decoded, bf16_codes)} |"
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[1, 10, 60], help="input lengths")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clips", type=Path, help="a folder of audio files for the bf16 checks")
    args = parser.parse_args()
    if args.clips is not None and not audio_files(args.clips):
        parser.error(f"--clips {args.clips}: no .wav, .flac, .ogg or .mp3 files there")
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    ours = RvqganModel(RvqganConfig()).eval()
    models = {"DacModel": to_dac(ours).eval(), "rvqgan": ours}
    rate = ours.config.sampling_rate
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(
        f"threads {args.threads}; matmul peak fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    for variant in VARIANTS:
        name, precision = variant.split()
        run(models[name], synthetic_audio(rate, rate), precision == "bf16")

    rows, checks = [], []
    for seconds in args.seconds:
        frames = round(seconds * ours.config.frame_rate)  # a whole number of frames: DacModel does not pad
        audio = synthetic_audio(frames * ours.config.hop_length, rate)
        encode_flops, decode_flops = convolution_flops(ours, frames)
        times, outputs = {v: [] for v in VARIANTS}, {}
        for _ in range(args.repeats):
            for variant in VARIANTS:
                name, precision = variant.split()
                *timing, codes, decoded = run(models[name], audio, precision == "bf16")
                times[variant].append(timing)
                outputs[variant] = codes, decoded
                print(
                    f"{seconds:g} s {variant}: encode {timing[0]:.2f} s, decode {timing[1]:.2f} s, "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        for variant in VARIANTS:
            cells = []
            for part in (lambda t: t[0], lambda t: t[1], sum):  # encode, decode, both
                seconds_taken = statistics.median(part(t) for t in times[variant])
                ratio = statistics.median(part(d) / part(t) for d, t in zip(times["DacModel fp32"], times[variant]))
                cells.append(f"{seconds_taken:.2f} ({ratio:.2f}x)")
            gflops = (encode_flops + decode_flops) / statistics.median(sum(t) for t in times[variant]) / 1e9
            peak = peaks[variant.split()[1]]
            rows.append(
                f"| {seconds:g} s | {variant} | {' | '.join(cells)} | {gflops:.0f} | {100 * gflops / peak:.0f} % |"
            )

        dac_codes, dac_audio = outputs["DacModel fp32"]
        codes, decoded = outputs["rvqgan fp32"]
        with torch.inference_mode():
            fp32_audio = ours.decode(audio_codes=dac_codes).audio_values
        checks.append(
            f"| {seconds:g} s | {100 * (codes == dac_codes).double().mean():.3f} % | "
            f"{(fp32_audio - dac_audio).abs().max():.1e} | "
            f"{bf16_checks(ours, codes, decoded, outputs['rvqgan bf16'][0])} |"
        )

    print(f"\nload average at the end {os.getloadavg()[0]:.1f}\n")
    print("| input | variant | encode s (x) | decode s (x) | both s (x) | GFLOP/s | of matmul peak |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(
        f"\nencode {encode_flops / frames * ours.config.frame_rate / 1e9:.1f} + decode "
        f"{decode_flops / frames * ours.config.frame_rate / 1e9:.1f} GFLOP per second of audio\n"
    )
    print(
        "| input | rvqgan fp32 codes = DacModel's | max abs audio diff (same codes) | bf16 codes = fp32's | "
        "mel distance bf16 vs fp32 decode |"
    )
    print("|---|---:|---:|---:|---:|")
    print("\n".join(checks))
    if args.clips is not None:
        print("\n| clip | length | bf16 codes = fp32's | mel distance bf16 vs fp32 decode |\n|---|---:|---:|---:|")
        print("\n".join(clip_rows(ours, args.clips)))


if __name__ == "__main__":
    main()
