"""Auto classes: in-library registration, and remote code in an environment where our package is not importable."""

import json
import shutil
import subprocess
import sys
import textwrap

import torch
from conftest import tiny_model
from rvqgan.feature_extraction import RvqganFeatureExtractor
from rvqgan.modeling import RvqganModel
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel


def save_model_dir(path):
    model = tiny_model()
    model.save_pretrained(path)
    RvqganFeatureExtractor(sampling_rate=16000, hop_length=model.config.hop_length).save_pretrained(path)
    return model


def test_importing_the_package_registers_the_auto_classes(tmp_path):
    save_model_dir(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "RvqganConfig"
    assert type(AutoModel.from_pretrained(tmp_path)) is RvqganModel
    assert type(AutoFeatureExtractor.from_pretrained(tmp_path)) is RvqganFeatureExtractor


def test_save_pretrained_writes_remote_code(tmp_path):
    save_model_dir(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "rvqgan"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_rvqgan.RvqganConfig",
        "AutoModel": "modeling_rvqgan.RvqganModel",
    }
    preprocessor = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert preprocessor["auto_map"] == {"AutoFeatureExtractor": "feature_extraction_rvqgan.RvqganFeatureExtractor"}
    for name in [
        "configuration_rvqgan.py",
        "modeling_rvqgan.py",
        "layers_rvqgan.py",
        "inference_rvqgan.py",
        "kernels_rvqgan.py",
        "quantizer_rvqgan.py",
        "feature_extraction_rvqgan.py",
    ]:
        assert (tmp_path / name).exists(), name
    assert not any(tmp_path.glob("*.bin")) and (tmp_path / "model.safetensors").exists()


def test_remote_code_loads_without_our_package(tmp_path):
    model = save_model_dir(tmp_path / "model")
    audio = 0.3 * torch.randn(1, 1, 640, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(audio).audio_values
    torch.save({"audio": audio, "expected": expected}, tmp_path / "io.pt")
    shutil.copytree(tmp_path / "model", tmp_path / "broken")  # one weight missing: refused, not initialised at random
    weights = load_file(tmp_path / "model" / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if k != "decoder.conv2.bias"}, tmp_path / "broken" / "model.safetensors"
    )
    script = textwrap.dedent(
        f"""
        import importlib.util, sys

        class HideOurPackage:  # our package is installed here; the remote code must not need it
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "rvqgan":
                    raise ModuleNotFoundError(name)

        sys.meta_path.insert(0, HideOurPackage())
        import torch
        from transformers import AutoFeatureExtractor, AutoModel

        model = AutoModel.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
        extractor = AutoFeatureExtractor.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        assert not any(name.split(".")[0] == "rvqgan" for name in sys.modules)
        io = torch.load({str(tmp_path / "io.pt")!r}, weights_only=True)
        inputs = extractor(io["audio"][0, 0].numpy(), sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            audio = model(**inputs).audio_values
        try:
            AutoModel.from_pretrained({str(tmp_path / "broken")!r}, trust_remote_code=True)
        except Exception as error:
            print(type(error).__name__, type(error).__module__, str(error).splitlines()[0])
        print(type(model).__module__, type(extractor).__module__)
        print((audio[..., :640] - io["expected"]).abs().max().item())
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    refused, modules, difference = result.stdout.strip().splitlines()[-3:]
    assert refused.startswith("ModelLoadError transformers_modules.") and "1 missing (decoder.conv2.bias)" in refused
    assert modules.startswith("transformers_modules.") and "feature_extraction_rvqgan" in modules
    assert float(difference) <= 1e-6
