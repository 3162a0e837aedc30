"""Tokenize an audio dataset into codec codes for language-model pretraining, as resumable Parquet shards.

    accelerate launch -m rvqgan.training.tokenize_dataset --dataset audiofolder --data-dir clips/ --output codes/ \
        --model DIR [--kbps 6 | --n-quantizers 6] [--layout codes|flat|delay] [--streaming] \
        [--batch-size 16] [--shard-size 1000] [--keep-columns text speaker_id]

`--dataset` is a `datasets.load_dataset` name or path (a Hub id, a packaged builder such as "audiofolder" with
`--data-dir`, a local folder of audio files) or a folder written by `save_to_disk`. The audio column is cast to
`Audio(decode=False)` and decoded here with soundfile (no torchcodec needed), at any rate and channel count.

Sharding: process `rank` of `world` takes a fixed part of the data (map-style: the `rank`-th contiguous block,
`Dataset.shard(contiguous=True)`; `--streaming`: `split_dataset_by_node`) and writes it in order as
`shard-{rank:05d}-{index:05d}.parquet`, shard `index` holding its examples `[index * S, (index + 1) * S)`. Each shard
is written to a hidden temporary file and renamed when complete, so a shard file is always whole. On restart with the
same settings and model weights (checked against `.rvqgan_tokenize.json`), existing shards are skipped, so no example
is written twice or dropped and all codes come from one model; changing `--shard-size` or the number of processes
needs a fresh `--output`.

Each row holds `audio_codes` (int16, `(n_q, T')` for the "codes" layout, see `rvqgan.feature_extraction.layouts`),
`n_frames` (`T' = ceil(samples_at_model_rate / hop)`) and the kept columns (all non-audio columns by default;
`audio_path` keeps the audio file's path). Load it back with `load_dataset("parquet", data_dir=OUTPUT)`.
"""

import argparse
import glob
import itertools
import json
import math
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

