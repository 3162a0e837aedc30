"""The eval-mode fast path (`inference_rvqgan`, tile by tile) against the reference path (`layers_rvqgan`, whole
file)."""

import functools
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from rvqgan.modeling import inference_rvqgan, kernels_rvqgan, layers_rvqgan

from rvqgan.chunking import decode_chunked, encode_chunked, receptive_field

RATIOS = [[2, 4, 4], [2, 5], [3, 5, 2]]


pytestmark = pytest.mark.usefixtures("one_thread")


def set_tiles(monkeypatch, seconds: float):
    """Tiles of `seconds` at every rate, in blocks of a few tiles."""
    monkeypatch.setattr(inference_rvqgan, "TILE_SECONDS", seconds)
    monkeypatch.setattr(inference_rvqgan, "LOW_RATE_TILE_SECONDS", 2 * seconds)
    monkeypatch.setattr(inference_rvqgan, "BLOCK_SECONDS", 3 * seconds)


def reference(model, audio, padding_mask=None, n_quantizers=None):
    """Encoder outputs and decoded audio from the reference path (autograd on selects it)."""
    with torch.enable_grad():
        encoded = model.encode(audio, padding_mask=padding_mask, n_quantizers=n_quantizers)
        decoded = model.decode(audio_codes=encoded.audio_codes, padding_mask=padding_mask).audio_values
    return encoded, decoded.detach()


def fast(model, audio, padding_mask=None, n_quantizers=None):
    with torch.inference_mode():
        encoded = model.encode(audio, padding_mask=padding_mask, n_quantizers=n_quantizers)
        decoded = model.decode(audio_codes=encoded.audio_codes, padding_mask=padding_mask).audio_values
    return encoded, decoded


def assert_same(model, audio, padding_mask=None, n_quantizers=None, tolerance=1e-5):
    expected, expected_audio = reference(model, audio, padding_mask, n_quantizers)
    got, got_audio = fast(model, audio, padding_mask, n_quantizers)
    assert torch.equal(got.audio_codes, expected.audio_codes)
    for key in ("quantized_representation", "projected_latents", "commitment_loss", "codebook_loss"):
        scale = expected[key].detach().abs().max().clamp(min=1)
        assert (got[key] - expected[key].detach()).abs().max() <= tolerance * scale, key
    assert got_audio.shape == expected_audio.shape
    assert (got_audio - expected_audio).abs().max() <= tolerance
    assert got_audio.abs().max() > 1e-3  # not a silent output


@pytest.mark.parametrize("ratios", RATIOS)
@pytest.mark.parametrize("tile_seconds", [0.002, 0.03, 10.0])  # tiles of a frame or less, a few frames, all
def test_tiles_equal_the_reference_path(monkeypatch, ratios, tile_seconds):
    set_tiles(monkeypatch, tile_seconds)
    model = tiny_model(seed=len(ratios), downsampling_ratios=ratios)
    hop = model.config.hop_length
    for samples in (1, hop, 37 * hop + 5):
        audio = 0.3 * torch.randn(2, 1, samples, generator=torch.Generator().manual_seed(samples))
        assert_same(model, audio, n_quantizers=None if samples > hop else 2)


