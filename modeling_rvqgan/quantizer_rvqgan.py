"""Factorized, L2-normalized residual vector quantizer with quantizer dropout (Improved RVQGAN, section 3.2)."""

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_rvqgan import RvqganConfig


def masked_mean(values: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
    """Per-item mean of (B, D, T) `values` over D and the valid frames of (B, 1, T) `frame_mask` -> (B,)."""
    if frame_mask is None:
        return values.mean(dim=(1, 2))
    return (values * frame_mask).sum(dim=(1, 2)) / (frame_mask.sum(dim=(1, 2)) * values.shape[1])


class RvqganVectorQuantize(nn.Module):
    """One codebook, looked up in a low-dimensional projected space by cosine similarity."""

    def __init__(self, config: RvqganConfig):
        super().__init__()
        self.in_proj = nn.Conv1d(config.hidden_size, config.codebook_dim, kernel_size=1)
        self.out_proj = nn.Conv1d(config.codebook_dim, config.hidden_size, kernel_size=1)
        self.codebook = nn.Embedding(config.codebook_size, config.codebook_dim)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor | None = None):
        """(B, hidden_size, T) -> quantized (B, hidden_size, T), codes (B, T), projected latents (B, codebook_dim, T),
        and per-item commitment and codebook losses (B,)."""
        projected_latents = self.in_proj(hidden_states)
        codes = self.nearest_codes(projected_latents)
        quantized_latents = self.codebook(codes).transpose(1, 2)
        commitment_loss = masked_mean(
            F.mse_loss(projected_latents, quantized_latents.detach(), reduction="none"), frame_mask
        )
        codebook_loss = masked_mean(
            F.mse_loss(quantized_latents, projected_latents.detach(), reduction="none"), frame_mask
        )
        # straight-through estimator: the forward value is the codebook vector, the gradient goes to the encoder
        quantized_latents = projected_latents + (quantized_latents - projected_latents).detach()
        return self.out_proj(quantized_latents), codes, projected_latents, commitment_loss, codebook_loss

    def nearest_codes(self, projected_latents: torch.Tensor) -> torch.Tensor:
        """(B, codebook_dim, T) -> (B, T) indices of the nearest L2-normalized codebook entries, searched in float32
        (also under autocast, whose bf16 products would pick other codes)."""
        batch_size, dim, length = projected_latents.shape
        with torch.autocast(projected_latents.device.type, enabled=False):
            encodings = F.normalize(projected_latents.float().transpose(1, 2).reshape(-1, dim))
            codebook = F.normalize(self.codebook.weight.float())
            distances = (
                encodings.pow(2).sum(1, keepdim=True)
                - 2 * encodings @ codebook.t()
                + codebook.pow(2).sum(1, keepdim=True).t()
            )
        return (-distances).max(1)[1].reshape(batch_size, length)


class RvqganResidualVectorQuantizer(nn.Module):
    """A stack of codebooks, each quantizing the residual left by the previous ones."""

    def __init__(self, config: RvqganConfig):
        super().__init__()
        self.quantizers = nn.ModuleList(RvqganVectorQuantize(config) for _ in range(config.n_codebooks))
        self.quantizer_dropout = config.quantizer_dropout

    def forward(
        self, hidden_states: torch.Tensor, n_quantizers: int | None = None, frame_mask: torch.Tensor | None = None
    ):
        """Quantize (B, hidden_size, T) latents.

        `n_quantizers` codebooks are used when given, in training too. Otherwise all codebooks run and, in
        training, the first `quantizer_dropout` fraction of the batch keeps a random number of them (1..N) in
        the output and the losses (quantizer dropout).

        Returns quantized (B, hidden_size, T), codes (B, n_q, T), projected latents (B, n_q * codebook_dim, T),
        commitment and codebook losses (scalars: sums over codebooks of batch means).
        """
        batch_size = hidden_states.shape[0]
        n_codebooks = len(self.quantizers)
        if n_quantizers is not None and not 1 <= n_quantizers <= n_codebooks:
            raise ValueError(f"`n_quantizers` must be between 1 and {n_codebooks}, got {n_quantizers}.")
        kept = torch.full((batch_size,), n_quantizers or n_codebooks)
        if self.training and n_quantizers is None:
            n_dropped = int(batch_size * self.quantizer_dropout)
            kept[:n_dropped] = torch.randint(1, n_codebooks + 1, (n_dropped,))
        kept = kept.to(hidden_states.device)

        quantized = torch.zeros_like(hidden_states)
        residual = hidden_states
        commitment_loss = codebook_loss = 0
        codes, projected_latents = [], []
        for index, quantizer in enumerate(self.quantizers[: n_quantizers or n_codebooks]):
            quantized_i, codes_i, latents_i, commitment_i, codebook_i = quantizer(residual, frame_mask)
            keep = index < kept
            quantized = quantized + quantized_i * keep[:, None, None]
            residual = residual - quantized_i
            commitment_loss = commitment_loss + (commitment_i * keep).mean()
            codebook_loss = codebook_loss + (codebook_i * keep).mean()
            codes.append(codes_i)
            projected_latents.append(latents_i)
        return quantized, torch.stack(codes, dim=1), torch.cat(projected_latents, dim=1), commitment_loss, codebook_loss

    def from_codes(self, audio_codes: torch.Tensor) -> torch.Tensor:
        """(B, n_q, T) codes of the first n_q codebooks -> quantized representation (B, hidden_size, T)."""
        if not 1 <= audio_codes.shape[1] <= len(self.quantizers):
            raise ValueError(
                f"`audio_codes` must have 1 to {len(self.quantizers)} codebooks, got shape {tuple(audio_codes.shape)}."
            )
        quantized = 0
        for quantizer, codes in zip(self.quantizers, audio_codes.unbind(1)):
            quantized = quantized + quantizer.out_proj(quantizer.codebook(codes).transpose(1, 2))
        return quantized
