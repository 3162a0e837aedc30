"""The training recipe end to end: Accelerate with 2 gloo processes, SIGKILL then exact resume, overfitting one clip,
non-finite steps skipped; plus the data stream and the config."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ALSA_SPEECH, accelerate_launch, real_audio
from rvqgan.training.checkpoint import checkpoints, save_checkpoint
from rvqgan.training.config import load_config
from rvqgan.training.data import ExcerptStream, Source, loudness, validation_excerpts
from rvqgan.training.discriminators import RvqganDiscriminator
from rvqgan.training.export_default import export
from rvqgan.training.plot_curves import plot
from rvqgan.training.train import Trainer

from benchmarks.quality import _write_csv, summarize

ROOT = Path(__file__).parent.parent
TINY = str(ROOT / "training" / "configs" / "tiny.yaml")


def metrics(output_dir: Path) -> dict[int, dict]:
    """The last logged values of each step."""
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row for row in rows if "loss/mel" in row}


def run_training(*args, processes: int = 1, env=None, wait=True):
    """`accelerate launch` of `rvqgan.training.train` with the tiny config (`conftest.accelerate_launch`)."""
    command = [*accelerate_launch(processes), "-m", "rvqgan.training.train", "--config", TINY, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    if not wait:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def speech_and_music(tmp_path_factory):
    """Two real sources (alsa-utils speech, sonic-pi music), 3 files each."""
    real_audio(ALSA_SPEECH)
    root = tmp_path_factory.mktemp("data")
    for name, files in (
        ("speech", sorted(ALSA_SPEECH.parent.glob("*.wav"))[:3]),
        ("music", sorted((ROOT / "examples" / "audio").glob("*.flac"))[:3]),
    ):
        (root / name).mkdir()
        for f in files:
            (root / name / f.name).symlink_to(f)
    return root


def sources_override(root: Path) -> str:
    return f"data.train=[{{dataset: {root / 'speech'}}}, {{dataset: {root / 'music'}}}]"


@pytest.mark.slow
def test_two_processes_with_gloo(tmp_path, speech_and_music):
    out = tmp_path / "run"
    run_training(
        f"output_dir={out}",
        "num_steps=2",
        "checkpoint_every=2",
        "validate_every=2",
        sources_override(speech_and_music),
        processes=2,
    )
    logged = metrics(out)
    assert sorted(logged) == [1, 2]
    assert all(math.isfinite(v) for row in logged.values() for k, v in row.items() if k.startswith("loss/"))
    (checkpoint,) = checkpoints(out / "checkpoints")
    state = torch.load(checkpoint / "training_state.pt", weights_only=True)
    assert state["step"] == 2 and len(state["processes"]) == 2
    rank0, rank1 = (p["data"] for p in state["processes"])
    assert rank0["buffer"].shape == rank1["buffer"].shape and not torch.equal(rank0["buffer"], rank1["buffer"])
    for folder in ("model", "model/discriminator", "best"):
        assert (out / folder / "model.safetensors").exists()
    assert any((out / "logs").rglob("events.out.tfevents.*"))
    plot(out, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"

    quality = tmp_path / "quality"
    quality.mkdir()
    scores = {
        "mel": 2.5,
        "stft": 4.0,
        "visqol": 3.0,
        "si_sdr": 5.0,
        "waveform": 0.1,
        "visqol_speech": float("nan"),
        "pesq_wb": float("nan"),
        "stoi": float("nan"),
    }
    _write_csv(
        quality / "summary.csv",
        summarize(
            [{"codec": "rvqgan", "kbps": 7.75, "true_kbps": 6.9, "file": "a.wav", "category": "music", **scores}]
        ),
    )
    shipped = export(out, tmp_path / "shipped", Path(TINY), quality=[("unseen", quality), ("held-out", quality)])
    card = (shipped / "README.md").read_text()
    assert "2 steps (0 reconstruction-only, 2 GAN)" in card and "| 2 | " in card  # the validation row of step 2
    assert "at 16000 Hz (hop 32, 4 x 64 codes) at encoder width 8 and decoder width 32" in card
    table = "| rvqgan | 7.75 | 6.9 | 2.5 | 4.0 | 3.0 | 5.0 | – | – | – |"
    assert card.index(f"| unseen {table}") < card.index(f"| held-out {table}")  # in the order given
    assert (shipped / "curves.png").read_bytes()[:4] == b"\x89PNG"
    from rvqgan.modeling import RvqganModel

    best = RvqganModel.from_pretrained(out / "best").state_dict()
    assert all(torch.equal(best[k], v) for k, v in RvqganModel.from_pretrained(shipped).state_dict().items())
    assert not list(shipped.glob("*.py"))  # the package's classes load it
    trained = RvqganDiscriminator.from_pretrained(
        out / "model" / "discriminator"
    ).state_dict()  # the last step's, as checkpoint 2
    assert all(
        torch.equal(trained[k], v)
        for k, v in RvqganDiscriminator.from_pretrained(shipped / "discriminator").state_dict().items()
    )


@pytest.mark.slow
def test_sigkill_then_resume_continues_exactly(tmp_path, speech_and_music):
    steps = ["num_steps=8", "checkpoint_every=2", "data.validation=[]", sources_override(speech_and_music)]
    reference = tmp_path / "reference"
    run_training(f"output_dir={reference}", *steps)

    out = tmp_path / "killed"
    process = run_training(f"output_dir={out}", *steps, wait=False)
    deadline = time.time() + 300
    while not checkpoints(out / "checkpoints") and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    resumed_from = int(checkpoints(out / "checkpoints")[-1].name.split("-")[1])
    assert resumed_from < 8, "the run finished before it could be killed"

    run_training(f"output_dir={out}", *steps, "--resume")
    expected, got = metrics(reference), metrics(out)
    assert sorted(got) == list(range(1, 9))
    for step in range(resumed_from + 1, 9):
        for key in ("loss/mel", "loss/generator", "loss/discriminator", "loss/feature"):
            assert got[step][key] == pytest.approx(expected[step][key], rel=1e-5, abs=1e-6), (step, key)


@pytest.mark.slow
def test_tiny_model_overfits_one_clip(tmp_path):
    """One 0.38 s clip of real speech, so every excerpt is the same (up to the random phase shift): the mel loss of the
    last 5 of 60 steps is at most 0.65 of the first 5's. GAN steps amplify float rounding, so the ratio differs from
    CPU to CPU: measured 0.40 on an AVX-512 machine, 0.44 there with oneDNN capped at AVX2 and with ATen's kernels at
    avx2 as well. The bar leaves 0.2 of margin above them; a model that does not learn stays near 1."""
    speech, rate = real_audio(ALSA_SPEECH)
    start = int(np.flatnonzero(np.abs(speech) > 0.01)[0])
    (tmp_path / "clip").mkdir()
    sf.write(tmp_path / "clip" / "speech.wav", speech[start : start + int(0.38 * rate)], rate)
    config = load_config(
        TINY,
        [
            f"output_dir={tmp_path / 'run'}",
            f"data.train=[{{dataset: {tmp_path / 'clip'}}}]",
            "data.validation=[]",
            "data.shuffle_buffer=0",
            "batch_size=2",
            "learning_rate=3e-3",
        ],
    )
    trainer = Trainer(config)
    batches = iter(trainer.loader)
    mel = [trainer.train_step(next(batches))["loss/mel"] for _ in range(60)]
    assert np.mean(mel[-5:]) <= 0.65 * np.mean(mel[:5]), mel


def test_non_finite_loss_skips_the_update(tmp_path):
    config = load_config(TINY, [f"output_dir={tmp_path}", "data.validation=[]"])
    trainer = Trainer(config)
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    audio = next(iter(trainer.loader))
    audio[0, 0, 100] = float("nan")
    trainer.train_step(audio)
    assert trainer.skipped == {"generator": 1, "discriminator": 1}
    assert all(torch.equal(before[k], v) for k, v in trainer.generator.state_dict().items())
    trainer.train_step(next(iter(trainer.loader)))  # a good batch afterwards updates again
    assert not all(torch.equal(before[k], v) for k, v in trainer.generator.state_dict().items())


# ----- data


def test_stream_is_sharded_balanced_normalised_and_resumable(speech_and_music):
    sources = [Source(str(speech_and_music / "speech")), Source(str(speech_and_music / "music"))]
    ranks = [ExcerptStream(sources, 16000, 0.5, seed=1, rank=r, world_size=2, shuffle_buffer=4) for r in (0, 1)]
    first = [[x for _, x in zip(range(6), stream)] for stream in ranks]
    assert all(x.shape == (1, 8000) and x.dtype == torch.float32 for x in first[0])
    assert not any(torch.equal(a, b) for a in first[0] for b in first[1])  # the ranks see different excerpts
    # loudness -16 LUFS before the phase shift, which keeps the spectrum (and so the loudness) up to rounding
    assert all(abs(loudness(x[0].numpy(), 16000) + 16) < 1.0 for x in first[0] if x.abs().max() < 0.99)

    stream = ExcerptStream(sources, 16000, 0.5, seed=1, shuffle_buffer=4)
    iterator = iter(stream)
    [next(iterator) for _ in range(7)]  # past the end of the first epoch of the smaller source
    state = stream.state_dict()
    expected = [next(iterator) for _ in range(10)]
    resumed = ExcerptStream(sources, 16000, 0.5, seed=1, shuffle_buffer=4)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, iter(resumed)))


def test_stream_skips_silence_and_accepts_decoded_arrays(tmp_path):
    from datasets import Dataset

    rate = 16000
    (tmp_path / "files").mkdir()
    sf.write(tmp_path / "files" / "silence.wav", np.zeros(rate, np.float32), rate)
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(2 * rate) / rate).astype(np.float32)
    sf.write(tmp_path / "files" / "tone.wav", tone, rate)
    stream = ExcerptStream([Source(str(tmp_path / "files"))], rate, 0.25, shuffle_buffer=0)
    excerpts = [x for _, x in zip(range(4), stream)]
    assert all(x.abs().max() > 0.05 for x in excerpts)  # only the tone, never the silent file

    Dataset.from_dict({"sound": [{"array": tone, "sampling_rate": rate}]}).save_to_disk(tmp_path / "decoded")
    stream = ExcerptStream([Source(str(tmp_path / "decoded"), audio_column="sound")], 8000, 0.25, shuffle_buffer=0)
    assert next(iter(stream)).shape == (1, 2000)


def test_validation_set_is_fixed(speech_and_music):
    sources = [Source(str(speech_and_music / "speech")), Source(str(speech_and_music / "music"))]
    first, again = (validation_excerpts(sources, 16000, 1.0, 4, seed=3) for _ in range(2))
    assert len(first) == 4 and all(np.array_equal(a, b) for a, b in zip(first, again))


# ----- config


def test_config_overrides_and_errors(tmp_path):
    config = load_config(TINY, ["batch_size=8", "lambdas.mel=30", "model.n_codebooks=2"])
    assert config.batch_size == 8 and config.lambdas["mel"] == 30 and config.model["n_codebooks"] == 2
    assert config.data.train[0].dataset == "/usr/share/sounds/alsa"
    with pytest.raises(ValueError, match="data.durations"):
        load_config(TINY, ["data.durations=1"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(TINY, ["batch_size"])
    result = subprocess.run(
        [sys.executable, "-m", "rvqgan.training.train", "--config", TINY, "num_step=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "num_step" in result.stderr


def test_keep_checkpoints_must_keep_one(tmp_path):
    with pytest.raises(ValueError, match="keep_checkpoints"):
        load_config(TINY, ["keep_checkpoints=0"])
    module = torch.nn.Linear(1, 1)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"generator": module}, {}, keep=2)
    assert [p.name for p in checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 4, {"generator": module}, {}, keep=0)
    assert len(checkpoints(tmp_path)) == 2


def test_conftest_is_loaded_once():
    assert "tests.conftest" not in sys.modules  # pytest loads it as `conftest`, as every test module imports it


# ----- recipe options and kernels


def test_reconstruction_steps_leave_the_discriminator_alone(tmp_path):
    config = load_config(TINY, [f"output_dir={tmp_path}", "data.validation=[]", "reconstruction_steps=1"])
    trainer = Trainer(config)
    batches = iter(trainer.loader)
    before = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    logs = trainer.train_step(next(batches))
    assert "loss/adversarial" not in logs and "loss/discriminator" not in logs and logs["loss/mel"] > 0
    assert all(torch.equal(before[k], v) for k, v in trainer.discriminator.state_dict().items())
    trainer.step = 1  # past the warm-up: the paper's GAN step
    logs = trainer.train_step(next(batches), log=False)
    assert {"loss/adversarial", "loss/feature", "loss/discriminator"} <= set(logs) and "loss/stft" not in logs
    assert not all(torch.equal(before[k], v) for k, v in trainer.discriminator.state_dict().items())


def test_resume_on_another_validation_set_chooses_best_afresh(tmp_path, speech_and_music):
    args = [f"output_dir={tmp_path}", sources_override(speech_and_music), "data.validation_duration=0.5"]
    trainer = Trainer(load_config(TINY, args + [f"data.validation=[{{dataset: {speech_and_music / 'speech'}}}]"]))
    trainer.best = 1.5
    trainer.save_checkpoint()
    same = Trainer(
        load_config(TINY, args + [f"data.validation=[{{dataset: {speech_and_music / 'speech'}}}]"]), resume=True
    )
    other = Trainer(
        load_config(TINY, args + [f"data.validation=[{{dataset: {speech_and_music / 'music'}}}]"]), resume=True
    )
    assert same.best == 1.5 and other.best == math.inf


def test_selection_recordings_are_held_out_of_training(tmp_path):
    from rvqgan.training.make_default_data import SELECTION, SELECTION_SECONDS, hold_out, recording

    rate = 8000
    for copy in ("a", "b"):
        for category, recordings in (("speech", 9), ("music", 3)):
            (tmp_path / copy / "train" / category).mkdir(parents=True)
            for r in range(recordings):  # r % 3 segments, the second one long enough for selection
                for k, seconds in enumerate([1.0, SELECTION_SECONDS + 0.5, 2.0][: 1 + r % 3]):
                    name = tmp_path / copy / "train" / category / f"src-{category}{r}-{k}.flac"
                    sf.write(name, np.full(int(seconds * rate), 0.1), rate)
    kept, again = (hold_out(tmp_path / copy / "train", tmp_path / copy / "selection") for copy in ("a", "b"))
    assert [p.relative_to(tmp_path / "a") for p in kept] == [p.relative_to(tmp_path / "b") for p in again]
    held = {(p.parent.name, recording(p.stem)) for p in kept}
    left = {(p.parent.name, recording(p.stem)) for p in (tmp_path / "a" / "train").rglob("*.flac")}
    assert len(kept) == len(held) and not held & left  # one segment of each, nothing of them left to train on
    assert all(sf.info(p).duration >= SELECTION_SECONDS and p.stem.endswith("-1") for p in kept)
    eligible = {"speech": 6, "music": 2}  # recordings with a second segment
    assert {c: sum(h[0] == c for h in held) for c in eligible} == {c: min(SELECTION, n) for c, n in eligible.items()}
    assert len(left) == 9 + 3 - len(held)


def test_training_record_scores_only_the_current_validation_clips(tmp_path):
    from rvqgan.modeling import RvqganConfig
    from rvqgan.training.export_default import training_record

    rows = [
        {"step": 250, "val/mel": 3.0},
        {"step": 500, "val/mel": 2.0, "val/clips": "aa"},
        {"step": 750, "val/mel": 1.5, "val/clips": "aa"},
    ]
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({**r, "val/stft": 1, "val/si_sdr": 0}) + "\n" for r in rows)
    )
    record = training_record(tmp_path, Path(TINY), 750, RvqganConfig.from_preset("tiny"))
    assert "| 500 | 2.000 |" in record and "| 750 | 1.500 |" in record and "| 250 |" not in record
    assert "changed its validation clips after step 250" in record
    assert "These weights: step 750 (validation mel 1.500" in record


def test_training_record_of_a_continued_run_counts_on_from_its_starting_weights(tmp_path):
    from rvqgan.modeling import RvqganConfig
    from rvqgan.training.export_default import training_record

    earlier = "- Compute: 10000 steps, 8.8 wall-clock hours, 17.6 CPU-core hours.\n- These weights: step 9500 (...)."
    (tmp_path / "continued_from.md").write_text(earlier + "\n\n![training curves](curves.png)\n")
    (tmp_path / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "val/mel": m, "val/stft": 1, "val/si_sdr": 0}) + "\n"
            for s, m in [(250, 2), (500, 1)]
        )
    )
    record = training_record(tmp_path, Path(TINY), 500, RvqganConfig.from_preset("tiny"))
    assert "These weights: step 10000 (validation mel 1.000" in record and "| 9750 | 2.000 |" in record
    assert "500 more GAN steps from step 9500" in record and "17.6 CPU-core hours in all" in record
    assert record.endswith(earlier + "\n") and record.count("curves.png") == 1
    assert record.startswith("Continued on CPU")


def test_moving_average_is_validated_exported_and_resumed(tmp_path, speech_and_music):
    from rvqgan.modeling import RvqganModel

    args = [
        f"output_dir={tmp_path}",
        sources_override(speech_and_music),
        "data.validation_duration=0.5",
        "ema_decay=0.5",
        "num_steps=2",
        "validate_every=1",
        "checkpoint_every=1",
        "reconstruction_steps=2",
    ]
    trainer = Trainer(load_config(TINY, args))
    weights = [[p.detach().clone() for p in trainer.generator.parameters()]]
    for _ in range(2):  # the loop's steps, one at a time, to see each step's weights
        trainer.config.num_steps = trainer.step + 1
        trainer.train()
        weights.append([p.detach().clone() for p in trainer.generator.parameters()])
    # the average: the weights after step 1, then halfway to those after step 2
    for first, second, averaged in zip(weights[1], weights[2], trainer.ema.module.parameters()):
        torch.testing.assert_close(averaged, (first + second) / 2)
    exported = RvqganModel.from_pretrained(tmp_path / "model").state_dict()
    plain = RvqganModel(trainer.model_config)
    plain.apply_weight_norm()
    plain.load_state_dict(trainer.ema.module.state_dict())
    plain.remove_weight_norm()
    assert all(torch.allclose(exported[k], v) for k, v in plain.state_dict().items())
    resumed = Trainer(load_config(TINY, args), resume=True)
    assert all(torch.equal(a, b) for a, b in zip(resumed.ema.state_dict().values(), trainer.ema.state_dict().values()))
