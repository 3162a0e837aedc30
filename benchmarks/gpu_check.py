"""The checks to run when a GPU is lent (`scripts/gpu_check.sh`, under 10 minutes on one H100), as Markdown tables
for BENCHMARKS.md:

1. training speed: the 44.1 kHz recipe (`training/configs/44khz.yaml`) in bf16 with a moving average (0.999) on the
   real clips of examples/audio (and /usr/share/sounds/alsa where present), 200 steps at batch 16 and at batch 72:
   steps/s over the last 180 (the first 20 compile kernels and warm the allocator), timed from the start of one step to
   the start of the step after the last (data, logging and all); and the excerpts/s of the data stream alone;
2. `AudioTokenizer` throughput on the device: `benchmarks/tokenize_throughput.py`, which the script runs next;
3. the device against the CPU on real clips with trained weights (`--model`: e.g. converted official weights; the
   shipped default model without it): the share of equal codes, and the largest difference of the audio decoded from
   the same codes, with TF32 as PyTorch defaults it (cuDNN convolutions in TF32) and with TF32 off.

`--cpu` runs the same steps on CPU at tiny sizes (the tiny config, 6 steps at batch 2 and 4): a check of the script,
not figures.

    python -m benchmarks.gpu_check [--cpu] [--model DIR]
"""

import argparse
import copy
import glob
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parent.parent


def clip_folders() -> list[str]:
    return [str(ROOT / "examples" / "audio")] + [d for d in ["/usr/share/sounds/alsa"] if Path(d).is_dir()]


def train_speed(config: str, batch: int, warmup: int, steps: int) -> float:
    """Steps per second of `rvqgan.training.train` with `config` in bf16 with a moving average, after `warmup` steps."""
    from rvqgan.training.config import load_config
    from rvqgan.training.train import Trainer

    sources = ", ".join(f"{{dataset: {folder}}}" for folder in clip_folders())
    total = warmup + steps + 1
    with tempfile.TemporaryDirectory() as output_dir:
        overrides = [f"output_dir={output_dir}", f"data.train=[{sources}]", "data.validation=[]", f"batch_size={batch}"]
        overrides += ["mixed_precision=bf16", "ema_decay=0.999", f"num_steps={total}", f"checkpoint_every={total}"]
        trainer = Trainer(load_config(config, overrides))
        starts, train_step = [], trainer.train_step

        def timed(*args, **kwargs):
            starts.append(time.perf_counter())
            return train_step(*args, **kwargs)

        trainer.train_step = timed
        trainer.train()
    return steps / (starts[warmup + steps] - starts[warmup])


def excerpt_rate(sampling_rate: int, count: int) -> float:
    """Excerpts (0.38 s) per second from the data stream alone, in this process."""
    from rvqgan.training.data import ExcerptStream, Source

    excerpts = iter(ExcerptStream([Source(f) for f in clip_folders()], sampling_rate, 0.38))
    next(excerpts)
    start = time.perf_counter()
    for _ in range(count):
        next(excerpts)
    return count / (time.perf_counter() - start)


@torch.no_grad()
def parity(device: str, model_path: str | None, seconds: float) -> list[tuple]:
    """(TF32, share of equal codes, largest audio difference) of `device` against the CPU on the example clips."""
    from rvqgan.feature_extraction import RvqganFeatureExtractor

    from rvqgan import load_model

    model, _ = load_model(model_path)
    extractor = RvqganFeatureExtractor(sampling_rate=model.config.sampling_rate, hop_length=model.config.hop_length)
    clips = []
    for path in sorted(glob.glob(str(ROOT / "examples" / "audio" / "*.flac"))):
        audio, rate = sf.read(path, dtype="float32", frames=int(seconds * sf.info(path).samplerate))
        clips.append(audio.T)
    inputs = extractor(clips, sampling_rate=rate, return_tensors="pt")
    codes = model.encode(**inputs).audio_codes
    audio = model.decode(audio_codes=codes, padding_mask=inputs["padding_mask"]).audio_values
    other = copy.deepcopy(model).to(device)
    on_device = {k: v.to(device) for k, v in inputs.items()}
    rows = []
    for tf32 in (True, False):
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
        their_codes = other.encode(**on_device).audio_codes.cpu()
        their_audio = other.decode(audio_codes=codes.to(device), padding_mask=on_device["padding_mask"]).audio_values
        difference = float((their_audio.cpu() - audio).abs().max())
        rows.append((tf32, float((their_codes == codes).double().mean()), difference))
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False  # PyTorch's defaults
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="the same steps on CPU at tiny sizes (no figures)")
    parser.add_argument("--model", default=None, help="weights for the parity check (default: the shipped model)")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: pass --cpu to check the script on CPU")
    device = "cpu" if args.cpu else "cuda"
    config, batches, warmup, steps = ("tiny", (2, 4), 2, 4) if args.cpu else ("44khz", (16, 72), 20, 180)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"## {name}, torch {torch.__version__}\n")
    print("| training (bf16, moving average) | batch | steps/s | items/s |\n|---|---|---|---|")
    for batch in batches:
        torch.cuda.empty_cache()  # the previous run's memory
        rate = train_speed(config, batch, warmup, steps)
        print(f"| {config} | {batch} | {rate:.2f} | {rate * batch:.1f} |")
    print(f"\ndata stream alone: {excerpt_rate(44100, 20 if args.cpu else 400):.0f} excerpts/s (44.1 kHz, 0.38 s)\n")
    print(f"| {device} against CPU | TF32 | equal codes | largest audio difference |\n|---|---|---|---|")
    for tf32, equal, difference in parity(device, args.model, 2.0 if args.cpu else 10.0):
        print(
            f"| {args.model or 'shipped default model'} | {'on' if tf32 else 'off'} | {equal:.4%} | {difference:.2e} |"
        )


if __name__ == "__main__":
    main()
