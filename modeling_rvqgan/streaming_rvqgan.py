"""Streaming encoding and decoding: audio (or codes) pushed as it arrives, codes (or audio) returned as they become
final, equal to the offline `encode` / `decode` of the whole signal up to float rounding.

Each of the encoder's or decoder's declared steps, in the tiled forms of `inference_rvqgan.stages` (the same
kernels; spectral products only where a push computes many outputs), is a cached convolution (Caillon & Esling
2022): it keeps the inputs its next outputs read and computes each output once, as soon as all the inputs it reads
have arrived, so a stream does the work of one offline pass.
The model's convolutions are centred, so an output waits for its right context (`delay`); `flush` ends the input
and zero-pads every step exactly as the offline pass pads the end of the signal.

With a `lookahead` below that context, an output is returned as soon as `lookahead` of its future has arrived,
computed as the offline pass of the signal received so far computes it (the missing future zero-padded, the state
copied so that the exact computation goes on). The model's weights are read when the stream is made; all state is
the stream's own, so streams may run at once, on any threads. Convolutions run in float32, without autocast, on
one thread.
"""

import copy
import functools

import torch

from .inference_rvqgan import Conv, Residual, run_pass, stages
from .layers_rvqgan import steps_span

SPECTRAL_OUTPUTS = 1024  # outputs computed at once from which spectral products beat oneDNN's convolution
MATRIX_OUTPUTS = 256  # outputs computed at once below which a matrix product beats it (decoders only)


def appended(inputs: torch.Tensor | None, hidden_states: torch.Tensor | None) -> torch.Tensor | None:
    """(B, n, C) `inputs` followed by (B, n', C) `hidden_states`, either of them None or empty."""
    if inputs is None or inputs.shape[1] == 0:
        return hidden_states if hidden_states is not None else inputs
    return inputs if hidden_states is None else torch.cat([inputs, hidden_states], 1)


class CachedStep:
    """A tiled `Conv` / `ConvTranspose` of `inference_rvqgan` on a stream, keeping the inputs its next outputs read.
    A spectral convolution computes SPECTRAL_OUTPUTS outputs or more at a time as products of spectra, fewer directly
    (oneDNN's convolution, faster there); with `few_as_matrix`, fewer than MATRIX_OUTPUTS as one matrix product. An
    encoder keeps oneDNN's rounding: a code nearly tied between two entries could flip with another one."""

    def __init__(self, step, few_as_matrix: bool):
        self.step, self.inputs, self.offset, self.done = step, None, 0, 0  # inputs: positions [offset, ...)
        self.direct = step
        if getattr(step, "spectrum", None) is not None:
            self.direct = copy.copy(step)
            self.direct.spectrum = None
        self.few = self.direct
        if few_as_matrix and type(step) is Conv and not step.matrix:
            self.few = Conv(step.step, step.dtype, False, matrix=True)

    def push(self, hidden_states: torch.Tensor | None, end: bool = False) -> torch.Tensor | None:
        """New inputs (B, n, C) or None -> the outputs (B, n', C') they complete, or None. With `end` the input ends
        here: every remaining output is computed, the input zero-padded as the offline pass pads it."""
        self.inputs = appended(self.inputs, hidden_states)
        if self.inputs is None:
            return None
        size = self.offset + self.inputs.shape[1]
        high = self.step.size(size) if end else self.ready(size)
        if high <= self.done:
            return None
        a, b = self.step.needs(self.done, high)
        inputs = self.inputs[:, max(a, 0) - self.offset : min(b, size) - self.offset]
        count = high - self.done
        step = self.step if count >= SPECTRAL_OUTPUTS else self.direct if count >= MATRIX_OUTPUTS else self.few
        outputs = step(inputs, self.done, high, size, None)
        self.done = high
        keep = max(self.step.needs(high, high + 1)[0], self.offset)  # the first input later outputs read
        self.inputs, self.offset = self.inputs[:, keep - self.offset :], keep
        return outputs

    def ready(self, size: int) -> int:
        """The end of the outputs that read no input at or past `size`."""
        low, high = self.done, max(self.done, self.step.size(size))
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if self.step.needs(self.done, middle)[1] <= size else (low, middle - 1)
        return low

    def clone(self) -> "CachedStep":
        return copy.copy(self)  # tensors are replaced, never written in place


class CachedResidual:
    """A tiled `Residual`: its steps on a stream, plus their input."""

    def __init__(self, residual: Residual, few_as_matrix: bool):
        self.steps, self.inputs = [cached(step, few_as_matrix) for step in residual.steps], None

    def push(self, hidden_states: torch.Tensor | None, end: bool = False) -> torch.Tensor | None:
        self.inputs = appended(self.inputs, hidden_states)
        branch = run(self.steps, hidden_states, end)
        if branch is None:
            return None
        outputs = self.inputs[:, : branch.shape[1]] + branch
        self.inputs = self.inputs[:, branch.shape[1] :]
        return outputs

    def clone(self) -> "CachedResidual":
        twin = copy.copy(self)
        twin.steps = [step.clone() for step in self.steps]
        return twin


