"""The Improved RVQGAN codec (Kumar et al. 2023, the Descript Audio Codec) as a transformers model."""

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_rvqgan import RvqganConfig
from .inference_rvqgan import autocast_dtype, decode_latents, encode_latents, run_pass
from .layers_rvqgan import RvqganDecoder, RvqganEncoder, Snake1d, length_mask
from .loading_rvqgan import strict_from_pretrained
from .quantizer_rvqgan import RvqganResidualVectorQuantizer
from .streaming_rvqgan import RvqganStreamingDecoder, RvqganStreamingEncoder


@dataclass
class RvqganEncoderOutput(ModelOutput):
    """
    loss (`torch.Tensor` scalar): `commitment_loss_weight * commitment_loss + codebook_loss_weight * codebook_loss`.
    quantized_representation (`torch.Tensor` of shape `(batch_size, hidden_size, frames)`): the decoder's input.
    audio_codes (`torch.LongTensor` of shape `(batch_size, n_quantizers, frames)`): codebook indices.
    projected_latents (`torch.Tensor` of shape `(batch_size, n_quantizers * codebook_dim, frames)`): the
        encoder's output projected into each codebook's space, before the lookup.
    commitment_loss, codebook_loss (`torch.Tensor` scalars): the quantizer losses (not in the tuple form).
    """

    loss: torch.Tensor | None = None
    quantized_representation: torch.Tensor | None = None
    audio_codes: torch.LongTensor | None = None
    projected_latents: torch.Tensor | None = None
    commitment_loss: torch.Tensor | None = None
    codebook_loss: torch.Tensor | None = None
    tuple_fields: ClassVar[tuple[str, ...]] = ("loss", "quantized_representation", "audio_codes", "projected_latents")


@dataclass
class RvqganDecoderOutput(ModelOutput):
    """
    audio_values (`torch.Tensor` of shape `(batch_size, samples)`): the decoded waveform in [-1, 1].
    """

    audio_values: torch.Tensor | None = None
    tuple_fields: ClassVar[tuple[str, ...]] = ("audio_values",)


@dataclass
class RvqganOutput(ModelOutput):
    """
    loss (`torch.Tensor` scalar): as in [`RvqganEncoderOutput`].
    audio_values (`torch.Tensor` of shape `(batch_size, samples)`): the reconstruction, as long as the input.
    quantized_representation, audio_codes, projected_latents, commitment_loss, codebook_loss: as in
        [`RvqganEncoderOutput`].
    """

    loss: torch.Tensor | None = None
    audio_values: torch.Tensor | None = None
    quantized_representation: torch.Tensor | None = None
    audio_codes: torch.LongTensor | None = None
    projected_latents: torch.Tensor | None = None
    commitment_loss: torch.Tensor | None = None
    codebook_loss: torch.Tensor | None = None
    tuple_fields: ClassVar[tuple[str, ...]] = (
        "loss",
        "audio_values",
        "quantized_representation",
        "audio_codes",
        "projected_latents",
    )


def model_output(output_class: type[ModelOutput], return_dict: bool, **fields) -> ModelOutput | tuple:
    """`output_class(**fields)`, or with `return_dict` False the tuple of its `tuple_fields` (`DacModel`'s)."""
    output = output_class(**fields)
    return output if return_dict else tuple(getattr(output, name) for name in output_class.tuple_fields)


