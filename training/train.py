"""Train the codec with the paper's GAN recipe, on streamed `datasets` audio, with Accelerate.

    accelerate launch -m rvqgan.training.train --config training/configs/44khz.yaml [--resume] [key.sub=value ...]

Each step runs the generator once, then the discriminator step on the detached reconstruction, then the generator step
(mel 15, feature matching 2, adversarial 1, commitment 0.25, codebook 1). The first `reconstruction_steps` steps (0 in
the paper's recipe) train the generator alone on the mel, commitment and codebook losses, the discriminator not run.
With `ema_decay`, validation and the exported folders use a moving average of the generator's weights (updated after
every step, on the training device, part of the checkpoint). Snake's forward and backward are compiled kernels where
TorchInductor compiles them (`rvqgan.training.snake`). `batch_size` is global: split over processes as evenly as it goes
(the first processes take one more where it does not divide), each process's losses weighted by its share, so that every
item counts the same; the learning rate decays once per optimizer step, whatever the number of processes.
Writes to `output_dir`: `checkpoints/step-N/` (resumable, see `rvqgan.training.checkpoint`), `logs/` (TensorBoard:
losses, lr, gradient norms, codebook usage, validation audio and mel spectrograms), `metrics.jsonl` (the logged
scalars), `best/` (the generator with the lowest validation mel distance) and at the end `model/` (the generator, a
transformers folder with its feature extractor and `discriminator/`, ready for `rvqgan.training.push_to_hub` and
`init_from`).
"""

import argparse
import hashlib
import json
import math
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, gather_object, set_seed
from rvqgan.evaluation.metrics import mel_distance, si_sdr, stft_distance
from rvqgan.modeling import RvqganConfig, RvqganModel, load_pretrained
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from rvqgan.model_folder import load_discriminator, save_model_folder

from .checkpoint import checkpoints, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, load_config
from .data import ExcerptStream, Prefetcher, validation_excerpts
from .discriminators import RvqganDiscriminator
from .losses import MelSpectrogramLoss, MultiScaleSTFTLoss, discriminator_loss, generator_losses
from .snake import use_fused_snake


def build_generator(config: TrainConfig) -> RvqganModel:
    """A new generator from `config.model`, or the weights of `config.init_from` (fine-tuning), with weight norm."""
    if config.init_from:
        model = load_pretrained(RvqganModel, config.init_from)
    else:
        fields = dict(config.model)
        preset = fields.pop("preset", None)
        model = RvqganModel(RvqganConfig.from_preset(preset, **fields) if preset else RvqganConfig(**fields))
    model.apply_weight_norm()
    return model


