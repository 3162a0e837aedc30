"""Opening an audio dataset with its audio column undecoded (`Audio(decode=False)`: `{"path", "bytes"}` cells).

`datasets` >= 4 decodes audio only through torchcodec, whose wheels need a CUDA build of torch; the codec's
training and tokenization read the audio themselves with soundfile instead, so they work on CPU-only machines too.
Local audio folders are listed here, with or without torchcodec, so that every machine reads the same files: a split
is the subfolder of its name (`train/`, `validation/`, `test/`); a folder without split subfolders is all `train`.
(`load_dataset` would also take split names from file names: one `..._train-0.flac` among thousands of speech files
would make `train` that one file.)
"""

from pathlib import Path

import datasets
import soundfile as sf
from datasets import Audio


def open_audio_dataset(
    dataset: str,
    data_dir: str | None = None,
    name: str | None = None,
    split: str = "train",
    streaming: bool = False,
    audio_column: str = "audio",
    num_shards: int = 1,
):
    """A `load_dataset` name or path (Hub id, packaged builder such as "audiofolder" with `data_dir`, local folder of
    audio files) or a `save_to_disk` folder, as a `Dataset` (an `IterableDataset` with `streaming`) whose
    `audio_column` is `Audio(decode=False)`. Streamed, a local audio folder or a `save_to_disk` dataset becomes
    `num_shards` shards (where it has as many examples)."""
    path = Path(dataset)
    saved = path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json", "state.json"))
    folder = local_folder(dataset, data_dir)
    if saved:
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    elif folder is not None:
        ds = local_audio_folder(split_folder(folder, split), audio_column)
    else:
        ds = datasets.load_dataset(dataset, name, data_dir=data_dir, split=split, streaming=streaming)
    if streaming and isinstance(ds, datasets.Dataset):
        ds = ds.to_iterable_dataset(num_shards=num_shards if len(ds) >= num_shards else 1)
    if audio_column not in (ds.column_names or [audio_column]):
        raise ValueError(f"No column {audio_column!r} in dataset {dataset} (columns: {ds.column_names})")
    feature = (ds.features or {}).get(audio_column)
    if isinstance(feature, dict) and "array" in feature:  # already decoded: {"array", "sampling_rate"} structs
        return ds
    return ds.cast_column(audio_column, Audio(decode=False))


def local_folder(dataset: str, data_dir: str | None) -> Path | None:
    """The local folder of an "audiofolder" dataset (`data_dir`) or of `dataset` itself, if there is one."""
    if dataset == "audiofolder" and data_dir and Path(data_dir).is_dir():
        return Path(data_dir)
    if data_dir is None and Path(dataset).is_dir():
        return Path(dataset)
    return None


def split_folder(folder: Path, split: str) -> Path:
    """The folder of `split` in a local audio folder: its subfolder of that name, or the folder itself for `train`
    where it has no split subfolders."""
    if (folder / split).is_dir():
        return folder / split
    if split == "train" and not any((folder / name).is_dir() for name in ("validation", "test")):
        return folder
    raise ValueError(f"{folder} has no {split}/ subfolder (a local folder's split is its subfolder of that name)")


def local_audio_folder(folder: Path, audio_column: str = "audio"):
    """A folder of audio files (searched recursively, sorted by relative path) as a `Dataset` with an
    `Audio(decode=False)` column of paths, joined with `metadata.csv` / `metadata.jsonl` columns (`file_name`
    relative to the metadata file's folder), like the "audiofolder" builder (labels from folder names excepted)."""
    import pandas as pd

    extensions = {f".{e.lower()}" for e in sf.available_formats()} | {".mp3", ".opus", ".oga"}
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in extensions
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise ValueError(f"No audio files under {folder}")
    metadata = {}
    for meta in sorted(folder.rglob("metadata.csv")) + sorted(folder.rglob("metadata.jsonl")):
        table = pd.read_csv(meta) if meta.suffix == ".csv" else pd.read_json(meta, lines=True)
        for record in table.to_dict("records"):
            metadata[(meta.parent / record.pop("file_name")).resolve()] = record
    columns = sorted({key for record in metadata.values() for key in record})
    rows = {audio_column: [str(p.resolve()) for p in files]}
    for column in columns:
        rows[column] = [metadata.get(p.resolve(), {}).get(column) for p in files]
    if metadata:  # as audiofolder: with metadata, only the files it lists
        keep = [i for i, p in enumerate(files) if p.resolve() in metadata]
        rows = {k: [v[i] for i in keep] for k, v in rows.items()}
    return datasets.Dataset.from_dict(rows).cast_column(audio_column, Audio(decode=False))
