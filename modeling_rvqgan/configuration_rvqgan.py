"""Configuration of the Improved RVQGAN codec (the Descript Audio Codec architecture)."""

import math
import numbers

from transformers import PreTrainedConfig

PRESETS = {
    "44khz": {},
    "44khz-16kbps": {"hidden_size": 128, "n_codebooks": 18},
    "24khz": {"sampling_rate": 24000, "downsampling_ratios": [2, 4, 5, 8], "n_codebooks": 32},
    "16khz": {"sampling_rate": 16000, "downsampling_ratios": [2, 4, 5, 8], "n_codebooks": 12},
    "tiny": {  # the test and smoke-run model: hop 32, 4 codebooks of 64
        "sampling_rate": 16000,
        "encoder_hidden_size": 8,
        "downsampling_ratios": [2, 4, 4],
        "decoder_hidden_size": 32,
        "n_codebooks": 4,
        "codebook_size": 64,
        "codebook_dim": 4,
    },
}


def kbps_on_disk(n_bytes: int, seconds: float) -> float:
    """The bitrate of `n_bytes` of coded audio lasting `seconds`: `8 * n_bytes / seconds / 1000`."""
    return 8 * n_bytes / seconds / 1000


class RvqganConfig(PreTrainedConfig):
    r"""
    Configuration of [`RvqganModel`]. The defaults give the paper's 44.1 kHz model: 9 codebooks of 1024 entries at
    44100 / 512 = 86.13 frames per second, i.e. 7.75 kbps.

    Args:
        encoder_hidden_size (`int`): channels of the first encoder convolution, doubled at every downsampling block.
        downsampling_ratios (`list[int]`): encoder strides; the decoder upsamples by the same ratios in reverse.
        decoder_hidden_size (`int`): channels of the first decoder convolution, halved at every upsampling block.
        hidden_size (`int`, *optional*): latent dimension between encoder and quantizer; defaults to
            `encoder_hidden_size * 2**len(downsampling_ratios)` (1024), the 16 kbps model uses 128.
        n_codebooks (`int`): number of residual codebooks.
        codebook_size (`int`): entries per codebook, a power of two.
        codebook_dim (`int`): dimension of the factorized (projected) code space.
        quantizer_dropout (`float`): fraction of a training batch that gets a random number of codebooks.
        commitment_loss_weight, codebook_loss_weight (`float`): weights of the quantizer losses in `loss`.
        sampling_rate (`int`): audio sampling rate in Hz.

    Example:
        >>> config = RvqganConfig.from_preset("24khz")
        >>> config.hop_length, config.frame_rate, config.n_quantizers_to_kbps(8)
        (320, 75.0, 6.0)
    """

    model_type = "rvqgan"

    encoder_hidden_size: int = 64
    downsampling_ratios: list[int] | tuple[int, ...] = (2, 4, 8, 8)
    decoder_hidden_size: int = 1536
    hidden_size: int | None = None
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float | int = 0.5
    commitment_loss_weight: float | int = 0.25
    codebook_loss_weight: float | int = 1.0
    sampling_rate: int = 44100

    def __post_init__(self, **kwargs):
        self.downsampling_ratios = list(self.downsampling_ratios)
        if self.hidden_size is None:
            self.hidden_size = self.encoder_hidden_size * 2 ** len(self.downsampling_ratios)
        self._check_values()
        super().__post_init__(**kwargs)

    def _check_values(self):
        positive = ["encoder_hidden_size", "decoder_hidden_size", "hidden_size", "n_codebooks", "codebook_dim"]
        for name in positive + ["sampling_rate", "codebook_size"]:
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if not self.downsampling_ratios or any(r <= 0 for r in self.downsampling_ratios):
            raise ValueError(
                f"`downsampling_ratios` must be a non-empty list of positive integers, got {self.downsampling_ratios}."
            )
        if self.codebook_size & (self.codebook_size - 1):
            raise ValueError(f"`codebook_size` must be a power of two, got {self.codebook_size}.")
        if self.decoder_hidden_size % 2 ** len(self.downsampling_ratios):
            raise ValueError(
                f"`decoder_hidden_size` ({self.decoder_hidden_size}) must be divisible by "
                f"2**{len(self.downsampling_ratios)}: "
                "it is halved at every upsampling block."
            )
        if not 0 <= self.quantizer_dropout <= 1:
            raise ValueError(f"`quantizer_dropout` must be in [0, 1], got {self.quantizer_dropout}.")

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "RvqganConfig":
        """The paper's released variants "44khz", "44khz-16kbps", "24khz", "16khz", or "tiny" (tests and smoke runs);
        `kwargs` override fields."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **kwargs})

    @property
    def upsampling_ratios(self) -> list[int]:
        return self.downsampling_ratios[::-1]

    @property
    def hop_length(self) -> int:
        """Audio samples per code frame."""
        return math.prod(self.downsampling_ratios)

    @property
    def frame_rate(self) -> float:
        """Code frames per second (86.13 Hz for 44.1 kHz)."""
        return self.sampling_rate / self.hop_length

    @property
    def bits_per_codebook(self) -> int:
        return int(math.log2(self.codebook_size))

    def n_quantizers_to_kbps(self, n_quantizers: int) -> float:
        """Nominal bitrate in kbps of `n_quantizers` codebooks (9 codebooks at 44.1 kHz: 7.75 kbps)."""
        return n_quantizers * self.bits_per_codebook * self.frame_rate / 1000

    def kbps_to_n_quantizers(self, kbps: float) -> int:
        """The number of codebooks whose bitrate is nearest to `kbps` (so the paper's labels 1.78 / 2.67 / 5.33 / 8
        kbps give 2 / 3 / 6 / 9 codebooks). Rates below one codebook or over 5 % above the maximum are refused."""
        per_codebook = self.n_quantizers_to_kbps(1)
        maximum = self.n_quantizers_to_kbps(self.n_codebooks)
        if not math.isfinite(kbps) or kbps < per_codebook / 2 or kbps > maximum * 1.05:
            raise ValueError(
                f"`kbps` {kbps} is out of range: this model codes {per_codebook:.3f} to {maximum:.3f} kbps "
                f"in steps of {per_codebook:.3f} kbps (1 to {self.n_codebooks} codebooks)."
            )
        return min(self.n_codebooks, max(1, round(kbps / per_codebook)))

    def resolve_n_quantizers(self, n_quantizers: int | None = None, kbps: float | None = None) -> int:
        """The codebooks to code with: `n_quantizers`, the nearest to `kbps`, or all; ValueError for both, or a
        value out of range or of another type."""
        if n_quantizers is not None and kbps is not None:
            raise ValueError("Pass either `n_quantizers` or `kbps`, not both.")
        if kbps is not None:
            if isinstance(kbps, bool) or not isinstance(kbps, numbers.Real):
                raise ValueError(f"`kbps` must be a number, got {kbps!r}")
            return self.kbps_to_n_quantizers(kbps)
        if n_quantizers is None:
            return self.n_codebooks
        if isinstance(n_quantizers, bool) or not isinstance(n_quantizers, numbers.Integral):
            raise ValueError(f"`n_quantizers` must be an integer, got {n_quantizers!r}")
        if not 1 <= n_quantizers <= self.n_codebooks:
            raise ValueError(f"`n_quantizers` must be in [1, {self.n_codebooks}], got {n_quantizers}")
        return int(n_quantizers)


__all__ = ["RvqganConfig", "kbps_on_disk"]
