"""`model.streaming_encoder()` / `streaming_decoder()` against the offline `encode` / `decode` of the whole signal.

Chunk sizes are drawn log-uniformly from 1 sample (or frame) to 2 s, so that streams see single samples, a few
frames and seconds. Inputs: 10 s of real audio through the shipped default model; 10 s of noise and tones through
each full preset (random weights, biases and alphas moved off their init, `conftest.perturbed`; `slow`: a minute or
more each on two CPU cores); several geometries of the tiny test model.
"""

import math
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EXAMPLES, assert_codes_equal_but_for_float_ties, perturbed, tiny_model
from rvqgan.feature_extraction.audio import mono_at
from rvqgan.feature_extraction.audio_io import read_audio
from rvqgan.modeling import RvqganConfig, RvqganModel

from rvqgan import load_model

RATIOS = [[2, 4, 4], [2, 5], [3, 5, 2]]

pytestmark = pytest.mark.usefixtures("one_thread")


def signal(batch: int, samples: int, rate: int, seed: int = 0) -> torch.Tensor:
    """Tones and noise, (batch, samples)."""
    t = torch.arange(samples) / rate
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t) * torch.sin(2 * math.pi * 0.7 * t)
    return tone + 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def chunk_sizes(total: int, largest: int, seed: int) -> list[int]:
    """Sizes summing to `total`, log-uniform from 1 to `largest`, starting with single steps."""
    generator, sizes, left = torch.Generator().manual_seed(seed), [], total
    while left > 0:
        size = 1 if len(sizes) < 3 else int(math.exp(torch.rand(1, generator=generator).item() * math.log(largest + 1)))
        sizes.append(min(size, left))
        left -= sizes[-1]
    return sizes


