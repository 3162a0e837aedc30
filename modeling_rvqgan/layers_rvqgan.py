"""Encoder and decoder of the Improved RVQGAN codec: Snake activations and dilated convolutions.

Module and parameter names follow transformers' `DacModel`, so state dicts are interchangeable. Each module declares
its `steps` (`Step`: an optional Snake then a convolution, whose geometry is the convolution's own; `Residual`:
steps plus their input) once: its `forward` runs them, and so do the tiled passes (`inference_rvqgan`) and the
chunking geometry (`rvqgan.chunking.receptive_field`).
Every module takes `lengths` (B,), the valid length of each item at its input resolution, or None. With lengths,
every convolution output is zeroed past each item's end, so a padded batch gives each item exactly what it
would give alone.
"""

import math
from typing import NamedTuple

import torch
from torch import nn

from .configuration_rvqgan import RvqganConfig

RESIDUAL_KERNEL_SIZE = 7  # of the residual units' dilated convolutions
DILATIONS = (1, 3, 9)  # of the three residual units of a block


def length_mask(lengths: torch.Tensor | None, size: int, start: int = 0) -> torch.Tensor | None:
    """(B,) valid lengths -> (B, 1, size) mask of positions start..start + size - 1, or None without lengths."""
    if lengths is None:
        return None
    return (torch.arange(start, start + size, device=lengths.device) < lengths[:, None]).unsqueeze(1)


