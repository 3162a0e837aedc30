"""Audio -> codec tokens for language-model pretraining, as a callable for `datasets.Dataset.map(batched=True)`.

>>> tokenizer = AudioTokenizer(model, kbps=6)                       # or n_quantizers=6, or all codebooks
>>> ds = ds.map(tokenizer, batched=True, batch_size=16, remove_columns=["audio"])
>>> ds[0]["audio_codes"], ds[0]["n_frames"]                         # (n_q, T') int16, T' = ceil(len / hop)
>>> audio = tokenizer.detokenize(ds[0]["audio_codes"])             # numpy float32 at the model rate

The audio column may hold decoded audio (`{"array", "sampling_rate"}` dicts as datasets < 4 gives, or torchcodec
decoders as datasets >= 4 gives) or undecoded audio (`Audio(decode=False)`: `{"path", "bytes"}` dicts, decoded with
`audio_io.read_audio`), at any sampling rate and channel count: the feature extractor resamples (soxr) and downmixes to
mono.
Each batch is sorted by length and split into buckets of at most `max_batch_seconds` of padded audio, encoded with
padding masks (so an example's codes do not depend on its batch) and returned in the original order.
"""

import math
import os

import numpy as np
import torch
from rvqgan.modeling.loading_rvqgan import first_line

from .audio_io import AudioFileError, read_audio
from .feature_extraction_rvqgan import AudioError, RvqganFeatureExtractor, check_rate
from .layouts import LAYOUTS, from_layout, to_layout


def load_audio(value) -> tuple[np.ndarray, int]:
    """One audio cell -> (float32 `(T,)` or `(C, T)` array, sampling rate).

    Accepts `{"array", "sampling_rate"}` dicts, torchcodec `AudioDecoder`s (datasets >= 4), `{"path", "bytes"}` dicts
    (`Audio(decode=False)`), a path string or raw file bytes. Audio that cannot be read: AudioError.
    """
    if isinstance(value, (str, os.PathLike)):
        value = {"path": os.fspath(value), "bytes": None}
    elif isinstance(value, (bytes, bytearray)):
        value = {"path": None, "bytes": bytes(value)}
    if hasattr(value, "get_all_samples"):  # torchcodec AudioDecoder (datasets >= 4): keep all channels
        samples = value.get_all_samples()
        return samples.data.numpy().astype(np.float32, copy=False), int(samples.sample_rate)
    if "array" in value and value.get("array") is not None:
        array = value["array"]
        array = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
        return array, check_rate(value.get("sampling_rate"))
    data, path = value.get("bytes"), value.get("path")
    if data is None and path is None:
        raise AudioError(f"Audio cell has neither an array, bytes nor a path: keys {sorted(value)}")
    if data is None and "://" in path:  # remote (hf://, s3://, https://...): through fsspec
        import fsspec

        try:
            with fsspec.open(path, "rb") as f:
                data = f.read()
        except OSError as error:
            raise AudioFileError(f"{path}: unreadable or corrupt audio ({first_line(error)})") from error
    return read_audio(path if data is None else data, name=path)


