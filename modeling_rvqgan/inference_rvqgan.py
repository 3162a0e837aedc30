"""Fast eval-mode passes of the encoder and decoder: the arithmetic of `layers_rvqgan.py`, computed tile by tile.

A tile computes a stretch of the output from the stretch of input it depends on, every layer cropped to what the
layers after it read, so that activations stay in cache and the overlap computed twice is a few percent. A tile at
a file edge zero-pads exactly as the whole-file pass does, so the output does not depend on the tiling (up to the
float rounding of the convolution kernels). On CPU, tiles run in parallel, as many of equal size per thread.

Activations are (B, T, C), channels last, which oneDNN convolves without reordering. At the lowest rates, where rows
are few and weights large, convolutions are matrix products instead, computed as 1x1 convolutions: MKL's
matrix products round differently when several threads call them at once, which would make outputs vary from call
to call. On CPU, float32 convolutions of 7 taps from 256 channels on are products of spectra (`spectral_convolution`),
whose matrix products, called from the tiles' threads at once, were measured to give the same bits on every call.
Under autocast, Snake activations are one TorchInductor kernel each (`fused_snake`). Weights are used as stored (cast
under autocast) and weight norm parametrizations are read once per call; only the weights' spectra are kept between
calls, until the weights change (`weight_spectrum`).
"""

import functools
import itertools
import math
import threading
import weakref
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functionalize
from torch.fx.experimental.proxy_tensor import make_fx

BLOCK_SECONDS = 4.0  # output computed at a time, per thread: bounds the memory
TILE_SECONDS = 0.5  # CPU tiles at high rates, small enough for the L3 cache
LOW_RATE_TILE_SECONDS = 4.0  # CPU tiles at the lowest rates, where the weights are large and the activations small
SPECTRAL_CHANNELS = 256  # CPU convolutions of 7 taps or more from this many channels on are spectral products
SPECTRAL_SIZE = 32  # points of their DFT windows


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
    positions = torch.arange(start, start + hidden_states.shape[1], device=hidden_states.device)
    return hidden_states.mul_((positions < lengths[:, None]).unsqueeze(-1))


