"""Copy the default model's training run into the package, so that a new machine continues from it.

    python -m rvqgan.training.export_default ~/.cache/rvqgan/runs/default \
        [--quality unseen=benchmarks/results/unseen_default_model --quality held-out=benchmarks/results/default_model]

Writes `rvqgan/default_model/` (`rvqgan.model_folder`, without the model's code, which the package has): the run's
`best/` generator (the lowest validation mel distance: `model.safetensors`, `config.json`, `preprocessor_config.json`)
and, in `discriminator/`, the discriminator of the newest checkpoint, each file at most 16 MB;
`curves.png` (`rvqgan.training.plot_curves`);
`training.md` (recipe, compute, validation scores), `eval_results.json` (the all-clips rows of `benchmarks.quality`
summaries, when given, each labelled with its evaluation set, in the order given: the card's table leads with the
first) and the model card `README.md` made from them (`rvqgan.training.model_card`).
`scripts/train_default.sh` starts from these weights when it finds no run.
"""

import argparse
import csv
import json
import math
import re
import shutil
import sys
from pathlib import Path

from rvqgan.modeling import RvqganConfig, RvqganModel
from rvqgan.modeling.loading_rvqgan import load_safetensors
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rvqgan.model_folder import save_model_folder

from .checkpoint import checkpoints
from .config import load_config
from .discriminators import RvqganDiscriminator
from .model_card import model_card
from .plot_curves import plot

TARGET = Path(__file__).resolve().parent.parent / "rvqgan" / "default_model"
CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"
MAX_BYTES = 16 * 2**20
MAX_GAP_SECONDS = 600  # longer gaps between logged steps are pauses between sessions, not training
QUALITY_COLUMNS = "set codec kbps true_kbps mel stft visqol si_sdr visqol_speech pesq_wb stoi".split()