def stream(push, flush, values: torch.Tensor, largest: int, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """`values` pushed along their last axis in random chunks, then flushed: everything returned, concatenated,
    and the number returned by each call."""
    outputs, start = [], 0
    for size in chunk_sizes(values.shape[-1], largest, seed):
        outputs.append(push(values[..., start : start + size]))
        start += size
    outputs.append(flush())
    return torch.cat(outputs, -1), [output.shape[-1] for output in outputs]


def offline(model, audio: torch.Tensor, n_quantizers=None):
    """The offline `encode` output of (B, n) `audio` and the decode of its codes (B, n')."""
    with torch.inference_mode():
        encoded = model.encode(audio[:, None], n_quantizers=n_quantizers)
        return encoded, model.decode(audio_codes=encoded.audio_codes).audio_values


def assert_streams_exactly(model, audio: torch.Tensor, n_quantizers=None, seed: int = 0):
    """Streamed codes equal the offline codes (but for float ties); streamed audio of those codes equals their
    offline decode."""
    encoded, decoded = offline(model, audio, n_quantizers)
    codes = encoded.audio_codes
    rate, hop = model.config.sampling_rate, model.config.hop_length
    encoder = model.streaming_encoder(n_quantizers)
    streamed_codes, _ = stream(encoder.push, encoder.flush, audio, 2 * rate, seed)
    assert_codes_equal_but_for_float_ties(model, streamed_codes, encoded)
    decoder = model.streaming_decoder()
    streamed, _ = stream(decoder.push, decoder.flush, codes, 2 * rate // hop, seed + 1)
    assert streamed.shape == decoded.shape
    assert (streamed - decoded).abs().max() <= 1e-5
    assert decoded.abs().max() > 1e-3  # not a silent output
    return encoder, decoder


def test_a_code_that_is_no_tie_fails_the_comparison():
    model = tiny_model()
    encoded, _ = offline(model, signal(1, 16000, 16000))
    assert_codes_equal_but_for_float_ties(model, encoded.audio_codes.clone(), encoded)
    codes = encoded.audio_codes.clone()
    codes[0, 1, 3] = (codes[0, 1, 3] + 1) % model.config.codebook_size
    with pytest.raises(AssertionError, match="frame 3, codebook 2: not a tie"):
        assert_codes_equal_but_for_float_ties(model, codes, encoded)


@pytest.mark.parametrize("ratios", RATIOS)
@pytest.mark.parametrize("n_quantizers", [None, 2])
def test_tiny_models_stream_exactly(ratios, n_quantizers):
    model = tiny_model(downsampling_ratios=ratios)
    for samples in (1, 3 * model.config.hop_length, 16000 + 7):
        assert_streams_exactly(model, signal(2, samples, 16000, samples), n_quantizers, seed=samples)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["44khz", "24khz", "16khz"])
def test_presets_stream_ten_seconds_exactly(preset):
    torch.manual_seed(0)
    model = perturbed(RvqganModel(RvqganConfig.from_preset(preset))).eval()
    rate = model.config.sampling_rate
    encoder, decoder = assert_streams_exactly(model, signal(1, 10 * rate + 5, rate))
    if preset == "44khz":
        assert (encoder.delay + decoder.delay) / rate <= 0.25


def test_default_model_streams_ten_seconds_exactly():
    model, _ = load_model()
    clips = [mono_at(*read_audio(path), 44100) for path in sorted(Path(EXAMPLES).glob("*.flac"))]
    audio = torch.from_numpy(np.concatenate(clips * 2)[: 10 * 44100 + 123].copy())
    assert audio.shape[-1] == 10 * 44100 + 123
    assert_streams_exactly(model, audio[None])


def test_streams_compute_in_float32_under_autocast():
    model = tiny_model()
    encoded, decoded = offline(model, signal(1, 5000, 16000))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encoder, decoder = model.streaming_encoder(), model.streaming_decoder()
        streamed = torch.cat([encoder.push(signal(1, 5000, 16000)), encoder.flush()], -1)
        audio = torch.cat([decoder.push(encoded.audio_codes), decoder.flush()], -1)
    assert_codes_equal_but_for_float_ties(model, streamed, encoded)
    assert audio.dtype == torch.float32 and (audio - decoded).abs().max() <= 1e-5


def test_streams_called_with_several_torch_threads_equal_offline():
    model = tiny_model()
    audio = signal(1, 5000, 16000)
    encoded, decoded = offline(model, audio)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # pushes run on a one-thread worker of `inference_rvqgan.pools(2)`
    try:
        encoder, decoder = model.streaming_encoder(), model.streaming_decoder()
        streamed, _ = stream(encoder.push, encoder.flush, audio, 3000)
        audio_out, _ = stream(decoder.push, decoder.flush, encoded.audio_codes, 20)
        with pytest.raises(ValueError, match="flushed"):
            encoder.push(audio)
    finally:
        torch.set_num_threads(threads)
    assert_codes_equal_but_for_float_ties(model, streamed, encoded)
    assert (audio_out - decoded).abs().max() <= 1e-5


def pushes(values: torch.Tensor, largest: int, seed: int) -> list[torch.Tensor]:
    """`values` cut along the last axis into chunks of `chunk_sizes`."""
    return list(values.split(chunk_sizes(values.shape[-1], largest, seed), -1))


def run_alone(make, chunks: list[torch.Tensor]) -> torch.Tensor:
    new = make()
    return torch.cat([new.push(chunk) for chunk in chunks] + [new.flush()], -1)


def run_interleaved(make, all_chunks: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """One stream per list of chunks, pushed in turn, a chunk each."""
    streams, outputs = [make() for _ in all_chunks], [[] for _ in all_chunks]
    for turn in range(max(len(chunks) for chunks in all_chunks)):
        for new, chunks, output in zip(streams, all_chunks, outputs):
            if turn < len(chunks):
                output.append(new.push(chunks[turn]))
    return [torch.cat(output + [new.flush()], -1) for new, output in zip(streams, outputs)]


def run_on_threads(make, all_chunks: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    outputs = [None] * len(all_chunks)

    def work(index):
        outputs[index] = run_alone(make, all_chunks[index])

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(all_chunks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outputs


def test_interleaved_and_threaded_streams_equal_solo_streams():
    model = tiny_model()
    audio = [pushes(signal(1, 9000, 16000, seed), 3000, seed) for seed in range(4)]
    codes = [run_alone(model.streaming_encoder, chunks) for chunks in audio]
    assert len({tuple(c.flatten().tolist()) for c in codes}) == 4  # different inputs
    for run_together in (run_interleaved, run_on_threads):
        assert all(map(torch.equal, run_together(model.streaming_encoder, audio), codes))

    frames = [pushes(c, 100, seed) for seed, c in enumerate(codes)]
    decoded = [run_alone(model.streaming_decoder, chunks) for chunks in frames]
    for run_together in (run_interleaved, run_on_threads):
        assert all(map(torch.equal, run_together(model.streaming_decoder, frames), decoded))


@pytest.mark.parametrize("lookahead", [0, 5, 40, None])
def test_encoder_returns_each_frame_once_lookahead_samples_past_its_end_arrived(lookahead):
    """Each push returns the frames whose end plus `lookahead` has arrived (`delay` samples from their start), as
    the offline encode of the audio received so far gives them; exact (None) when the whole context has arrived."""
    model = tiny_model()
    hop, audio = model.config.hop_length, signal(2, 3000, 16000)
    encoder, received, returned = model.streaming_encoder(lookahead=lookahead), 0, 0
    assert encoder.delay == hop + encoder.lookahead and (lookahead is None or encoder.lookahead == lookahead)
    for chunk in pushes(audio, 200, seed=1):
        codes = encoder.push(chunk)
        received += chunk.shape[-1]
        assert returned + codes.shape[-1] == max(0, received + hop - encoder.delay) // hop
        expected = offline(model, audio[:, :received])[0].audio_codes
        assert torch.equal(codes, expected[..., returned : returned + codes.shape[-1]])
        returned += codes.shape[-1]
    assert returned + encoder.flush().shape[-1] == -(-3000 // hop)


@pytest.mark.parametrize("lookahead", [0, 2, None])
def test_decoder_returns_each_frame_once_lookahead_frames_after_it_arrived(lookahead):
    model = tiny_model()
    hop = model.config.hop_length
    codes = offline(model, signal(1, 3000, 16000))[0].audio_codes
    decoder, received, returned = model.streaming_decoder(lookahead=lookahead), 0, 0
    assert decoder.delay == decoder.lookahead * hop and (lookahead is None or decoder.lookahead == lookahead)
    for chunk in pushes(codes, 6, seed=2):
        audio = decoder.push(chunk)
        received += chunk.shape[-1]
        if lookahead is None:  # all of a frame once `lookahead` frames after it arrived, sometimes a little more
            assert 0 <= returned + audio.shape[-1] - max(0, received - decoder.lookahead) * hop < hop
        else:
            assert returned + audio.shape[-1] == max(0, received - lookahead) * hop
        with torch.inference_mode():
            expected = model.decode(audio_codes=codes[..., :received]).audio_values
        assert torch.allclose(audio, expected[..., returned : returned + audio.shape[-1]], rtol=0, atol=1e-5)
        returned += audio.shape[-1]
    assert returned + decoder.flush().shape[-1] == codes.shape[-1] * hop


def flushed(stream, chunk):
    stream.push(chunk)
    stream.flush()
    return stream


@pytest.mark.parametrize(
    "case, call, message",
    [
        ("int samples", lambda m: m.streaming_encoder().push(torch.ones(10, dtype=torch.long)), "float tensor"),
        ("3-D samples", lambda m: m.streaming_encoder().push(torch.ones(1, 1, 10)), "float tensor"),
        ("array", lambda m: m.streaming_encoder().push(np.ones(10, np.float32)), "float tensor"),
        ("after flush", lambda m: flushed(m.streaming_encoder(), torch.ones(10)).push(torch.ones(10)), "flushed"),
        ("flush twice", lambda m: flushed(m.streaming_encoder(), torch.ones(10)).flush(), "flushed"),
        ("nothing pushed", lambda m: m.streaming_encoder().flush(), "Nothing was pushed"),
        ("lookahead < 0", lambda m: m.streaming_encoder(lookahead=-1), "`lookahead` must be"),
        ("lookahead float", lambda m: m.streaming_encoder(lookahead=1.5), "`lookahead` must be"),
        ("lookahead > context", lambda m: m.streaming_encoder(lookahead=10**6), "(exact)"),
        ("decoder lookahead", lambda m: m.streaming_decoder(lookahead=100), "frames (exact)"),
        ("n_quantizers", lambda m: m.streaming_encoder(n_quantizers=5), "`n_quantizers` must be"),
        ("float codes", lambda m: m.streaming_decoder().push(torch.ones(1, 4, 3)), "integer tensor"),
        ("2-D codes", lambda m: m.streaming_decoder().push(torch.ones(4, 3, dtype=torch.long)), "integer tensor"),
        ("codes too big", lambda m: m.streaming_decoder().push(torch.full((1, 4, 3), 64)), "in [0, 64)"),
        ("codes < 0", lambda m: m.streaming_decoder().push(torch.full((1, 4, 3), -1)), "in [0, 64)"),
        ("decoder after flush", lambda m: flushed(m.streaming_decoder(), torch.ones(1, 4, 3, dtype=torch.long)).push(
            torch.ones(1, 4, 3, dtype=torch.long)), "flushed"),
        ("decoder nothing pushed", lambda m: m.streaming_decoder().flush(), "Nothing was pushed"),
    ],
)  # fmt: skip
def test_bad_input_is_a_one_line_value_error(case, call, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        call(tiny_model())
    assert "\n" not in str(error.value)


def test_a_stream_refuses_a_new_batch_size_or_codebook_count():
    model = tiny_model()
    encoder = model.streaming_encoder()
    encoder.push(torch.ones(2, 10))
    with pytest.raises(ValueError, match="batch size of the first push, 2: got 1"):
        encoder.push(torch.ones(10))
    decoder = model.streaming_decoder()
    decoder.push(torch.ones(1, 4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch and n_q of the first push"):
        decoder.push(torch.ones(1, 3, 3, dtype=torch.long))