@pytest.mark.parametrize("ratios", RATIOS)
def test_padding_masks_equal_the_reference_path(monkeypatch, ratios):
    set_tiles(monkeypatch, 0.01)
    model = tiny_model(downsampling_ratios=ratios)
    samples = 40 * model.config.hop_length + 3
    audio = 0.3 * torch.randn(3, 1, samples, generator=torch.Generator().manual_seed(0))
    padding_mask = torch.ones(3, samples, dtype=torch.long)
    padding_mask[1, samples // 2 :] = 0
    padding_mask[2, 7:] = 0
    assert_same(model, audio, padding_mask)


@pytest.mark.parametrize("kernel_size, dilations", [(5, (1, 2, 4)), (9, (1, 3, 9))])
def test_a_changed_block_definition_changes_every_path(monkeypatch, kernel_size, dilations):
    """Another kernel size and other dilations in `layers_rvqgan`: the reference path, the tiled path (spectral
    convolutions included) and chunked coding, whose context grows or shrinks with them, agree."""
    set_tiles(monkeypatch, 0.01)
    spectral_everywhere(monkeypatch)
    monkeypatch.setattr(layers_rvqgan, "RESIDUAL_KERNEL_SIZE", kernel_size)
    monkeypatch.setattr(layers_rvqgan, "DILATIONS", dilations)
    model = tiny_model()
    assert model.encoder.block[0].res_unit3.conv1.dilation == (dilations[2],)
    hop = model.config.hop_length
    audio = 0.3 * torch.randn(2, 1, 90 * hop + 5, generator=torch.Generator().manual_seed(0))
    assert_same(model, audio)
    expected, expected_audio = fast(model, audio)
    codes = encode_chunked(model, audio, window_frames=7)
    assert (codes == expected.audio_codes).float().mean() >= 0.999  # but for float ties
    assert (decode_chunked(model, expected.audio_codes, window_frames=7) - expected_audio).abs().max() <= 1e-4
    monkeypatch.setattr(layers_rvqgan, "DILATIONS", (1, 3, 9))
    monkeypatch.setattr(layers_rvqgan, "RESIDUAL_KERNEL_SIZE", 7)
    assert receptive_field(model) != receptive_field(tiny_model())


@pytest.mark.parametrize("kernel, dilation", [(7, 1), (7, 3), (7, 9), (3, 2)])
def test_spectral_convolution_equals_the_direct_one(kernel, dilation):
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv1d(5, 4, kernel, dilation=dilation, bias=False)
    span = (kernel - 1) * dilation
    for length in (span + 1, span + 2, 3 * span + 4, 500):  # one output, a few, and many windows
        hidden_states = torch.randn(2, length, 5, generator=generator)
        got = kernels_rvqgan.spectral_convolution(hidden_states, kernels_rvqgan.weight_spectrum(conv), kernel, dilation)
        expected = torch.nn.functional.conv1d(
            hidden_states.double().transpose(1, 2), conv.weight.double(), dilation=dilation
        )
        assert got.shape == (2, length - span, 4)
        assert torch.allclose(got.double(), expected.transpose(1, 2), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kernel, dilation, stride", [(7, 1, 1), (7, 3, 1), (7, 9, 1), (3, 2, 1), (4, 1, 2)])
def test_matrix_convolution_equals_the_direct_one(kernel, dilation, stride):
    """The matrix form (the columns of every tap, `dilation` apart, times the flattened weight) that low rates and
    the streaming decoder's short pushes use."""
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv1d(5, 4, kernel, stride=stride, dilation=dilation, padding=dilation * (kernel - 1) // 2)
    step = layers_rvqgan.Step(conv)
    for length in (kernel, 7, 60):  # one output, a few, many
        hidden_states = torch.randn(2, length, 5, generator=generator)
        a, b = step.needs(0, step.size(length))
        low, high = 0, step.size(length)
        inputs = hidden_states[:, max(a, 0) : min(b, length)]
        got = inference_rvqgan.Conv(step, torch.float32, False, matrix=True)(inputs, low, high, length, None)
        expected = conv(hidden_states.transpose(1, 2)).transpose(1, 2)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=0, atol=1e-5)


def spectral_everywhere(monkeypatch) -> list:
    """Every 7-tap float32 convolution of a tiny model as a spectral product; returns the list of calls, filled in."""
    calls = []
    spectral_convolution = inference_rvqgan.spectral_convolution
    monkeypatch.setattr(inference_rvqgan, "SPECTRAL_CHANNELS", 1)
    monkeypatch.setattr(
        inference_rvqgan, "spectral_convolution", lambda *args: calls.append(1) or spectral_convolution(*args)
    )
    return calls


@pytest.mark.parametrize("tile_seconds", [0.002, 0.03, 10.0])
def test_spectral_convolutions_equal_the_reference_path(monkeypatch, tile_seconds):
    set_tiles(monkeypatch, tile_seconds)
    calls = spectral_everywhere(monkeypatch)
    model = tiny_model()
    hop = model.config.hop_length
    for samples in (1, 37 * hop + 5):
        assert_same(model, 0.3 * torch.randn(2, 1, samples, generator=torch.Generator().manual_seed(samples)))
    samples = 40 * hop + 3
    padding_mask = torch.ones(2, samples, dtype=torch.long)
    padding_mask[1, 7:] = 0
    assert_same(model, 0.3 * torch.randn(2, 1, samples, generator=torch.Generator().manual_seed(0)), padding_mask)
    assert calls


def test_spectra_follow_weight_changes(monkeypatch):
    """The weights' spectra are kept between calls: changed weights, in place or loaded, or through weight norm,
    give new ones."""
    set_tiles(monkeypatch, 0.01)
    spectral_everywhere(monkeypatch)
    model, other = tiny_model(), tiny_model(seed=1)
    audio = 0.3 * torch.randn(1, 1, 1000, generator=torch.Generator().manual_seed(0))
    assert_same(model, audio)
    with torch.no_grad():
        model.encoder.block[0].res_unit1.conv1.weight.mul_(1.5)
    assert_same(model, audio)
    model.load_state_dict(other.state_dict())
    assert_same(model, audio)
    model.apply_weight_norm()
    assert_same(model, audio, tolerance=1e-4)
    with torch.no_grad():
        model.decoder.block[0].res_unit1.conv1.parametrizations.weight.original0.mul_(1.5)
    assert_same(model, audio, tolerance=1e-4)


def test_spectra_kept_are_bounded(monkeypatch):
    set_tiles(monkeypatch, 0.01)
    spectral_everywhere(monkeypatch)
    monkeypatch.setattr(kernels_rvqgan, "SPECTRA_BYTES", 100_000)
    model = tiny_model()
    assert_same(model, 0.3 * torch.randn(1, 1, 1000, generator=torch.Generator().manual_seed(0)))
    kept = [tensors for _, tensors, _ in kernels_rvqgan._spectra.values()]
    spectral = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d) and m.kernel_size == (7,)]
    assert 0 < len(kept) < len(spectral) and sum(t.nbytes for tensors in kept for t in tensors) <= 100_000


