"""Windowed encoding and decoding whose output equals a whole-file `encode` / `decode`, with memory bounded by the
window.

DAC's own chunked mode (`padding=False`, SPEC section 5.4, issues #39/#45) gives codes that depend on the window and
a frame rate above `sampling_rate / hop_length`. Here each window is aligned on the hop grid and padded with as
much real context as the convolutions can see, so its centre frames (or samples) are exactly those of a whole-file
pass, and windows at the file edges start or end at the file edge, seeing the same zero padding as a whole-file pass.
"""

from collections.abc import Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from rvqgan.modeling import RvqganConfig, RvqganModel
from rvqgan.modeling.layers_rvqgan import steps_span

DEFAULT_WINDOW_SECONDS = 30.0  # eval-mode passes bound their memory themselves; windows recompute ~1 % as context
Progress = bool | Callable[[int, int], None] | None


def receptive_field(model: RvqganModel) -> tuple[int, int]:
    """(encoder_frames, decoder_frames): code frames of context needed on each side of a window, read from the
    encoder's and decoder's declared steps. Encoder: frame 0 depends on samples [low, high); decoder: its samples
    [0, hop) depend on frames [low, high)."""
    hop = model.config.hop_length
    low, high = steps_span(model.encoder.steps, 0, 1)
    encoder = max(-(low // hop), (high - 1) // hop)
    low, high = steps_span(model.decoder.steps, 0, hop)
    return encoder, max(-low, high - 1)


def _window_frames(config: RvqganConfig, window_frames: int | None) -> int:
    if window_frames is None:
        return max(1, round(DEFAULT_WINDOW_SECONDS * config.frame_rate))
    if window_frames < 1:
        raise ValueError(f"`window_frames` must be positive, got {window_frames}.")
    return window_frames


def _tracked(items: Iterable, total: int, progress: Progress) -> Iterator:
    """`items`, with a tqdm bar (progress True) or a callable `progress(done, total)` called after each."""
    with tqdm(total=total, unit="window", disable=progress is not True) as bar:
        for done, item in enumerate(items, 1):
            yield item
            bar.update()
            if callable(progress):
                progress(done, total)


def encode_stream(
    model: RvqganModel,
    blocks: Iterable[torch.Tensor],
    n_quantizers: int | None = None,
    window_frames: int | None = None,
) -> Iterator[torch.LongTensor]:
    """Encode audio given as consecutive blocks (B, 1, n) of any lengths, window by window, holding one window and
    its context at a time. Yields the codes (B, n_q, window_frames) of consecutive windows (the last one shorter):
    together `encode_chunked` of the concatenated blocks.
    """
    hop, context = model.config.hop_length, receptive_field(model)[0]
    window = _window_frames(model.config, window_frames)
    buffer, offset, start = None, 0, 0  # buffer: samples [offset, offset + length); start: the next centre frame

    def encode(first: int, stop: int, last: int) -> torch.LongTensor:
        # a window reaching the file end is cut there, so the model zero-pads it exactly as it pads the whole file
        with torch.inference_mode():
            window_input = buffer[..., first * hop - offset : last * hop - offset]
            codes = model.encode(window_input, n_quantizers=n_quantizers).audio_codes
        return codes[..., start - first : stop - first].clone()

    for block in blocks:
        buffer = block if buffer is None else torch.cat([buffer, block], -1)
        while offset + buffer.shape[-1] >= (start + window + context) * hop:  # more follows: not the file end
            yield encode(max(0, start - context), start + window, start + window + context)
            start += window
            drop = max(0, start - context) * hop - offset
            buffer, offset = buffer[..., drop:], offset + drop
    n_frames = 0 if buffer is None else -(-(offset + buffer.shape[-1]) // hop)
    if n_frames == 0:
        raise ValueError("`input_values` is empty.")
    while start < n_frames:
        stop = min(start + window, n_frames)
        yield encode(max(0, start - context), stop, min(n_frames, stop + context))
        start = stop


def encode_chunked(
    model: RvqganModel,
    input_values: torch.Tensor,
    n_quantizers: int | None = None,
    window_frames: int | None = None,
    progress: Progress = False,
) -> torch.LongTensor:
    """Encode (B, 1, T) audio window by window into codes (B, n_q, ceil(T / hop_length)), equal to
    `model.encode(input_values, n_quantizers=n_quantizers).audio_codes` (up to float ties) for a model in eval mode.
    The model runs under `torch.inference_mode`; the returned codes are an ordinary tensor.

    window_frames: centre frames per window (default about 30 s); each window adds `receptive_field(model)[0]`
        frames of context per side. progress: True for a tqdm bar, or a callable `(windows_done, windows_total)`.
    """
    n_frames = -(-input_values.shape[-1] // model.config.hop_length)
    windows = -(-n_frames // _window_frames(model.config, window_frames))
    codes = encode_stream(model, [input_values], n_quantizers, window_frames)
    return torch.cat(list(_tracked(codes, windows, progress)), -1)


def iter_decode(
    model: RvqganModel,
    audio_codes: torch.Tensor,
    window_frames: int | None = None,
    progress: Progress = False,
) -> Iterator[torch.Tensor]:
    """Decode codes (B, n_q, F) window by window, yielding consecutive audio blocks (B, window_frames * hop_length)
    (the last one shorter, all computed under `torch.inference_mode`) whose concatenation equals
    `model.decode(audio_codes=audio_codes).audio_values` up to float rounding: a caller can write each block out,
    so the decoded file never has to be held in memory.

    window_frames: centre frames per window (default about 30 s); each window adds `receptive_field(model)[1]`
        frames of context per side. progress: as in `encode_chunked`.
    """
    hop, context = model.config.hop_length, receptive_field(model)[1]
    n_frames, window = audio_codes.shape[-1], _window_frames(model.config, window_frames)
    for start in _tracked(range(0, n_frames, window), -(-n_frames // window), progress):
        stop = min(start + window, n_frames)
        first, last = max(0, start - context), min(n_frames, stop + context)
        with torch.inference_mode():
            audio = model.decode(audio_codes=audio_codes[..., first:last]).audio_values
        yield audio[..., (start - first) * hop : (stop - first) * hop]


def decode_chunked(
    model: RvqganModel,
    audio_codes: torch.Tensor,
    window_frames: int | None = None,
    progress: Progress = False,
) -> torch.Tensor:
    """Decode codes (B, n_q, F) into audio (B, F * hop_length) with `iter_decode`, into one preallocated tensor."""
    samples = audio_codes.shape[-1] * model.config.hop_length
    dtype = next(model.parameters()).dtype
    audio = torch.empty(audio_codes.shape[0], samples, dtype=dtype, device=audio_codes.device)
    position = 0
    for block in iter_decode(model, audio_codes, window_frames, progress):
        audio[..., position : position + block.shape[-1]] = block
        position += block.shape[-1]
    return audio