def training_hours(run_dir: Path) -> float:
    """Wall-clock hours between the run's logged steps (TensorBoard event times), pauses over 10 minutes left out."""
    seconds = 0.0
    for events in sorted((run_dir / "logs").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if "loss/mel" in accumulator.Tags()["scalars"]:
            times = [event.wall_time for event in accumulator.Scalars("loss/mel")]
            seconds += sum(b - a for a, b in zip(times, times[1:]) if b - a < MAX_GAP_SECONDS)
    return seconds / 3600


def continued_from(run_dir: Path) -> tuple[str | None, int]:
    """The training record of the shipped weights a run continued from (`scripts/train_default.sh` keeps it as the
    run's `continued_from.md`) and their step; (None, 0) for a run from scratch."""
    path = run_dir / "continued_from.md"
    if not path.exists():
        return None, 0
    record = path.read_text()
    return record, int(re.search(r"These weights: step (\d+)", record)[1])


def training_record(run_dir: Path, config_path: Path, step: int, model: RvqganConfig) -> str:
    """The card's training section of `model` (the exported generator's config): data, recipe, compute and the
    validation scores, as Markdown. A continued run counts its steps on from its starting weights' and ends with
    their record."""
    config = load_config(config_path)
    before, start = continued_from(run_dir)
    warmup = 0 if before else min(config.reconstruction_steps, step)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    validation = [{**row, "step": start + row["step"]} for row in rows if "val/mel" in row]
    clips = validation[-1].get("val/clips") if validation else None
    earlier = [row["step"] for row in validation if row.get("val/clips") != clips]
    validation = [row for row in validation if row.get("val/clips") == clips]
    best = min(validation, key=lambda row: row["val/mel"], default=None)  # what best/ holds
    hours = training_hours(run_dir)
    compute = (
        f"{step} steps ({warmup} reconstruction-only, {step - warmup} GAN), {hours:.1f} wall-clock hours on a 2-core "
        f"CPU, {2 * hours:.1f} CPU-core hours"
    )
    if before:
        hours_before = float(
            (re.search(r"([\d.]+) CPU-core hours in all", before) or re.search(r"([\d.]+) CPU-core hours", before))[1]
        )
        compute = (
            f"{step} more GAN steps from step {start}'s weights (record below) with fresh optimizer state, "
            f"{hours:.1f} wall-clock hours on a 2-core CPU, {2 * hours:.1f} CPU-core hours; "
            f"{hours_before + 2 * hours:.1f} CPU-core hours in all"
        )
    lines = [
        ("Continued" if before else "Trained from scratch")
        + " on CPU with `rvqgan.training.train` (`training/configs/default.yaml`), data from "
        "`rvqgan.training.make_default_data`: speech, music and general sound from Debian packages (real voices, game "
        "soundtracks, instrument samples, desktop and game sounds; each package's licence in `LICENSES.md` of the "
        "rvqgan sources), mixed in equal shares; the evaluation clips of `rvqgan.evaluation.make_eval_set` held out.",
        "",
        f"- Architecture: the paper's model at {model.sampling_rate} Hz (hop {model.hop_length}, {model.n_codebooks} x "
        f"{model.codebook_size} codes) at encoder width {model.encoder_hidden_size} and decoder width "
        f"{model.decoder_hidden_size}.",
        f"- Recipe: batch {config.batch_size} x {config.data.duration} s, AdamW lr {config.learning_rate:g}, "
        f"betas {tuple(config.betas)}; the first {config.reconstruction_steps} steps on the mel, commitment and "
        "codebook losses alone, then the paper's GAN recipe (multi-period and multi-band STFT discriminators)"
        + (
            f"; validated and shipped: a moving average of the weights (decay {config.ema_decay:g})."
            if config.ema_decay
            else "."
        ),
        f"- Compute: {compute} (the machine shared with other work at times).",
        *(
            [f"- These weights: step {best['step']} (validation mel {best['val/mel']:.3f}, the lowest below)."]
            if best
            else []
        ),
        "",
        f"Validation ({config.data.validation_examples} clips of {config.data.validation_duration:g} s from "
        + ", ".join(f"`{source.dataset}`" for source in config.data.validation)
        + ", held out of training; all "
        "codebooks; this folder's weights are the step with the lowest mel distance"
        + (
            f"; the run changed its validation clips after step {max(earlier)}, earlier scores are in its "
            "`metrics.jsonl`):"
            if earlier
            else "):"
        ),
        "",
        "| step | mel ↓ | STFT ↓ | SI-SDR ↑ |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['step']} | {r['val/mel']:.3f} | {r['val/stft']:.3f} | {r['val/si_sdr']:.1f} |" for r in validation]
    lines += ["", "![training curves](curves.png)"]
    if before:
        lines += [
            "",
            f"#### How step {start}'s weights were trained",
            "",
            before.replace("![training curves](curves.png)", "").strip(),
        ]
    return "\n".join(lines) + "\n"


def quality_rows(evaluation_set: str, quality_dir: Path) -> list[dict]:
    """The all-clips rows of a `benchmarks.quality` output folder's `summary.csv` made on `evaluation_set`, rounded
    ("–": not measured)."""
    with open(quality_dir / "summary.csv", newline="") as handle:
        rows = [{**row, "set": evaluation_set} for row in csv.DictReader(handle) if row["category"] == "all"]

    def cell(column: str, value: str):
        return value if column in ("set", "codec") else round(float(value), 3) if math.isfinite(float(value)) else "–"

    return [{c: cell(c, row[c]) for c in QUALITY_COLUMNS} for row in rows]


def export(run_dir: Path, target: Path = TARGET, config: Path = CONFIG, quality: list[tuple[str, Path]] = ()) -> Path:
    """`rvqgan/default_model/` (or `target`) from the run; `quality`: (evaluation set, `benchmarks.quality` folder)
    pairs measured on these weights."""
    best, newest = run_dir / "best", checkpoints(run_dir / "checkpoints")
    if not (best / "model.safetensors").exists() or not newest:
        raise ValueError(f"{run_dir} has no best/ generator or no checkpoint yet")
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    generator = RvqganModel.from_pretrained(best)
    rate = generator.config.sampling_rate
    discriminator = RvqganDiscriminator(sampling_rate=rate, **load_config(config).discriminator)
    load_safetensors(discriminator, newest[-1] / "discriminator.safetensors")
    save_model_folder(tmp, generator, discriminator)
    for code in tmp.glob("*.py"):  # the package's own classes load this folder: no second copy of their code
        code.unlink()
    step = int(newest[-1].name.split("-")[-1])
    plot(run_dir, tmp / "curves.png", first_step=continued_from(run_dir)[1])
    (tmp / "training.md").write_text(training_record(run_dir, config, step, generator.config))
    if quality:
        rows = [row for evaluation_set, folder in quality for row in quality_rows(evaluation_set, folder)]
        (tmp / "eval_results.json").write_text(json.dumps(rows, indent=1) + "\n")
    model_card(generator.config, "rvqgan/default_model", tmp).save(tmp / "README.md")
    too_big = [p for p in tmp.rglob("*") if p.is_file() and p.stat().st_size > MAX_BYTES]
    if too_big:
        shutil.rmtree(tmp)
        raise ValueError(f"over 16 MB: {', '.join(map(str, too_big))}")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--quality",
        action="append",
        default=[],
        metavar="SET=DIR",
        help="a benchmarks.quality output folder measured on these weights, and its evaluation set (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        quality = [(name, Path(folder)) for name, _, folder in (q.partition("=") for q in args.quality)]
        if any(not name or not folder for name, folder in quality):
            raise ValueError(f"--quality takes SET=DIR, got {args.quality}")
        print(export(args.run_dir, quality=quality))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
