"""The loopback Hub (tests/hub_server.py) against the REAL huggingface_hub / transformers clients.

huggingface_hub reads HF_ENDPOINT (and HF_HUB_DISABLE_XET, HF_HUB_OFFLINE) when it is imported, and this pytest
process imported it long ago (conftest -> transformers), so every client call runs in a fresh subprocess.
"""

import json
import os
import random
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import pytest
from hub_server import LoopbackHub

PREAMBLE = """\
import json, os, sys
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
api = HfApi()
def emit(value):
    print("RESULT:" + json.dumps(value))
"""


def run_client(hub: LoopbackHub, code: str, home, **env) -> object:
    """Run `code` (after PREAMBLE) in a subprocess pointed at `hub`; return what it passed to emit()."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env = {
        **clean,
        **hub.client_env(),
        "HF_HOME": str(home),
        "HF_TOKEN": "hf_test",
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", PREAMBLE + textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"client failed:\n{result.stdout}\n{result.stderr}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT:")]
    assert lines, f"client emitted nothing:\n{result.stdout}\n{result.stderr}"
    return json.loads(lines[-1].removeprefix("RESULT:"))


@pytest.fixture
def hub():
    with LoopbackHub() as server:
        yield server


@pytest.fixture
def folder(tmp_path):
    """A small json, a 1 KB text file and a ~12 MB binary (above the 10 MB LFS threshold)."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "dac", "n_codebooks": 2}))
    (folder / "notes.txt").write_text("".join(random.Random(1).choices("abcdef \n", k=1024)))
    (folder / "weights.bin").write_bytes(random.Random(2).randbytes(12 * 1024 * 1024 + 17))
    return folder


UPLOAD = """
info = api.upload_folder(folder_path=os.environ["FOLDER"], repo_id="org/x", commit_message="add files")
emit(info.oid)
"""


def test_create_repo_exist_ok(hub, tmp_path):
    urls = run_client(
        hub,
        """
        from huggingface_hub.errors import HfHubHTTPError
        urls = [str(api.create_repo("org/x", exist_ok=True)) for _ in range(2)]
        try:
            api.create_repo("org/x")
            urls.append("no error")
        except HfHubHTTPError as e:
            urls.append(e.response.status_code)
        emit(urls)
    """,
        tmp_path / "home",
    )
    assert urls == [f"{hub.url}/org/x", f"{hub.url}/org/x", 409]
    assert len(hub.commits("org/x")) == 1  # the initial .gitattributes commit, made once


def test_upload_folder_goes_through_lfs_and_downloads_identical_bytes(hub, tmp_path, folder):
    run_client(hub, "api.create_repo('org/x'); emit(0)", tmp_path / "home")
    oid = run_client(hub, UPLOAD, tmp_path / "home", FOLDER=str(folder))
    assert hub.commits("org/x")[-1] == oid and len(hub.commits("org/x")) == 2
    # only the big binary went through the LFS batch API + PUT; the small files were inlined in the commit
    puts = [path for method, path, _ in hub.requests if method == "PUT"]
    assert len(puts) == 1 and any(path.endswith("/info/lfs/objects/batch") for _, path, _ in hub.requests)

    downloaded = run_client(
        hub,
        """
        emit({name: hf_hub_download("org/x", name) for name in ["config.json", "notes.txt", "weights.bin"]})
    """,
        tmp_path / "fresh-home",
    )
    for name, path in downloaded.items():
        assert open(path, "rb").read() == (folder / name).read_bytes(), name
    files = run_client(hub, "emit(api.list_repo_files('org/x'))", tmp_path / "home")
    assert sorted(files) == [".gitattributes", "config.json", "notes.txt", "weights.bin"]


def test_new_commit_keeps_old_revision(hub, tmp_path, folder):
    run_client(hub, "api.create_repo('org/x'); emit(0)", tmp_path / "home")
    first = run_client(hub, UPLOAD, tmp_path / "home", FOLDER=str(folder))
    result = run_client(
        hub,
        f"""
        info = api.upload_file(path_or_fileobj=b"new notes", path_in_repo="notes.txt", repo_id="org/x")
        try:  # a commit based on a stale parent is refused
            api.upload_file(path_or_fileobj=b"x", path_in_repo="y.txt", repo_id="org/x", parent_commit="{first}")
            stale = "accepted"
        except Exception as e:
            stale = e.response.status_code
        emit({{"second": info.oid, "stale": stale,
              "main": Path(hf_hub_download("org/x", "notes.txt")).read_text(),
              "old": Path(hf_hub_download("org/x", "notes.txt", revision="{first}")).read_text(),
              "old_sha": api.model_info("org/x", revision="{first}").sha}})
    """,
        tmp_path / "home",
    )
    assert hub.commits("org/x")[1:] == [first, result["second"]] and first != result["second"]
    assert result["stale"] == 412
    assert result["main"] == "new notes"
    assert result["old"] == (folder / "notes.txt").read_text()
    assert result["old_sha"] == first


