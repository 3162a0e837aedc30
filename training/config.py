"""Training configuration: a YAML file read into dataclasses, with `key.sub=value` overrides from the command line.
The configs in `training/configs/` are installed with the package and found by name too (`--config 44khz`). Defaults
are the paper's recipe (`conf/base.yml` + `conf/final/44khz.yml`)."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .data import Source

CONFIGS = Path(__file__).with_name("configs")
LAMBDAS = {"mel": 15.0, "feature": 2.0, "adversarial": 1.0, "commitment": 0.25, "codebook": 1.0}


@dataclass
class DataConfig:
    train: list[Source]
    validation: list[Source] = field(default_factory=list)
    duration: float = 0.38
    validation_duration: float = 5.0
    validation_examples: int = 250
    loudness_db: float = -16.0
    loudness_cutoff_db: float = -40.0
    shuffle_buffer: int = 64


@dataclass
class TrainConfig:
    data: DataConfig
    model: dict = field(default_factory=lambda: {"preset": "44khz"})  # RvqganConfig fields, or a preset + overrides
    init_from: str | None = None  # an RvqganModel folder or Hub id (e.g. converted official weights); a local
    # folder's discriminator/ (`rvqgan.model_folder`) starts the discriminator
    discriminator: dict = field(default_factory=dict)  # RvqganDiscriminator arguments
    lambdas: dict = field(default_factory=lambda: dict(LAMBDAS))  # loss weights; missing ones keep the default
    batch_size: int = 72  # global: split over processes and accumulation steps
    num_steps: int = 400_000
    reconstruction_steps: int = 0  # a warm-up: the first N steps train the generator on mel + VQ losses alone
    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    lr_gamma: float = 0.999996  # ExponentialLR, stepped every step
    ema_decay: float = 0.0  # > 0: validate and export an exponential moving average of the generator's weights
    clip_discriminator: float = 10.0
    clip_generator: float = 1000.0
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"  # "no" (the paper), "bf16" or "fp16"
    compile: bool = False
    collective_timeout_minutes: float = 60.0  # how long processes wait in a collective for the others (NCCL's
    # default, 10, is shorter than the main process's lone work: building the validation clips, validating, writing)
    seed: int = 0
    output_dir: str = "runs/rvqgan"
    log_every: int = 10
    validate_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    export_every: int | None = None  # also save the generator as a transformers folder every N steps
    audio_samples: int = 8  # validation clips logged as audio and mel spectrograms

    def train_sources(self) -> list[dict]:
        """`data.train` as plain values: what a checkpoint records of its run's training sources."""
        return [dataclasses.asdict(source) for source in self.data.train]

    def __post_init__(self):
        if not self.collective_timeout_minutes > 0:
            raise ValueError(f"collective_timeout_minutes must be positive, got {self.collective_timeout_minutes}")
        if self.keep_checkpoints < 1:
            raise ValueError(
                f"keep_checkpoints must be at least 1 (--resume reads the newest), got {self.keep_checkpoints}"
            )


def _build(cls, values: dict, where: str):
    """Dataclass `cls` from a dict, refusing unknown keys with their dotted path."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"Unknown config key(s) {', '.join(where + k for k in unknown)}; known: {sorted(names)}")
    values = dict(values)
    for key, value in values.items():  # YAML reads 1e-4 as a string: convert numbers where the field wants them
        if names[key].type in (float, int) and isinstance(value, str):
            try:
                values[key] = names[key].type(value)
            except ValueError as error:
                raise ValueError(f"Config key {where + key} needs a number, got {value!r}") from error
    if cls is TrainConfig:
        values["data"] = _build(DataConfig, values.get("data") or {}, "data.")
        unknown = sorted(set(values.get("lambdas") or {}) - set(LAMBDAS))
        if unknown:
            raise ValueError(
                f"Unknown loss weight(s) {', '.join('lambdas.' + k for k in unknown)}; known: {sorted(LAMBDAS)}"
            )
        values["lambdas"] = {**LAMBDAS, **(values.get("lambdas") or {})}
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
    if cls is DataConfig:
        for split in ("train", "validation"):
            values[split] = [_build(Source, s, f"data.{split}[].") for s in values.get(split) or []]
    try:
        return cls(**values)
    except TypeError as error:
        raise ValueError(f"Bad config section {where or 'top level'}: {error}") from error


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config (a path, or the name of one in `training/configs/`) and apply `key.sub=value` overrides
    (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file() and path.parent == Path(".") and (CONFIGS / path.with_suffix(".yaml").name).is_file():
        path = CONFIGS / path.with_suffix(".yaml").name
    values = yaml.safe_load(path.read_text()) or {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep:
            raise ValueError(f"Override {override!r} is not key=value")
        *parents, last = key.split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    config = _build(TrainConfig, values, "")
    if not config.data.train:
        raise ValueError("The config has no training data (data.train is empty)")
    return config
