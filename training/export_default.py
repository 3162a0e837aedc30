"""Copy the default model's training run into the package, so that a new machine continues from it.

    python -m training.export_default ~/.cache/rvqgan/runs/default

Writes `rvqgan/default_model/`: the run's `best/` generator (the lowest validation mel distance: `model.safetensors`,
`config.json`, `preprocessor_config.json`) and, in `discriminator/`, the discriminator of the newest checkpoint
(`RvqganDiscriminator.from_pretrained`), each file at most 16 MB. `scripts/train_default.sh` starts from them when it
finds no run.
"""

import argparse
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_model

from modeling_rvqgan import RvqganConfig

from .checkpoint import checkpoints
from .config import load_config
from .discriminators import RvqganDiscriminator

TARGET = Path(__file__).resolve().parent.parent / "rvqgan" / "default_model"
CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"
MAX_BYTES = 16 * 2**20


def export(run_dir: Path, target: Path = TARGET, config: Path = CONFIG) -> Path:
    best, newest = run_dir / "best", checkpoints(run_dir / "checkpoints")
    if not (best / "model.safetensors").exists() or not newest:
        raise ValueError(f"{run_dir} has no best/ generator or no checkpoint yet")
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "preprocessor_config.json"):
        shutil.copy2(best / name, tmp / name)
    rate = RvqganConfig.from_pretrained(best).sampling_rate
    discriminator = RvqganDiscriminator(sampling_rate=rate, **load_config(config).discriminator)
    load_model(discriminator, str(newest[-1] / "discriminator.safetensors"))
    discriminator.save_pretrained(tmp / "discriminator")
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
    args = parser.parse_args(argv)
    try:
        print(export(args.run_dir))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
