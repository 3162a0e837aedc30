"""Forks of a run (`rvqgan.training.fork`): a wider discriminator that starts with the same outputs, a resumable fork,
the config's learning-rate decay after a resume, a fork on more training data, and clear errors."""

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rvqgan.modeling.loading_rvqgan import load_safetensors
from rvqgan.training.checkpoint import checkpoints
from rvqgan.training.config import load_config
from rvqgan.training.discriminators import RvqganDiscriminator
from rvqgan.training.train import Trainer

ROOT = Path(__file__).parent.parent
TINY = str(ROOT / "training" / "configs" / "tiny.yaml")
WIDER = ["discriminator.stft_channels=8", "discriminator.period_channels=[4, 16, 16, 32, 48]"]


def fork_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rvqgan.training.fork", *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny run's checkpoint after one GAN step, so that both optimizers hold moments."""
    out = tmp_path_factory.mktemp("run")
    trainer = Trainer(load_config(TINY, [f"output_dir={out}", "data.validation=[]"]))
    trainer.train_step(next(iter(trainer.loader)), log=False)
    trainer.step = 1
    trainer.save_checkpoint()
    return checkpoints(out / "checkpoints")[-1]


def test_wider_discriminator_starts_with_the_same_outputs_and_resumes(checkpoint, tmp_path):
    result = fork_cli(checkpoint, tmp_path, "--config", TINY, *WIDER)
    assert result.returncode == 0, result.stderr
    config = load_config(TINY, WIDER)
    narrow = RvqganDiscriminator(**load_config(TINY).discriminator)
    wide = RvqganDiscriminator(**config.discriminator)
    load_safetensors(narrow, checkpoint / "discriminator.safetensors")
    load_safetensors(wide, tmp_path / "checkpoints" / checkpoint.name / "discriminator.safetensors")
    assert sum(p.numel() for p in wide.parameters()) > 2 * sum(p.numel() for p in narrow.parameters())
    audio = 0.3 * torch.randn(2, 1, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(narrow(audio), wide(audio)):
            torch.testing.assert_close(b[-1], a[-1], rtol=1e-5, atol=1e-6)  # the logits
            assert any(fb.shape[1] > fa.shape[1] for fa, fb in zip(a, b))  # wider feature maps

    forked = Trainer(load_config(TINY, [f"output_dir={tmp_path}", "data.validation=[]", *WIDER]), resume=True)
    assert forked.step == 1
    moments = forked.opt_d.state_dict()["state"]
    assert all(m["exp_avg"].shape == p.shape for m, p in zip(moments.values(), forked.discriminator.parameters()))
    logs = forked.train_step(next(iter(forked.loader)), log=False)
    assert torch.isfinite(torch.tensor(logs["loss/discriminator"]))


def test_resume_takes_the_configs_learning_rate_decay(checkpoint, tmp_path):
    result = fork_cli(checkpoint, tmp_path, "--config", TINY)
    assert result.returncode == 0, result.stderr
    forked = Trainer(load_config(TINY, [f"output_dir={tmp_path}", "data.validation=[]", "lr_gamma=0.5"]), resume=True)
    lr = forked.sched_g.get_last_lr()[0]
    forked.train_step(next(iter(forked.loader)), log=False)
    assert forked.sched_g.get_last_lr()[0] == pytest.approx(lr * 0.5)
    assert forked.sched_d.get_last_lr()[0] == pytest.approx(lr * 0.5)


@pytest.mark.parametrize("recorded", [True, False], ids=["sources recorded", "checkpoint without the record"])
def test_fork_on_more_training_sources_draws_its_stream_afresh(checkpoint, tmp_path, recorded):
    if not recorded:  # as written before checkpoints recorded their run's sources: the fork takes the config's
        checkpoint = shutil.copytree(checkpoint, tmp_path / "old" / checkpoint.name)
        state = torch.load(checkpoint / "training_state.pt", weights_only=True)
        del state["train_sources"]
        torch.save(state, checkpoint / "training_state.pt")
    more = [
        "data.train=[{dataset: /usr/share/sounds/alsa}, {dataset: /usr/share/sonic-pi/samples}, "
        f"{{dataset: {ROOT / 'examples' / 'audio'}}}]"
    ]
    assert fork_cli(checkpoint, tmp_path / "fork", "--config", TINY, *more).returncode == 0
    forked = Trainer(load_config(TINY, [f"output_dir={tmp_path / 'fork'}", "data.validation=[]", *more]), resume=True)
    assert forked.step == 1
    logs = forked.train_step(next(iter(forked.loader)), log=False)
    assert math.isfinite(logs["loss/mel"])


@pytest.mark.parametrize(
    "case, expected",
    [
        ("narrower", "can only widen"),
        ("other periods", "differ in more than their widths"),
        ("not a checkpoint", "is not a training checkpoint"),
        ("existing fork", "already has checkpoints"),
    ],
)
def test_bad_forks_fail_with_one_line_and_write_nothing(checkpoint, tmp_path, case, expected):
    overrides = {"narrower": ["discriminator.stft_channels=2"], "other periods": ["discriminator.periods=[2, 3]"]}
    source = checkpoint.parent if case == "not a checkpoint" else checkpoint
    if case == "existing fork":
        assert fork_cli(checkpoint, tmp_path, "--config", TINY).returncode == 0
    before = sorted(tmp_path.rglob("*"))
    result = fork_cli(source, tmp_path, "--config", TINY, *overrides.get(case, []))
    assert result.returncode == 2 and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sorted(tmp_path.rglob("*")) == before
