"""The training recipe across processes: real `accelerate launch` runs over gloo with 2 processes (the learning-rate
schedule, a batch that does not divide, a non-finite step on one rank, fp16's loss scaling, losses and codebook
statistics over ranks, the collective timeout), and what a GPU run relies on without needing processes (the moving
average on the training device, resume with `compile` toggled, validation splits, sharding, batches read ahead, the
fp32 code search).

Run as a script (`accelerate launch tests/test_distributed_training.py SCENARIO OUT_DIR`), this file is the worker of
the launched tests."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import accelerate_launch, tiny_config

ROOT = Path(__file__).parent.parent
TINY = str(ROOT / "training" / "configs" / "tiny.yaml")
QUIET = ["data.validation=[]", "log_every=1", "checkpoint_every=1000"]


def launch(*args, timeout=600) -> subprocess.CompletedProcess:
    """`accelerate launch` with 2 gloo processes of `args` (a module or this file and its arguments)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [*accelerate_launch(2), *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def metrics(output_dir: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row for row in rows if "loss/mel" in row}


# ----- the worker: one Trainer per process, scenarios run in turn, each one's results written by rank 0


def entropy_bits(codes: torch.Tensor, size: int) -> list[float]:
    """Per codebook, the entropy of the histogram of `codes` (B, n_q, T)."""
    counts = [torch.bincount(c.flatten(), minlength=size).double() for c in codes.unbind(1)]
    return [float(-(p * p.log2()).sum()) for p in (c[c > 0] / c.sum() for c in counts)]


def over_ranks(trainer) -> dict:
    """The logged losses and codebook statistics of a step, and the same computed from every rank's items."""
    from accelerate.utils import gather

    acc = trainer.accelerator
    audio = next(iter(trainer.loader))  # each rank its own excerpts
    with torch.no_grad(), torch.random.fork_rng():  # the step's own forward: quantizer dropout draws the same
        out = acc.unwrap_model(trainer.generator)(audio)
    mel = trainer.mel_loss(out.audio_values[:, None], audio)
    logs = trainer.train_step(audio)
    size = trainer.model_config.codebook_size
    return {
        "logged_mel": logs["loss/mel"],
        "local_mel": mel.item(),
        "mean_mel": gather(mel[None]).mean().item(),
        "logged_entropy": [logs[f"codebooks/entropy_bits_{k}"] for k in range(out.audio_codes.shape[1])],
        "local_entropy": entropy_bits(out.audio_codes, size),
        "all_entropy": entropy_bits(gather(out.audio_codes), size),
    }


def one_rank_non_finite(trainer) -> dict:
    """A generator step whose loss is NaN on rank 1 only, its gradients finite everywhere."""
    acc = trainer.accelerator
    audio = next(iter(trainer.loader))
    out = trainer.generator(audio)
    loss = trainer.mel_loss(out.audio_values[:, None], audio) + out.commitment_loss + out.codebook_loss  # all weights
    acc.backward(loss, inputs=list(trainer.generator.parameters()))
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    seen = loss + float("nan") if acc.process_index == 1 else loss
    trainer._step(trainer.opt_g, trainer.sched_g, trainer.generator, trainer.config.clip_generator, seen)
    unchanged = all(torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))
    return {"skipped": trainer.skipped["generator"], "unchanged": unchanged}


def fp16_overflow(trainer) -> dict:
    """Accelerate's fp16 set-up on CUDA (native AMP, a GradScaler wrapped into the optimizers) made on CPU, where
    Accelerate has no fp16 scaler; then a step that overflows (NaN audio on rank 1) and a good one."""
    from accelerate.optimizer import AcceleratedOptimizer

    acc = trainer.accelerator
    acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    acc.native_amp, acc.state._mixed_precision = True, "fp16"
    trainer.opt_g, trainer.opt_d = (
        AcceleratedOptimizer(o.optimizer, device_placement=False, scaler=acc.scaler)
        for o in (trainer.opt_g, trainer.opt_d)
    )
    acc._optimizers = [trainer.opt_g, trainer.opt_d]
    skipped = dict(trainer.skipped)
    batches = iter(trainer.loader)
    audio = next(batches)
    if acc.process_index == 1:
        audio[0, 0, 100] = float("nan")
    try:
        trainer.train_step(audio)
    except RuntimeError as error:
        return {"error": str(error)}
    scale = acc.scaler.get_scale()
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    trainer.train_step(next(batches))
    return {
        "skipped": {k: trainer.skipped[k] - skipped[k] for k in skipped},
        "scale_after_overflow": scale,
        "updated_after": not all(torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters())),
    }


