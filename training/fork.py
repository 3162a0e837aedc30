"""Fork a run: a new run that resumes from another run's checkpoint with changed settings, so that changes are compared
from the same weights, optimizer state and data position (BENCHMARKS.md, "Forks of the default model's run").

    python -m rvqgan.training.fork CHECKPOINT OUTPUT_DIR --config default [key.sub=value ...]
    accelerate launch -m rvqgan.training.train --config default --resume output_dir=OUTPUT_DIR [the same overrides]

The fork's first checkpoint is CHECKPOINT with the discriminator that the config and overrides build. Where that one
is wider (`discriminator.stft_channels`, `discriminator.period_channels`), the checkpoint's discriminator is widened
without changing its outputs: each tensor keeps its values in its leading block, a weight's new inputs to the old
channels are zero, the new channels start as a new discriminator's (they feed nothing yet), and the optimizer's
moments of the new entries start at zero. A fork whose `data.train` differs from its checkpoint's run draws its training
stream afresh; a checkpoint that does not record its run's sources is taken to have used the config's.
"""

import argparse
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .checkpoint import PREFIX
from .config import load_config
from .discriminators import RvqganDiscriminator


def widen(state: dict, wide: dict) -> dict:
    """`state`, a discriminator's state dict, in the shapes of `wide` (a wider one's, same names), computing the same
    outputs. Weight norm's `original1` (v) is (out, in, ...): its block of old outputs x new inputs is zero."""
    if state.keys() != wide.keys():
        raise ValueError("the discriminators differ in more than their widths (periods, FFT sizes or bands)")
    widened = {}
    for name, new in wide.items():
        old = state[name]
        if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape)):
            raise ValueError(
                f"{name} is {tuple(old.shape)} in the checkpoint, {tuple(new.shape)} in the fork: it can only widen"
            )
        new = new.clone()
        if name.endswith("original1"):
            new[: old.shape[0], old.shape[1] :] = 0
        new[tuple(slice(0, n) for n in old.shape)] = old
        widened[name] = new
    return widened


def widen_optimizer(state: dict, names: list[str], wide: dict) -> dict:
    """An optimizer state dict whose parameters are `names` (in `parameters()` order), with each moment widened to
    the shape of `wide[name]`, new entries zero."""
    for index, moments in state["state"].items():
        target = wide[names[index]]
        for key, value in moments.items():
            if value.dim():  # `step` is a scalar
                moments[key] = widen({key: value}, {key: torch.zeros_like(target)})[key]
    return state


def fork(checkpoint: Path, output_dir: Path, discriminator: RvqganDiscriminator, sources: list[dict]) -> Path:
    """Write `output_dir/checkpoints/<checkpoint's name>`: `checkpoint` with `discriminator`'s widths (atomically);
    `sources`, the training sources of the checkpoint's run, where it does not record them."""
    final = output_dir / "checkpoints" / checkpoint.name
    if not checkpoint.name.startswith(PREFIX) or not (checkpoint / "training_state.pt").is_file():
        raise ValueError(f"{checkpoint} is not a training checkpoint (checkpoints/{PREFIX}N with training_state.pt)")
    if final.parent.exists() and any(final.parent.iterdir()):
        raise ValueError(f"{final.parent} already has checkpoints: fork into a new output_dir")
    old = load_file(checkpoint / "discriminator.safetensors")
    new = {k: v.detach() for k, v in discriminator.state_dict().items()}
    weights = widen(old, new)
    state = torch.load(checkpoint / "training_state.pt", map_location="cpu", weights_only=True)
    state.setdefault("train_sources", sources)
    state["opt_d"] = widen_optimizer(state["opt_d"], [name for name, _ in discriminator.named_parameters()], weights)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint, tmp)
    save_file(weights, tmp / "discriminator.safetensors")
    torch.save(state, tmp / "training_state.pt")
    tmp.rename(final)
    return final


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a run's checkpoints/step-N folder")
    parser.add_argument("output_dir", type=Path, help="the fork's output_dir (new)")
    parser.add_argument("--config", required=True, help="the run's YAML config: a path or a shipped config's name")
    parser.add_argument("overrides", nargs="*", help="key.sub=value settings of the fork")
    args = parser.parse_intermixed_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        discriminator = RvqganDiscriminator(**config.discriminator)  # for its shapes: the sampling rate changes none
        final = fork(args.checkpoint, args.output_dir, discriminator, load_config(args.config).train_sources())
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Forked {args.checkpoint} into {final}; train it with --resume output_dir={args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