def masked(hidden_states: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Zero (B, C, T) `hidden_states` past each item's length."""
    mask = length_mask(lengths, hidden_states.shape[-1])
    return hidden_states if mask is None else hidden_states * mask


def inverse_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """1 / alpha as Snake divides by it (kept finite at alpha = 0)."""
    return (alpha + 1e-9).reciprocal()


def snake(hidden_states: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Snake x + 1/alpha * sin^2(alpha * x) of (B, C, T) `hidden_states` with (1, C, 1) `alpha`."""
    return hidden_states + inverse_alpha(alpha) * torch.sin(alpha * hidden_states).pow(2)


class Snake1d(nn.Module):
    """Snake activation, one learnable alpha per channel. `kernel(hidden_states, alpha)` computes it: `snake` by
    default; training on CPU plugs in fused kernels (`rvqgan.training.snake.FusedSnake`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))
        self.kernel = snake

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.kernel(hidden_states, self.alpha)


def output_size(conv: nn.Conv1d | nn.ConvTranspose1d, n):
    """Output length of `conv` for input length `n` (an int, or a tensor of lengths)."""
    (kernel,), (stride,), (padding,), (dilation,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    if isinstance(conv, nn.ConvTranspose1d):
        return (n - 1) * stride - 2 * padding + dilation * (kernel - 1) + conv.output_padding[0] + 1
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def input_span(conv: nn.Conv1d | nn.ConvTranspose1d, low: int, high: int) -> tuple[int, int]:
    """The input positions [a, b) that outputs [low, high) of `conv` read (beyond the input's ends: zero padding)."""
    (kernel,), (stride,), (padding,), (dilation,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    if isinstance(
        conv, nn.ConvTranspose1d
    ):  # output o reads input i through tap j where o = i * stride - padding + j * dilation
        return -(-(low + padding - dilation * (kernel - 1)) // stride), (high - 1 + padding) // stride + 1
    return low * stride - padding, (high - 1) * stride - padding + dilation * (kernel - 1) + 1


class Step(NamedTuple):
    """One step of the network as every path reads it: `activation` (a `Snake1d`, or None), then `conv`, whose
    output is zeroed past each item's length."""

    conv: nn.Conv1d | nn.ConvTranspose1d
    activation: Snake1d | None = None

    def size(self, n):
        return output_size(self.conv, n)

    def needs(self, low: int, high: int) -> tuple[int, int]:
        return input_span(self.conv, low, high)

    def __call__(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) with (B,) input lengths or None -> (B, C', size(T))."""
        if self.activation is not None:
            hidden_states = self.activation(hidden_states)
        return masked(self.conv(hidden_states), None if lengths is None else self.size(lengths))


class Residual(NamedTuple):
    """`steps` (keeping the length) applied in turn, plus their input."""

    steps: tuple[Step, ...]

    def size(self, n):
        return n

    def needs(self, low: int, high: int) -> tuple[int, int]:
        a, b = low, high
        for step in reversed(self.steps):
            a, b = step.needs(a, b)
        return min(a, low), max(b, high)

    def __call__(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return hidden_states + run_steps(self.steps, hidden_states, lengths)


def steps_span(steps: list, low: int, high: int) -> tuple[int, int]:
    """The input positions [a, b) that outputs [low, high) of `steps` (an encoder's or decoder's) read."""
    for step in reversed(steps):
        low, high = step.needs(low, high)
    return low, high


def run_steps(steps: list, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """`steps` applied in turn to (B, C, T) `hidden_states` whose items have (B,) `lengths` (or None)."""
    for step in steps:
        hidden_states = step(hidden_states, lengths)
        lengths = None if lengths is None else step.size(lengths)
    return hidden_states


class RvqganResidualUnit(nn.Module):
    """Snake -> dilated conv -> Snake -> k1 conv, plus the input. (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        padding = (RESIDUAL_KERNEL_SIZE - 1) // 2 * dilation
        self.snake1 = Snake1d(channels)
        self.conv1 = nn.Conv1d(channels, channels, RESIDUAL_KERNEL_SIZE, dilation=dilation, padding=padding)
        self.snake2 = Snake1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=1)

    @property
    def steps(self) -> list[Residual]:
        return [Residual((Step(self.conv1, self.snake1), Step(self.conv2, self.snake2)))]

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return run_steps(self.steps, hidden_states, lengths)


class RvqganEncoderBlock(nn.Module):
    """Three residual units then a strided conv: (B, C/2, T) -> (B, C, T / stride)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.res_unit1, self.res_unit2, self.res_unit3 = (RvqganResidualUnit(channels // 2, d) for d in DILATIONS)
        self.snake1 = Snake1d(channels // 2)
        self.conv1 = nn.Conv1d(
            channels // 2, channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
        )

    @property
    def steps(self) -> list:
        units = (self.res_unit1, self.res_unit2, self.res_unit3)
        return [step for unit in units for step in unit.steps] + [Step(self.conv1, self.snake1)]

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return run_steps(self.steps, hidden_states, lengths)


class RvqganDecoderBlock(nn.Module):
    """A transposed strided conv then three residual units: (B, C, T) -> (B, C/2, T * stride).

    Odd strides get `output_padding=1` so that every stride maps T to exactly T * stride (the reference loses
    a sample per odd-stride block, 8 samples per frame run at 24 and 16 kHz); even strides are unchanged.
    """

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.snake1 = Snake1d(channels)
        self.conv_t1 = nn.ConvTranspose1d(
            channels,
            channels // 2,
            kernel_size=2 * stride,
            stride=stride,
            padding=math.ceil(stride / 2),
            output_padding=stride % 2,
        )
        self.res_unit1, self.res_unit2, self.res_unit3 = (RvqganResidualUnit(channels // 2, d) for d in DILATIONS)

    @property
    def steps(self) -> list:
        units = (self.res_unit1, self.res_unit2, self.res_unit3)
        return [Step(self.conv_t1, self.snake1)] + [step for unit in units for step in unit.steps]

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return run_steps(self.steps, hidden_states, lengths)


class RvqganEncoder(nn.Module):
    """Waveform (B, 1, T) -> latents (B, hidden_size, T / hop_length)."""

    def __init__(self, config: RvqganConfig):
        super().__init__()
        channels = config.encoder_hidden_size
        self.conv1 = nn.Conv1d(1, channels, kernel_size=7, padding=3)
        self.block = nn.ModuleList()
        for stride in config.downsampling_ratios:
            channels *= 2
            self.block.append(RvqganEncoderBlock(channels, stride))
        self.snake1 = Snake1d(channels)
        self.conv2 = nn.Conv1d(channels, config.hidden_size, kernel_size=3, padding=1)

    @property
    def steps(self) -> list:
        """The encoder's steps, in order, as the reference, tiled and chunked paths read them."""
        blocks = [step for block in self.block for step in block.steps]
        return [Step(self.conv1)] + blocks + [Step(self.conv2, self.snake1)]

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return run_steps(self.steps, input_values, lengths)


class RvqganDecoder(nn.Module):
    """Quantized latents (B, hidden_size, T') -> waveform (B, 1, T' * hop_length) in [-1, 1]."""

    def __init__(self, config: RvqganConfig):
        super().__init__()
        channels = config.decoder_hidden_size
        self.conv1 = nn.Conv1d(config.hidden_size, channels, kernel_size=7, padding=3)
        self.block = nn.ModuleList()
        for stride in config.upsampling_ratios:
            self.block.append(RvqganDecoderBlock(channels, stride))
            channels //= 2
        self.snake1 = Snake1d(channels)
        self.conv2 = nn.Conv1d(channels, 1, kernel_size=7, padding=3)
        self.tanh = nn.Tanh()

    @property
    def steps(self) -> list:
        """The decoder's steps up to its final `tanh`, in order, as the reference, tiled and chunked paths read them."""
        blocks = [step for block in self.block for step in block.steps]
        return [Step(self.conv1)] + blocks + [Step(self.conv2, self.snake1)]

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.tanh(run_steps(self.steps, hidden_states, lengths))
