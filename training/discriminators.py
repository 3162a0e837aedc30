"""The Improved RVQGAN discriminator: multi-period (MPD), multi-band multi-scale STFT (MRD) and, optionally,
multi-scale waveform (MSD) sub-discriminators, as DAC's `dac/model/discriminator.py`.

The module tree and parameter names are DAC's; only weight norm differs (torch's parametrization instead of the
deprecated `weight_g`/`weight_v` hook), so `from_descript_state_dict` converts a DAC discriminator state dict.
"""

import huggingface_hub
import julius
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


def WNConv1d(*args, act: bool = True, **kwargs) -> nn.Module:
    """A weight-normed Conv1d, followed by LeakyReLU(0.1) when `act`."""
    conv = weight_norm(nn.Conv1d(*args, **kwargs))
    return nn.Sequential(conv, nn.LeakyReLU(0.1)) if act else conv


def WNConv2d(*args, act: bool = True, **kwargs) -> nn.Module:
    """A weight-normed Conv2d, followed by LeakyReLU(0.1) when `act`."""
    conv = weight_norm(nn.Conv2d(*args, **kwargs))
    return nn.Sequential(conv, nn.LeakyReLU(0.1)) if act else conv


def run_stack(layers, hidden_states: torch.Tensor, fmap: list) -> torch.Tensor:
    """Apply `layers` in turn, appending each output to `fmap`."""
    for layer in layers:
        hidden_states = layer(hidden_states)
        fmap.append(hidden_states)
    return hidden_states


class MPD(nn.Module):
    """Period discriminator: (B, 1, T) folded into (B, 1, T/period, period), then (k, 1) convs. fmap has 6 entries."""

    def __init__(self, period: int, channels=(32, 128, 512, 1024, 1024)):
        super().__init__()
        self.period = period
        ins = (1,) + tuple(channels[:-1])
        strides = (3,) * (len(channels) - 1) + (1,)
        self.convs = nn.ModuleList(
            [WNConv2d(i, o, (5, 1), (s, 1), padding=(2, 0)) for i, o, s in zip(ins, channels, strides)]
        )
        self.conv_post = WNConv2d(channels[-1], 1, kernel_size=(3, 1), padding=(1, 0), act=False)

    def forward(self, audio: torch.Tensor) -> list[torch.Tensor]:
        audio = F.pad(audio, (0, self.period - audio.shape[-1] % self.period), mode="reflect")
        hidden_states = audio.view(*audio.shape[:2], -1, self.period)
        fmap = []
        run_stack([*self.convs, self.conv_post], hidden_states, fmap)
        return fmap


class MSD(nn.Module):
    """Waveform discriminator at `sampling_rate // rate` (julius resampling, as audiotools). fmap has 7 entries."""

    def __init__(self, rate: int = 1, sampling_rate: int = 44100):
        super().__init__()
        self.convs = nn.ModuleList(
            [
                WNConv1d(1, 16, 15, 1, padding=7),
                WNConv1d(16, 64, 41, 4, groups=4, padding=20),
                WNConv1d(64, 256, 41, 4, groups=16, padding=20),
                WNConv1d(256, 1024, 41, 4, groups=64, padding=20),
                WNConv1d(1024, 1024, 41, 4, groups=256, padding=20),
                WNConv1d(1024, 1024, 5, 1, padding=2),
            ]
        )
        self.conv_post = WNConv1d(1024, 1, 3, 1, padding=1, act=False)
        self.sampling_rate = sampling_rate
        self.rate = rate

    def forward(self, audio: torch.Tensor) -> list[torch.Tensor]:
        target = self.sampling_rate // self.rate
        if target != self.sampling_rate:
            audio = julius.resample_frac(audio, self.sampling_rate, target)
        fmap = []
        run_stack([*self.convs, self.conv_post], audio, fmap)
        return fmap


