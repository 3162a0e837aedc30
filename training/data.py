"""Training audio: random excerpts streamed from any number of `datasets` sources, as DAC's recipe prepares them.

Each source is opened with `Audio(decode=False)` (see `rvqgan.training.audio_datasets`) and streamed; sources are mixed
with `interleave_datasets` at the given probabilities (equal by default, as DAC samples its groups) and split across
processes with `split_dataset_by_node`, by shards; a buffer of excerpts shuffles the order. From each file one random
excerpt is read by seeking (soundfile reads only those samples), made mono, resampled to the model rate (soxr),
normalised to -16 LUFS (BS.1770, the excerpt zero-padded to 0.5 s for the measurement as audiotools does, floored at
-70), scaled down to a peak of at most 1 and given a random constant phase shift. Near-silent excerpts (below -40 LUFS)
are redrawn up to 8 times, then the file is skipped. The stream is endless (epochs) and resumable: `state_dict()` holds
the dataset position and the excerpt RNG. `Prefetcher` batches it, read ahead in a thread (each batch with the state
after it, so that resuming stays exact) or in the step.
"""

import queue
import threading
from dataclasses import dataclass

import numpy as np
import scipy.signal
import torch
from datasets import interleave_datasets
from datasets.distributed import split_dataset_by_node
from rvqgan.feature_extraction.audio import apply_gain, integrated_loudness, mono_at, normalization_gain_db
from rvqgan.feature_extraction.audio_io import excerpt, read_excerpt
from rvqgan.feature_extraction.tokenizer import load_audio

from .audio_datasets import open_audio_dataset

LOUDNESS_FLOOR = -70.0


@dataclass
class Source:
    """One dataset to draw from: `load_dataset` arguments, its audio column and its sampling probability weight."""

    dataset: str
    data_dir: str | None = None
    name: str | None = None
    split: str = "train"
    audio_column: str = "audio"
    weight: float = 1.0


def open_sources(sources: list[Source], streaming: bool = True, num_shards: int = 1) -> list:
    """Each source as a one-column (`"audio"`, undecoded) dataset."""
    opened = []
    for source in sources:
        ds = open_audio_dataset(
            source.dataset,
            source.data_dir,
            source.name,
            source.split,
            streaming,
            source.audio_column,
            num_shards=num_shards,
        )
        ds = ds.select_columns([source.audio_column])
        opened.append(ds.rename_column(source.audio_column, "audio") if source.audio_column != "audio" else ds)
    return opened


def loudness(audio: np.ndarray, rate: int) -> float:
    """Integrated loudness (LUFS) of `(T,)` audio, zero-padded to 0.5 s, floored at -70."""
    padded = np.pad(audio, (0, max(0, int(0.5 * rate) - audio.shape[-1]))).astype(np.float64)
    return max(integrated_loudness(padded, rate), LOUDNESS_FLOOR)


