"""Model folders (`rvqgan.model_folder`): the one writer, and the one strict loader of weights (`load_safetensors`)
behind every entry point that loads a discriminator: publishing, `init_from`, resuming, exporting the default model."""

import pickle
from pathlib import Path

import pytest
import torch
from conftest import ALSA_SPEECH, real_audio, tiny_config, tiny_model
from rvqgan.modeling import ModelLoadError, RvqganModel
from rvqgan.modeling.convert import main as convert
from rvqgan.training import push_to_hub
from rvqgan.training.checkpoint import load_checkpoint
from rvqgan.training.config import load_config
from rvqgan.training.discriminators import RvqganDiscriminator
from rvqgan.training.export_default import export
from rvqgan.training.train import Trainer
from safetensors.torch import save_file

from rvqgan.model_folder import load_discriminator, save_model_folder

TINY = str(Path(__file__).parent.parent / "training" / "configs" / "tiny.yaml")
FIXTURES = Path(__file__).parent / "fixtures" / "descript"


def tiny_discriminator(seed: int = 0) -> RvqganDiscriminator:
    """The tiny config's discriminator with weights unlike a fresh one's."""
    discriminator = RvqganDiscriminator(sampling_rate=tiny_config().sampling_rate, **load_config(TINY).discriminator)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in discriminator.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return discriminator


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_a_written_folder_round_trips_with_its_discriminator(tmp_path):
    model, discriminator = tiny_model(seed=1), tiny_discriminator()
    folder = save_model_folder(tmp_path / "model", model, discriminator)
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "modeling_rvqgan.py"} <= names
    assert {"discriminator/config.json", "discriminator/model.safetensors"} <= names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth"))]
    assert_same_weights(RvqganModel.from_pretrained(folder), model)
    loaded = load_discriminator(folder, RvqganDiscriminator)
    assert isinstance(loaded, RvqganDiscriminator)
    assert_same_weights(loaded, discriminator)
    assert load_discriminator(save_model_folder(tmp_path / "alone", model), RvqganDiscriminator) is None


PROBLEMS = {  # problem: words of the error
    "missing": "1 missing (",
    "unexpected": "1 unexpected (extra.weight)",
    "mis-shaped": "1 mismatched (",
    "truncated": "cannot read the weights",
    "pickled": "cannot read the weights",  # a pickle under the safetensors name
    "pickle-only": "cannot read the weights",  # pytorch_model.bin beside it, no safetensors
}


def write_weights(path: Path, problem: str, discriminator: RvqganDiscriminator):
    """The discriminator's weights at `path` (a .safetensors file), with `problem`."""
    state = {k: v.contiguous() for k, v in discriminator.state_dict().items()}
    first = sorted(state)[0]
    if problem == "missing":
        del state[first]
    elif problem == "unexpected":
        state["extra.weight"] = torch.zeros(1)
    elif problem == "mis-shaped":
        state[first] = torch.zeros(3)
    path.unlink(missing_ok=True)
    if problem == "pickled":
        torch.save(state, path)
    elif problem == "pickle-only":
        torch.save(state, path.with_name("pytorch_model.bin"))
    else:
        save_file(state, path)
    if problem == "truncated":
        path.write_bytes(path.read_bytes()[:500])


def folder_with(tmp_path: Path, problem: str) -> Path:
    """A tiny generator's folder whose `discriminator/` has `problem`."""
    discriminator = tiny_discriminator()
    folder = save_model_folder(tmp_path / "model", tiny_model(), discriminator)
    write_weights(folder / "discriminator" / "model.safetensors", problem, discriminator)
    return folder


class NoUpload:
    def __init__(self, *args, **kwargs):
        raise AssertionError("a folder that cannot be loaded reached the upload")


def by_push_to_hub(tmp_path, problem, monkeypatch):
    monkeypatch.setattr(push_to_hub, "HfApi", NoUpload)
    push_to_hub.push(folder_with(tmp_path, problem), "org/rvqgan")


def by_init_from(tmp_path, problem, monkeypatch):
    real_audio(ALSA_SPEECH)
    Trainer(load_config(TINY, [f"output_dir={tmp_path / 'run'}", f"init_from={folder_with(tmp_path, problem)}"]))


def by_resume(tmp_path, problem, monkeypatch):
    discriminator = tiny_discriminator()
    (tmp_path / "step-00000002").mkdir()
    write_weights(tmp_path / "step-00000002" / "discriminator.safetensors", problem, discriminator)
    load_checkpoint(tmp_path / "step-00000002", {"discriminator": tiny_discriminator(seed=1)})


def by_export_default(tmp_path, problem, monkeypatch):
    save_model_folder(tmp_path / "run" / "best", tiny_model())
    (tmp_path / "run" / "checkpoints" / "step-00000002").mkdir(parents=True)
    path = tmp_path / "run" / "checkpoints" / "step-00000002" / "discriminator.safetensors"
    write_weights(path, problem, tiny_discriminator())
    export(tmp_path / "run", tmp_path / "shipped", Path(TINY))


ENTRY_POINTS = {  # name: (loads, the file it names)
    "push_to_hub": (by_push_to_hub, "model/discriminator/model.safetensors"),
    "init_from": (by_init_from, "model/discriminator/model.safetensors"),
    "resume": (by_resume, "step-00000002/discriminator.safetensors"),
    "export_default": (by_export_default, "step-00000002/discriminator.safetensors"),
}


def refuse(*args, **kwargs):
    raise AssertionError("unpickled")


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("entry_point, file", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_a_bad_discriminator_is_refused_naming_the_file_without_unpickling(
    entry_point, file, problem, tmp_path, monkeypatch
):
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(ModelLoadError) as raised:
        entry_point(tmp_path, problem, monkeypatch)
    message = str(raised.value)
    assert file in message and PROBLEMS[problem] in message, message
    assert raised.value.__cause__ is not None or "does not fit the RvqganDiscriminator" in message
    assert not (tmp_path / "shipped").exists()


def test_the_converter_refuses_a_mis_shaped_weight_naming_the_file(tmp_path):
    checkpoint = torch.load(FIXTURES / "tiny44.pth", weights_only=True)
    checkpoint["state_dict"]["decoder.model.0.bias"] = torch.zeros(3)
    torch.save(checkpoint, tmp_path / "bad.pth")
    with pytest.raises(SystemExit) as exit_info:
        convert(["--from", "descript", str(tmp_path / "bad.pth"), str(tmp_path / "out")])
    message = str(exit_info.value.code)
    assert "bad.pth does not fit the RvqganModel: 1 mismatched (decoder.conv1.bias [3] for [" in message, message
    assert not (tmp_path / "out").exists()


def test_training_ends_with_a_model_folder_that_init_from_starts_from(tmp_path):
    real_audio(ALSA_SPEECH)
    trainer = Trainer(load_config(TINY, [f"output_dir={tmp_path / 'run'}", "data.validation=[]", "num_steps=1"]))
    trainer.train()
    trained = trainer.accelerator.unwrap_model(trainer.discriminator)
    assert_same_weights(load_discriminator(tmp_path / "run" / "model", RvqganDiscriminator), trained)
    started = Trainer(load_config(TINY, [f"output_dir={tmp_path / 'next'}", f"init_from={tmp_path / 'run' / 'model'}"]))
    assert_same_weights(started.accelerator.unwrap_model(started.discriminator), trained)