def snake(hidden_states: torch.Tensor, alpha: torch.Tensor, inverse: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`Snake1d` of (N, C) `hidden_states` in float32, x + 1/(alpha + 1e-9) * sin(alpha * x)^2 with (C,)
    `alpha` and `inverse` = 1/(alpha + 1e-9), with one temporary, written in `dtype`."""
    hidden_states = hidden_states.float()
    out = hidden_states * alpha
    return out.sin_().pow_(2).mul_(inverse).add_(hidden_states).to(dtype)


@functools.cache
def fused_snake(device_type: str, input_dtype: torch.dtype, dtype: torch.dtype):
    """`snake` writing `dtype`, a function of (hidden_states, alpha, inverse), for contiguous `input_dtype` inputs of
    any size. On CPU, compiled by TorchInductor into one pass over memory: 3.5-4.5x faster than the eager ops, which
    take 15 % of a bf16 decode and 12 % of an encode. Its results differ from the eager ops' by float rounding (a
    different `sin`). The first call in a process takes about 5 s (later ones read inductor's disk cache): `Conv`
    uses it under autocast only, where the bf16 convolutions leave the Snake a larger share. Other devices, and a
    failed compilation (with a warning), get the eager ops.

    The graph is compiled directly, without torch.compile's guards, which would recompile for every dtype, stride
    and dispatch key set and race when tiles call it from several threads; `cpp_wrapper` releases the GIL."""
    eager = functools.partial(snake, dtype=dtype)
    if device_type != "cpu":
        return eager
    example = torch.zeros(2, 3, dtype=input_dtype), torch.ones(3), torch.ones(3)
    try:
        graph = make_fx(functionalize(eager), tracing_mode="symbolic")(*example)  # symbolic sizes: one kernel for all
        return torch._inductor.compile(graph, list(example), options={"cpp_wrapper": True})
    except Exception as error:  # no C++ compiler, say
        warnings.warn(f"Snake activations run unfused (slower): TorchInductor failed with {error!r}")
        return eager


@functools.cache
def real_dft(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The DFT of `size` (even) real points as a (size, size) matrix, rows cos(2 pi f n / size) for bins
    f = 0..size/2 (real parts), then -sin(2 pi f n / size) for f = 1..size/2-1 (imaginary parts); and its inverse."""
    half = size // 2
    angles = 2 * math.pi * torch.arange(half + 1, dtype=torch.float64)[:, None] * torch.arange(size) / size
    forward = torch.cat([angles.cos(), -angles[1:half].sin()])
    weights = torch.full((half + 1, 1), 2.0, dtype=torch.float64)
    weights[0] = weights[half] = 1
    inverse = torch.cat([weights * angles.cos(), -2 * angles[1:half].sin()]).T / size
    return forward.float(), inverse.float()


SPECTRA_BYTES = 2**30  # weights' spectra kept between calls, all models together; the least recently used go first
_spectra = weakref.WeakKeyDictionary()  # convolution -> (its parameters' storage and versions), spectrum, last use
_spectra_lock, _uses = threading.Lock(), itertools.count()


def weight_spectrum(conv: nn.Conv1d) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DFT over SPECTRAL_SIZE points of `conv`'s reversed (C', C, k) taps, as float32 (C, C') matrices per bin:
    real parts (bins, C, C'), imaginary parts of the bins but the first and last (bins - 2, C, C'), and the sum of
    the two (Gauss's complex product: 3 real matrix products instead of 4). Computed once and kept until `conv`'s
    parameters change (in place, or replaced), or until the spectra kept take more than SPECTRA_BYTES: 6.7x the
    memory of its weight."""
    key = [(p.data_ptr(), None if p.is_inference() else p._version) for p in conv.parameters()]
    with _spectra_lock:
        if conv in _spectra and _spectra[conv][0] == key:
            _spectra[conv] = *_spectra[conv][:2], next(_uses)
            return _spectra[conv][1]
    weight = conv.weight.detach().float()
    forward, _ = real_dft(SPECTRAL_SIZE)
    kernel, bins = weight.shape[-1], SPECTRAL_SIZE // 2 + 1
    spectrum = forward[:, :kernel].flip(-1) @ weight.permute(2, 0, 1).reshape(kernel, -1)  # (size, C' * C)
    spectrum = spectrum.view(SPECTRAL_SIZE, *weight.shape[:2]).transpose(1, 2)
    real, imag = spectrum[:bins], spectrum[bins:]
    spectrum = real, imag, real[1:-1] + imag
    with _spectra_lock:
        _spectra[conv] = key, spectrum, next(_uses)
        kept = sorted(_spectra.items(), key=lambda item: item[1][2])  # least recently used first
        total = sum(t.nbytes for _, (_, tensors, _) in kept for t in tensors)
        for old, (_, tensors, _) in kept[:-1]:
            if total <= SPECTRA_BYTES:
                break
            total -= sum(t.nbytes for t in tensors)
            del _spectra[old]
    return spectrum


def spectral_convolution(hidden_states: torch.Tensor, spectrum: tuple, kernel: int, dilation: int) -> torch.Tensor:
    """Valid convolution of (B, T, C) float32 `hidden_states` by the `kernel`-tap weight of `spectrum`
    (`weight_spectrum`), dilated: (B, T - (kernel - 1) * dilation, C').

    Each of the `dilation` interleaved sequences is cut into windows of SPECTRAL_SIZE points overlapping by
    kernel - 1 (overlap-save); per DFT bin, the windows' spectra times the weight's are one complex matrix product
    over channels; the last SPECTRAL_SIZE - kernel + 1 points of each window's inverse DFT are outputs. For 7 taps
    this is 2.6x fewer multiply-adds than the direct convolution, and it rounds no worse (its error against a
    float64 convolution was 2e-6 where oneDNN's was 4e-6 to 9e-6)."""
    real, imag, both = spectrum
    forward, inverse = real_dft(SPECTRAL_SIZE)
    batch, length, channels = hidden_states.shape
    bins, step = real.shape[0], SPECTRAL_SIZE - kernel + 1
    windows = -(-(-(-length // dilation) - kernel + 1) // step)  # per interleaved sequence
    padded = windows * step + kernel - 1
    hidden_states = F.pad(hidden_states, (0, 0, 0, padded * dilation - length))
    sequences = hidden_states.view(batch, padded, dilation, channels).permute(0, 2, 3, 1)  # (B, d, C, T / d)
    rows = sequences.unfold(3, SPECTRAL_SIZE, step).transpose(2, 3).reshape(-1, SPECTRAL_SIZE)  # (B * d * n * C, size)
    spectra = (forward @ rows.T).view(SPECTRAL_SIZE, -1, channels)  # (size, B * d * n, C): real, imaginary parts
    re, im = spectra[:bins], spectra[bins:]
    out = hidden_states.new_empty(SPECTRAL_SIZE, re.shape[1], real.shape[-1])
    torch.bmm(re, real, out=out[:bins])
    products = torch.bmm(im, imag)
    torch.bmm(re[1:-1] + im, both, out=out[bins:])
    out[bins:].sub_(out[1 : bins - 1]).sub_(products)
    out[1 : bins - 1].sub_(products)
    out = (inverse[kernel - 1 :] @ out.view(SPECTRAL_SIZE, -1)).view(step, batch, dilation, windows, -1)
    out = out.permute(1, 3, 0, 2, 4).reshape(batch, windows * step * dilation, -1)  # (B, n, step, d, C') in time order
    return out[:, : length - (kernel - 1) * dilation]


class Conv:
    """Optional Snake, then a convolution with a masked output, on a stretch of the sequence: (B, T, C) -> (B, T', C').

    The convolution runs in `dtype`, as a matrix product if `matrix`, or, on CPU in float32 with 7 taps or more and
    SPECTRAL_CHANNELS input channels or more, as a spectral product (1.3-2.6x faster than oneDNN's there, one thread,
    slower with fewer channels); the Snake, in float32, writes `dtype`, with `fused_snake`'s kernels if `fused`.
    """

    def __init__(self, conv: nn.Conv1d, activation: nn.Module | None, dtype: torch.dtype, fused: bool, matrix: bool = False):
        (self.kernel,), (self.stride,), (self.padding,), (self.dilation,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
        spectral = conv.weight.device.type == "cpu" and dtype == torch.float32 and conv.stride == (1,) and not matrix
        self.spectrum = weight_spectrum(conv) if spectral and self.kernel >= 7 and conv.in_channels >= SPECTRAL_CHANNELS else None
        weight = conv.weight.to(dtype)
        self.weight = weight.flatten(1)[..., None, None] if matrix else weight.unsqueeze(2)  # (C', C * k, 1, 1) or (C', C, 1, k)
        self.bias, self.dtype, self.matrix = conv.bias.to(dtype), dtype, matrix
        self.alpha = None if activation is None else activation.alpha.reshape(-1).float()
        self.inverse = None if activation is None else (self.alpha + 1e-9).reciprocal()
        self.snakes = {} if activation is None else {  # by input dtype; kernels are compiled here, in the calling thread
            d: fused_snake(weight.device.type, d, dtype) if fused else functools.partial(snake, dtype=dtype)
            for d in {torch.float32, dtype}
        }

    def size(self, n):
        """Output length for input length `n` (an int, or a tensor of lengths)."""
        return (n + 2 * self.padding - self.dilation * (self.kernel - 1) - 1) // self.stride + 1

    def needs(self, low: int, high: int) -> tuple[int, int]:
        """The input positions [a, b) that outputs [low, high) read (beyond the input's ends: zero padding)."""
        a = low * self.stride - self.padding
        return a, (high - 1) * self.stride - self.padding + self.dilation * (self.kernel - 1) + 1

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
        if self.matrix:  # columns (B, T', C * k) of k steps
            columns = hidden_states.unfold(1, self.kernel, self.stride).flatten(2)
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
    """Snake, then a transposed convolution with a masked output, on a stretch of the sequence.

    As a matrix product if `matrix`: each input step times the (C, C' * k) weight, a 1x1 transposed convolution that
    reads the weight as stored, gives `kernel` output steps, which overlap-add `stride` apart.
    """

    def __init__(self, conv: nn.ConvTranspose1d, activation: nn.Module, dtype: torch.dtype, fused: bool, matrix: bool = False):
        super().__init__(conv, activation, dtype, fused, matrix)  # as a matrix: (C, C' * k, 1, 1)
        (self.output_padding,) = conv.output_padding

    def size(self, n):
        return (n - 1) * self.stride - 2 * self.padding + self.kernel + self.output_padding

    def needs(self, low, high):
        # output o gets input i through kernel tap o + padding - i * stride, in [0, kernel)
        return (low + self.padding - self.kernel) // self.stride + 1, (high - 1 + self.padding) // self.stride + 1

    def __call__(self, hidden_states, low, high, size, lengths):
        a = max(0, self.needs(low, high)[0])
        full = self.transposed(self.activate(hidden_states))  # row q: output q + a * stride - padding
        start = low + self.padding - a * self.stride
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
    """`RvqganResidualUnit` on a stretch of the sequence."""

    def __init__(self, unit: nn.Module, dtype: torch.dtype, fused: bool):
        self.conv1, self.conv2 = Conv(unit.conv1, unit.snake1, dtype, fused), Conv(unit.conv2, unit.snake2, dtype, fused)

    def size(self, n):
        return n

    def needs(self, low, high):
        return self.conv1.needs(low, high)

    def __call__(self, hidden_states, low, high, size, lengths):
        branch = self.conv2(self.conv1(hidden_states, low, high, size, lengths), low, high, size, lengths)
        skip = low - max(0, self.needs(low, high)[0])
        return hidden_states[:, skip : skip + high - low] + branch  # float32


def encoder_stages(encoder: nn.Module, fused: bool) -> list[tuple[float, list]]:
    """The encoder as steps in float32, in two stages with their tile seconds: up to the last block, then the rest."""
    steps = [Conv(encoder.conv1, None, torch.float32, fused)]
    for block in encoder.block:
        steps += [Residual(unit, torch.float32, fused) for unit in (block.res_unit1, block.res_unit2, block.res_unit3)]
        matrix = block in encoder.block[-2:]  # strided 8x from 256 or 512 channels: faster as matrix products
        steps.append(Conv(block.conv1, block.snake1, torch.float32, fused, matrix))
    steps.append(Conv(encoder.conv2, encoder.snake1, torch.float32, fused, matrix=True))
    return [(TILE_SECONDS, steps[:-6]), (LOW_RATE_TILE_SECONDS, steps[-6:])]


def decoder_stages(decoder: nn.Module, dtype: torch.dtype) -> list[tuple[float, list]]:
    """The decoder as steps in two stages with their tile seconds, up to the first block's end then the rest,
    convolving in `dtype` except for the last convolution (float32), with fused Snakes unless `dtype` is float32."""
    fused = dtype != torch.float32
    steps = [Conv(decoder.conv1, None, dtype, fused, matrix=True)]
    for block in decoder.block:
        first = block is decoder.block[0]  # its transposed convolution, like the one before, reads the frame rate
        steps.append(ConvTranspose(block.conv_t1, block.snake1, dtype, fused, matrix=first))
        steps += [Residual(unit, dtype, fused) for unit in (block.res_unit1, block.res_unit2, block.res_unit3)]
    steps.append(Conv(decoder.conv2, decoder.snake1, torch.float32, fused))
    return [(LOW_RATE_TILE_SECONDS, steps[:5]), (TILE_SECONDS, steps[5:])]


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


def run_tiled(stages: list[tuple[float, list]], inputs: torch.Tensor, lengths: torch.Tensor | None, rate: float, threads: int):
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
        return run(steps[first:last], hidden_states, offset, sizes[first : last + 1], all_lengths[first : last + 1], low, high)

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


def encode_latents(encoder: nn.Module, input_values: torch.Tensor, lengths: torch.Tensor | None, frame_rate: float,
                   fused: bool, threads: int):
    """`encoder(input_values, lengths)` tile by tile, in float32, with fused Snakes if `fused`:
    (B, 1, T) -> (B, hidden_size, T / hop_length)."""
    latents = run_tiled(encoder_stages(encoder, fused), input_values.transpose(1, 2), lengths, frame_rate, threads)
    return latents.transpose(1, 2).contiguous()  # the quantizer's 1x1 convolutions take 2x longer on a strided input


def decode_latents(decoder: nn.Module, quantized: torch.Tensor, frames: torch.Tensor | None, sampling_rate: float,
                   dtype: torch.dtype, threads: int):
    """`decoder(quantized, frames)` tile by tile, all convolutions but the last in `dtype`:
    (B, hidden_size, T') -> (B, 1, T' * hop_length)."""
    audio = run_tiled(decoder_stages(decoder, dtype), quantized.transpose(1, 2), frames, sampling_rate, threads)
    return torch.tanh_(audio).transpose(1, 2)