class RvqganPreTrainedModel(PreTrainedModel):
    config: RvqganConfig
    config_class = RvqganConfig
    base_model_prefix = "rvqgan"
    main_input_name = "input_values"
    input_modalities = "audio"
    _no_split_modules = ["RvqganResidualUnit"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' `from_pretrained`, strict: safetensors only, and every weight the config asks for and no
        other, or a ModelLoadError naming the folder or repo, with the cause chained (`strict_from_pretrained`).
        `AutoModel.from_pretrained`, remote code included, comes here too."""
        return strict_from_pretrained(super().from_pretrained, pretrained_model_name_or_path, *model_args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module):
        # what the reference training effectively starts from: PyTorch's default conv weights, zero conv biases
        # (its trunc-normal init is overwritten by weight norm), unit Snake alphas, N(0, 1) codebooks
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            init.zeros_(module.bias)
        elif isinstance(module, Snake1d):
            init.ones_(module.alpha)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight)


class RvqganModel(RvqganPreTrainedModel):
    """Encoder -> residual vector quantizer -> decoder. Load with `from_pretrained`, or build from a config:

    >>> model = RvqganModel(RvqganConfig.from_preset("44khz")).eval()
    >>> with torch.inference_mode():
    ...     codes = model.encode(audio, kbps=7.75).audio_codes  # audio: (B, 1, T) at 44.1 kHz
    ...     audio = model.decode(audio_codes=codes).audio_values  # (B, T)

    In eval mode without autograd on CPU, `encode` and `decode` run `inference_rvqgan`'s tiled passes (the same
    outputs up to float rounding; `set_inference_backend` chooses). There, under `torch.autocast`, the decoder's
    convolutions run in the autocast dtype; encoding stays in float32 (its Snakes compiled kernels, which round
    differently), so the codes are float32's but for near-ties.
    """

    def __init__(self, config: RvqganConfig):
        super().__init__(config)
        self.encoder = RvqganEncoder(config)
        self.quantizer = RvqganResidualVectorQuantizer(config)
        self.decoder = RvqganDecoder(config)
        self.inference_backend = "auto"
        self.post_init()

    def apply_weight_norm(self):
        """Reparametrize every convolution with weight norm for training (`parametrizations.weight.original0/1`)."""
        for module in self._convolutions():
            parametrizations.weight_norm(module)

    def remove_weight_norm(self):
        """Fold weight norm back into plain `weight` tensors (what checkpoints hold)."""
        for module in self._convolutions():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight")

    def _convolutions(self):
        return [m for m in self.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]

    def save_pretrained(self, save_directory, **kwargs):
        """As `PreTrainedModel.save_pretrained`; with weight norm applied, the checkpoint still holds plain weights."""
        if "state_dict" not in kwargs and any(parametrize.is_parametrized(m) for m in self._convolutions()):
            state_dict = {k: v for k, v in self.state_dict().items() if ".parametrizations." not in k}
            for name, module in self.named_modules():
                if parametrize.is_parametrized(module, "weight"):
                    state_dict[f"{name}.weight"] = module.weight.detach()
            kwargs["state_dict"] = state_dict
        return super().save_pretrained(save_directory, **kwargs)

    def set_inference_backend(self, backend: str) -> "RvqganModel":
        """How `encode` and `decode` compute in eval mode without autograd (`torch.no_grad` / `torch.inference_mode`):
        `"tiled"`, `inference_rvqgan`'s tile-by-tile passes; `"reference"`, module by module as in training; `"auto"`
        (the default), tiled on CPU and the reference elsewhere. With autograd or in training mode, the reference."""
        if backend not in ("auto", "tiled", "reference"):
            raise ValueError(f'`backend` must be "auto", "tiled" or "reference", got {backend!r}.')
        self.inference_backend = backend
        return self

    def inference_path(self, device: torch.device | str) -> str:
        """`"tiled"` or `"reference"`: the path `encode` and `decode` take now for inputs on `device`."""
        if self.training or torch.is_grad_enabled() or self.inference_backend == "reference":
            return "reference"
        return "tiled" if self.inference_backend == "tiled" or torch.device(device).type == "cpu" else "reference"

    def _frame_lengths(self, padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(B, T) padding mask -> (B,) frames per item, ceil(valid samples / hop_length)."""
        if padding_mask is None:
            return None
        return -(-padding_mask.sum(-1) // self.config.hop_length)

    def _n_quantizers(self, n_quantizers: int | None, kbps: float | None, bandwidth: float | None) -> int | None:
        """`config.resolve_n_quantizers` (`bandwidth`: kbps's deprecated name), or None when neither is given: all
        codebooks, with quantizer dropout in training."""
        if bandwidth is not None:
            warnings.warn("`bandwidth` is deprecated: pass `kbps`.", FutureWarning, stacklevel=3)
            kbps = bandwidth if kbps is None else kbps
        if n_quantizers is None and kbps is None:
            return None
        return self.config.resolve_n_quantizers(n_quantizers, kbps)

    def encode(
        self,
        input_values: torch.Tensor,
        n_quantizers: int | None = None,
        return_dict: bool | None = None,
        *,
        padding_mask: torch.Tensor | None = None,
        kbps: float | None = None,
        bandwidth: float | None = None,
    ) -> RvqganEncoderOutput | tuple:
        r"""Encode a waveform into codes; the arguments and outputs of `DacModel.encode`, and keyword extras.

        input_values (`torch.Tensor` of shape `(batch_size, 1, samples)`): audio at `config.sampling_rate`; it is
            right-padded with zeros to a multiple of `config.hop_length`, giving `ceil(samples / hop_length)` frames.
        n_quantizers (`int`, *optional*): number of codebooks to use; `kbps` picks the nearest count instead.
            When neither is given, all codebooks are used, with quantizer dropout in training.
        padding_mask (`torch.Tensor` of shape `(batch_size, samples)`, *optional*): 1 for real samples, 0 for right
            padding. With it, each item's codes are those it gets when encoded alone.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if input_values.dim() != 3 or input_values.shape[1] != 1:
            raise ValueError(f"`input_values` must have shape (batch, 1, samples), got {tuple(input_values.shape)}.")
        n_quantizers = self._n_quantizers(n_quantizers, kbps, bandwidth)

        input_values = nn.functional.pad(input_values, (0, -input_values.shape[-1] % self.config.hop_length))
        frames = self._frame_lengths(padding_mask)
        lengths = None
        if frames is not None:
            lengths = frames * self.config.hop_length
            input_values = input_values * length_mask(lengths, input_values.shape[-1])
        fused = autocast_dtype(input_values.device) != torch.float32  # under autocast, fused Snakes in float32

        def quantize(threads: int | None = None):
            if threads is None:
                latents = self.encoder(input_values, lengths)
            else:  # float32 codes
                latents = encode_latents(
                    self.encoder, input_values, lengths, self.config.hop_length, self.config.frame_rate, fused, threads
                )
            frame_mask = length_mask(frames, latents.shape[-1])
            return frame_mask, self.quantizer(latents, n_quantizers, frame_mask)

        tiled = self.inference_path(input_values.device) == "tiled"
        frame_mask, quantizer_outputs = run_pass(quantize, input_values.device) if tiled else quantize()
        quantized, codes, projected_latents, commitment_loss, codebook_loss = quantizer_outputs
        if frame_mask is not None:
            quantized = quantized * frame_mask
        return model_output(
            RvqganEncoderOutput,
            return_dict,
            loss=self.config.commitment_loss_weight * commitment_loss
            + self.config.codebook_loss_weight * codebook_loss,
            quantized_representation=quantized,
            audio_codes=codes,
            projected_latents=projected_latents,
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
        )

    def decode(
        self,
        quantized_representation: torch.Tensor | None = None,
        audio_codes: torch.Tensor | None = None,
        return_dict: bool | None = None,
        *,
        padding_mask: torch.Tensor | None = None,
    ) -> RvqganDecoderOutput | tuple:
        r"""Decode a quantized representation, or codes, into a waveform `(batch_size, frames * hop_length)`; the
        arguments and outputs of `DacModel.decode`, and a keyword extra.

        quantized_representation (`torch.Tensor` of shape `(batch_size, hidden_size, frames)`, *optional*).
        audio_codes (`torch.LongTensor` of shape `(batch_size, n_q, frames)`, *optional*): codes of the first n_q
            codebooks; they take precedence over `quantized_representation`.
        padding_mask (`torch.Tensor` of shape `(batch_size, samples)`, *optional*): the encoder's padding mask;
            the output is then `samples` long, each item decoded as if alone and zero past its end.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if audio_codes is not None:
            if audio_codes.dim() != 3:
                raise ValueError(f"`audio_codes` must have shape (batch, n_q, frames), got {tuple(audio_codes.shape)}.")
            if audio_codes.numel() and not 0 <= audio_codes.min() <= audio_codes.max() < self.config.codebook_size:
                raise ValueError(f"`audio_codes` must be in [0, {self.config.codebook_size}).")
        elif quantized_representation is None:
            raise ValueError("Pass `audio_codes` or `quantized_representation`.")

        device = (audio_codes if audio_codes is not None else quantized_representation).device
        dtype = autocast_dtype(device)  # the tiled path's convolutions
        frames = self._frame_lengths(padding_mask)

        def synthesize(threads: int | None = None):
            quantized = quantized_representation if audio_codes is None else self.quantizer.from_codes(audio_codes)
            if frames is not None:
                quantized = quantized * length_mask(frames, quantized.shape[-1])
            if threads is None:
                return self.decoder(quantized, frames)
            return decode_latents(self.decoder, quantized, frames, self.config.sampling_rate, dtype, threads)

        audio_values = run_pass(synthesize, device) if self.inference_path(device) == "tiled" else synthesize()
        audio_values = audio_values[:, 0]
        if padding_mask is not None:
            audio_values = audio_values[:, : padding_mask.shape[-1]] * padding_mask
        return model_output(RvqganDecoderOutput, return_dict, audio_values=audio_values)

    def streaming_encoder(
        self, n_quantizers: int | None = None, lookahead: int | None = None
    ) -> RvqganStreamingEncoder:
        """A stream that encodes audio pushed in chunks: `push(samples (B, n))` -> codes `(B, n_q, frames)` as they
        become final, `flush()` -> the rest; together the codes of `encode` (`streaming_rvqgan`). `lookahead`:
        samples past a frame's end that its codes wait for (None: all they depend on, exact); `delay`: samples
        from a frame's start to its codes."""
        return RvqganStreamingEncoder(self, n_quantizers, lookahead)

    def streaming_decoder(self, lookahead: int | None = None) -> RvqganStreamingDecoder:
        """A stream that decodes codes pushed in chunks: `push(codes (B, n_q, frames))` -> audio `(B, samples)` as it
        becomes final, `flush()` -> the rest; together the audio of `decode`. `lookahead`: code frames after a frame
        that its samples wait for (None: all they depend on, exact); `delay`: samples from a frame's arrival to
        its last sample."""
        return RvqganStreamingDecoder(self, lookahead)

    def forward(
        self,
        input_values: torch.Tensor,
        n_quantizers: int | None = None,
        return_dict: bool | None = None,
        *,
        padding_mask: torch.Tensor | None = None,
        kbps: float | None = None,
        bandwidth: float | None = None,
    ) -> RvqganOutput | tuple:
        r"""Encode and decode; `audio_values` `(batch_size, samples)` has the input's length. Arguments as in
        [`~RvqganModel.encode`]; the outputs of `DacModel.forward`, and the two quantizer losses."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        n_quantizers = self._n_quantizers(n_quantizers, kbps, bandwidth)
        encoded = self.encode(input_values, n_quantizers, return_dict=True, padding_mask=padding_mask)
        audio_values = self.decode(encoded.quantized_representation, padding_mask=padding_mask).audio_values
        return model_output(
            RvqganOutput,
            return_dict,
            loss=encoded.loss,
            audio_values=audio_values[:, : input_values.shape[-1]],
            quantized_representation=encoded.quantized_representation,
            audio_codes=encoded.audio_codes,
            projected_latents=encoded.projected_latents,
            commitment_loss=encoded.commitment_loss,
            codebook_loss=encoded.codebook_loss,
        )


__all__ = ["RvqganModel", "RvqganPreTrainedModel", "RvqganEncoderOutput", "RvqganDecoderOutput", "RvqganOutput"]
