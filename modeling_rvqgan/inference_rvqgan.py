"""Fast eval-mode passes of the encoder and decoder: their declared steps (`layers_rvqgan.Step`, `Residual`), with
their own modules' weights and geometry, computed tile by tile.

A tile computes a stretch of the output from the stretch of input it depends on, every layer cropped to what the
layers after it read, so that activations stay in cache and the overlap computed twice is a few percent. A tile at
a file edge zero-pads exactly as the whole-file pass does, so the output does not depend on the tiling (up to the
float rounding of the convolution kernels). On CPU, tiles run in parallel, as many of equal size per thread.

Activations are (B, T, C), channels last, which oneDNN convolves without reordering. At the lowest rates, where rows
are few and weights large, convolutions are matrix products instead, computed as 1x1 convolutions: MKL's
matrix products round differently when several threads call them at once, which would make outputs vary from call
to call. On CPU, float32 convolutions of 7 taps from 256 channels on are products of spectra (`kernels_rvqgan`'s
`spectral_convolution`), whose matrix products, called from the tiles' threads at once, were measured to give the
same bits on every call. Under autocast, Snake activations are one TorchInductor kernel each (`fused_snake`).
Weights are used as stored (cast under autocast) and weight norm parametrizations are read once per call; only the
weights' spectra are kept between calls (`weight_spectrum`).
"""

import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

from . import layers_rvqgan as layers
from .kernels_rvqgan import fused_snake, snake, spectral_convolution, weight_spectrum
from .layers_rvqgan import Step, inverse_alpha, length_mask

BLOCK_SECONDS = 4.0  # output computed at a time, per thread: bounds the memory
TILE_SECONDS = 0.5  # CPU tiles at high rates, small enough for the L3 cache
LOW_RATE_TILE_SECONDS = 4.0  # CPU tiles at the lowest rates, where the weights are large and the activations small
SPECTRAL_CHANNELS = 256  # CPU convolutions of 7 taps or more from this many channels on are spectral products
LOW_RATE = 8  # positions per code frame at and below which steps are at a low rate (see `stages`)


def autocast_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype on `device`, or float32 without autocast."""
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else torch.float32


def tile_threads(device: torch.device) -> int:
    """Threads to run tiles on: the calling thread's torch thread count on CPU, 1 elsewhere."""
    return torch.get_num_threads() if device.type == "cpu" else 1


def _one_thread():
    """Initializer of `pools`' workers: torch ops on one thread in this thread (OpenMP's and MKL's counts are per
    thread; torch applies its process-wide count on a thread's first call, hence the read first)."""
    torch.get_num_threads()
    torch.set_num_threads(1)


_pools, _pools_lock = {}, threading.Lock()


def pools(threads: int) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
    """Two process-wide pools of `threads` workers whose torch ops run on one thread: one runs passes, the other
    their tiles. All start at once; `torch.set_num_threads(1)` in their initializers also sets the count torch gives
    threads started later, which is set back to the caller's as soon as they have started."""
    with _pools_lock:
        if threads not in _pools:
            started = threading.Barrier(2 * threads)
            _pools[threads] = tuple(ThreadPoolExecutor(threads, "rvqgan", _one_thread) for _ in range(2))
            for waiting in [pool.submit(started.wait) for pool in _pools[threads] for _ in range(threads)]:
                waiting.result()
            torch.set_num_threads(torch.get_num_threads())
        return _pools[threads]


def in_this_threads_modes(function, device_type: str = "cpu"):
    """`function`, to call from any thread, under this thread's inference mode, without autograd or autocast."""
    inference = torch.is_inference_mode_enabled()

    def call(*args):
        with torch.inference_mode(inference), torch.no_grad(), torch.autocast(device_type, enabled=False):
            return function(*args)

    return call


def run_pass(function, device: torch.device):
    """`function(threads)` with torch ops on one thread (ops spread over threads stall whenever one thread is
    preempted, which tiles of their own per thread avoid), `threads` being `tile_threads(device)`: on a worker of
    `pools(threads)` when it is above 1, here otherwise. No thread's torch thread count changes."""
    threads, call = tile_threads(device), in_this_threads_modes(function, device.type)
    return pools(threads)[0].submit(call, threads).result() if threads > 1 else call(threads)


def channels_first(hidden_states: torch.Tensor) -> torch.Tensor:
    """(B, T, C) -> a (B, C, 1, T) view in the channels-last memory format."""
    return hidden_states.transpose(1, 2).unsqueeze(2)