def model_rate_excerpt(cell, sampling_rate: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random excerpt of one audio cell as mono `(n_samples,)` at `sampling_rate`: `n_samples` at the model rate
    read at the file's rate (by seeking in files; decoded arrays, `{"array", "sampling_rate"}`, are sliced), then
    resampled and cut or zero-padded."""
    seconds = n_samples / sampling_rate
    if isinstance(cell, dict) and cell.get("array") is None and (cell.get("bytes") is not None or cell.get("path")):
        audio, rate = read_excerpt(cell["bytes"] if cell.get("bytes") is not None else cell["path"], seconds, rng)
    else:
        audio, rate = load_audio(cell)
        audio = excerpt(np.atleast_2d(audio).astype(np.float32), rate, seconds, rng)
    audio = mono_at(audio, rate, sampling_rate)
    return np.pad(audio, (0, max(0, n_samples - audio.shape[-1])))[:n_samples]


class ExcerptStream(torch.utils.data.IterableDataset):
    """Endless stream of `(1, n_samples)` float32 excerpts for process `rank` of `world_size`.

    Args:
        sources: the datasets to mix.
        sampling_rate: the model rate.
        duration: excerpt length in seconds (0.38 in the paper's recipe).
        seed: fixes the mixing and the excerpts (the same on every process; excerpts also depend on rank).
        shuffle_buffer: excerpts held back and yielded in random order, so that a batch mixes files that are far
            apart in the stream; part of the state, so resuming is exact (datasets' own shuffle buffer is not).
    """

    def __init__(
        self,
        sources: list[Source],
        sampling_rate: int,
        duration: float,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        loudness_db: float = -16.0,
        loudness_cutoff_db: float = -40.0,
        shuffle_buffer: int = 64,
        tries: int = 8,
    ):
        opened = open_sources(sources, num_shards=world_size)
        weights = np.array([s.weight for s in sources], dtype=np.float64)
        mixed = (
            opened[0]
            if len(opened) == 1
            else interleave_datasets(
                opened, probabilities=(weights / weights.sum()).tolist(), seed=seed, stopping_strategy="all_exhausted"
            )
        )
        # each process reads its own shards (of every source), some one more where they do not divide; only a
        # source with fewer shards than processes makes each process read it all and keep one example in world_size
        strategy = "shards" if mixed.num_shards >= world_size else "examples"
        self.stream = split_dataset_by_node(mixed, rank=rank, world_size=world_size, strategy=strategy)
        self.rng = np.random.default_rng([seed, rank])
        self.buffer: list[np.ndarray] = []
        self.sampling_rate, self.n_samples = sampling_rate, int(duration * sampling_rate)
        self.loudness_db, self.loudness_cutoff_db = loudness_db, loudness_cutoff_db
        self.shuffle_buffer, self.tries = shuffle_buffer, tries
        self.loaded = False  # from `load_state_dict`: the first pass may start at the end of its epoch

    def __iter__(self):
        excerpts = self._excerpts()
        while True:
            while len(self.buffer) <= self.shuffle_buffer:
                self.buffer.append(next(excerpts))
            yield torch.from_numpy(self.buffer.pop(int(self.rng.integers(len(self.buffer)))))[None]

    def _excerpts(self):
        """New excerpts in stream order, epoch after epoch."""
        whole = not self.loaded
        while True:
            produced = False
            for example in self.stream:
                excerpt = self.excerpt(example["audio"])
                if excerpt is not None:
                    produced = True
                    yield excerpt
            if whole and not produced:
                raise RuntimeError("A whole pass over the training data gave no excerpt above the loudness cutoff")
            whole = True
            self.stream.set_epoch(self.stream.epoch + 1)

    def excerpt(self, cell) -> np.ndarray | None:
        """`(n_samples,)` float32: a salient, normalised, phase-shifted excerpt, or None if the file seems silent."""
        for _ in range(self.tries):
            audio = model_rate_excerpt(cell, self.sampling_rate, self.n_samples, self.rng)
            level = loudness(audio, self.sampling_rate)
            if level > self.loudness_cutoff_db:
                break
        else:
            return None
        audio = with_loudness(audio, level, self.loudness_db)
        phase = self.rng.uniform(-np.pi, np.pi)
        return np.real(scipy.signal.hilbert(audio) * np.exp(1j * phase)).astype(np.float32)

    def state_dict(self) -> dict:
        buffer = np.stack(self.buffer) if self.buffer else np.zeros((0, self.n_samples), np.float32)
        return {
            "stream": self.stream.state_dict(),
            "rng": self.rng.bit_generator.state,
            "buffer": torch.from_numpy(buffer),
        }

    def load_state_dict(self, state: dict):
        self.stream.load_state_dict(state["stream"])
        self.stream.set_epoch(state["stream"]["epoch"])
        self.rng.bit_generator.state = state["rng"]
        self.buffer = list(state["buffer"].numpy())
        self.loaded = True


def validation_excerpts(
    sources: list[Source],
    sampling_rate: int,
    duration: float,
    count: int,
    seed: int = 0,
    loudness_db: float = -16.0,
    loudness_cutoff_db: float = -40.0,
) -> list[np.ndarray]:
    """A fixed validation set: up to `count` `(T,)` float32 excerpts, one per file, taking the sources in turn,
    at the model rate, mono, normalised as for training; the same on every call with the same arguments."""
    rng = np.random.default_rng(seed)
    n_samples = int(duration * sampling_rate)
    iterators = [iter(ds) for ds in open_sources(sources, streaming=True)]
    excerpts = []
    while iterators and len(excerpts) < count:
        for it in list(iterators):
            example = next(it, None)
            if example is None:
                iterators.remove(it)
                continue
            audio = model_rate_excerpt(example["audio"], sampling_rate, n_samples, rng)
            level = loudness(audio, sampling_rate)
            if level > loudness_cutoff_db and len(excerpts) < count:
                excerpts.append(with_loudness(audio, level, loudness_db).astype(np.float32))
    return excerpts


def with_loudness(audio: np.ndarray, level: float, target_db: float) -> np.ndarray:
    """`audio` measured at `level` LUFS brought to `target_db`, lowered so that its peak stays at most 1 (float32)."""
    return apply_gain(audio, normalization_gain_db(level, float(np.abs(audio).max()), target_db))


class Prefetcher:
    """Batches `(size, 1, n_samples)` of `stream`, read `ahead` batches in advance by a thread (decoding, mostly
    outside the GIL, overlaps the device's work; the stream is the same object, so its order is the same), or in the
    caller's thread with `ahead=0`. A new iterator continues after the last batch taken; `state_dict()` is the stream's
    state there."""

    def __init__(self, stream: ExcerptStream, size: int, ahead: int):
        self.stream, self.size, self.ahead = stream, size, ahead
        self.state, self.stop, self.thread = None, threading.Event(), None

    def __iter__(self):
        if not self.ahead:
            excerpts = iter(self.stream)
            while True:
                yield torch.stack([next(excerpts) for _ in range(self.size)])
        if self.thread is not None:  # the previous iterator's reader, stopped before the stream is rewound
            self.stop.set()
            self.thread.join()
        if self.state is not None:
            self.stream.load_state_dict(self.state)
        self.stop, batches = threading.Event(), queue.Queue(self.ahead)
        self.thread = threading.Thread(target=self._read, args=(batches, self.stop), daemon=True)
        self.thread.start()
        while True:
            item = batches.get()
            if isinstance(item, Exception):
                raise item
            batch, self.state = item
            yield batch

    def _read(self, batches: queue.Queue, stop: threading.Event):
        try:
            excerpts = iter(self.stream)
            while not stop.is_set():
                batch = torch.stack([next(excerpts) for _ in range(self.size)])
                batch = batch.pin_memory() if torch.cuda.is_available() else batch  # for a copy that does not wait
                put(batches, (batch, self.stream.state_dict()), stop)
        except Exception as error:  # raised where the batch is taken
            put(batches, error, stop)

    def state_dict(self) -> dict:
        return self.state if self.state is not None else self.stream.state_dict()


def put(into: queue.Queue, item, stop: threading.Event):
    """`item` into `into` once there is room, unless `stop` is set first."""
    while not stop.is_set():
        try:
            return into.put(item, timeout=0.1)
        except queue.Full:
            pass
