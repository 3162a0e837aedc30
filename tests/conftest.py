import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from rvqgan.modeling import RvqganConfig, RvqganModel
from rvqgan.modeling.configuration_rvqgan import PRESETS

EXAMPLES = Path(__file__).parent.parent / "examples" / "audio"
ALSA_SPEECH = Path("/usr/share/sounds/alsa/Front_Center.wav")

TINY = PRESETS["tiny"]  # hop 32, 4 codebooks of 64: runs in milliseconds


@pytest.fixture
def one_thread():
    """torch ops on one thread for the test (`pytestmark = pytest.mark.usefixtures("one_thread")`): tiny models gain
    nothing from threads, and spinning OpenMP threads slow many small windows down a hundredfold on a busy machine
    (e.g. under pytest -n 2 on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def accelerate_launch(processes: int) -> list[str]:
    """The `accelerate launch` command line for `processes` CPU processes: several need the torchrun-style launch
    (`--multi_gpu`, a gloo group without GPUs), as Accelerate's `--cpu` runs one process unless MPI is set up."""
    mode = "--multi_gpu --main_process_port 0" if processes > 1 else "--cpu"
    options = f"{mode} --num_processes {processes} --num_machines 1 --mixed_precision no --dynamo_backend no"
    return [sys.executable, "-m", "accelerate.commands.launch", *options.split()]


def tiny_config(**overrides) -> RvqganConfig:
    return RvqganConfig.from_preset("tiny", **overrides)


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move Snake alphas and biases away from their init values, so that tests see non-trivial weights."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("alpha"):
                parameter.copy_(1 + 0.3 * torch.randn(parameter.shape, generator=generator).abs())
            elif name.endswith("bias"):
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model


def tiny_model(seed: int = 0, **overrides) -> RvqganModel:
    torch.manual_seed(seed)
    return perturbed(RvqganModel(tiny_config(**overrides)), seed).eval()


TIE = 1e-5  # cosine similarities this close are a tie: float rounding of another kernel may pick either entry


def assert_codes_equal_but_for_float_ties(model: RvqganModel, codes: torch.Tensor, expected) -> None:
    """(B, n_q, T) `codes` equal `expected`, the offline `encode` output of the same audio, in every frame but those
    whose first differing code was a tie there: its projected latent is within TIE in cosine similarity of both
    entries (then later codebooks quantize another residual). Such frames are at most 0.2 % of all."""
    offline = expected.audio_codes
    assert codes.shape == offline.shape
    dim, differs = model.config.codebook_dim, (codes != offline).any(1)  # (B, T)
    for item, frame in differs.nonzero().tolist():
        level = int((codes[item, :, frame] != offline[item, :, frame]).nonzero()[0])
        latent = expected.projected_latents[item, level * dim : (level + 1) * dim, frame].double()
        entries = model.quantizer.quantizers[level].codebook.weight.double()
        similarity = torch.nn.functional.normalize(entries, dim=1) @ torch.nn.functional.normalize(latent, dim=0)
        gap = similarity[offline[item, level, frame]] - similarity[codes[item, level, frame]]
        assert abs(gap) <= TIE, f"frame {frame}, codebook {level + 1}: not a tie (cosine gap {gap:.1e})"
    assert differs.sum() <= 0.002 * differs.numel()


@pytest.fixture(scope="session")
def full_model() -> RvqganModel:
    """The 44.1 kHz model (76.6M parameters), seeded and perturbed, built once per session: tests only read it."""
    torch.manual_seed(0)
    return perturbed(RvqganModel(RvqganConfig())).eval()


def real_audio(path: Path) -> tuple[np.ndarray, int]:
    """A real recording, (T,) float32 mono; a missing system package is a failure in CI and a skip elsewhere."""
    if not path.exists():
        message = f"{path} is missing (run scripts/system-packages.sh)"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The bad-input tests' files (`bad_input_corpus.write_corpus`), written once per session."""
    from bad_input_corpus import write_corpus

    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def deadline(tmp_path_factory):
    """The bad-input tests' FIFOs released after 60 s (`bad_input_corpus.release_fifos_after`)."""
    from bad_input_corpus import release_fifos_after

    with release_fifos_after(tmp_path_factory.getbasetemp()):
        yield