def test_tiles_in_parallel_threads(monkeypatch):
    """Tiles run on the caller's thread count's worth of threads, whose torch ops use one thread; the caller's count
    does not change."""
    set_tiles(monkeypatch, 0.01)
    torch.set_num_threads(2)
    threads_inside = []
    run = inference_rvqgan.run
    monkeypatch.setattr(
        inference_rvqgan, "run", lambda *args: threads_inside.append(torch.get_num_threads()) or run(*args)
    )
    model = tiny_model()
    assert_same(model, 0.3 * torch.randn(2, 1, 3000, generator=torch.Generator().manual_seed(0)))
    assert len(threads_inside) > 10 and set(threads_inside) == {1}
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("spectral_channels", [inference_rvqgan.SPECTRAL_CHANNELS, 1])  # none, or all 7-tap spectral
def test_outputs_do_not_vary_from_call_to_call(monkeypatch, spectral_channels):
    """Tiles of different sizes computed at once on 8 threads: every call gives the same bits (MKL's matrix
    products, used from several threads at once, did not)."""
    monkeypatch.setattr(inference_rvqgan, "SPECTRAL_CHANNELS", spectral_channels)
    torch.set_num_threads(8)
    model = tiny_model()
    audio = 0.3 * torch.randn(1, 1, 320, generator=torch.Generator().manual_seed(0))
    first, first_audio = fast(model, audio)
    for _ in range(10):
        again, again_audio = fast(model, audio)
        assert torch.equal(again.quantized_representation, first.quantized_representation)
        assert torch.equal(again_audio, first_audio)


@pytest.mark.slow
def test_snake_kernels_are_compiled_under_autocast_only(monkeypatch):
    """Compiling costs seconds per process: float32 calls use the eager Snake; under autocast, the float32 encoder
    and the bf16 decoder use compiled ones."""
    compiled = []
    fused_snake = inference_rvqgan.fused_snake
    monkeypatch.setattr(inference_rvqgan, "fused_snake", lambda *args: compiled.append(args[2]) or fused_snake(*args))
    model = tiny_model()
    audio = 0.3 * torch.randn(1, 1, 640, generator=torch.Generator().manual_seed(0))
    fast(model, audio)
    assert not compiled
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        codes = model.encode(audio).audio_codes
        assert compiled and set(compiled) == {torch.float32}
        model.decode(audio_codes=codes)
    assert torch.bfloat16 in compiled


