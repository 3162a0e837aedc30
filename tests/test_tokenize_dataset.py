"""rvqgan.training.tokenize_dataset: sharded, resumable Parquet output, with 2 processes under `accelerate launch`."""

import json
import os
import subprocess
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
from conftest import ALSA_SPEECH, EXAMPLES, accelerate_launch, real_audio, tiny_model
from rvqgan.feature_extraction.tokenizer import AudioTokenizer
from rvqgan.training import tokenize_dataset  # noqa: E402

ROOT = Path(__file__).parent.parent
N_CLIPS = 7


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """In-process runs create Accelerate's process-wide PartialState: do not leak it into other tests."""
    from accelerate.state import AcceleratorState, PartialState

    yield
    AcceleratorState._reset_state(True)
    PartialState._reset_state()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model saved to disk and an audiofolder of short real clips: 44.1 kHz stereo flac, 48 kHz mono wav,
    a subfolder, and a metadata.csv with an `idx` column."""
    root = tmp_path_factory.mktemp("tokenize")
    model_dir = root / "model"
    tiny_model(sampling_rate=44100).save_pretrained(model_dir)
    data = root / "data"
    (data / "speech").mkdir(parents=True)
    amen, rate = sf.read(EXAMPLES / "loop_amen.flac", dtype="float32", always_2d=True)
    speech, speech_rate = real_audio(ALSA_SPEECH)
    rows = ["file_name,idx,text"]
    for i in range(N_CLIPS):
        if i % 2:
            name, audio, sr = f"speech/s{i}.wav", speech[3000 * i : 3000 * i + 4000 + 517 * i], speech_rate
        else:
            name, audio, sr = f"m{i}.flac", amen[2000 * i : 2000 * i + 3000 + 611 * i], rate
        sf.write(data / name, audio, sr)
        rows.append(f"{name},{i},clip {i}")
    (data / "metadata.csv").write_text("\n".join(rows) + "\n")
    return model_dir, data


def args(setup, output, *extra):
    model_dir, data = setup
    return [
        "--dataset",
        "audiofolder",
        "--data-dir",
        str(data),
        "--output",
        str(output),
        "--model",
        str(model_dir),
        "--batch-size",
        "2",
        "--shard-size",
        "2",
        "--keep-columns",
        "idx",
        "audio_path",
        *extra,
    ]


def first_shards_only(write_shard, n: int):
    """`write_shard` writing each process's first `n` shards and dropping the others: a run that died after them."""

    def write(rows, features, path):
        if int(path.stem.split("-")[-1]) < n:
            write_shard(rows, features, path)

    return write


CRASHED_AFTER_ONE_SHARD = """
import sys
from tests.test_tokenize_dataset import first_shards_only
from rvqgan.training import tokenize_dataset

tokenize_dataset.write_shard = first_shards_only(tokenize_dataset.write_shard, 1)
sys.exit(tokenize_dataset.main())
"""


def launch(argv, processes=2, script=("-m", "rvqgan.training.tokenize_dataset")):
    """`accelerate launch` of `script` with `processes` CPU processes (`conftest.accelerate_launch`)."""
    command = [*accelerate_launch(processes), *script, *argv]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
    }
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = [line for line in result.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert len(summary) == 1, result.stdout[-3000:]
    return json.loads(summary[0][len("SUMMARY ") :])


def load_output(output):
    return datasets.load_dataset("parquet", data_dir=str(output), split="train")


def check_complete(setup, output):
    """Every clip exactly once, each with the codes the tokenizer gives it alone."""
    ds = load_output(output)
    assert sorted(ds["idx"]) == list(range(N_CLIPS))
    tokenizer = AudioTokenizer(tiny_model(sampling_rate=44100))
    for row in ds:
        codes = np.asarray(row["audio_codes"])
        np.testing.assert_array_equal(codes, tokenizer.tokenize(row["audio_path"]))
        assert codes.shape == (4, row["n_frames"])
    return ds


@pytest.mark.slow
def test_two_processes_killed_after_first_shard_resume_without_duplicates(setup, tmp_path):
    output = tmp_path / "codes"
    crashed = tmp_path / "crashed.py"
    crashed.write_text(CRASHED_AFTER_ONE_SHARD)
    launch(args(setup, output), script=[str(crashed)])  # each rank writes one shard, as if it then crashed
    shards = sorted(output.glob("shard-*.parquet"))
    assert [p.name for p in shards] == ["shard-00000-00000.parquet", "shard-00001-00000.parquet"]
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards}
    (output / ".shard-00000-00001.parquet.tmp4242").write_bytes(b"half a shard")  # died while writing

    second = launch(args(setup, output))
    # rank 0 holds examples 0-3 (shards 0, 1), rank 1 examples 4-6 (shards 0, 1): 2 done before, 2 now
    assert second["shards_skipped"] == 2 and second["shards_written"] == 2 and second["examples"] == N_CLIPS - 4
    assert second["output_rows"] == N_CLIPS and second["tokens"] > 0 and second["audio_hours"] > 0
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards} == before  # not rewritten
    assert not list(output.glob(".*.tmp*"))
    ds = check_complete(setup, output)
    assert ds.features["audio_codes"].feature.feature.dtype == "int16"
    assert ds.features["n_frames"].dtype == "int32" and ds.features["idx"].dtype == "int64"


