"""Encoder and decoder of the Improved RVQGAN codec: Snake activations and dilated convolutions.

Module and parameter names follow transformers' `DacModel`, so state dicts are interchangeable.
Every module takes `lengths` (B,), the valid length of each item at its input resolution, or None. With lengths,
every convolution output is zeroed past each item's end, so a padded batch gives each item exactly what it
would give alone.
"""

import math

import torch
from torch import nn

from .configuration_rvqgan import RvqganConfig


def length_mask(lengths: torch.Tensor | None, size: int) -> torch.Tensor | None:
    """(B,) valid lengths -> (B, 1, size) float mask, or None when there is nothing to mask."""
    if lengths is None:
        return None
    return (torch.arange(size, device=lengths.device) < lengths[:, None]).unsqueeze(1)


def masked(hidden_states: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Zero (B, C, T) `hidden_states` past each item's length."""
    mask = length_mask(lengths, hidden_states.shape[-1])
    return hidden_states if mask is None else hidden_states * mask


def snake(hidden_states: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Snake x + 1/alpha * sin^2(alpha * x) of (B, C, T) `hidden_states` with (1, C, 1) `alpha`."""
    return hidden_states + (alpha + 1e-9).reciprocal() * torch.sin(alpha * hidden_states).pow(2)


class Snake1d(nn.Module):
    """Snake activation, one learnable alpha per channel. `kernel(hidden_states, alpha)` computes it: `snake` by
    default; training on CPU plugs in fused kernels (`training.snake.FusedSnake`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))
        self.kernel = snake

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.kernel(hidden_states, self.alpha)


class RvqganResidualUnit(nn.Module):
    """Snake -> dilated k7 conv -> Snake -> k1 conv, plus the input. (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.snake1 = Snake1d(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=7, dilation=dilation, padding=3 * dilation)
        self.snake2 = Snake1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        residual = masked(self.conv1(self.snake1(hidden_states)), lengths)
        return hidden_states + masked(self.conv2(self.snake2(residual)), lengths)


class RvqganEncoderBlock(nn.Module):
    """Three residual units then a strided conv: (B, C/2, T) -> (B, C, T / stride)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.res_unit1 = RvqganResidualUnit(channels // 2, dilation=1)
        self.res_unit2 = RvqganResidualUnit(channels // 2, dilation=3)
        self.res_unit3 = RvqganResidualUnit(channels // 2, dilation=9)
        self.snake1 = Snake1d(channels // 2)
        self.conv1 = nn.Conv1d(channels // 2, channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2))
        self.stride = stride

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        for unit in (self.res_unit1, self.res_unit2, self.res_unit3):
            hidden_states = unit(hidden_states, lengths)
        hidden_states = self.conv1(self.snake1(hidden_states))
        return masked(hidden_states, None if lengths is None else lengths // self.stride)


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
        self.res_unit1 = RvqganResidualUnit(channels // 2, dilation=1)
        self.res_unit2 = RvqganResidualUnit(channels // 2, dilation=3)
        self.res_unit3 = RvqganResidualUnit(channels // 2, dilation=9)
        self.stride = stride

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        lengths = None if lengths is None else lengths * self.stride
        hidden_states = masked(self.conv_t1(self.snake1(hidden_states)), lengths)
        for unit in (self.res_unit1, self.res_unit2, self.res_unit3):
            hidden_states = unit(hidden_states, lengths)
        return hidden_states


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

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = masked(self.conv1(input_values), lengths)
        for block in self.block:
            hidden_states = block(hidden_states, lengths)
            lengths = None if lengths is None else lengths // block.stride
        return masked(self.conv2(self.snake1(hidden_states)), lengths)


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

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = masked(self.conv1(hidden_states), lengths)
        for block in self.block:
            hidden_states = block(hidden_states, lengths)
            lengths = None if lengths is None else lengths * block.stride
        return self.tanh(masked(self.conv2(self.snake1(hidden_states)), lengths))