@pytest.mark.slow
@pytest.mark.parametrize(
    "input_dtype, dtype, tolerance",
    [
        (torch.float32, torch.float32, 1e-5),  # a different sin: float rounding
        (torch.float32, torch.bfloat16, 1e-2),  # one bf16 rounding step
        (torch.bfloat16, torch.bfloat16, 1e-2),
    ],
)
def test_snake_is_one_compiled_kernel_equal_to_the_eager_one(input_dtype, dtype, tolerance):
    fused = kernels_rvqgan.fused_snake("cpu", input_dtype, dtype)
    if isinstance(fused, functools.partial):  # the eager ops: only where the compiled kernel compiles and is wrong
        # (as with ATEN_CPU_CAPABILITY=avx2 on AVX-512); checked in a new process, as compiling the same graph twice
        # in one process can abort it in TorchInductor's compile metrics
        check = f"from modeling_rvqgan import kernels_rvqgan as k; k.fused_snake('cpu', {input_dtype}, {dtype})"
        result = subprocess.run([sys.executable, "-c", f"import torch; {check}"], capture_output=True, text=True)
        assert "wrong on a probe" in result.stderr and "TorchInductor failed" not in result.stderr, result.stderr
    generator = torch.Generator().manual_seed(0)
    alpha = torch.rand(96, generator=generator) + 0.1
    inverse = layers_rvqgan.inverse_alpha(alpha)
    for rows in (0, 1, 7, 3000):  # any number of rows, with one kernel
        hidden_states = (3 * torch.randn(rows, 96, generator=generator)).to(input_dtype)
        got = fused(hidden_states, alpha, inverse)
        expected = kernels_rvqgan.snake(hidden_states, alpha, inverse, dtype)
        assert got.dtype == dtype and got.shape == (rows, 96)
        assert torch.allclose(got.float(), expected.float(), rtol=tolerance, atol=tolerance)


def test_eager_snake_kernel_equals_the_layers_snake():
    generator = torch.Generator().manual_seed(0)
    alpha = torch.rand(96, generator=generator) + 0.1
    hidden_states = 3 * torch.randn(500, 96, generator=generator)
    got = kernels_rvqgan.snake(hidden_states, alpha, layers_rvqgan.inverse_alpha(alpha), torch.float32)
    assert torch.equal(got, layers_rvqgan.snake(hidden_states.T[None], alpha[None, :, None])[0].T)