def summary(capsys):
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("SUMMARY ")]
    assert len(lines) == 1
    return json.loads(lines[0][len("SUMMARY ") :])


def test_streaming_resume_in_process_matches(setup, tmp_path, capsys, monkeypatch):
    output = tmp_path / "streamed"
    monkeypatch.setattr(tokenize_dataset, "write_shard", first_shards_only(tokenize_dataset.write_shard, 2))
    assert tokenize_dataset.main(args(setup, output, "--streaming")) == 0
    monkeypatch.undo()
    first = sorted(output.glob("shard-*.parquet"))
    assert len(first) == 2 and summary(capsys)["examples"] == N_CLIPS
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in first]
    assert tokenize_dataset.main(args(setup, output, "--streaming")) == 0
    resumed = summary(capsys)
    assert resumed["shards_skipped"] == 2 and resumed["shards_written"] == 2 and resumed["examples"] == N_CLIPS - 4
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in first] == before
    assert len(list(output.glob("shard-*.parquet"))) == 4
    check_complete(setup, output)
    first[0].unlink()  # a lost shard before finished ones is redone; the later ones are skipped, not duplicated
    assert tokenize_dataset.main(args(setup, output, "--streaming")) == 0
    redone = summary(capsys)
    assert redone["shards_written"] == 1 and redone["shards_skipped"] == 3 and redone["examples"] == 2
    check_complete(setup, output)


def test_other_settings_are_refused_on_resume(setup, tmp_path, monkeypatch):
    output = tmp_path / "codes"
    monkeypatch.setattr(tokenize_dataset, "write_shard", first_shards_only(tokenize_dataset.write_shard, 1))
    assert tokenize_dataset.main(args(setup, output)) == 0
    monkeypatch.undo()
    with pytest.raises(SystemExit, match="shard_size"):
        tokenize_dataset.main(args(setup, output, "--shard-size", "3"))
    with pytest.raises(SystemExit, match="n_quantizers"):
        tokenize_dataset.main(args(setup, output, "--n-quantizers", "2"))
    assert len(list(output.glob("shard-*.parquet"))) == 1


def test_other_weights_in_the_same_model_folder_are_refused_on_resume(setup, tmp_path, monkeypatch):
    model_dir, data = setup
    output, retrained = tmp_path / "codes", tmp_path / "model"
    tiny_model(sampling_rate=44100).save_pretrained(retrained)
    argv = args((retrained, data), output)
    monkeypatch.setattr(tokenize_dataset, "write_shard", first_shards_only(tokenize_dataset.write_shard, 1))
    assert tokenize_dataset.main(argv) == 0
    monkeypatch.undo()
    tiny_model(seed=1, sampling_rate=44100).save_pretrained(retrained)  # the folder now holds other weights
    with pytest.raises(SystemExit, match="weights"):
        tokenize_dataset.main(argv)
    assert len(list(output.glob("shard-*.parquet"))) == 1


def test_flat_layout_and_default_columns(setup, tmp_path):
    model_dir, data = setup
    output = tmp_path / "flat"
    argv = [
        "--dataset",
        str(data),
        "--output",
        str(output),
        "--model",
        str(model_dir),
        "--layout",
        "flat",
        "--n-quantizers",
        "2",
        "--shard-size",
        "100",
    ]
    assert tokenize_dataset.main(argv) == 0
    ds = load_output(output)
    assert set(ds.column_names) == {"idx", "text", "audio_codes", "n_frames"}  # all but the audio by default
    tokenizer = AudioTokenizer(tiny_model(sampling_rate=44100), n_quantizers=2, layout="flat")
    for row in ds:
        assert len(row["audio_codes"]) == 2 * row["n_frames"]
        path = data / (f"speech/s{row['idx']}.wav" if row["idx"] % 2 else f"m{row['idx']}.flac")
        np.testing.assert_array_equal(row["audio_codes"], tokenizer.tokenize(str(path)))


def test_the_command_has_no_test_only_options():
    with pytest.raises(SystemExit):
        tokenize_dataset.parse_args(["--dataset", "d", "--output", "o", "--stop-after-shards", "1"])
