"""Seconds per training step of the 44.1 kHz recipe: rvqgan's modules against descript-audio-codec's, in one process.

    /tmp/dacenv/bin/python benchmarks/train_step.py [--repeats 5] [--batch-size 2] [--threads N]

Needs both packages in one environment, e.g. the /tmp/dacenv of tests/fixtures/make_descript_fixtures.py plus
`pip install -c constraints-cpu.txt transformers huggingface_hub`. One step, as DAC's `scripts/train.py` `train_loop`:
the generator forward in train mode (weight norm on, quantizer dropout 0.5), a D step on `recons.detach()` (clip 10),
then a G step with mel 15, feature matching 2, adversarial 1, commitment 0.25, codebook 1 (clip 1000); AdamW(1e-4,
betas (0.8, 0.99)) and ExponentialLR(0.999996) for both. The STFT and waveform losses are computed and logged only.
"rvqgan, D frozen in the G step" also skips D's weight gradients and the graph of D(real) in the G step (they are
never used). Random weights and input (0.38 s excerpts, 16758 samples): the speed does not depend on them. The three
steps alternate; the table gives medians after one warm-up step each, of wall time and of process CPU time
(all threads). On a machine shared with other work, `--threads 1` and CPU time are the steadiest measure: with more
threads, waiting threads spin and other processes' load inflates both figures.

    python benchmarks/train_step.py --against REV [--config CONFIG] [--warmup 10] [--steps 20] [--repeats 3]

measures instead `rvqgan.training.train` itself (CONFIG: training/configs/default.yaml), this checkout against the code
of git revision REV (checked out to a temporary folder): for each, a process builds `Trainer` from the config
(validation off) and runs its `train()` loop for `--warmup` steps (10: a new process's first steps compile kernels for
new shapes) then `--steps` timed ones (from the start of one step to the start of the step after the last: data, logging
steps and all), the two alternating `--repeats` times; the table gives medians of seconds per step and steps per hour,
and each code's first-step losses (same seed, same data: equal up to float rounding). Config options that the older code
does not have (e.g. `ema_decay`) are left out for it.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rvqgan.modeling import RvqganConfig, RvqganModel  # noqa: E402
from rvqgan.training.discriminators import RvqganDiscriminator  # noqa: E402
from rvqgan.training.losses import MelSpectrogramLoss, MultiScaleSTFTLoss, discriminator_loss, generator_losses  # noqa: E402

MEL, FEAT, ADV, COMMITMENT, CODEBOOK = 15.0, 2.0, 1.0, 0.25, 1.0
SAMPLING_RATE, LENGTH = 44100, 16758


def optimizer_and_scheduler(module: torch.nn.Module):
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, betas=(0.8, 0.99))
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.999996)


def update(loss: torch.Tensor, module: torch.nn.Module, optimizer, scheduler, max_norm: float):
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm)
    optimizer.step()
    scheduler.step()


def summary(d_loss, mel, loss, logged: dict) -> dict:
    return {"disc": d_loss.item(), "mel": mel.item(), "loss": loss.item(), **{k: v.item() for k, v in logged.items()}}


class RvqganStep:
    def __init__(self):
        torch.manual_seed(0)
        self.generator = RvqganModel(RvqganConfig()).train()
        self.generator.apply_weight_norm()
        self.discriminator = RvqganDiscriminator().train()
        self.optimizer_g, self.scheduler_g = optimizer_and_scheduler(self.generator)
        self.optimizer_d, self.scheduler_d = optimizer_and_scheduler(self.discriminator)
        self.mel_loss, self.stft_loss = MelSpectrogramLoss(SAMPLING_RATE), MultiScaleSTFTLoss()

    def __call__(self, signal: torch.Tensor, freeze_discriminator: bool = False) -> dict:
        out = self.generator(signal)
        recons = out.audio_values[:, None]  # (B, 1, T), as `signal`
        d_loss = discriminator_loss(self.discriminator(recons.detach()), self.discriminator(signal))
        update(d_loss, self.discriminator, self.optimizer_d, self.scheduler_d, 10.0)

        self.discriminator.requires_grad_(not freeze_discriminator)
        with torch.no_grad():
            logged = {"stft": self.stft_loss(recons, signal), "waveform": F.l1_loss(recons, signal)}
        adversarial, feature_matching = generator_losses(self.discriminator(recons), self.discriminator(signal))
        mel = self.mel_loss(recons, signal)
        loss = MEL * mel + FEAT * feature_matching + ADV * adversarial + out.loss  # out.loss: 0.25 commit + 1 codebook
        update(loss, self.generator, self.optimizer_g, self.scheduler_g, 1e3)
        self.discriminator.requires_grad_(True)
        return summary(d_loss, mel, loss, logged)


class DescriptStep:
    def __init__(self):
        from dac.model import DAC, Discriminator
        from dac.nn import loss

        torch.manual_seed(0)
        self.generator = DAC(quantizer_dropout=0.5).train()
        self.discriminator = Discriminator().train()
        self.optimizer_g, self.scheduler_g = optimizer_and_scheduler(self.generator)
        self.optimizer_d, self.scheduler_d = optimizer_and_scheduler(self.discriminator)
        self.waveform_loss, self.stft_loss = loss.L1Loss(), loss.MultiScaleSTFTLoss()
        # fmt: off
        self.mel_loss = loss.MelSpectrogramLoss(  # conf/base.yml
            n_mels=[5, 10, 20, 40, 80, 160, 320], window_lengths=[32, 64, 128, 256, 512, 1024, 2048],
            mel_fmin=[0.0] * 7, mel_fmax=[None] * 7, pow=1.0, clamp_eps=1e-5, mag_weight=0.0,
        )
        # fmt: on
        self.gan_loss = loss.GANLoss(self.discriminator)

    def __call__(self, audio: torch.Tensor) -> dict:
        from audiotools import AudioSignal

        signal = AudioSignal(audio.clone(), SAMPLING_RATE)
        out = self.generator(signal.audio_data, signal.sample_rate)
        recons = AudioSignal(out["audio"], signal.sample_rate)
        d_loss = self.gan_loss.discriminator_loss(recons, signal)
        update(d_loss, self.discriminator, self.optimizer_d, self.scheduler_d, 10.0)

        logged = {"stft": self.stft_loss(recons, signal), "waveform": self.waveform_loss(recons, signal)}
        mel = self.mel_loss(recons, signal)
        adversarial, feature_matching = self.gan_loss.generator_loss(recons, signal)
        loss = (
            MEL * mel
            + FEAT * feature_matching
            + ADV * adversarial
            + COMMITMENT * out["vq/commitment_loss"]
            + CODEBOOK * out["vq/codebook_loss"]
        )
        update(loss, self.generator, self.optimizer_g, self.scheduler_g, 1e3)
        return summary(d_loss, mel, loss, logged)


def excerpts(batch_size: int) -> torch.Tensor:
    """(batch_size, 1, 16758) sines plus noise, peak 0.5."""
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(LENGTH) / SAMPLING_RATE
    audio = torch.stack([torch.sin(2 * math.pi * 110 * (i + 1) * t) for i in range(batch_size)])
    audio = audio + 0.1 * torch.randn(audio.shape, generator=generator)
    return (0.5 * audio / audio.abs().amax(-1, keepdim=True))[:, None]


TRAINER_RUN = """
import json, os, sys, time
import yaml
from rvqgan.training.config import TrainConfig, load_config
from rvqgan.training.train import Trainer
config_path, output_dir, warmup, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
values = yaml.safe_load(open(config_path))
values.pop("reconstruction_steps", None)  # the full GAN step, which code without the warm-up option runs
if "reconstruction_steps" in TrainConfig.__dataclass_fields__:
    values["reconstruction_steps"] = 0