@pytest.mark.slow
def test_without_a_compiler_snake_runs_unfused_with_a_warning(tmp_path):
    """No C++ compiler (and an empty TorchInductor cache): a warning, then a bf16 decode with the unfused ops."""
    script = (
        "import sys, torch; sys.path.insert(0, 'tests'); from conftest import tiny_model\n"
        "model = tiny_model(); audio = 0.3 * torch.randn(1, 1, 640, generator=torch.Generator().manual_seed(0))\n"
        "codes = model.encode(audio).audio_codes\n"
        "with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):\n"
        "    fast = model.decode(audio_codes=codes).audio_values\n"
        "reference = model.decode(audio_codes=codes).audio_values\n"
        "print('difference', ((fast - reference).abs().max() / reference.abs().max()).item())\n"
    )
    environment = {
        **os.environ,
        "CXX": str(tmp_path / "no-compiler"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert "Snake activations run unfused (slower)" in result.stderr
    assert 0 < float(result.stdout.split()[-1]) <= 0.02  # bf16 rounding


def test_weight_norm_parametrizations_are_used(monkeypatch):
    """During training, validation runs in eval mode with weight norm applied: the fast path reads the same weights."""
    set_tiles(monkeypatch, 0.01)
    model = tiny_model()
    model.apply_weight_norm()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("original0"):
                parameter.mul_(1.5)  # weight = g * v / |v|: a new g changes the weights
    assert_same(model, 0.3 * torch.randn(1, 1, 1000, generator=torch.Generator().manual_seed(0)), tolerance=1e-4)


def tiled_passes(monkeypatch) -> list:
    """A list that gets an item for every tiled pass (one per encode or decode)."""
    calls = []
    run_tiled = inference_rvqgan.run_tiled
    monkeypatch.setattr(inference_rvqgan, "run_tiled", lambda *args: calls.append(1) or run_tiled(*args))
    return calls


def test_fast_path_only_in_eval_mode_without_autograd(monkeypatch):
    calls = tiled_passes(monkeypatch)
    model = tiny_model()
    audio = 0.3 * torch.randn(1, 1, 320)
    model.train()
    with torch.no_grad():
        model(audio)
    model.eval()
    model(audio)  # autograd on: the reference path, gradients reach the weights
    assert not calls
    with torch.no_grad():
        model(audio)
    assert len(calls) == 2  # encoder and decoder


def test_inference_backend_setting(monkeypatch):
    calls = tiled_passes(monkeypatch)
    model = tiny_model()
    audio = 0.3 * torch.randn(1, 1, 320)
    with torch.no_grad():
        assert model.inference_path("cpu") == "tiled" and model.inference_path("cuda") == "reference"
        model.set_inference_backend("reference")
        assert model.inference_path("cpu") == "reference"
        model(audio)
        assert not calls
        model.set_inference_backend("tiled")
        assert model.inference_path("cuda") == "tiled"
        model(audio)
        assert len(calls) == 2
    assert model.inference_path("cpu") == "reference"  # autograd on
    with pytest.raises(ValueError, match="backend"):
        model.set_inference_backend("fast")


def test_threads_encoding_at_once_leave_the_thread_count_alone(monkeypatch):
    """Four Python threads encode at once, on two torch threads each: every thread's count, and the count of threads
    started during and after, is what it was; each gets the codes it gets alone."""
    set_tiles(monkeypatch, 0.01)
    torch.set_num_threads(2)
    model = tiny_model()
    inputs = [0.3 * torch.randn(1, 1, 2000 + 100 * i, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    alone = [fast(model, audio)[0].audio_codes for audio in inputs]
    start, results, seen = threading.Barrier(4), {}, []
    run = inference_rvqgan.run

    def run_and_look(*args):  # a thread started while tiles run
        looking = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        looking.start()
        looking.join()
        return run(*args)

    monkeypatch.setattr(inference_rvqgan, "run", run_and_look)

    def encode(i):
        before = torch.get_num_threads()
        start.wait()
        for _ in range(3):
            codes = fast(model, inputs[i])[0].audio_codes
        results[i] = before, codes, torch.get_num_threads()

    threads = [threading.Thread(target=encode, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(4):
        before, codes, after = results[i]
        assert before == after == 2 and torch.equal(codes, alone[i])
    assert len(seen) > 10 and set(seen) == {2} and torch.get_num_threads() == 2
    later = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert later == [2]


@pytest.mark.slow
def test_bf16_autocast_keeps_codes_and_runs_the_decoder_in_bf16():
    model = tiny_model()
    audio = 0.3 * torch.randn(2, 1, 50 * model.config.hop_length, generator=torch.Generator().manual_seed(0))
    expected, expected_audio = fast(model, audio)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, got_audio = fast(model, audio)
    assert torch.equal(got.audio_codes, expected.audio_codes)
    assert torch.allclose(got.projected_latents, expected.projected_latents, rtol=0, atol=1e-5)  # encoder in float32
    assert got.quantized_representation.dtype == got_audio.dtype == torch.float32
    difference = (got_audio - expected_audio).abs().max()
    assert 0 < difference <= 0.02 * expected_audio.abs().max()


def test_full_44khz_model_on_one_second(full_model):
    torch.set_num_threads(2)
    audio = 0.3 * torch.randn(1, 1, 44100, generator=torch.Generator().manual_seed(1))
    assert_same(full_model, audio, tolerance=1e-4)


def test_wrong_kernels_fall_back_to_the_reference_ops(monkeypatch):
    """A compiled Snake or a spectral product whose results are wrong on the probe is never plugged in: the eager
    Snake and the direct convolution run instead, each with a warning, and the outputs are the reference path's."""

    def wrong(graph, inputs, **options):
        return lambda *args: graph(*args) * 1.01

    monkeypatch.setattr(kernels_rvqgan, "fused_snake", functools.cache(kernels_rvqgan.fused_snake.__wrapped__))
    monkeypatch.setattr(torch._inductor, "compile", wrong)
    with pytest.warns(UserWarning, match="Snake activations run unfused .* wrong on a probe"):
        assert isinstance(kernels_rvqgan.fused_snake("cpu", torch.float32, torch.float32), functools.partial)
    spectral = kernels_rvqgan.spectral_convolution
    monkeypatch.setattr(kernels_rvqgan, "spectral_convolution", lambda *args: spectral(*args) * 1.01)
    model = tiny_model(decoder_hidden_size=512)  # 7-tap convolutions from 256 channels: spectral products
    audio = 0.3 * torch.randn(1, 1, 640, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="Convolutions run direct .* wrong on a probe"):
        encoded, decoded = fast(model, audio)
    expected, expected_audio = reference(model, audio)
    assert torch.equal(encoded.audio_codes, expected.audio_codes)
    torch.testing.assert_close(decoded, expected_audio, rtol=1e-4, atol=1e-5)