def cached(step, few_as_matrix: bool) -> CachedStep | CachedResidual:
    return (CachedResidual if isinstance(step, Residual) else CachedStep)(step, few_as_matrix)


def run(nodes: list, hidden_states: torch.Tensor | None, end: bool = False) -> torch.Tensor | None:
    """(B, n, C) pushed through `nodes` in turn: the outputs completed, or None."""
    for node in nodes:
        if hidden_states is None and not end:
            return None
        hidden_states = node.push(hidden_states, end)
    return hidden_states


class Cascade:
    """An encoder's or decoder's steps on a stream, and how many of their outputs have been returned."""

    def __init__(self, steps: list, per_frame: int, few_as_matrix: bool):
        stage_steps = [step for _, stage in stages(steps, per_frame, torch.float32, False) for step in stage]
        self.nodes = [cached(step, few_as_matrix) for step in stage_steps]
        self.computed = self.emitted = 0  # outputs computed exactly; outputs returned

    def push(self, hidden_states: torch.Tensor | None, wanted: int, padding: torch.Tensor | None) -> list[torch.Tensor]:
        """Push (B, n, C) inputs; return the new outputs, up to `wanted` at least: those not yet computed exactly
        from copies of the nodes flushed with `padding`, the zeros that `flush` would add."""
        start, parts = self.computed, []
        exact = run(self.nodes, hidden_states)
        if exact is not None:
            self.computed += exact.shape[1]
            parts.append(exact[:, max(0, self.emitted - start) :])
        first = max(self.emitted, self.computed)
        if wanted > first:
            ahead = run([node.clone() for node in self.nodes], padding, end=True)
            parts.append(ahead[:, first - self.computed : wanted - self.computed])
        self.emitted = max(first, wanted)
        return parts

    def flush(self, padding: torch.Tensor | None) -> list[torch.Tensor]:
        start = self.computed
        rest = run(self.nodes, padding, end=True)
        return [rest[:, max(0, self.emitted - start) :]]


def float32_inference(method):
    """`method` of a stream under `torch.inference_mode`, without autocast, its torch ops on one thread: on a worker
    of `inference_rvqgan.pools` when the caller has several (a push's ops are too small to share, and threads
    waiting on each other's share of them stall on a busy machine)."""

    @functools.wraps(method)
    def call(self, *args):
        with torch.inference_mode():
            return run_pass(lambda threads: method(self, *args), self.device)

    return call


class Stream:
    """What both streams share: a one-line error once flushed."""

    closed = False

    def check_open(self):
        if self.closed:
            raise ValueError("The stream was flushed: make a new one to push more.")

    def close(self):
        self.check_open()
        self.closed = True


def lookahead_within(lookahead: int | None, context: int, unit: str) -> int:
    """`lookahead`, or the exact `context` for None, checked to lie within [0, context]."""
    if lookahead is None:
        return context
    if not (isinstance(lookahead, int) and 0 <= lookahead <= context):
        raise ValueError(f"`lookahead` must be an int from 0 to {context} {unit} (exact), got {lookahead!r}.")
    return lookahead