values = {k: v for k, v in values.items() if k in TrainConfig.__dataclass_fields__}  # options newer than the code
with open(os.path.join(output_dir, "config.yaml"), "w") as handle:
    yaml.safe_dump(values, handle)
config = load_config(os.path.join(output_dir, "config.yaml"), [
    f"output_dir={output_dir}", "data.validation=[]", f"num_steps={warmup + steps + 1}",
    f"checkpoint_every={warmup + steps + 1}"])
trainer = Trainer(config)
starts, losses, step = [], [], trainer.train_step
def timed(*args, **kwargs):
    starts.append(time.perf_counter())
    logs = step(*args, **kwargs)
    losses.append({k: float(v) for k, v in logs.items() if k.startswith("loss/")})  # tensors off logging steps
    return logs
trainer.train_step = timed
trainer.train()
each = [round(b - a, 3) for a, b in zip(starts, starts[1:])]
print(json.dumps({"seconds": (starts[warmup + steps] - starts[warmup]) / steps, "each": each, "losses": losses[0]}))
"""


def trainer_seconds(source: Path, config: Path, warmup: int, steps: int) -> dict:
    """Seconds per step of `rvqgan.training.train` from the code in `source`, in a new process."""
    with tempfile.TemporaryDirectory() as output_dir:
        # run from this checkout (the config's relative data paths), importing the code of `source` (-P: not the cwd's)
        result = subprocess.run(
            [sys.executable, "-P", "-c", TRAINER_RUN, str(config), output_dir, str(warmup), str(steps)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(source)},
            capture_output=True,
            text=True,
        )
    if result.returncode:
        raise SystemExit(f"rvqgan.training.train in {source} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare_with_revision(revision: str, config: Path, warmup: int, steps: int, repeats: int):
    with tempfile.TemporaryDirectory() as baseline:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", baseline], input=archive, check=True)
        sources = {f"{revision} (before)": Path(baseline), "this checkout": ROOT}
        runs = {name: [] for name in sources}
        for repeat in range(repeats):
            for name, source in sources.items():
                runs[name].append(trainer_seconds(source, config.resolve(), warmup, steps))
                each = " ".join(f"{s:.2f}" for s in runs[name][-1]["each"])
                print(
                    f"repeat {repeat + 1} {name}: {runs[name][-1]['seconds']:.3f} s/step (every step: {each})",
                    flush=True,
                )
    reference = statistics.median(r["seconds"] for r in runs[f"{revision} (before)"])
    print(
        f"\n{config}, {steps} steps after {warmup} warm-up steps, {repeats} runs each (alternating), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print("| code | median s/step (min-max) | steps/hour | speed-up |")
    print("|---|---:|---:|---:|")
    for name, results in runs.items():
        seconds = [r["seconds"] for r in results]
        median = statistics.median(seconds)
        print(
            f"| {name} | {median:.3f} ({min(seconds):.3f}-{max(seconds):.3f}) | {3600 / median:.0f} | "
            f"{reference / median:.2f}x |"
        )
    for name, results in runs.items():
        print(
            f"first-step losses, {name}: " + ", ".join(f"{k} {v:.5f}" for k, v in sorted(results[0]["losses"].items()))
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--against", metavar="REV", help="time rvqgan.training.train against the code of git revision REV"
    )
    parser.add_argument("--config", type=Path, default=ROOT / "training" / "configs" / "default.yaml")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (with --against)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed first steps per run (with --against)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.against:
        compare_with_revision(args.against, args.config, args.warmup, args.steps, args.repeats)
        return

    signal = excerpts(args.batch_size)
    ours, descript = RvqganStep(), DescriptStep()
    steps = {
        "descript-audio-codec 1.0.0": lambda: descript(signal),
        "rvqgan": lambda: ours(signal),
        "rvqgan, D frozen in the G step": lambda: ours(signal, freeze_discriminator=True),
    }
    wall, cpu = {name: [] for name in steps}, {name: [] for name in steps}
    for repeat in range(args.repeats + 1):
        for name, step in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            losses = step()
            if repeat:
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
            else:
                print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in losses.items()))

    reference = statistics.median(wall["descript-audio-codec 1.0.0"])
    reference_cpu = statistics.median(cpu["descript-audio-codec 1.0.0"])
    print(
        f"\nbatch {args.batch_size} x {LENGTH} samples, torch {torch.__version__}, {torch.get_num_threads()} threads,"
        f" {args.repeats} steps each (alternating) after a warm-up"
    )
    print("| step | median wall s (min-max) | vs descript-audio-codec | median CPU s | vs descript-audio-codec |")
    print("|---|---:|---:|---:|---:|")
    for name in steps:
        median, median_cpu = statistics.median(wall[name]), statistics.median(cpu[name])
        print(
            f"| {name} | {median:.2f} ({min(wall[name]):.2f}-{max(wall[name]):.2f}) | {median / reference:.2f}x | "
            f"{median_cpu:.2f} | {median_cpu / reference_cpu:.2f}x |"
        )


if __name__ == "__main__":
    main()
