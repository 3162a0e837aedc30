"""Audio <-> `.rvq` bytes: loudness normalisation, resampling, chunk-invariant coding and the container."""

import numpy as np
import soxr
import torch

from feature_extraction import RvqganFeatureExtractor
from modeling_rvqgan import RvqganModel

from .chunking import decode_chunked, encode_chunked
from .container import RvqFormatError, RvqHeader, read, write
from .loudness import apply_gain, normalization_gain_db


def compress(
    model: RvqganModel,
    audio: np.ndarray,
    sampling_rate: int,
    n_quantizers: int | None = None,
    kbps: float | None = None,
    entropy: bool = True,
    normalize: bool = True,
    identity: str = "",
    progress: bool = False,
) -> bytes:
    """Compress `(channels, samples)` or `(samples,)` audio at any rate into `.rvq` bytes.

    Each channel is coded as its own stream at the model's rate, normalised to -16 LUFS first when `normalize`
    (the gain is undone by `decompress`). `kbps` picks the nearest number of codebooks; default: all.
    `identity` names the model (see `models.load_model`); `decompress` refuses a file made by another model.
    """
    config = model.config
    audio = np.asarray(audio)
    audio = audio[None] if audio.ndim == 1 else audio
    extractor = RvqganFeatureExtractor(sampling_rate=config.sampling_rate, hop_length=config.hop_length)
    input_values = extractor([audio], sampling_rate=sampling_rate, channels="separate", return_tensors="pt")["input_values"]
    gain_db = normalization_gain_db(input_values[:, 0].numpy(), config.sampling_rate) if normalize else 0.0
    input_values *= 10 ** (gain_db / 20)
    if kbps is not None:
        n_quantizers = config.kbps_to_n_quantizers(kbps)
    device = next(model.parameters()).device
    codes = encode_chunked(model, input_values.to(device), n_quantizers, progress=progress)
    header = RvqHeader(
        model_id=identity,
        sample_rate=sampling_rate,
        channels=audio.shape[0],
        original_length=audio.shape[-1],
        n_q=codes.shape[1],
        bits=config.bits_per_codebook,
        frames=codes.shape[-1],
        gain_db=-gain_db,
        entropy_coded=entropy,
    )
    return write(header, codes.cpu().numpy())


def decompress(model: RvqganModel, data: bytes, identity: str = "", progress: bool = False) -> tuple[np.ndarray, int]:
    """`.rvq` bytes -> float32 `(channels, samples)` audio at the original rate and exact length, and that rate."""
    header, codes = read(data)
    if identity and header.model_id.split("@")[-1] != identity.split("@")[-1]:
        raise RvqFormatError(f"made by model {header.model_id!r}, not by {identity!r}: decode it with --model {header.model_id.split('@')[0]}")
    config = model.config
    if header.bits != config.bits_per_codebook or header.n_q > config.n_codebooks:
        raise RvqFormatError(f"{header.n_q} codebooks of {header.bits} bits do not fit this model")
    device = next(model.parameters()).device
    audio = decode_chunked(model, torch.from_numpy(codes).long().to(device), progress=progress)[:, 0].cpu().numpy()
    audio = soxr.resample(audio.T, config.sampling_rate, header.sample_rate, quality="HQ").T
    audio = np.pad(audio, ((0, 0), (0, max(0, header.original_length - audio.shape[-1]))))[:, : header.original_length]
    return apply_gain(audio, header.gain_db), header.sample_rate