def worker(out: Path):
    from accelerate.utils import gather_object
    from rvqgan.training.config import load_config
    from rvqgan.training.train import Trainer

    trainer = Trainer(load_config(TINY, [f"output_dir={out / 'run'}", *QUIET, "batch_size=4"]))
    for scenario in (over_ranks, one_rank_non_finite, fp16_overflow):
        results = gather_object([scenario(trainer)])
        if trainer.accelerator.is_main_process:
            (out / f"{scenario.__name__}.json").write_text(json.dumps(results))


def timeout_worker(out: Path):
    """Rank 0 waits in a barrier that rank 1 never joins (it waits for rank 0's answer instead)."""
    from rvqgan.training.config import load_config
    from rvqgan.training.train import Trainer

    trainer = Trainer(load_config(TINY, [f"output_dir={out / 'run'}", *QUIET, "collective_timeout_minutes=0.25"]))
    answer = out / "barrier.txt"
    if trainer.accelerator.is_main_process:
        try:
            trainer.accelerator.wait_for_everyone()
            answer.write_text("passed")
        except Exception as error:
            answer.write_text(f"{type(error).__name__}: {error}")
    else:
        for _ in range(600):
            if answer.exists():
                break
            time.sleep(0.5)
    os._exit(0)  # not through the process group's teardown, which would wait for the other rank


# ----- launched tests


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenarios")
    result = launch(__file__, "worker", str(out))
    return out, result.stdout[-3000:] + result.stderr[-3000:]


def scenario(scenarios, name: str) -> list[dict]:
    out, log = scenarios
    path = out / f"{name}.json"
    assert path.exists(), log
    return json.loads(path.read_text())