class RvqganStreamingEncoder(Stream):
    """Encodes audio pushed in chunks of any length: `push(samples)` -> codes (B, n_q, new_frames), `flush()` ->
    the last codes. Together they equal `model.encode(audio, n_quantizers=n_quantizers).audio_codes` of the whole
    audio (up to float ties), with `lookahead=None`.

    lookahead: samples past a frame's end that it waits for; None waits for its whole right context (exact).
    delay: samples from a frame's start to when its codes are returned, `hop_length + lookahead`.
    """

    def __init__(self, model, n_quantizers: int | None = None, lookahead: int | None = None):
        self.hop, self.quantizer = model.config.hop_length, model.quantizer
        self.n_quantizers = len(self.quantizer.quantizers) if n_quantizers is None else n_quantizers
        if not 1 <= self.n_quantizers <= len(self.quantizer.quantizers):
            raise ValueError(f"`n_quantizers` must be from 1 to {len(self.quantizer.quantizers)}, got {n_quantizers}.")
        context = steps_span(model.encoder.steps, 0, 1)[1] - self.hop
        self.lookahead = lookahead_within(lookahead, context, "samples")
        self.delay = self.hop + self.lookahead
        self.device = next(model.parameters()).device
        with torch.inference_mode():
            self.cascade = Cascade(model.encoder.steps, self.hop, few_as_matrix=False)
        self.batch, self.received = None, 0

    @float32_inference
    def push(self, samples: torch.Tensor) -> torch.LongTensor:
        """(B, n) or (n,) float audio at the model's rate -> the codes (B, n_q, frames) that became final."""
        self.check_open()
        if not (isinstance(samples, torch.Tensor) and samples.is_floating_point() and samples.dim() in (1, 2)):
            raise ValueError(f"`samples` must be a float tensor (batch, n) or (n,), got {describe(samples)}.")
        samples = samples if samples.dim() == 2 else samples[None]
        if self.batch not in (None, samples.shape[0]):
            raise ValueError(
                f"`samples` must have the batch size of the first push, {self.batch}: got {samples.shape[0]}."
            )
        self.batch, self.received = samples.shape[0], self.received + samples.shape[1]
        inputs = samples.to(self.device, torch.float32, copy=True).unsqueeze(-1) if samples.shape[1] else None
        wanted = max(0, self.received - self.lookahead) // self.hop
        return self.codes(self.cascade.push(inputs, wanted, self.padding()))

    @float32_inference
    def flush(self) -> torch.LongTensor:
        """End the stream: the remaining codes (B, n_q, frames), the audio zero-padded as `encode` pads it."""
        self.close()
        if not self.received:
            raise ValueError("Nothing was pushed: a stream needs at least one sample.")
        return self.codes(self.cascade.flush(self.padding()))

    def padding(self) -> torch.Tensor:
        """The zeros `encode` pads the audio received so far with, to a multiple of hop_length: (B, n, 1)."""
        return torch.zeros(self.batch, -self.received % self.hop, 1, device=self.device)

    def codes(self, parts: list[torch.Tensor]) -> torch.LongTensor:
        """Latents (B, n, hidden_size) in parts -> codes (B, n_q, n)."""
        latents = torch.cat(parts, 1) if parts else torch.zeros(self.batch, 0, 1, device=self.device)
        if latents.shape[1] == 0:
            return torch.zeros(self.batch, self.n_quantizers, 0, dtype=torch.long, device=self.device)
        return self.quantizer(latents.transpose(1, 2).contiguous(), self.n_quantizers)[1]


class RvqganStreamingDecoder(Stream):
    """Decodes codes pushed in chunks of any number of frames: `push(codes)` -> audio (B, new_samples), `flush()`
    -> the rest. Together they equal `model.decode(audio_codes=codes).audio_values` of all the codes (up to float
    rounding), with `lookahead=None`.

    lookahead: code frames after a frame that its samples wait for; None waits for their whole right context (exact).
    delay: samples from a frame's arrival to when all its samples are returned, `lookahead * hop_length`.
    """

    def __init__(self, model, lookahead: int | None = None):
        self.hop, self.quantizer, self.tanh = model.config.hop_length, model.quantizer, model.decoder.tanh
        context = steps_span(model.decoder.steps, 0, self.hop)[1] - 1
        self.lookahead = lookahead_within(lookahead, context, "frames")
        self.delay = self.lookahead * self.hop
        self.codebook_size = model.config.codebook_size
        self.device = next(model.parameters()).device
        with torch.inference_mode():
            self.cascade = Cascade(model.decoder.steps, 1, few_as_matrix=True)
        self.shape, self.received = None, 0

    @float32_inference
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, n_q, frames) -> the audio (B, samples) that became final."""
        self.check_open()
        if not (isinstance(codes, torch.Tensor) and not codes.is_floating_point() and codes.dim() == 3):
            raise ValueError(f"`codes` must be an integer tensor (batch, n_q, frames), got {describe(codes)}.")
        if self.shape not in (None, codes.shape[:2]):
            raise ValueError(
                f"`codes` must have the batch and n_q of the first push, {tuple(self.shape)}: got {tuple(codes.shape)}."
            )
        if codes.numel() and not 0 <= codes.min() <= codes.max() < self.codebook_size:
            raise ValueError(f"`codes` must be in [0, {self.codebook_size}).")
        self.shape, self.received = codes.shape[:2], self.received + codes.shape[-1]
        inputs = None
        if codes.shape[-1]:
            inputs = self.quantizer.from_codes(codes.to(self.device)).transpose(1, 2)  # (B, frames, hidden_size)
        wanted = max(0, self.received - self.lookahead) * self.hop
        return self.audio(self.cascade.push(inputs, wanted, None))

    @float32_inference
    def flush(self) -> torch.Tensor:
        """End the stream: the remaining audio (B, samples)."""
        self.close()
        if not self.received:
            raise ValueError("Nothing was pushed: a stream needs at least one frame.")
        return self.audio(self.cascade.flush(None))

    def audio(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Outputs (B, n, 1) in parts -> audio (B, n)."""
        if not parts:
            return torch.zeros(self.shape[0], 0, device=self.device)
        return self.tanh(torch.cat(parts, 1)[..., 0])


def describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)}"
    return type(value).__name__
