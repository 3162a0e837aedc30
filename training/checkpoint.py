"""Training checkpoints: everything needed to continue a run exactly, written atomically.

`{output_dir}/checkpoints/step-{N:08d}/` holds
- `generator.safetensors`, `discriminator.safetensors`: the training modules' state dicts (weight norm unfolded);
- `training_state.pt`: step, optimizers, schedulers, best validation score, and per process its RNG states and data
  stream position (loaded with `torch.load(weights_only=True)`: plain tensors and Python values only).

A checkpoint is written to a temporary folder and renamed when complete, so a killed run never leaves a partial one;
the newest `keep` checkpoints are kept.
"""

import shutil
from pathlib import Path

import torch
from rvqgan.modeling.loading_rvqgan import load_safetensors
from safetensors.torch import save_model

PREFIX = "step-"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, step: int, modules: dict, state: dict, keep: int) -> Path:
    """Write `modules` (name -> nn.Module, unwrapped) and `state` (name -> picklable plain values) as checkpoint
    `step`; delete all but the newest `keep` (at least 1). Call on the main process only."""
    if keep < 1:
        raise ValueError(f"`keep` must be at least 1, got {keep}")
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{step:08d}"
    for stale in directory.glob(f".{PREFIX}*.tmp"):  # left by a run killed while writing
        shutil.rmtree(stale)
    tmp = directory / f".{final.name}.tmp"
    tmp.mkdir()
    for name, module in modules.items():
        save_model(module, str(tmp / f"{name}.safetensors"))
    torch.save({"step": step, **state}, tmp / "training_state.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in checkpoints(directory)[:-keep]:
        shutil.rmtree(old)
    return final


def checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    return sorted(p for p in Path(directory).glob(f"{PREFIX}*") if p.is_dir())


def load_checkpoint(path: Path, modules: dict) -> dict:
    """Load the weights of `modules` (unwrapped) in place, strictly (`load_safetensors`); return the training state."""
    for name, module in modules.items():
        load_safetensors(module, path / f"{name}.safetensors")
    return torch.load(path / "training_state.pt", map_location="cpu", weights_only=True)
