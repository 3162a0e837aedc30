"""Feature extractor for the RVQGAN (Descript Audio Codec) model: raw audio in, padded (B, 1, T) batches out."""

import math
import numbers

import numpy as np
import soxr
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging

logger = logging.get_logger(__name__)

CHANNEL_MODES = ("downmix", "separate")
RESAMPLE_QUALITY = "HQ"  # soxr's quality for all our resampling; here, not in `audio`, as this file ships alone


class AudioError(ValueError):
    """Audio (an array, its sampling rate, or a file) that cannot be coded, with the reason."""


def check_rate(value, name: str = "sampling_rate") -> int:
    """A sampling rate as a positive int: ints and integral floats (44100.0) pass, anything else is refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise AudioError(f"`{name}` must be a positive integer number of Hz, got {value!r}")
    if not (math.isfinite(value) and value > 0 and float(value).is_integer()):
        raise AudioError(f"`{name}` must be positive and a whole number of Hz, got {value!r}")
    return int(value)


def check_finite(audio: np.ndarray) -> np.ndarray:
    """`audio` itself, or AudioError for NaN or infinite values."""
    if not np.isfinite(audio).all():
        raise AudioError("the audio contains NaN or infinite values")
    return audio


def validate_audio(audio, name: str = "audio") -> np.ndarray:
    """One item as float32 `(T,)` or `(C, T)`, with integer PCM scaled by dtype; AudioError for anything else,
    before any copy: other shapes, `(samples, channels)` arrays, no samples, non-numeric values, NaN or inf."""
    audio = audio.detach().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio)
    if audio.dtype.kind not in "iuf":
        raise AudioError(f"`{name}` must hold real numbers, got dtype {audio.dtype}")
    if audio.ndim not in (1, 2):
        raise AudioError(f"`{name}`: expected a (samples,) or (channels, samples) array, got shape {audio.shape}")
    if audio.size == 0:
        raise AudioError(f"Empty audio: `{name}` has shape {audio.shape}")
    if audio.ndim == 2 and audio.shape[0] > audio.shape[1]:
        raise AudioError(f"`{name}`: expected (channels, samples), got shape {audio.shape}; transpose it")
    try:
        return check_finite(_to_float(audio))
    except AudioError as error:
        raise AudioError(f"`{name}`: {error}") from None


def _to_float(audio: np.ndarray) -> np.ndarray:
    """Integer PCM -> float32 in [-1, 1) by dtype (int16 / 2**15, int32 / 2**31, uint8 (x - 128) / 128, ...)."""
    if audio.dtype.kind in "iu":
        info = np.iinfo(audio.dtype)
        half = 2.0 ** (info.bits - 1)
        audio = (audio.astype(np.float64) - (info.min + half)) / half
    return audio.astype(np.float32)


def resample(audio: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample `(T,)` or `(C, T)` audio along its last axis with soxr (`RESAMPLE_QUALITY`), each channel
    independently."""
    if in_rate == out_rate:
        return audio
    return soxr.resample(audio.T, in_rate, out_rate, quality=RESAMPLE_QUALITY).T


class RvqganFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Feature extractor for RVQGAN / DAC codecs. Accepts mono or multichannel audio at any sampling rate, converts it
    to float32 at the model rate, and pads the batch to a multiple of the codec hop length.

    Args:
        feature_size (`int`, defaults to 1): Channels per model input item (the codec is mono).
        sampling_rate (`int`, defaults to 44100): Sampling rate of the model, in Hz.
        padding_value (`float`, defaults to 0.0): Value used for right padding.
        hop_length (`int`, defaults to 512): Samples per codec frame; batches are padded to a multiple of it.
    """

    model_input_names = ["input_values", "padding_mask"]

    def __init__(self, feature_size=1, sampling_rate=44100, padding_value=0.0, hop_length=512, **kwargs):
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.hop_length = hop_length

    def __call__(self, raw_audio, sampling_rate=None, channels="downmix", return_tensors=None) -> BatchFeature:
        """
        Prepare one or several audio signals for the model.

        Args:
            raw_audio (`np.ndarray`, `torch.Tensor`, `list[float]` or a list of these):
                One item or a list of items, each `(samples,)` mono or `(channels, samples)`. Float values are used as
                is; integer PCM is scaled to [-1, 1) by dtype (int16 / 32768, int32 / 2**31, uint8 (x - 128) / 128).
                A single 2-D array is one multichannel item: pass a list to make a batch.
            sampling_rate (`int`, *optional*):
                Sampling rate of `raw_audio`. Any rate is accepted: audio at another rate than the model's is
                resampled to `self.sampling_rate` with soxr ("HQ"). If omitted, the model rate is assumed.
            channels (`str`, defaults to `"downmix"`):
                `"downmix"` averages the channels of each item to mono; `"separate"` codes each channel as its own
                batch item (a stereo item gives 2 consecutive rows) and adds `n_channels` to the output.
            return_tensors (`str`, *optional*): `"pt"` or `"np"`; numpy arrays when omitted.

        Returns:
            [`BatchFeature`] with `input_values` float32 `(B, 1, T)`, `padding_mask` int64 `(B, T)` (1 = real sample,
            0 = padding; `T` is the longest item rounded up to a multiple of `hop_length`) and, with
            `channels="separate"`, `n_channels` `(num_items,)`: rows per input item, to undo with `post_process`.
        """
        if channels not in CHANNEL_MODES:
            raise ValueError(f"`channels` must be one of {CHANNEL_MODES}, got {channels!r}")
        if sampling_rate is None:
            logger.warning_once(
                f"It is strongly recommended to pass the `sampling_rate` argument to `{self.__class__.__name__}()`; "
                f"assuming the model rate of {self.sampling_rate} Hz. Audio at any other rate is resampled."
            )
            sampling_rate = self.sampling_rate
        sampling_rate = check_rate(sampling_rate)
        if isinstance(raw_audio, (list, tuple)) and len(raw_audio) == 0:
            raise ValueError("Empty audio: got an empty list")
        is_batched = isinstance(raw_audio, (list, tuple)) and np.ndim(raw_audio[0]) > 0

        rows, n_channels = [], []
        for audio in raw_audio if is_batched else [raw_audio]:
            audio = validate_audio(audio)
            if audio.ndim == 1:
                audio = audio[None]
            if channels == "downmix":
                audio = audio.mean(axis=0, keepdims=True)
            audio = resample(audio, sampling_rate, self.sampling_rate)
            n_channels.append(audio.shape[0])
            rows.extend(audio)

        padded = self.pad(
            BatchFeature({"input_values": rows}),
            padding="longest",
            pad_to_multiple_of=self.hop_length,
            return_attention_mask=True,
            return_tensors="np",
        )
        outputs = {
            "input_values": padded["input_values"].astype(np.float32)[:, None, :],
            "padding_mask": padded["attention_mask"].astype(np.int64),
        }
        if channels == "separate":
            outputs["n_channels"] = np.array(n_channels, dtype=np.int64)
        return BatchFeature(outputs, tensor_type=return_tensors)

    def post_process(self, audio_values, padding_mask, n_channels=None, sampling_rate=None) -> list:
        """
        Undo `__call__` on the model's decoded output.

        Args:
            audio_values (`torch.Tensor` or `np.ndarray` of shape `(B, 1, T)` or `(B, T)`): decoded audio.
            padding_mask (`torch.Tensor` or `np.ndarray` of shape `(B, T')`): the mask returned by `__call__`.
            n_channels (`list[int]`, *optional*): the `n_channels` returned by `__call__(channels="separate")`.
            sampling_rate (`int`, *optional*): resample the output from the model rate to this rate (soxr, "HQ").

        Returns:
            `list[np.ndarray]` of float32: one `(C, T_i)` array per input item when `n_channels` is given, else one
            `(T_i,)` array per row, trimmed to its real length (which can differ by one sample from the original
            length after a resampling round trip).
        """
        audio, mask = self._numpy(audio_values), self._numpy(padding_mask)
        if audio.ndim == 3 and audio.shape[1] == 1:
            audio = audio[:, 0]
        if audio.ndim != 2 or len(audio) != len(mask):
            raise ValueError(f"Expected audio_values (B, 1, T) matching padding_mask {mask.shape}, got {audio.shape}")
        items = [row[: int(length)] for row, length in zip(audio, mask.sum(axis=-1))]
        if n_channels is not None:
            counts = [int(c) for c in self._numpy(n_channels)]
            if sum(counts) != len(items):
                raise ValueError(f"n_channels {counts} does not add up to the batch size {len(items)}")
            starts = np.cumsum([0] + counts)
            items = [np.stack(items[start : start + c]) for start, c in zip(starts, counts)]
        rate = self.sampling_rate if sampling_rate is None else sampling_rate
        return [np.ascontiguousarray(resample(item.astype(np.float32), self.sampling_rate, rate)) for item in items]

    @staticmethod
    def _numpy(x) -> np.ndarray:
        """torch tensor (any device/dtype), list or array -> numpy array."""
        if hasattr(x, "detach"):
            x = x.detach().cpu()
            x = x.float() if x.is_floating_point() else x
            return x.numpy()
        return np.asarray(x)