class MRD(nn.Module):
    """Multi-band complex STFT discriminator: `[B, 2 (re, im), frames, bins]` split into frequency bands, one conv
    stack per band, concatenated on the frequency axis, then `conv_post`. fmap has 5 * len(bands) + 1 entries."""

    def __init__(
        self, window_length: int, hop_factor: float = 0.25, sampling_rate: int = 44100, bands=BANDS, channels: int = 32
    ):
        super().__init__()
        self.window_length = window_length
        self.hop_length = int(window_length * hop_factor)
        self.sampling_rate = sampling_rate
        n_bins = window_length // 2 + 1
        self.bands = [(int(low * n_bins), int(high * n_bins)) for low, high in bands]
        # audiotools' hann window (scipy, float64) in float32
        self.register_buffer("window", torch.hann_window(window_length, dtype=torch.float64).float(), persistent=False)

        def convs():
            return nn.ModuleList(
                [
                    WNConv2d(2, channels, (3, 9), (1, 1), padding=(1, 4)),
                    WNConv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)),
                    WNConv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)),
                    WNConv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)),
                    WNConv2d(channels, channels, (3, 3), (1, 1), padding=(1, 1)),
                ]
            )

        self.band_convs = nn.ModuleList([convs() for _ in self.bands])
        self.conv_post = WNConv2d(channels, 1, (3, 3), (1, 1), padding=(1, 1), act=False)

    def spectrogram(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """(B, 1, T) -> one `[B, 2, T / hop, band bins]` tensor per band (audiotools' `match_stride` STFT)."""
        length = audio.shape[-1]
        right_pad = -length % self.hop_length
        pad = (self.window_length - self.hop_length) // 2
        audio = F.pad(audio, (pad, pad + right_pad), mode="reflect")
        stft = torch.stft(
            audio.reshape(-1, audio.shape[-1]),
            n_fft=self.window_length,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            return_complex=True,
        )[..., 2:-2]
        spec = torch.view_as_real(stft).permute(0, 3, 2, 1)  # (B, bins, frames, 2) -> (B, 2, frames, bins)
        return [spec[..., low:high] for low, high in self.bands]

    def forward(self, audio: torch.Tensor) -> list[torch.Tensor]:
        fmap = []
        bands = [run_stack(stack, band, fmap) for band, stack in zip(self.spectrogram(audio), self.band_convs)]
        fmap.append(self.conv_post(torch.cat(bands, dim=-1)))
        return fmap


class RvqganDiscriminator(nn.Module, huggingface_hub.PyTorchModelHubMixin):
    """MPDs (one per period), MSDs (one per rate) and MRDs (one per FFT size), in that order, as DAC's `Discriminator`.

    The defaults are the paper's final configuration (5 MPD + 3 MRD, 42.5M parameters); `period_channels` and
    `stft_channels` make a lighter one. `save_pretrained` / `from_pretrained` write safetensors and config.json.
    """

    def __init__(
        self,
        sampling_rate: int = 44100,
        periods=(2, 3, 5, 7, 11),
        fft_sizes=(2048, 1024, 512),
        rates=(),
        bands=BANDS,
        period_channels=(32, 128, 512, 1024, 1024),
        stft_channels: int = 32,
    ):
        super().__init__()
        discriminators = [MPD(period, period_channels) for period in periods]
        discriminators += [MSD(rate, sampling_rate) for rate in rates]
        discriminators += [
            MRD(size, sampling_rate=sampling_rate, bands=bands, channels=stft_channels) for size in fft_sizes
        ]
        self.discriminators = nn.ModuleList(discriminators)

    @staticmethod
    def preprocess(audio: torch.Tensor) -> torch.Tensor:
        """Remove the DC offset, then peak-normalise each item to 0.8. (B, 1, T) -> (B, 1, T)."""
        audio = audio - audio.mean(dim=-1, keepdim=True)
        return 0.8 * audio / (audio.abs().amax(dim=-1, keepdim=True) + 1e-9)

    def forward(self, audio: torch.Tensor) -> list[list[torch.Tensor]]:
        """(B, 1, T) -> one list of feature maps per sub-discriminator; the last of each list is its logits."""
        audio = self.preprocess(audio)
        return [discriminator(audio) for discriminator in self.discriminators]


def from_descript_state_dict(state_dict: dict) -> dict:
    """A DAC `Discriminator` state dict (old weight norm: `weight_g`, `weight_v`) with this module's parameter names."""
    renames = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
    converted = {}
    for key, value in state_dict.items():
        prefix, _, name = key.rpartition(".")
        converted[f"{prefix}.{renames.get(name, name)}"] = value
    return converted
