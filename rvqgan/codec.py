"""Audio <-> `.rvq` bytes: loudness normalisation, resampling, chunk-invariant coding and the container, streamed
block by block so that memory does not grow with the length of the audio."""

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from rvqgan.feature_extraction import AudioError, check_rate, validate_audio
from rvqgan.feature_extraction.audio import LoudnessMeter, apply_gain, resample_stream
from rvqgan.modeling import RvqganModel

from .chunking import encode_stream, iter_decode
from .container import MAX_SAMPLE_RATE, RvqFormatError, RvqHeader, check_span, read, write
from .models import model_identity


def compress_blocks(
    model: RvqganModel,
    blocks: Callable[[], Iterable[np.ndarray]],
    sampling_rate: int,
    channels: int,
    seconds: float,
    n_quantizers: int | None = None,
    kbps: float | None = None,
    entropy: bool = True,
    normalize: bool = True,
    identity: str | None = None,
    progress: bool = False,
) -> bytes:
    """Compress audio read as float32 `(channels, n)` blocks from `blocks()` (called twice when `normalize`: once
    to measure, once to encode) into `.rvq` bytes, holding a few blocks at a time. `seconds`: the duration, for the
    progress bar. Otherwise as `compress`."""
    config = model.config
    n_quantizers = config.resolve_n_quantizers(n_quantizers, kbps)
    if check_rate(sampling_rate) > MAX_SAMPLE_RATE:
        raise AudioError(f"a sampling rate of {sampling_rate} Hz is above the {MAX_SAMPLE_RATE} Hz of .rvq files")
    gain_db = 0.0
    if normalize:  # measured at the model rate, where DAC measures it
        meter = LoudnessMeter(config.sampling_rate, channels)
        for block in resample_stream(blocks(), sampling_rate, config.sampling_rate, channels):
            meter.add(block)
        gain_db = meter.gain_db()
    device = next(model.parameters()).device
    length = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal length
        for block in blocks():
            length += block.shape[-1]
            yield block

    gained = (apply_gain(b, gain_db) for b in resample_stream(counted(), sampling_rate, config.sampling_rate, channels))
    windows = encode_stream(model, (torch.from_numpy(b)[:, None].to(device) for b in gained), n_quantizers)
    chunks = []
    with tqdm(
        total=seconds,
        unit="s",
        disable=not progress,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]",
    ) as bar:
        for window in windows:
            chunks.append(window.cpu())
            bar.update(window.shape[-1] / config.frame_rate)
    codes = torch.cat(chunks, -1)
    header = RvqHeader(
        model_id=model_identity(model) if identity is None else identity,
        sample_rate=sampling_rate,
        channels=channels,
        original_length=length,
        n_q=codes.shape[1],
        bits=config.bits_per_codebook,
        frames=codes.shape[-1],
        gain_db=-gain_db,
        entropy_coded=entropy,
    )
    return write(header, codes.numpy())


def compress(
    model: RvqganModel,
    audio: np.ndarray,
    sampling_rate: int,
    n_quantizers: int | None = None,
    kbps: float | None = None,
    entropy: bool = True,
    normalize: bool = True,
    identity: str | None = None,
    progress: bool = False,
) -> bytes:
    """Compress `(channels, samples)` or `(samples,)` audio at any rate into `.rvq` bytes.

    Each channel is coded as its own stream at the model's rate, normalised to -16 LUFS first when `normalize`
    (the gain is undone by `decompress`). `kbps` picks the nearest number of codebooks; default: all. Integer PCM
    is scaled by its dtype (int16 / 32768). Bad audio, rates or settings raise ValueError (`AudioError` for the
    audio) before any work. `identity` names the model (default: `models.model_identity(model)`); `decompress`
    refuses a file made by another model.
    """
    audio = validate_audio(audio)
    audio = audio[None] if audio.ndim == 1 else audio
    sampling_rate = check_rate(sampling_rate)
    return compress_blocks(
        model,
        lambda: [audio],
        sampling_rate,
        audio.shape[0],
        audio.shape[-1] / sampling_rate,
        n_quantizers,
        kbps,
        entropy,
        normalize,
        identity,
        progress,
    )


def decompress_blocks(
    model: RvqganModel, data: bytes, identity: str | None = None, progress: bool = False
) -> tuple[RvqHeader, Iterator[np.ndarray]]:
    """`.rvq` bytes -> the header, and the audio as consecutive float32 `(channels, n)` blocks at the original rate
    (together exactly the original length), decoded as they are read. Every header field is checked before any
    audio is made: RvqFormatError."""
    header, codes = read(data)
    identity = model_identity(model) if identity is None else identity
    if header.model_id.split("@")[-1] != identity.split("@")[-1]:
        raise RvqFormatError(
            f"made by model {header.model_id!r}, not by {identity!r}: "
            f"decode it with --model {header.model_id.split('@')[0]}"
        )
    config = model.config
    if header.bits != config.bits_per_codebook or header.n_q > config.n_codebooks:
        raise RvqFormatError(f"{header.n_q} codebooks of {header.bits} bits do not fit this model")
    check_span(header, config.hop_length * header.sample_rate / config.sampling_rate)
    device = next(model.parameters()).device

    def blocks() -> Iterator[np.ndarray]:
        decoded = (
            audio.cpu().numpy()
            for audio in iter_decode(model, torch.from_numpy(codes).long().to(device), progress=progress)
        )
        left = header.original_length
        for block in resample_stream(decoded, config.sampling_rate, header.sample_rate, header.channels):
            if left > 0 and block.shape[-1]:
                yield apply_gain(block[:, :left], header.gain_db)
                left -= min(left, block.shape[-1])
        if left > 0:
            yield np.zeros((header.channels, left), np.float32)

    return header, blocks()


def decompress(
    model: RvqganModel, data: bytes, identity: str | None = None, progress: bool = False
) -> tuple[np.ndarray, int]:
    """`.rvq` bytes -> float32 `(channels, samples)` audio at the original rate and exact length, and that rate."""
    header, blocks = decompress_blocks(model, data, identity, progress)
    return np.concatenate(list(blocks), axis=1), header.sample_rate
