"""Publishing to a Hub and loading back by repo id, against the loopback Hub server and the real client."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import tiny_model
from hub_server import LoopbackHub
from safetensors.torch import load_file
from test_hub_server import run_client

from rvqgan.models import DEFAULT_MODEL

pytestmark = pytest.mark.slow  # each test runs its Hub clients in new processes

REPO = "org/rvqgan-44khz"
HIDE_PACKAGE = """
class HideOurPackage:  # our package is installed here; loading by repo id must not need it
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("modeling_rvqgan", "feature_extraction", "rvqgan", "training"):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, HideOurPackage())
"""
LOAD_AND_ENCODE = """
import torch
from transformers import AutoFeatureExtractor, AutoModel
kwargs = json.loads(os.environ["LOAD_KWARGS"])
model = AutoModel.from_pretrained("org/rvqgan-44khz", trust_remote_code=True, **kwargs).eval()
extractor = AutoFeatureExtractor.from_pretrained("org/rvqgan-44khz", trust_remote_code=True, **kwargs)
audio = torch.load(os.environ["AUDIO"], weights_only=True)
with torch.no_grad():
    codes = model.encode(**extractor(audio.numpy(), sampling_rate=44100, return_tensors="pt")).audio_codes
emit({"codes": codes.tolist(), "module": type(model).__module__})
"""


def push(hub, checkpoint, home, *extra):
    env = {**hub.client_env(), "HF_HOME": str(home), "HF_TOKEN": "hf_test", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "rvqgan.training.push_to_hub", str(checkpoint), "--repo-id", REPO, *extra],
        env=env,
        capture_output=True,
        text=True,
    )


def checkpoint(path, seed):
    model = tiny_model(seed=seed, sampling_rate=44100)
    model.save_pretrained(path)
    audio = 0.3 * torch.randn(3000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        codes = model.encode(audio[None, None]).audio_codes
    return audio, codes.tolist()


@pytest.fixture
def hub():
    with LoopbackHub() as server:
        yield server


def test_push_then_load_by_repo_id_revisions_and_offline(hub, tmp_path):
    audio, first_codes = checkpoint(tmp_path / "first", seed=1)
    (tmp_path / "first" / "eval_results.json").write_text(
        json.dumps([{"codec": "rvqgan", "kbps": 33.08, "mel_distance": 1.5}])
    )
    torch.save(audio, tmp_path / "audio.pt")
    assert push(hub, tmp_path / "first", tmp_path / "home").returncode == 0
    first_commit = hub.commits(REPO)[-1]

    env = {"AUDIO": str(tmp_path / "audio.pt"), "LOAD_KWARGS": "{}"}
    loaded = run_client(hub, HIDE_PACKAGE + LOAD_AND_ENCODE, tmp_path / "user", **env)
    assert loaded["codes"] == first_codes and loaded["module"].startswith("transformers_modules.")

    _, second_codes = checkpoint(tmp_path / "second", seed=2)
    assert second_codes != first_codes
    assert push(hub, tmp_path / "second", tmp_path / "home").returncode == 0
    assert len(hub.commits(REPO)) == 3  # .gitattributes, first, second
    assert run_client(hub, HIDE_PACKAGE + LOAD_AND_ENCODE, tmp_path / "user", **env)["codes"] == second_codes
    pinned = {**env, "LOAD_KWARGS": json.dumps({"revision": first_commit})}
    assert run_client(hub, HIDE_PACKAGE + LOAD_AND_ENCODE, tmp_path / "user", **pinned)["codes"] == first_codes
    requests_before = len(hub.requests)
    offline = run_client(hub, HIDE_PACKAGE + LOAD_AND_ENCODE, tmp_path / "user", HF_HUB_OFFLINE="1", **env)
    assert offline["codes"] == second_codes and len(hub.requests) == requests_before  # served from the cache


def test_pushed_repo_contents_and_model_card(hub, tmp_path):
    checkpoint(tmp_path / "ckpt", seed=1)
    assert push(hub, tmp_path / "ckpt", tmp_path / "home").returncode == 0
    contents = run_client(
        hub,
        """
        from huggingface_hub import ModelCard
        card = ModelCard.load("org/rvqgan-44khz")
        config = json.loads(Path(hf_hub_download("org/rvqgan-44khz", "config.json")).read_text())
        emit({"files": sorted(api.list_repo_files("org/rvqgan-44khz")), "tags": card.data.tags,
              "library": card.data.library_name, "auto_map": config["auto_map"], "text": card.text})
        """,
        tmp_path / "user",
    )
    assert {
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "README.md",
        "modeling_rvqgan.py",
        "configuration_rvqgan.py",
        "layers_rvqgan.py",
        "quantizer_rvqgan.py",
        "feature_extraction_rvqgan.py",
    } <= set(contents["files"])
    assert not [f for f in contents["files"] if f.endswith((".bin", ".pt", ".pth"))]
    assert contents["library"] == "transformers"
    assert contents["tags"] == ["audio", "audio-codec", "neural-codec", "rvqgan", "custom_code"]
    assert contents["auto_map"]["AutoModel"] == "modeling_rvqgan.RvqganModel"
    assert "| 4 | 33.08 |" in contents["text"]  # the bitrate table: 4 codebooks of 6 bits at 1378 Hz
    assert "No evaluation has been recorded" in contents["text"]  # nothing invented


def test_the_shipped_default_model_is_pushed_with_its_discriminator_curves_and_card(hub, tmp_path):
    assert push(hub, DEFAULT_MODEL, tmp_path / "home").returncode == 0
    pushed = run_client(
        hub,
        """
        from huggingface_hub import ModelCard
        emit({"files": sorted(api.list_repo_files("org/rvqgan-44khz")), "text": ModelCard.load("org/rvqgan-44khz").text,
              "discriminator": hf_hub_download("org/rvqgan-44khz", "discriminator/model.safetensors")})
        """,
        tmp_path / "user",
    )
    assert {"model.safetensors", "curves.png", "discriminator/model.safetensors", "discriminator/config.json"} <= set(
        pushed["files"]
    )
    assert "wall-clock hours on a 2-core CPU" in pushed["text"] and "![training curves](curves.png)" in pushed["text"]
    shipped, downloaded = (
        load_file(DEFAULT_MODEL / "discriminator" / "model.safetensors"),
        load_file(pushed["discriminator"]),
    )
    assert shipped.keys() == downloaded.keys() and all(torch.equal(shipped[k], downloaded[k]) for k in shipped)


def test_our_class_loads_by_repo_id_without_remote_code(hub, tmp_path):
    _, codes = checkpoint(tmp_path / "ckpt", seed=1)
    assert push(hub, tmp_path / "ckpt", tmp_path / "home").returncode == 0
    loaded = run_client(
        hub,
        """
        import torch
        from rvqgan.modeling import RvqganModel
        model = RvqganModel.from_pretrained("org/rvqgan-44khz").eval()
        audio = 0.3 * torch.randn(3000, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            emit(model.encode(audio[None, None]).audio_codes.tolist())
        """,
        tmp_path / "user",
    )
    assert loaded == codes


def test_push_to_a_branch_leaves_main_alone(hub, tmp_path):
    checkpoint(tmp_path / "first", seed=1)
    _, second_codes = checkpoint(tmp_path / "second", seed=2)
    assert push(hub, tmp_path / "first", tmp_path / "home").returncode == 0
    main_before = hub.refs(REPO)
    assert push(hub, tmp_path / "second", tmp_path / "home", "--revision", "v2").returncode == 0
    branches = {b["name"]: b["targetCommit"] for b in hub.refs(REPO)["branches"]}
    assert branches["main"] == {b["name"]: b["targetCommit"] for b in main_before["branches"]}["main"]
    assert branches["v2"] == hub.commits(REPO)[-1]
    loaded = run_client(
        hub,
        """
        import torch
        from rvqgan.modeling import RvqganModel
        model = RvqganModel.from_pretrained("org/rvqgan-44khz", revision="v2").eval()
        audio = 0.3 * torch.randn(3000, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            emit(model.encode(audio[None, None]).audio_codes.tolist())
        """,
        tmp_path / "user",
    )
    assert loaded == second_codes


@pytest.mark.parametrize(
    "problem, message",
    [
        ("no weights", "no file named model.safetensors"),
        ("config mismatch", "model.safetensors does not fit config.json"),
        ("extractor mismatch", "does not match config.json"),
    ],
)
def test_bad_checkpoints_fail_before_any_upload(problem, message, hub, tmp_path):
    checkpoint(tmp_path / "ckpt", seed=1)
    if problem == "no weights":
        (tmp_path / "ckpt" / "model.safetensors").unlink()
    elif problem == "config mismatch":
        config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
        (tmp_path / "ckpt" / "config.json").write_text(json.dumps({**config, "n_codebooks": 5}))
    else:
        (tmp_path / "ckpt" / "preprocessor_config.json").write_text(
            json.dumps({"feature_extractor_type": "RvqganFeatureExtractor", "sampling_rate": 24000, "hop_length": 32})
        )
    result = push(hub, tmp_path / "ckpt", tmp_path / "home")
    assert result.returncode == 1 and message in result.stderr
    assert not [r for r in hub.requests if r[0] == "POST"]  # not even the repository was created