MANIFEST = ".rvqgan_tokenize.json"
# settings that fix which example goes to which shard, or what a shard holds: a restart must match them
RESUME_KEYS = (
    "dataset",
    "data_dir",
    "name",
    "split",
    "streaming",
    "num_processes",
    "shard_size",
    "n_quantizers",
    "layout",
    "audio_column",
    "keep_columns",
    "model",
    "weights",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="load_dataset name/path, or a save_to_disk folder")
    parser.add_argument("--data-dir", default=None, help="data_dir for load_dataset (e.g. with audiofolder)")
    parser.add_argument("--name", default=None, help="dataset configuration name")
    parser.add_argument("--split", default="train")
    parser.add_argument("--streaming", action="store_true", help="stream the dataset (IterableDataset)")
    parser.add_argument("--output", required=True, help="output folder for the Parquet shards")
    parser.add_argument("--model", default=None, help="RvqganModel folder or Hub id (default: the default model)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--kbps", type=float, default=None, help="bitrate: the nearest number of codebooks")
    rate.add_argument("--n-quantizers", type=int, default=None, help="codebooks to keep (default: all)")
    parser.add_argument("--layout", default="codes", choices=["codes", "flat", "delay"])
    parser.add_argument("--audio-column", default="audio")
    parser.add_argument(
        "--keep-columns",
        nargs="*",
        default=None,
        help="columns to copy to the output (default: all but the audio); 'audio_path' keeps the path",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="examples per tokenizer call")
    parser.add_argument(
        "--max-batch-seconds",
        type=float,
        default=None,
        help="padded audio per forward pass (default: 120 on CUDA, 2 on CPU)",
    )
    parser.add_argument("--shard-size", type=int, default=1000, help="examples per Parquet shard")
    parser.add_argument(
        "--timeout-minutes",
        type=float,
        default=24 * 60,
        help="how long processes wait for each other (the main process downloads the dataset alone; processes "
        "finish their shards at different times)",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.shard_size < 1 or not args.timeout_minutes > 0:
        parser.error("--batch-size, --shard-size and --timeout-minutes must be positive")
    return args


def load(args):
    from accelerate import PartialState
    from rvqgan.training.audio_datasets import open_audio_dataset

    try:
        return open_audio_dataset(
            args.dataset,
            args.data_dir,
            args.name,
            args.split,
            args.streaming,
            args.audio_column,
            num_shards=PartialState().num_processes,
        )
    except ValueError as error:
        raise SystemExit(str(error)) from error


def shard_path(output: Path, rank: int, index: int) -> Path:
    return output / f"shard-{rank:05d}-{index:05d}.parquet"


def output_features(ds, args, keep, tokenizer):
    """datasets.Features of the written rows (kept columns typed as in the source when it says)."""
    from datasets import Features, List, Value

    value = Value("int16" if tokenizer.dtype.__name__ == "int16" else "int32")
    codes = List(value) if args.layout == "flat" else List(List(value))
    source = ds.features or {}
    fields = {}
    for column in keep:
        if column == "audio_path":
            fields[column] = Value("string")
        elif column in source:
            fields[column] = source[column]
        else:
            return None  # unknown source types: let Arrow infer
    return Features({**fields, "audio_codes": codes, "n_frames": Value("int32")})


def write_shard(rows: dict, features, path: Path):
    """Write rows to a hidden temporary file next to `path`, then rename it (atomic on POSIX)."""
    from datasets import Dataset

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    Dataset.from_dict(rows, features=features).to_parquet(str(tmp))
    os.replace(tmp, path)


def tokenize_examples(examples, tokenizer, args, keep):
    """Tokenize an iterable of raw examples in batches of --batch-size; returns (rows, n_examples, n_frames)."""
    rows = {column: [] for column in [*keep, "audio_codes", "n_frames"]}
    total_frames, count = 0, 0
    iterator = iter(examples)
    while batch := list(itertools.islice(iterator, args.batch_size)):
        cells = [example[args.audio_column] for example in batch]
        out = tokenizer({tokenizer.audio_column: cells})  # on tokenizer.device
        for column in keep:
            rows[column].extend(
                (cell.get("path") if isinstance(cell, dict) else None) if column == "audio_path" else example[column]
                for example, cell in zip(batch, cells)
            )
        rows["audio_codes"].extend(out["audio_codes"])
        rows["n_frames"].extend(int(n) for n in out["n_frames"])
        total_frames += sum(int(n) for n in out["n_frames"])
        count += len(batch)
    return rows, count, total_frames


def main(argv=None):
    args = parse_args(argv)
    import datasets
    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object
    from datasets.distributed import split_dataset_by_node
    from rvqgan.feature_extraction.tokenizer import AudioTokenizer
    from tqdm.auto import tqdm

    from rvqgan.models import load_model, weights_digest

    # without CUDA, cpu=True makes a torchrun-style launch (`accelerate launch --multi_gpu`) a gloo process group
    state = PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(minutes=args.timeout_minutes))
    rank, world = state.process_index, state.num_processes
    if not state.is_main_process:
        datasets.disable_progress_bars()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)

    model, _ = load_model(args.model)  # the default model without --model
    tokenizer = AudioTokenizer(
        model,
        n_quantizers=args.n_quantizers,
        kbps=args.kbps,
        device=state.device,
        audio_column=args.audio_column,
        layout=args.layout,
        max_batch_seconds=args.max_batch_seconds,
    )

    with state.main_process_first():
        ds = load(args)
    columns = ds.column_names or []
    keep = [c for c in columns if c != args.audio_column] if args.keep_columns is None else list(args.keep_columns)
    missing = [c for c in keep if c != "audio_path" and columns and c not in columns]
    if missing:
        raise SystemExit(f"--keep-columns: no column {missing} in the dataset (columns: {columns})")

    settings = {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "name": args.name,
        "split": args.split,
        "streaming": args.streaming,
        "num_processes": world,
        "shard_size": args.shard_size,
        "n_quantizers": tokenizer.n_quantizers,
        "layout": args.layout,
        "audio_column": args.audio_column,
        "keep_columns": keep,
        "model": args.model,
        "weights": weights_digest(model),
        "codebook_size": tokenizer.codebook_size,
        "sampling_rate": tokenizer.sampling_rate,
        "hop_length": tokenizer.hop_length,
        "pad_id": tokenizer.codebook_size if args.layout == "delay" else None,
    }
    manifest = output / MANIFEST
    if manifest.exists():
        previous = json.loads(manifest.read_text())
        changed = {k: (previous.get(k), settings[k]) for k in RESUME_KEYS if previous.get(k) != settings[k]}
        if changed:
            raise SystemExit(
                f"{output} holds shards made with other settings {changed} (old, new): "
                "resume with the same settings or use a fresh --output"
            )
    state.wait_for_everyone()
    if state.is_main_process and not manifest.exists():
        tmp = manifest.with_name(manifest.name + ".tmp")
        tmp.write_text(json.dumps(settings, indent=2))
        os.replace(tmp, manifest)
    for stale in glob.glob(str(output / f".shard-{rank:05d}-*.tmp*")):  # a previous run died while writing
        os.remove(stale)

    features = output_features(ds, args, keep, tokenizer)
    size = args.shard_size
    written = skipped = examples_done = frames_done = 0
    start = time.perf_counter()
    if args.streaming:
        local = split_dataset_by_node(ds, rank=rank, world_size=world)
        done = 0  # finished shards form a prefix when the run was interrupted
        while shard_path(output, rank, done).exists():
            done += 1
        skipped = done
        stream = iter(local.skip(done * size) if done else local)
        indices, total = itertools.count(done), None
    else:
        local = ds.shard(num_shards=world, index=rank, contiguous=True)
        total = len(local)
        indices = range(math.ceil(total / size))
    bar = tqdm(total=total, unit="ex", desc=f"tokenize ({world} proc)", disable=not state.is_main_process)
    for index in indices:
        path = shard_path(output, rank, index)
        if args.streaming:
            examples = itertools.islice(stream, size)  # lazily: raw audio bytes are not all held in memory
            if path.exists():  # only after a manual deletion of an earlier shard: keep it, it holds these examples
                if not sum(1 for _ in examples):
                    break
                skipped += 1
                continue
        else:
            if path.exists():
                skipped += 1
                bar.update(min(size, total - index * size))
                continue
            examples = local.select(range(index * size, min((index + 1) * size, total)))
        rows, count, frames = tokenize_examples(examples, tokenizer, args, keep)
        if count == 0:  # the stream ended on a shard boundary
            break
        write_shard(rows, features, path)
        written += 1
        examples_done += count
        frames_done += frames
        bar.update(count)
        bar.set_postfix(hours=f"{frames_done * tokenizer.hop_length / tokenizer.sampling_rate / 3600:.3f}")
    bar.close()
    elapsed = time.perf_counter() - start

    stats = gather_object(
        [
            {
                "rank": rank,
                "written": written,
                "skipped": skipped,
                "examples": examples_done,
                "frames": frames_done,
                "seconds": elapsed,
            }
        ]
    )
    state.wait_for_everyone()
    if state.is_main_process:
        import pyarrow.parquet as pq

        examples = sum(s["examples"] for s in stats)
        frames = sum(s["frames"] for s in stats)
        tokens = frames * tokenizer.n_quantizers
        hours = frames * tokenizer.hop_length / tokenizer.sampling_rate / 3600
        wall = max(s["seconds"] for s in stats) or float("nan")
        shards = sorted(output.glob("shard-*.parquet"))
        rows_on_disk = sum(pq.read_metadata(p).num_rows for p in shards)
        summary = {
            "shards_written": sum(s["written"] for s in stats),
            "shards_skipped": sum(s["skipped"] for s in stats),
            "examples": examples,
            "audio_hours": hours,
            "tokens": tokens,
            "seconds": wall,
            "tokens_per_second": tokens / wall,
            "audio_seconds_per_second": hours * 3600 / wall,
            "output_shards": len(shards),
            "output_rows": rows_on_disk,
        }
        print(
            f"Tokenized {examples} examples ({hours:.3f} h of audio, {tokens} tokens = {frames} frames x "
            f"{tokenizer.n_quantizers} codebooks) in {wall:.1f} s with {world} process(es): "
            f"{tokens / wall:,.0f} tokens/s, {hours * 3600 / wall:.1f} s of audio/s; "
            f"{summary['shards_written']} shards written, {summary['shards_skipped']} already done; "
            f"{output} holds {len(shards)} shards, {rows_on_disk} rows"
        )
        print("SUMMARY " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