class AudioTokenizer:
    r"""
    Turns a batch of audio examples into codec tokens; pass it to `datasets.Dataset.map` or
    `datasets.IterableDataset.map` with `batched=True` (and optionally `with_rank=True` to put process `rank` on
    `cuda:rank`).

    Args:
        model (`RvqganModel` or `str`): the codec, or a path / Hub id loaded by `rvqgan.modeling.load_pretrained`
            (weights that do not fit the config are refused). It is put in eval mode.
        n_quantizers (`int`, *optional*): codebooks to keep; all by default.
        kbps (`float`, *optional*): a bitrate instead of `n_quantizers` (the nearest number of codebooks).
        device (`str` or `torch.device`, *optional*): where to run the model; the model's device by default.
            With `with_rank=True` and CUDA available, `cuda:{rank % device_count}` instead.
        audio_column (`str`, defaults to `"audio"`): the column holding the audio.
        layout (`str`, defaults to `"codes"`): token layout of the output (see `rvqgan.feature_extraction.layouts`):
            `"codes"` `(n_q, T')`, `"flat"` `(n_q * T',)` ids `k * codebook_size + code`, or `"delay"`
            `(n_q, T' + n_q - 1)`.
        max_batch_seconds (`float`, *optional*): the most padded audio (seconds at the model rate, summed over the
            items) encoded in one forward pass; longer batches are split into length-sorted buckets. By default 120 s
            on CUDA and 2 s on CPU, where big batches are slower than small ones (large activations; BENCHMARKS.md).
        output_column (`str`, defaults to `"audio_codes"`): name of the token column; `n_frames` (int32, the frame
            count `T'`) is added next to it.
        feature_extractor (`RvqganFeatureExtractor`, *optional*): built from the model config when omitted.

    Output per example: `audio_codes` as an int16 array (int32 when the layout's ids do not fit in int16) and
    `n_frames` = `ceil(samples_at_model_rate / hop_length)`.
    """

    def __init__(
        self,
        model,
        n_quantizers: int | None = None,
        kbps: float | None = None,
        device=None,
        audio_column: str = "audio",
        layout: str = "codes",
        max_batch_seconds: float | None = None,
        output_column: str = "audio_codes",
        feature_extractor: RvqganFeatureExtractor | None = None,
    ):
        if isinstance(model, (str, os.PathLike)):
            from rvqgan.modeling import RvqganModel

            model = RvqganModel.from_pretrained(model)
        if layout not in LAYOUTS:
            raise ValueError(f"Unknown layout {layout!r}; expected one of {LAYOUTS}")
        config = model.config
        n_quantizers = config.resolve_n_quantizers(n_quantizers, kbps)
        if max_batch_seconds is not None and max_batch_seconds <= 0:
            raise ValueError(f"`max_batch_seconds` must be positive, got {max_batch_seconds}")
        self.model = model.eval()
        self.config = config
        self.n_quantizers = n_quantizers
        self.codebook_size = config.codebook_size
        self.hop_length = config.hop_length
        self.sampling_rate = config.sampling_rate
        self.audio_column = audio_column
        self.output_column = output_column
        self.layout = layout
        self.max_batch_seconds = None if max_batch_seconds is None else float(max_batch_seconds)
        self.feature_extractor = feature_extractor or RvqganFeatureExtractor(
            sampling_rate=config.sampling_rate, hop_length=config.hop_length
        )
        max_id = n_quantizers * config.codebook_size if layout == "flat" else config.codebook_size
        self.dtype = np.int16 if max_id <= np.iinfo(np.int16).max else np.int32
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self._placed = None

    # -- helpers -------------------------------------------------------------------------------------------------

    def _device_for(self, rank) -> torch.device:
        if rank is not None and torch.cuda.is_available():
            return torch.device(f"cuda:{int(rank) % torch.cuda.device_count()}")
        return self.device

    def _place(self, device: torch.device):
        if self._placed != device:
            self.model.to(device)
            self._placed = device

    def to_model_rate(self, audio, sampling_rate: int) -> np.ndarray:
        """One item `(T,)` / `(C, T)` at `sampling_rate` -> mono float32 `(T',)` at the model rate (feature extractor:
        downmix, then soxr resampling)."""
        features = self.feature_extractor(audio, sampling_rate=sampling_rate, channels="downmix")
        length = int(features["padding_mask"][0].sum())
        return features["input_values"][0, 0, :length]

    def batch_seconds(self, device) -> float:
        """The bucket budget on `device`: `max_batch_seconds`, or 120 s on CUDA and 2 s elsewhere."""
        if self.max_batch_seconds is not None:
            return self.max_batch_seconds
        return 120.0 if torch.device(device).type == "cuda" else 2.0

    def _buckets(self, lengths: list[int], seconds: float) -> list[list[int]]:
        """Indices sorted by decreasing length, cut so that items * longest (padded to the hop) <= the budget."""
        budget = seconds * self.sampling_rate
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        buckets, current = [], []
        for i in order:
            longest = lengths[current[0]] if current else lengths[i]
            padded = -(-longest // self.hop_length) * self.hop_length
            if current and padded * (len(current) + 1) > budget:
                buckets.append(current)
                current = []
            current.append(i)
        if current:
            buckets.append(current)
        return buckets

    def encode_items(self, items: list[np.ndarray], device=None) -> list[np.ndarray]:
        """Mono float32 items at the model rate -> one `(n_q, ceil(len / hop))` int64 code array each (in order)."""
        device = self.device if device is None else torch.device(device)
        self._place(device)
        out = [None] * len(items)
        lengths = [len(item) for item in items]
        with torch.inference_mode():
            for bucket in self._buckets(lengths, self.batch_seconds(device)):
                batch = self.feature_extractor(
                    [items[i] for i in bucket], sampling_rate=self.sampling_rate, return_tensors="pt"
                )
                codes = (
                    self.model.encode(
                        batch["input_values"].to(device),
                        padding_mask=batch["padding_mask"].to(device),
                        n_quantizers=self.n_quantizers,
                    )
                    .audio_codes.cpu()
                    .numpy()
                )
                for row, i in enumerate(bucket):
                    out[i] = codes[row, :, : math.ceil(lengths[i] / self.hop_length)]
        return out

    def tokenize(self, audio, sampling_rate: int | None = None) -> np.ndarray:
        """One item (array at `sampling_rate`, or any audio cell `load_audio` accepts) -> tokens in `self.layout`."""
        if sampling_rate is None:
            if isinstance(audio, (np.ndarray, torch.Tensor, list)):
                raise ValueError("Pass the `sampling_rate` of an audio array")
            audio, sampling_rate = load_audio(audio)
        codes = self.encode_items([self.to_model_rate(audio, sampling_rate)])[0]
        return to_layout(codes, self.layout, self.codebook_size).astype(self.dtype)

    # -- datasets.map entry point ------------------------------------------------------------------------------

    def __call__(self, batch: dict, rank: int | None = None) -> dict:
        """`batch`: a dict of columns (a `batched=True` map) or one example. Returns `{output_column, "n_frames"}`."""
        cells = batch[self.audio_column]
        single = not isinstance(cells, (list, tuple))
        cells = [cells] if single else cells
        items = [self.to_model_rate(*load_audio(cell)) for cell in cells]
        codes = self.encode_items(items, device=self._device_for(rank))
        tokens = [to_layout(c, self.layout, self.codebook_size).astype(self.dtype) for c in codes]
        frames = [np.int32(c.shape[-1]) for c in codes]
        if single:
            return {self.output_column: tokens[0], "n_frames": frames[0]}
        return {self.output_column: tokens, "n_frames": frames}

    # -- back to audio ----------------------------------------------------------------------------------------

    def detokenize(self, tokens, layout: str | None = None, n_samples=None):
        """
        Tokens (in `layout`, `self.layout` by default) -> float32 numpy audio at the model rate, `n_frames * hop`
        samples long (or `n_samples` when given). A list of token arrays gives a list of arrays, decoded as one padded
        batch (each as if alone).
        """
        layout = self.layout if layout is None else layout
        item_ndim = 1 if layout == "flat" else 2
        batched = isinstance(tokens, (list, tuple)) and len(tokens) > 0 and np.ndim(tokens[0]) >= item_ndim
        items = list(tokens) if batched else [tokens]
        lengths = list(n_samples) if batched and n_samples is not None else [n_samples] * len(items)
        codes = []
        for item in items:
            array = item.detach().cpu().numpy() if hasattr(item, "detach") else np.asarray(item)
            n_q = self.n_quantizers if layout == "flat" else array.shape[0]
            codes.append(from_layout(array.astype(np.int64), layout, n_q, self.codebook_size))
        n_q = codes[0].shape[0]
        if any(c.shape[0] != n_q for c in codes):
            raise ValueError("All items of a batch must have the same number of codebooks")
        frames = [c.shape[1] for c in codes]
        longest = max(frames)
        padded = np.zeros((len(codes), n_q, longest), dtype=np.int64)
        mask = np.zeros((len(codes), longest * self.hop_length), dtype=np.int64)
        for i, c in enumerate(codes):
            padded[i, :, : frames[i]] = c
            mask[i, : frames[i] * self.hop_length] = 1
        device = self._placed or self.device
        self._place(device)
        with torch.inference_mode():
            audio = (
                self.model.decode(
                    audio_codes=torch.from_numpy(padded).to(device), padding_mask=torch.from_numpy(mask).to(device)
                )
                .audio_values.float()
                .cpu()
                .numpy()
            )
        out = []
        for i, length in enumerate(lengths):
            length = frames[i] * self.hop_length if length is None else int(length)
            out.append(np.ascontiguousarray(audio[i, :length]))
        return out if batched else out[0]


__all__ = ["AudioTokenizer", "load_audio"]