def process_batch_sizes(batch_size: int, processes: int, accumulation: int) -> list[int]:
    """Each process's batch per accumulation step: `batch_size / accumulation` (global, per optimizer step) split over
    `processes` as evenly as it goes, the first processes taking one more where it does not divide."""
    if batch_size % accumulation:
        raise ValueError(f"batch_size {batch_size} is not divisible by gradient_accumulation_steps {accumulation}")
    per_step = batch_size // accumulation
    if per_step < processes:
        raise ValueError(f"batch_size {batch_size} leaves a process without items ({processes} x {accumulation})")
    return [per_step // processes + (rank < per_step % processes) for rank in range(processes)]


def code_counts(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """(n_q, codebook_size) histograms of each codebook's codes in `codes` (B, n_q, T)."""
    return torch.stack([torch.bincount(c.flatten(), minlength=codebook_size) for c in codes.unbind(1)]).double()


def codebook_usage(counts: torch.Tensor) -> dict:
    """Per codebook: the share of entries used and the entropy (bits) of its histogram in `counts` (n_q, size)."""
    stats = {}
    for k, row in enumerate(counts):
        p = row[row > 0] / row.sum()
        stats[f"codebooks/usage_{k}"] = (row > 0).double().mean().item()
        stats[f"codebooks/entropy_bits_{k}"] = float(-(p * p.log2()).sum())
    return stats


def split_fmaps(fmaps: list[list[torch.Tensor]], n: int) -> tuple[list, list]:
    """The discriminator's feature maps of a batch `cat([a, b])` split into those of `a` (its first n items) and `b`."""
    return [[f[:n] for f in maps] for maps in fmaps], [[f[n:] for f in maps] for maps in fmaps]


def mel_figure(audio: np.ndarray, sampling_rate: int, title: str):
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=audio, sr=sampling_rate, n_mels=128), ref=1.0)
    figure, axis = plt.subplots(figsize=(8, 3))
    axis.imshow(mel, origin="lower", aspect="auto", vmin=-80, vmax=20, cmap="magma")
    axis.set(title=title, xlabel="frame", ylabel="mel bin")
    figure.tight_layout()
    return figure


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False):
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),  # a torchrun-style launch without GPUs: a gloo process group
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            step_scheduler_with_optimizer=False,  # else stepped once per process: `batch_size` is already global
            kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(minutes=config.collective_timeout_minutes))],
            log_with="tensorboard",
            project_dir=str(self.output_dir),
        )
        acc = self.accelerator
        sizes = process_batch_sizes(config.batch_size, acc.num_processes, config.gradient_accumulation_steps)
        # this process's losses weighted by its share of the step's items: DDP's mean over processes is then the mean
        # over all items (1 where the batch divides evenly)
        self.share = sizes[acc.process_index] * acc.num_processes / sum(sizes)
        set_seed(config.seed, device_specific=True)

        generator = build_generator(config).to(acc.device)  # `use_fused_snake` checks its kernels on the device
        self.model_config = generator.config
        discriminator = RvqganDiscriminator(sampling_rate=self.model_config.sampling_rate, **config.discriminator)
        if config.init_from:  # a folder with a discriminator/ (rvqgan.training.export_default, push_to_hub) starts it
            load_discriminator(config.init_from, lambda **_: discriminator)
        use_fused_snake(generator)
        opt_g = torch.optim.AdamW(generator.parameters(), lr=config.learning_rate, betas=config.betas, foreach=True)
        opt_d = torch.optim.AdamW(discriminator.parameters(), lr=config.learning_rate, betas=config.betas, foreach=True)
        sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, config.lr_gamma)
        sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, config.lr_gamma)
        self.data = ExcerptStream(
            config.data.train,
            self.model_config.sampling_rate,
            config.data.duration,
            seed=config.seed,
            rank=acc.process_index,
            world_size=acc.num_processes,
            loudness_db=config.data.loudness_db,
            loudness_cutoff_db=config.data.loudness_cutoff_db,
            shuffle_buffer=config.data.shuffle_buffer,
        )
        self.validation = (
            validation_excerpts(
                config.data.validation,
                self.model_config.sampling_rate,
                config.data.validation_duration,
                config.data.validation_examples,
                seed=config.seed,
            )
            if config.data.validation and acc.is_main_process
            else []
        )
        # `best` is the lowest validation mel distance on these clips: another validation set starts it afresh
        self.validation_digest = hashlib.sha256(b"".join(clip.tobytes() for clip in self.validation)).hexdigest()
        self.ema = None
        if config.ema_decay:  # a copy on the device; its counter, which every update tests, on the host
            self.ema = AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        self.step, self.best, self.skipped = 0, math.inf, {"generator": 0, "discriminator": 0}
        if resume and checkpoints(self.output_dir / "checkpoints"):
            self._resume(generator, discriminator, (opt_g, opt_d, sched_g, sched_d))
        if config.compile:  # after loading: checkpoints hold the plain modules' names
            generator, discriminator = torch.compile(generator), torch.compile(discriminator)
        (self.generator, self.discriminator, self.opt_g, self.opt_d, self.sched_g, self.sched_d) = acc.prepare(
            generator, discriminator, opt_g, opt_d, sched_g, sched_d
        )
        # read ahead while the device computes; on CPU the step's threads use every core, and reading in the step
        # was faster (BENCHMARKS.md)
        self.loader = Prefetcher(self.data, sizes[acc.process_index], ahead=0 if acc.device.type == "cpu" else 4)
        self.mel_loss = MelSpectrogramLoss(self.model_config.sampling_rate).to(acc.device)
        self.stft_loss = MultiScaleSTFTLoss().to(acc.device)
        acc.init_trackers(
            "logs", config={k: v for k, v in vars(config).items() if isinstance(v, (int, float, str, bool))}
        )

    # ----- checkpoints

    def _resume(self, generator, discriminator, optim):
        path = checkpoints(self.output_dir / "checkpoints")[-1]
        modules = {"generator": generator, "discriminator": discriminator}
        if self.ema is not None and (path / "ema.safetensors").exists():  # else the average starts from here
            modules["ema"] = self.ema
        state = load_checkpoint(path, modules)
        if len(state["processes"]) != self.accelerator.num_processes:
            raise ValueError(
                f"{path} was written by {len(state['processes'])} processes, this run has "
                f"{self.accelerator.num_processes}: resume with the same number"
            )
        for obj, key in zip(optim, ("opt_g", "opt_d", "sched_g", "sched_d")):
            obj.load_state_dict(state[key])
        for scheduler in optim[2:]:  # the config's decay from here on (a fork's decay phase), not the checkpoint's
            scheduler.gamma = self.config.lr_gamma
        mine = state["processes"][self.accelerator.process_index]
        if state.get("train_sources", self.config.train_sources()) == self.config.train_sources():
            self.data.load_state_dict(mine["data"])
        else:  # a fork on other data (rvqgan.training.fork)
            self.accelerator.print("The training sources changed: their stream starts afresh from this step on")
        set_rng_state(mine["rng"])
        self.step, self.best, self.skipped = state["step"], state["best"], state["skipped"]
        if state.get("validation") != self.validation_digest:
            self.best = math.inf
            self.accelerator.print("The validation set changed: best/ is chosen afresh from this step on")
        if self.accelerator.is_main_process:  # drop metrics logged after the checkpoint by the interrupted run
            metrics = self.output_dir / "metrics.jsonl"
            if metrics.exists():
                lines = [line for line in metrics.read_text().splitlines() if json.loads(line)["step"] <= self.step]
                metrics.write_text("".join(line + "\n" for line in lines))
        self.accelerator.print(f"Resumed from {path} at step {self.step}")

    def save_checkpoint(self):
        acc = self.accelerator
        processes = gather_object([{"data": self.loader.state_dict(), "rng": rng_state()}])
        if acc.is_main_process:
            state = {
                "train_sources": self.config.train_sources(),
                "best": self.best,
                "validation": self.validation_digest,
                "skipped": self.skipped,
                "processes": processes,
            }
            for key in ("opt_g", "opt_d", "sched_g", "sched_d"):
                state[key] = getattr(self, key).state_dict()
            modules = {
                "generator": acc.unwrap_model(self.generator, keep_torch_compile=False),
                "discriminator": acc.unwrap_model(self.discriminator, keep_torch_compile=False),
            }
            if self.ema is not None:
                modules["ema"] = self.ema
            save_checkpoint(self.output_dir / "checkpoints", self.step, modules, state, self.config.keep_checkpoints)
        acc.wait_for_everyone()

    def evaluated_generator(self) -> RvqganModel:
        """The generator that validation scores and exports: the weights' moving average with `ema_decay`."""
        if self.ema is not None:
            return self.ema.module
        return self.accelerator.unwrap_model(self.generator, keep_torch_compile=False)

    def export_generator(self, directory: Path, discriminator: nn.Module | None = None):
        """The generator as a model folder (`rvqgan.model_folder`: plain weights, its feature extractor and, when given,
        `discriminator` in `discriminator/`), written atomically."""
        tmp = directory.with_name(f".{directory.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing
        save_model_folder(tmp, self.evaluated_generator(), discriminator)
        if directory.exists():
            directory.rename(directory.with_name(f".{directory.name}.old"))
        tmp.rename(directory)
        shutil.rmtree(directory.with_name(f".{directory.name}.old"), ignore_errors=True)

    # ----- the step

    def train_step(self, audio: torch.Tensor, log: bool = True) -> dict:
        """One D step then one G step on `audio` (B, 1, T), as DAC's `train_loop` (the G step alone during the first
        `reconstruction_steps`); returns the losses (this process's, as tensors: no wait for the device), and with
        `log` the losses averaged over all processes' items as floats, with what is only logged (STFT and waveform
        losses, gradient norms, codebook usage over all processes).

        Backward always runs (DDP needs it on every process); an optimizer steps only when its loss and gradient norm
        are finite on every process, otherwise its update is skipped on all and counted in `skipped/*`."""
        acc, lambdas = self.accelerator, self.config.lambdas
        adversarial = self.step >= self.config.reconstruction_steps
        out = self.generator(audio)
        recons = out.audio_values[:, None].float()  # (B, 1, T), as `audio`

        if adversarial:
            fmaps = self.discriminator(torch.cat([recons.detach(), audio]))  # one pass over both: fewer, larger convs
            d_loss = discriminator_loss(*split_fmaps(fmaps, len(audio)))
            acc.backward(d_loss * self.share)
            d_norm = self._step(self.opt_d, self.sched_d, self.discriminator, self.config.clip_discriminator, d_loss)

        losses = {"mel": self.mel_loss(recons, audio), "commitment": out.commitment_loss, "codebook": out.codebook_loss}
        if adversarial:  # through the discriminator outside DDP: only the generator gets gradients from these
            discriminator = acc.unwrap_model(self.discriminator)
            with torch.no_grad():
                real_fmaps = discriminator(audio)
            losses["adversarial"], losses["feature"] = generator_losses(discriminator(recons), real_fmaps)
        g_loss = sum(lambdas[k] * v for k, v in losses.items())
        acc.backward(g_loss * self.share, inputs=list(self.generator.parameters()))
        g_norm = self._step(self.opt_g, self.sched_g, self.generator, self.config.clip_generator, g_loss)

        losses = {f"loss/{k}": v.detach() for k, v in losses.items()}
        losses["loss/generator"] = g_loss.detach()
        if adversarial:
            losses["loss/discriminator"] = d_loss.detach()
        if not log:
            return losses
        with torch.no_grad():
            losses["loss/stft"] = self.stft_loss(recons, audio)
            losses["loss/waveform"] = torch.nn.functional.l1_loss(recons, audio)
        means = acc.reduce(torch.stack([v.float() for v in losses.values()]) * self.share, "mean")
        logs = dict(zip(losses, means.tolist()))
        logs["lr"] = self.sched_g.get_last_lr()[0]
        if g_norm is not None:  # the same on every process: the gradients are all-reduced
            logs["grad_norm/generator"] = g_norm.item()
        if adversarial and d_norm is not None:
            logs["grad_norm/discriminator"] = d_norm.item()
        counts = acc.reduce(code_counts(out.audio_codes, self.model_config.codebook_size), "sum")
        logs.update(codebook_usage(counts))
        return logs

    def _step(self, optimizer, scheduler, model, max_norm: float, loss: torch.Tensor) -> torch.Tensor | None:
        """Clip, then step `optimizer` and `scheduler` if `loss` and the gradient norm are finite on every process; at
        the end of an accumulation cycle only. Returns the gradient norm (None inside a cycle).

        With fp16's loss scaling, only this optimizer's gradients are unscaled, and a skipped step still updates the
        scaler, which lowers the scale after an overflow (a step taken updates it in `optimizer.step()`)."""
        acc = self.accelerator
        if not acc.sync_gradients:
            return None
        if acc.scaler is not None:
            acc.scaler.unscale_(optimizer.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        bad = (~(torch.isfinite(loss).all() & torch.isfinite(norm))).float()
        if acc.reduce(bad, "max").item():  # the one wait for the device of each optimizer step: whether to take it
            name = "generator" if optimizer is self.opt_g else "discriminator"
            self.skipped[name] += 1
            acc.print(f"step {self.step + 1}: non-finite {name} loss or gradient, update skipped")
            if acc.scaler is not None:
                acc.scaler.update()
        else:
            optimizer.step()
            scheduler.step()
        optimizer.zero_grad()
        return norm

    # ----- validation

    @torch.no_grad()
    def validate(self) -> dict:
        """Mel / STFT distance, SI-SDR and waveform L1 over the validation clips (all codebooks); main process."""
        generator = self.evaluated_generator()
        generator.eval()
        rate, scores, tracker = (
            self.model_config.sampling_rate,
            [],
            self.accelerator.get_tracker("tensorboard", unwrap=True),
        )
        for i, clip in enumerate(self.validation):
            audio = torch.from_numpy(clip)[None, None].to(self.accelerator.device)
            recons = generator(audio).audio_values[0].float().cpu().numpy()
            scores.append(
                (
                    mel_distance(clip, recons, rate),
                    stft_distance(clip, recons, rate),
                    si_sdr(clip, recons, rate),
                    float(np.abs(clip - recons).mean()),
                )
            )
            if i < self.config.audio_samples:
                tracker.add_audio(f"validation_{i}/reconstruction", recons[None], self.step, sample_rate=rate)
                tracker.add_figure(
                    f"validation_{i}/reconstruction_mel", mel_figure(recons, rate, f"step {self.step}"), self.step
                )
                if self.step == 0 or not getattr(self, "_logged_references", False):
                    tracker.add_audio(f"validation_{i}/original", clip[None], self.step, sample_rate=rate)
                    tracker.add_figure(f"validation_{i}/original_mel", mel_figure(clip, rate, "original"), self.step)
        self._logged_references = True
        generator.train()
        mel, stft, sdr, l1 = np.mean(scores, axis=0).tolist()
        return {"val/mel": mel, "val/stft": stft, "val/si_sdr": sdr, "val/waveform": l1}

    # ----- the loop

    def log(self, values: dict, record: dict | None = None):
        """`values` to the trackers and, with `record` (not plotted), to `metrics.jsonl`."""
        self.accelerator.log(values, step=self.step)
        if self.accelerator.is_main_process:
            with open(self.output_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step, **values, **(record or {})}) + "\n")

    def train(self):
        acc, config = self.accelerator, self.config
        self.generator.train()
        self.discriminator.train()
        batches = iter(self.loader)
        progress = tqdm(total=config.num_steps, initial=self.step, disable=not acc.is_main_process, desc="training")
        while self.step < config.num_steps:
            with acc.accumulate(self.generator, self.discriminator):
                audio = next(batches).to(acc.device, non_blocking=True)
                logs = self.train_step(audio, log=(self.step + 1) % config.log_every == 0)
            if not acc.sync_gradients:
                continue
            if self.ema is not None:
                self.ema.update_parameters(acc.unwrap_model(self.generator, keep_torch_compile=False))
            self.step += 1
            progress.update()
            if self.step % config.log_every == 0:
                self.log({**logs, **{f"skipped/{k}": v for k, v in self.skipped.items()}})
                progress.set_postfix(mel=f"{logs['loss/mel']:.3f}")
            if self.validation and self.step % config.validate_every == 0:
                scores = self.validate()
                self.log(scores, {"val/clips": self.validation_digest[:16]})
                if scores["val/mel"] < self.best:
                    self.best = scores["val/mel"]
                    self.export_generator(self.output_dir / "best")
            if config.export_every and self.step % config.export_every == 0 and acc.is_main_process:
                self.export_generator(self.output_dir / "model")
            if self.step % config.checkpoint_every == 0 or self.step == config.num_steps:
                self.save_checkpoint()
        progress.close()
        if acc.is_main_process:
            self.export_generator(
                self.output_dir / "model", acc.unwrap_model(self.discriminator, keep_torch_compile=False)
            )
        acc.end_training()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        required=True,
        help="YAML config: a path or a shipped config's name (44khz, default, finetune, tiny)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
    parser.add_argument("overrides", nargs="*", help="key.sub=value settings that replace the config's")
    args = parser.parse_args(argv)
    try:
        trainer = Trainer(load_config(args.config, args.overrides), resume=args.resume)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    trainer.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