@pytest.mark.slow
def test_learning_rate_decays_once_per_step_and_any_batch_divides(tmp_path):
    """The lr after 2 steps at gamma 0.5 is a 1-process run's (Accelerate's prepared scheduler stepped once per
    process); a batch of 3 over 2 processes runs (2 + 1 items), and the checkpoint resumes."""
    out = tmp_path / "run"
    args = [
        "-m",
        "rvqgan.training.train",
        "--config",
        TINY,
        f"output_dir={out}",
        *QUIET,
        "lr_gamma=0.5",
        "batch_size=3",
    ]
    result = launch(*args, "num_steps=2", "checkpoint_every=2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    logged = metrics(out)
    assert logged[1]["lr"] == pytest.approx(5e-5) and logged[2]["lr"] == pytest.approx(2.5e-5)
    state = torch.load(out / "checkpoints" / "step-00000002" / "training_state.pt", weights_only=True)
    assert state["sched_g"]["last_epoch"] == 2 and state["sched_d"]["last_epoch"] == 2
    result = launch(*args, "num_steps=3", "--resume")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert metrics(out)[3]["lr"] == pytest.approx(1.25e-5)


@pytest.mark.slow
def test_logged_losses_and_codebook_statistics_cover_every_rank(scenarios):
    ranks = scenario(scenarios, "over_ranks")
    assert ranks[0]["local_mel"] != ranks[1]["local_mel"]  # the ranks saw different audio
    assert ranks[0]["local_entropy"] != ranks[0]["all_entropy"]
    for rank in ranks:
        assert rank["logged_mel"] == pytest.approx(rank["mean_mel"], rel=1e-5)
        assert rank["logged_entropy"] == pytest.approx(rank["all_entropy"], rel=1e-9)


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_skips_the_step_on_both(scenarios):
    assert scenario(scenarios, "one_rank_non_finite") == [{"skipped": 1, "unchanged": True}] * 2


@pytest.mark.slow
def test_fp16_overflow_is_skipped_and_backs_the_scale_off(scenarios):
    """Before: the skipped D step left the scaler un-updated and the G clip raised `unscale_() has already been
    called on this optimizer since the last update()`."""
    for rank in scenario(scenarios, "fp16_overflow"):
        assert "error" not in rank, rank["error"]
        assert rank["skipped"] == {"generator": 1, "discriminator": 1}
        assert rank["scale_after_overflow"] == 2.0**14  # halved once by each skipped optimizer step
        assert rank["updated_after"]


@pytest.mark.slow
def test_collective_timeout_is_the_configured_one(tmp_path):
    launch(__file__, "timeout_worker", str(tmp_path), timeout=300)
    answer = (tmp_path / "barrier.txt").read_text()
    assert answer != "passed" and "timed out" in answer.lower(), answer


# ----- in one process


def test_batch_rule_works_for_any_process_count():
    from rvqgan.training.config import load_config
    from rvqgan.training.train import process_batch_sizes

    batch = load_config("44khz").batch_size
    for processes in (1, 2, 8, 16):
        sizes = process_batch_sizes(batch, processes, 1)
        assert sum(sizes) == batch and max(sizes) - min(sizes) <= 1
    assert process_batch_sizes(72, 16, 1) == [5] * 8 + [4] * 8
    assert process_batch_sizes(72, 16, 2) == [3] * 4 + [2] * 12  # per accumulation step: 36 items
    with pytest.raises(ValueError, match="leaves a process without items"):
        process_batch_sizes(8, 16, 1)
    with pytest.raises(ValueError, match="not divisible by gradient_accumulation_steps"):
        process_batch_sizes(72, 16, 5)
    assert load_config(TINY).collective_timeout_minutes > 10  # NCCL's default is 10


def test_moving_average_lives_on_the_training_device(tmp_path, monkeypatch):
    """Built on `accelerator.device` (here the meta device stands for a GPU) and updated there."""
    from accelerate import Accelerator
    from rvqgan.training.config import load_config
    from rvqgan.training.train import Trainer

    monkeypatch.setattr(Accelerator, "device", property(lambda self: torch.device("meta")))
    trainer = Trainer(load_config(TINY, [f"output_dir={tmp_path}", *QUIET, "ema_decay=0.9"]))
    assert {p.device for p in trainer.ema.parameters()} == {trainer.accelerator.device}
    trainer.ema.update_parameters(trainer.accelerator.unwrap_model(trainer.generator))
    trainer.ema.update_parameters(trainer.accelerator.unwrap_model(trainer.generator))
    assert trainer.ema.n_averaged.item() == 2


def test_resume_with_compile_toggled(tmp_path):
    from rvqgan.training.config import load_config
    from rvqgan.training.train import Trainer

    args = [f"output_dir={tmp_path}", *QUIET]
    for compiled, then in ((False, True), (True, False)):
        trainer = Trainer(load_config(TINY, args + [f"compile={compiled}"]), resume=True)
        trainer.step += 1
        trainer.save_checkpoint()
        resumed = Trainer(load_config(TINY, args + [f"compile={then}"]), resume=True)
        assert resumed.step == trainer.step
        saved = trainer.accelerator.unwrap_model(trainer.generator, keep_torch_compile=False).state_dict()
        loaded = resumed.accelerator.unwrap_model(resumed.generator, keep_torch_compile=False).state_dict()
        assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_validation_split_of_a_local_folder(tmp_path):
    from rvqgan.training.audio_datasets import open_audio_dataset
    from rvqgan.training.data import Source, validation_excerpts

    rate = 16000
    for split, count in (("train", 3), ("validation", 2)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(count):
            tone = 0.1 * np.sin(2 * np.pi * (200 + 100 * i) * np.arange(rate) / rate)
            sf.write(tmp_path / "data" / split / f"{split}-{i}.wav", tone.astype(np.float32), rate)
    files = {
        s: [Path(x["path"]).name for x in open_audio_dataset(str(tmp_path / "data"), split=s)["audio"]]
        for s in ("train", "validation")
    }
    assert files == {
        "train": ["train-0.wav", "train-1.wav", "train-2.wav"],
        "validation": ["validation-0.wav", "validation-1.wav"],
    }
    clips = validation_excerpts([Source(str(tmp_path / "data"), split="validation")], rate, 0.5, 10)
    assert len(clips) == 2
    # a folder without split subfolders is all train, and has no validation split
    (tmp_path / "flat").mkdir()
    sf.write(tmp_path / "flat" / "clip_train-0.wav", np.zeros(rate, np.float32), rate)
    sf.write(tmp_path / "flat" / "clip.wav", np.zeros(rate, np.float32), rate)
    assert len(open_audio_dataset(str(tmp_path / "flat"))) == 2
    with pytest.raises(ValueError, match="no validation/ subfolder"):
        open_audio_dataset(str(tmp_path / "flat"), split="validation")


def test_each_rank_streams_only_its_shards(tmp_path):
    """Two sources of 3 shards (Parquet files) over 2 ranks: every shard is read by one rank only (before, every rank
    read every example and kept one in two)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from rvqgan.training.data import ExcerptStream, Source

    for source in ("a", "b"):
        (tmp_path / source).mkdir()
        for shard in range(3):
            cells = [{"bytes": None, "path": f"{source}{shard}-{i}.wav"} for i in range(2)]
            pq.write_table(pa.table({"audio": cells}), tmp_path / source / f"part-{shard}.parquet")
    sources = [Source("parquet", data_dir=str(tmp_path / s)) for s in ("a", "b")]
    ranks = [ExcerptStream(sources, 16000, 0.1, rank=r, world_size=2) for r in (0, 1)]
    assert sum(stream.stream.num_shards for stream in ranks) == 3
    seen = [{x["audio"]["path"] for _, x in zip(range(12), stream.stream)} for stream in ranks]
    shards = [{path.split("-")[0] for path in paths} for paths in seen]
    assert not shards[0] & shards[1], shards  # no shard read by both
    assert shards[0] | shards[1] == {f"{s}{k}" for s in "ab" for k in range(3)}


def test_batches_read_ahead_resume_exactly():
    """Read ahead by a thread (training on a GPU), batches come in the order read in the step; the state of the last
    batch taken resumes exactly, and so does a new iterator."""
    from rvqgan.training.data import ExcerptStream, Prefetcher, Source

    def stream():
        return ExcerptStream([Source(str(ROOT / "examples" / "audio"))], 16000, 0.1, seed=1, shuffle_buffer=4)

    in_step = iter(Prefetcher(stream(), 3, ahead=0))
    expected = [next(in_step) for _ in range(8)]  # 24 excerpts of 3 files: epochs
    ahead = Prefetcher(stream(), 3, ahead=2)
    batches = iter(ahead)
    taken = [next(batches) for _ in range(4)]
    resumed = stream()
    resumed.load_state_dict(ahead.state_dict())
    taken += [batch for _, batch in zip(range(4), Prefetcher(resumed, 3, ahead=2))]
    assert all(torch.equal(a, b) for a, b in zip(taken, expected))
    again = [batch for _, batch in zip(range(4), ahead)]
    assert all(torch.equal(a, b) for a, b in zip(again, expected[4:]))


def test_resume_at_the_end_of_an_epoch():
    """A state taken after the last file of an epoch resumes into the next epoch (it raised "A whole pass over the
    training data gave no excerpt": the resumed pass had nothing left)."""
    from rvqgan.training.data import ExcerptStream, Source

    def stream():
        return ExcerptStream([Source(str(ROOT / "examples" / "audio"))], 16000, 0.1, seed=1, shuffle_buffer=0)

    uninterrupted = iter(stream())
    expected = [next(uninterrupted) for _ in range(5)]
    first = stream()
    excerpts = iter(first)
    taken = [next(excerpts) for _ in range(3)]  # one excerpt of each of the 3 files: the epoch's last taken
    resumed = stream()
    resumed.load_state_dict(first.state_dict())
    taken += [excerpt for _, excerpt in zip(range(2), resumed)]
    assert all(torch.equal(a, b) for a, b in zip(taken, expected))


def test_code_search_is_fp32_under_autocast():
    from rvqgan.modeling.quantizer_rvqgan import RvqganVectorQuantize

    torch.manual_seed(0)
    quantizer = RvqganVectorQuantize(tiny_config(codebook_size=1024, codebook_dim=8))
    latents = torch.randn(4, 8, 500)
    codes = quantizer.nearest_codes(latents)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(quantizer.nearest_codes(latents), codes)


if __name__ == "__main__":
    {"worker": worker, "timeout_worker": timeout_worker}[sys.argv[1]](Path(sys.argv[2]))
