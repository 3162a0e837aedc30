"""`init_from`: training starts from a model folder, and from its discriminator when the folder has one (the layout of
`rvqgan.training.export_default` and `rvqgan.training.push_to_hub`, e.g. the shipped default model)."""

import copy
import subprocess
import sys
from pathlib import Path

import torch
from conftest import ALSA_SPEECH, real_audio, tiny_config
from rvqgan.modeling import RvqganModel
from rvqgan.training.config import load_config
from rvqgan.training.discriminators import RvqganDiscriminator
from rvqgan.training.train import Trainer

from rvqgan.model_folder import save_model_folder

ROOT = Path(__file__).parent.parent
TINY = str(ROOT / "training" / "configs" / "tiny.yaml")


def saved_folder(path: Path, discriminator_args: dict) -> tuple[RvqganModel, RvqganDiscriminator]:
    """A random tiny generator and a discriminator (weights unlike a fresh one's) saved as an exported folder."""
    torch.manual_seed(123)
    generator = RvqganModel(tiny_config())
    discriminator = RvqganDiscriminator(sampling_rate=generator.config.sampling_rate, **discriminator_args)
    save_model_folder(path, generator, discriminator)
    return generator, discriminator


def test_init_from_starts_the_generator_and_the_discriminator_of_the_folder(tmp_path):
    real_audio(ALSA_SPEECH)
    generator, discriminator = saved_folder(tmp_path / "model", load_config(TINY).discriminator)
    trainer = Trainer(load_config(TINY, [f"output_dir={tmp_path / 'run'}", f"init_from={tmp_path / 'model'}"]))
    started = trainer.accelerator.unwrap_model(trainer.discriminator).state_dict()
    assert all(torch.equal(started[k], v) for k, v in discriminator.state_dict().items())
    started = copy.deepcopy(trainer.accelerator.unwrap_model(trainer.generator))
    started.remove_weight_norm()  # training runs with weight norm; the saved folder has plain weights
    assert started.state_dict().keys() == generator.state_dict().keys()
    assert all(torch.allclose(started.state_dict()[k], v, atol=1e-6) for k, v in generator.state_dict().items())


def test_a_discriminator_that_does_not_fit_the_config_is_a_one_line_error(tmp_path):
    real_audio(ALSA_SPEECH)
    saved_folder(tmp_path / "model", {"periods": (2,), "fft_sizes": (512,), "period_channels": (4, 4, 4, 4, 4)})
    result = subprocess.run(
        [sys.executable, "-m", "rvqgan.training.train", "--config", TINY, f"output_dir={tmp_path / 'run'}"]
        + [f"init_from={tmp_path / 'model'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and "discriminator/model.safetensors does not fit the RvqganDiscriminator" in line
    assert not (tmp_path / "run" / "checkpoints").exists()
