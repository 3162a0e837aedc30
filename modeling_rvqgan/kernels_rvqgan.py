"""Kernels that plug into the tiled passes' steps (`inference_rvqgan`) and the training step: the Snake activation with
one temporary, or compiled into one TorchInductor kernel (`compiled`, also used by `rvqgan.training.snake`), and
convolutions as products of DFT spectra. Each equals the arithmetic of `layers_rvqgan` up to float rounding
(`tests/test_fast_inference.py`), and each checks that it does on a probe input when it is plugged in, falling back to
the reference op where it does not."""

import functools
import itertools
import math
import threading
import warnings
import weakref

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functionalize
from torch.fx.experimental.proxy_tensor import make_fx

SPECTRAL_SIZE = 32  # points of the spectral convolutions' DFT windows


def snake(hidden_states: torch.Tensor, alpha: torch.Tensor, inverse: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`layers_rvqgan.snake` of (N, C) `hidden_states` in float32 with (C,) `alpha` and `inverse` =
    `inverse_alpha(alpha)`, with one temporary, written in `dtype`."""
    hidden_states = hidden_states.float()
    out = hidden_states * alpha
    return out.sin_().pow_(2).mul_(inverse).add_(hidden_states).to(dtype)


def as_tuple(tensors) -> tuple:
    """A tensor as a 1-tuple, a sequence of tensors as a tuple."""
    return (tensors,) if torch.is_tensor(tensors) else tuple(tensors)


def agrees(got, expected) -> bool:
    """Whether `got` equals `expected` (a tensor or a tuple of them) up to float rounding: same shapes, finite, within
    1e-4 (or 8 steps of a coarser dtype's rounding) of each expected output's largest magnitude."""
    got, expected = (
        (got,) if torch.is_tensor(got) else tuple(got),
        (expected,) if torch.is_tensor(expected) else expected,
    )
    for a, b in zip(got, expected, strict=True):
        tolerance = max(1e-4, 8 * torch.finfo(b.dtype).eps) * max(1.0, b.abs().max().item() if b.numel() else 0.0)
        if a.shape != b.shape or not (a.double() - b.double()).abs().le(tolerance).all():
            return False
    return True


def compiled(function, example: tuple, probe: tuple, name: str):
    """`function` as one TorchInductor kernel for inputs of `example`'s dtypes, devices and dimensions, at any sizes;
    or `function` itself, with a warning, where compilation fails (no C++ compiler, say) or the kernel's results on
    `probe` do not equal `function`'s up to float rounding (`agrees`): a miscompiled kernel never runs.

    The one use of TorchInductor's private entry point. The graph is compiled directly, without torch.compile's guards,
    which would recompile for every dtype, stride and dispatch key set and race when tiles call it from several
    threads; on CPU, `cpp_wrapper` releases the GIL. The first call in a process compiles, for seconds (later ones
    read inductor's disk cache)."""
    try:
        graph = make_fx(functionalize(function), tracing_mode="symbolic")(
            *example
        )  # symbolic sizes: one kernel for all
        options = {"cpp_wrapper": True} if example[0].device.type == "cpu" else {}
        kernel = torch._inductor.compile(graph, list(example), options=options)
        right = agrees(kernel(*probe), function(*probe))
    except Exception as error:
        warnings.warn(f"{name} run unfused (slower): TorchInductor failed with {error!r}", stacklevel=2)
        return function
    if not right:
        warnings.warn(f"{name} run unfused (slower): the compiled kernel's results are wrong on a probe", stacklevel=2)
        return function
    return kernel


@functools.cache
def fused_snake(device_type: str, input_dtype: torch.dtype, dtype: torch.dtype):
    """`snake` writing `dtype`, a function of (hidden_states, alpha, inverse), for contiguous `input_dtype` inputs of
    any size: on CPU, one compiled kernel (`compiled`), whose results differ from the eager ops' by float rounding (a
    different `sin`). `inference_rvqgan.Conv` uses it under autocast only, where the bf16 convolutions leave the Snake
    a larger share. Other devices, and a kernel that fails to compile or its check, get the eager ops."""
    eager = functools.partial(snake, dtype=dtype)
    if device_type != "cpu":
        return eager
    generator = torch.Generator().manual_seed(0)
    alpha = torch.rand(96, generator=generator) + 0.1
    probe = (3 * torch.randn(67, 96, generator=generator)).to(input_dtype), alpha, 1 / alpha  # vectors and a tail
    example = torch.zeros(2, 3, dtype=input_dtype), torch.ones(3), torch.ones(3)
    return compiled(eager, example, probe, "Snake activations")


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


def weight_spectrum(conv: nn.Conv1d) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The DFT over SPECTRAL_SIZE points of `conv`'s reversed (C', C, k) taps, as float32 (C, C') matrices per bin:
    real parts (bins, C, C'), imaginary parts of the bins but the first and last (bins - 2, C, C'), and the sum of
    the two (Gauss's complex product: 3 real matrix products instead of 4); or None, with a warning, where
    `spectral_convolution` with them does not equal the direct convolution on a probe input (`agrees`). Computed once
    and kept until `conv`'s parameters change (in place, or replaced), or until the spectra kept take more than
    SPECTRA_BYTES: 6.7x the memory of its weight."""
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
    (dilation,) = conv.dilation
    probe_size = (1, (kernel - 1) * dilation + 2 * SPECTRAL_SIZE + 3, weight.shape[1])  # windows and a tail
    probe = torch.randn(probe_size, generator=torch.Generator().manual_seed(0))
    expected = F.conv1d(probe.transpose(1, 2), weight, dilation=dilation).transpose(1, 2)
    if not agrees(spectral_convolution(probe, spectrum, kernel, dilation), expected):
        warnings.warn("Convolutions run direct (slower): spectral products' results are wrong on a probe", stacklevel=2)
        spectrum = None
    with _spectra_lock:
        _spectra[conv] = key, spectrum, next(_uses)
        kept = sorted(_spectra.items(), key=lambda item: item[1][2])  # least recently used first
        total = sum(t.nbytes for _, (_, tensors, _) in kept for t in tensors or ())
        for old, (_, tensors, _) in kept[:-1]:
            if total <= SPECTRA_BYTES:
                break
            total -= sum(t.nbytes for t in tensors or ())
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