def matrix_product(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear` of (B, T, C) `hidden_states` and (C', C, 1, 1) `weight` as a 1x1 convolution: (B, T, C')."""
    return F.conv2d(channels_first(hidden_states), weight, bias).squeeze(2).transpose(1, 2)


def masked(hidden_states: torch.Tensor, lengths: torch.Tensor | None, start: int) -> torch.Tensor:
    """Zero the rows of (B, T, C) `hidden_states`, which start at position `start`, from each item's length on."""
    if lengths is None:
        return hidden_states
    return hidden_states.mul_(length_mask(lengths, hidden_states.shape[1], start).transpose(1, 2))


class Conv:
    """A `Step` on a stretch of the sequence: (B, T, C) -> (B, T', C'), its own module's weights and geometry.

    The convolution runs in `dtype`, as a matrix product if `matrix`, or, on CPU in float32 with 7 taps or more and
    SPECTRAL_CHANNELS input channels or more, as a spectral product (faster than oneDNN's there, on one thread;
    slower with fewer channels); the Snake, in float32, writes `dtype`, with `fused_snake`'s kernels if `fused`.
    """

    def __init__(self, step: Step, dtype: torch.dtype, fused: bool, matrix: bool = False):
        conv, activation = step.conv, step.activation
        self.step = step
        (self.kernel,), (self.stride,), (self.dilation,) = conv.kernel_size, conv.stride, conv.dilation
        spectral = conv.weight.device.type == "cpu" and dtype == torch.float32 and conv.stride == (1,) and not matrix
        self.spectrum = (
            weight_spectrum(conv) if spectral and self.kernel >= 7 and conv.in_channels >= SPECTRAL_CHANNELS else None
        )
        weight = conv.weight.to(dtype)
        self.weight = (
            weight.flatten(1)[..., None, None] if matrix else weight.unsqueeze(2)
        )  # (C', C * k, 1, 1) or (C', C, 1, k)
        self.bias, self.dtype, self.matrix = conv.bias.to(dtype), dtype, matrix
        self.alpha = None if activation is None else activation.alpha.reshape(-1).float()
        self.inverse = None if activation is None else inverse_alpha(self.alpha)
        self.snakes = (
            {}
            if activation is None
            else {  # by input dtype; kernels are compiled here, in the calling thread
                d: fused_snake(weight.device.type, d, dtype) if fused else functools.partial(snake, dtype=dtype)
                for d in {torch.float32, dtype}
            }
        )

    def size(self, n):
        """Output length for input length `n` (an int, or a tensor of lengths)."""
        return self.step.size(n)

    def needs(self, low: int, high: int) -> tuple[int, int]:
        """The input positions [a, b) that outputs [low, high) read (beyond the input's ends: zero padding)."""
        return self.step.needs(low, high)

    def __call__(self, hidden_states, low, high, size, lengths):
        """Outputs [low, high) (B, high - low, C') from `hidden_states` (B, T, C), the input at positions
        `needs(low, high)` within [0, size)."""
        a, b = self.needs(low, high)
        hidden_states = self.activate(hidden_states)
        if a < 0 or b > size:
            hidden_states = F.pad(hidden_states, (0, 0, max(0, -a), max(0, b - size)))
        if self.spectrum is not None:
            hidden_states = spectral_convolution(hidden_states, self.spectrum, self.kernel, self.dilation)
            return masked(hidden_states.add_(self.bias), lengths, low)
        if self.matrix:  # columns (B, T', C * k) of k steps, `dilation` apart
            span = (self.kernel - 1) * self.dilation + 1
            columns = hidden_states.unfold(1, span, self.stride)[..., :: self.dilation].flatten(2)
            return masked(matrix_product(columns, self.weight, self.bias), lengths, low)
        stride, dilation = (1, self.stride), (1, self.dilation)
        hidden_states = F.conv2d(channels_first(hidden_states), self.weight, self.bias, stride, 0, dilation)
        return masked(hidden_states.squeeze(2).transpose(1, 2), lengths, low)

    def activate(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The Snake, if any, in `dtype`."""
        if self.alpha is None:
            return hidden_states.to(self.dtype)
        rows = hidden_states.reshape(-1, hidden_states.shape[-1]).contiguous()  # (B * T, C)
        return self.snakes[rows.dtype](rows, self.alpha, self.inverse).view(hidden_states.shape)


class ConvTranspose(Conv):
    """A `Step` of a transposed convolution on a stretch of the sequence.

    As a matrix product if `matrix`: each input step times the (C, C' * k) weight, a 1x1 transposed convolution that
    reads the weight as stored, gives `kernel` output steps, which overlap-add `stride` apart.
    """

    def __call__(self, hidden_states, low, high, size, lengths):
        a = max(0, self.needs(low, high)[0])
        full = self.transposed(self.activate(hidden_states))  # row q: output q + a * stride - padding
        start = low + self.step.conv.padding[0] - a * self.stride
        return masked(full[:, start : start + high - low].float(), lengths, low)

    def transposed(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The transposed convolution without padding: (B, T, C) -> (B, (T - 1) * stride + kernel, C')."""
        if not self.matrix:
            hidden_states = F.conv_transpose2d(channels_first(hidden_states), self.weight, self.bias, (1, self.stride))
            return hidden_states.squeeze(2).transpose(1, 2)
        batch, length, _ = hidden_states.shape
        channels, taps = self.bias.shape[0], self.kernel // self.stride
        steps = F.conv_transpose2d(channels_first(hidden_states), self.weight).squeeze(2).transpose(1, 2)
        steps = steps.reshape(batch, length, channels, taps, self.stride)
        out = self.bias.expand(batch, length + taps - 1, self.stride, channels).clone()
        for tap in range(taps):
            out[:, tap : tap + length] += steps[:, :, :, tap].transpose(2, 3)
        return out.flatten(1, 2)


class Residual:
    """A `layers_rvqgan.Residual` on a stretch of the sequence: its steps, then their input added."""

    def __init__(self, residual: layers.Residual, dtype: torch.dtype, fused: bool):
        self.residual, self.steps = residual, [tiler_step(step, dtype, fused) for step in residual.steps]

    def size(self, n):
        return n

    def needs(self, low, high):
        return self.residual.needs(low, high)

    def __call__(self, hidden_states, low, high, size, lengths):
        offset = max(0, self.needs(low, high)[0])
        branch = run(
            self.steps,
            hidden_states,
            offset,
            [size] * (len(self.steps) + 1),
            [lengths] * (len(self.steps) + 1),
            low,
            high,
        )
        return hidden_states[:, low - offset : high - offset] + branch  # float32


def tiler_step(step, dtype: torch.dtype, fused: bool, matrix: bool = False):
    """The tiled form of a `Step` or `Residual` of `layers_rvqgan`."""
    if isinstance(step, layers.Residual):
        return Residual(step, dtype, fused)
    return (ConvTranspose if isinstance(step.conv, nn.ConvTranspose1d) else Conv)(step, dtype, fused, matrix)


def stages(steps: list, per_frame: int, dtype: torch.dtype, fused: bool) -> list[tuple[float, list]]:
    """`steps` (an encoder's or decoder's) in their tiled forms, in stages of consecutive steps at high rates (tiles of
    TILE_SECONDS) and at low rates (LOW_RATE_TILE_SECONDS), their input having `per_frame` positions per code frame.
    A step's output is at a low rate at LOW_RATE positions per frame or fewer; there, where rows are few and weights
    large, convolutions that change the rate or run at the frame rate are matrix products. Every step convolves in
    `dtype` but the last, in float32."""
    out = []
    for index, step in enumerate(steps):
        conv = getattr(step, "conv", None)
        after = (
            per_frame
            if conv is None
            else per_frame * conv.stride[0]
            if conv.transposed
            else per_frame // conv.stride[0]
        )
        low = after <= LOW_RATE
        matrix = low and conv is not None and (conv.stride != (1,) or per_frame == after == 1)
        tiled = tiler_step(step, dtype if index < len(steps) - 1 else torch.float32, fused, matrix)
        if out and out[-1][0] == low:
            out[-1][1].append(tiled)
        else:
            out.append((low, [tiled]))
        per_frame = after
    return [(LOW_RATE_TILE_SECONDS if low else TILE_SECONDS, stage) for low, stage in out]


def spans(steps: list, sizes: list[int], low: int, high: int) -> list[tuple[int, int]]:
    """The positions each step computes for outputs [low, high) of `steps`, whose input has size `sizes[0]`,
    and first, the input positions they read."""
    spans = [(low, high)]
    for step, size in zip(steps[::-1], sizes[-2::-1]):
        a, b = step.needs(*spans[-1])
        spans.append((max(0, a), min(b, size)))
    return spans[::-1]


def run(steps: list, inputs: torch.Tensor, offset: int, sizes: list[int], lengths: list, low: int, high: int):
    """Outputs [low, high) of `steps` from `inputs` (B, T, C), which holds input positions [offset, offset + T)."""
    (a, b), *outputs = spans(steps, sizes, low, high)
    hidden_states = inputs[:, a - offset : b - offset]
    for step, (start, stop), size, step_lengths in zip(steps, outputs, sizes, lengths[1:]):
        hidden_states = step(hidden_states, start, stop, size, step_lengths)
    return hidden_states


def run_tiled(
    stages: list[tuple[float, list]], inputs: torch.Tensor, lengths: torch.Tensor | None, rate: float, threads: int
):
    """The steps of `stages` applied in turn to (B, T, C) `inputs`: (B, T', C') at `rate` positions per second.
    `lengths` (B,): valid input positions per item, or None. Called within `run_pass`.

    The output is computed a block of BLOCK_SECONDS per thread at a time. On CPU, in a block, each stage computes
    what the next stage reads in tiles of its seconds, run by `threads` threads; elsewhere a stage is one tile."""
    steps = [step for _, stage in stages for step in stage]
    sizes, all_lengths = [inputs.shape[1]], [lengths]
    for step in steps:
        sizes.append(step.size(sizes[-1]))
        all_lengths.append(None if lengths is None else step.size(all_lengths[-1]))
    bounds = [0]
    for _, stage in stages:
        bounds.append(bounds[-1] + len(stage))
    cpu = inputs.device.type == "cpu"

    @in_this_threads_modes  # grad mode is per thread
    def tile(first: int, last: int, hidden_states, offset: int, low: int, high: int):
        return run(
            steps[first:last], hidden_states, offset, sizes[first : last + 1], all_lengths[first : last + 1], low, high
        )

    outputs = inputs.new_empty(inputs.shape[0], sizes[-1], steps[-1].weight.shape[0], dtype=torch.float32)
    block = max(1, round(BLOCK_SECONDS * threads * rate))
    apply = pools(threads)[1].map if threads > 1 else map
    for low in range(0, sizes[-1], block):
        hidden_states, offset = inputs, 0
        for (seconds, _), first, last in zip(stages, bounds, bounds[1:]):
            start, stop = spans(steps[last:], sizes[last:], low, min(low + block, sizes[-1]))[0]
            size = max(1, round(seconds * rate * sizes[last] / sizes[-1])) if cpu else stop - start
            count = threads * -(-(stop - start) // (size * threads))  # equal tiles, as many for every thread
            size = -(-(stop - start) // count)
            tiles = [(first, last, hidden_states, offset, a, min(a + size, stop)) for a in range(start, stop, size)]
            hidden_states, offset = torch.cat(list(apply(lambda args: tile(*args), tiles)), 1), start
        outputs[:, low : low + block] = hidden_states
    return outputs


def encode_latents(
    encoder: nn.Module,
    input_values: torch.Tensor,
    lengths: torch.Tensor | None,
    hop_length: int,
    frame_rate: float,
    fused: bool,
    threads: int,
):
    """`encoder(input_values, lengths)` tile by tile, in float32, with fused Snakes if `fused`:
    (B, 1, T) -> (B, hidden_size, T / hop_length)."""
    tiled = stages(encoder.steps, hop_length, torch.float32, fused)
    latents = run_tiled(tiled, input_values.transpose(1, 2), lengths, frame_rate, threads)
    return latents.transpose(1, 2).contiguous()  # the quantizer's 1x1 convolutions are slower on a strided input


def decode_latents(
    decoder: nn.Module,
    quantized: torch.Tensor,
    frames: torch.Tensor | None,
    sampling_rate: float,
    dtype: torch.dtype,
    threads: int,
):
    """`decoder(quantized, frames)` tile by tile, all convolutions but the last in `dtype`, with fused Snakes unless
    `dtype` is float32: (B, hidden_size, T') -> (B, 1, T' * hop_length)."""
    tiled = stages(decoder.steps, 1, dtype, dtype != torch.float32)
    audio = run_tiled(tiled, quantized.transpose(1, 2), frames, sampling_rate, threads)
    return decoder.tanh(audio).transpose(1, 2)