def test_snapshot_download_then_offline_from_cache(hub, tmp_path, folder):
    run_client(hub, "api.create_repo('org/x'); emit(0)", tmp_path / "home")
    oid = run_client(hub, UPLOAD, tmp_path / "home", FOLDER=str(folder))
    snapshot = run_client(hub, "emit(snapshot_download('org/x'))", tmp_path / "fresh-home")
    assert snapshot.endswith(oid)
    for name in ["config.json", "notes.txt", "weights.bin"]:
        assert open(os.path.join(snapshot, name), "rb").read() == (folder / name).read_bytes(), name

    seen = len(hub.requests)
    offline = run_client(hub, "emit(snapshot_download('org/x'))", tmp_path / "fresh-home", HF_HUB_OFFLINE="1")
    assert offline == snapshot
    assert len(hub.requests) == seen, hub.requests[seen:]  # really served from the cache
    with pytest.raises(AssertionError, match="LocalEntryNotFoundError"):  # an empty cache offline: no snapshot
        run_client(hub, "emit(snapshot_download('org/x'))", tmp_path / "empty-home", HF_HUB_OFFLINE="1")


def test_missing_entry_revision_and_repo_raise_the_client_errors(hub, tmp_path):
    errors = run_client(
        hub,
        """
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
        api.create_repo("org/x")
        calls = {"entry": lambda: hf_hub_download("org/x", "missing.json"),
                 "revision": lambda: hf_hub_download("org/x", ".gitattributes", revision="f" * 40),
                 "repo": lambda: hf_hub_download("org/nope", "config.json"),
                 "repo_info": lambda: api.model_info("org/nope")}
        out = {}
        for name, call in calls.items():
            try:
                call()
                out[name] = "no error"
            except Exception as e:
                out[name] = [c.__name__ for c in type(e).__mro__]
        emit(out)
    """,
        tmp_path / "home",
    )
    # RemoteEntryNotFoundError (the server said so), not LocalEntryNotFoundError (Hub unreachable, not cached):
    # both are EntryNotFoundErrors, but only the first one proves that X-Error-Code: EntryNotFound was understood
    assert "EntryNotFoundError" in errors["entry"] and "RemoteEntryNotFoundError" in errors["entry"]
    assert "RevisionNotFoundError" in errors["revision"]
    assert "RepositoryNotFoundError" in errors["repo"] and "RepositoryNotFoundError" in errors["repo_info"]


def test_transformers_push_to_hub_then_from_pretrained(hub, tmp_path):
    reference = tmp_path / "reference.pt"
    run_client(
        hub,
        f"""
        import torch
        from transformers import DacConfig, DacModel
        torch.manual_seed(0)
        model = DacModel(DacConfig(encoder_hidden_size=8, downsampling_ratios=[2, 4], decoder_hidden_size=16,
                                   n_codebooks=2, codebook_size=16, codebook_dim=4))
        with torch.no_grad():  # biases start at zero: make every tensor distinctive
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        model.push_to_hub("org/tiny-dac")
        torch.save(model.state_dict(), {str(reference)!r})
        emit(0)
    """,
        tmp_path / "push-home",
    )
    assert {"README.md", "config.json", "model.safetensors"} <= set(
        run_client(hub, "emit(api.list_repo_files('org/tiny-dac'))", tmp_path / "push-home")
    )

    mismatches = run_client(
        hub,
        f"""
        import torch
        from transformers import DacModel
        model = DacModel.from_pretrained("org/tiny-dac")
        reference = torch.load({str(reference)!r})
        state = model.state_dict()
        differ = [k for k in reference if k not in state or not torch.equal(state[k], reference[k])]
        emit(differ + sorted(set(state) - set(reference)))
    """,
        tmp_path / "load-home",
    )
    assert mismatches == []


def test_unknown_route_is_a_logged_404(hub, capfd):
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{hub.url}/api/no-such-endpoint")
    assert error.value.code == 404
    assert "unknown route GET /api/no-such-endpoint" in capfd.readouterr().err


def test_repos_persist_in_root(tmp_path):
    with LoopbackHub(root=tmp_path / "hub") as first:
        run_client(
            first,
            "api.create_repo('org/x'); api.upload_file(path_or_fileobj=b'1', path_in_repo='a.txt', "
            "repo_id='org/x'); emit(0)",
            tmp_path / "home",
        )
        commits = first.commits("org/x")
    with LoopbackHub(root=tmp_path / "hub") as second:
        assert second.commits("org/x") == commits
        content = run_client(second, "emit(Path(hf_hub_download('org/x', 'a.txt')).read_text())", tmp_path / "h2")
    assert content == "1"
