"""Bad input to the Python API, the model loaders, the converter, the tokenizer and the Space's upload handler, table-
driven (see `bad_input_corpus`), and a fuzz test of forged `.rvq` header fields."""

import importlib.util
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_input_corpus import VALID, forge, one_line, snapshot, tone
from conftest import tiny_model
from rvqgan.feature_extraction import AudioError, AudioTokenizer
from rvqgan.modeling import ModelLoadError, RvqganModel
from rvqgan.modeling.convert import main as convert
from transformers import AutoModel

from rvqgan import RvqFormatError, compress, decompress, load_model
from rvqgan.container import read

ROOT = Path(__file__).parent.parent
pytestmark = [pytest.mark.usefixtures("one_thread", "deadline"), pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def model(corpus):
    return load_model(str(corpus / "models" / "good"))[0]


MONO = tone(1, 4410, 44100)[:, 0]
ALL_NAN, ONE_NAN, ONE_INF = np.full(4410, np.nan, np.float32), MONO.copy(), MONO.copy()
ONE_NAN[100], ONE_INF[200] = np.nan, -np.inf

# (id, call(model, corpus), error type, words of the message)
# fmt: off
API_CASES = [
    ("compress-all-nan", lambda m, c: compress(m, ALL_NAN, 44100), AudioError, ["`audio`", "NaN"]),
    ("compress-one-nan", lambda m, c: compress(m, ONE_NAN, 44100), AudioError, ["`audio`", "NaN"]),
    ("compress-one-inf", lambda m, c: compress(m, ONE_INF, 44100), AudioError, ["`audio`", "infinite"]),
    ("compress-rate-0", lambda m, c: compress(m, MONO, 0), AudioError, ["`sampling_rate`", "0"]),
    ("compress-rate-negative", lambda m, c: compress(m, MONO, -44100), AudioError, ["`sampling_rate`", "-44100"]),
    ("compress-rate-fraction", lambda m, c: compress(m, MONO, 44100.5), AudioError, ["`sampling_rate`", "44100.5"]),
    ("compress-rate-nan", lambda m, c: compress(m, MONO, float("nan")), AudioError, ["`sampling_rate`", "nan"]),
    ("compress-rate-string", lambda m, c: compress(m, MONO, "44100"), AudioError, ["`sampling_rate`", "'44100'"]),
    ("compress-rate-bool", lambda m, c: compress(m, MONO, True), AudioError, ["`sampling_rate`", "True"]),
    ("compress-rate-none", lambda m, c: compress(m, MONO, None), AudioError, ["`sampling_rate`", "None"]),
    ("compress-rate-1mhz", lambda m, c: compress(m, MONO, 1_000_000), AudioError, ["1000000 Hz", "768000"]),
    ("compress-samples-channels", lambda m, c: compress(m, tone(2, 4410, 44100), 44100), AudioError,
     ["`audio`", "(4410, 2)", "transpose"]),
    ("compress-3d", lambda m, c: compress(m, MONO[None, None], 44100), AudioError, ["`audio`", "(1, 1, 4410)"]),
    ("compress-empty", lambda m, c: compress(m, np.zeros(0, np.float32), 44100), AudioError,
     ["Empty audio", "`audio`"]),
    ("compress-strings", lambda m, c: compress(m, np.array(["a", "b"]), 44100), AudioError,
     ["`audio`", "real numbers"]),
    ("compress-complex", lambda m, c: compress(m, MONO.astype(complex), 44100), AudioError, ["`audio`", "complex"]),
    ("compress-kbps-and-n-quantizers", lambda m, c: compress(m, MONO, 44100, n_quantizers=2, kbps=1.0), ValueError,
     ["`n_quantizers`", "`kbps`", "not both"]),
    ("compress-n-quantizers-0", lambda m, c: compress(m, MONO, 44100, n_quantizers=0), ValueError,
     ["`n_quantizers`", "[1, 4]"]),
    ("compress-n-quantizers-9", lambda m, c: compress(m, MONO, 44100, n_quantizers=9), ValueError,
     ["`n_quantizers`", "[1, 4]"]),
    ("compress-n-quantizers-float", lambda m, c: compress(m, MONO, 44100, n_quantizers=2.5), ValueError,
     ["`n_quantizers`", "2.5"]),
    ("compress-kbps-negative", lambda m, c: compress(m, MONO, 44100, kbps=-1), ValueError,
     ["`kbps` -1", "out of range"]),
    ("compress-kbps-string", lambda m, c: compress(m, MONO, 44100, kbps="6"), ValueError, ["`kbps`", "'6'"]),
    ("decompress-other-model",
     lambda m, c: decompress(tiny_model(seed=1, sampling_rate=44100), (c / "rvq/good.rvq").read_bytes()),
     RvqFormatError, ["made by model", "not by 'unsaved@sha256:"]),
    ("decompress-other-identity", lambda m, c: decompress(m, (c / "rvq/good.rvq").read_bytes(), "x@sha256:0123"),
     RvqFormatError, ["made by model", "not by 'x@sha256:0123'"]),
    ("decompress-no-identity", lambda m, c: decompress(m, (c / "rvq/no_identity.rvq").read_bytes()), RvqFormatError,
     ["made by model ''"]),
    ("decompress-garbage", lambda m, c: decompress(m, b"\x00" * 100), RvqFormatError, ["not an .rvq file"]),
    ("decompress-length-10x", lambda m, c: decompress(m, (c / "rvq/length_10x.rvq").read_bytes()), RvqFormatError,
     ["original_length = 240000", "does not fit"]),
    ("decompress-length-2e40", lambda m, c: decompress(m, (c / "rvq/length_2e40.rvq").read_bytes()), RvqFormatError,
     ["original_length = 1099511627776"]),
    ("decompress-gain-1000db", lambda m, c: decompress(m, (c / "rvq/gain_1000db.rvq").read_bytes()), RvqFormatError,
     ["gain_db = 1000"]),
    ("decompress-gain-1e30db", lambda m, c: decompress(m, (c / "rvq/gain_1e30db.rvq").read_bytes()), RvqFormatError,
     ["gain_db = 1e+30"]),
    ("load-model-missing", lambda m, c: load_model(str(c / "models/missing")), ModelLoadError,
     ["missing", "no such directory"]),
    ("load-model-truncated", lambda m, c: load_model(str(c / "models/trunc")), ModelLoadError,
     ["trunc", "incomplete metadata"]),
    ("load-model-shapes", lambda m, c: load_model(str(c / "models/shape")), ModelLoadError, ["shape", "4 mismatched"]),
    ("load-model-more-codebooks", lambda m, c: load_model(str(c / "models/more")), ModelLoadError,
     ["more", "10 missing"]),
    ("load-model-unexpected-key", lambda m, c: load_model(str(c / "models/extra")), ModelLoadError,
     ["extra", "1 unexpected"]),
    ("load-model-pickle-only", lambda m, c: load_model(str(c / "models/pickle")), ModelLoadError,
     ["pickle", "model.safetensors"]),
    ("load-model-bad-json", lambda m, c: load_model(str(c / "models/badjson")), ModelLoadError, ["badjson", "JSON"]),
    ("load-model-device-bogus", lambda m, c: load_model(str(c / "models/good"), "bogus"), ValueError,
     ["device 'bogus'"]),
    ("load-model-device-cuda-99", lambda m, c: load_model(str(c / "models/good"), "cuda:99"), ValueError,
     ["device 'cuda:99'"]),
    ("tokenizer-model-truncated", lambda m, c: AudioTokenizer(str(c / "models/trunc")), ModelLoadError,
     ["trunc", "incomplete"]),
    ("tokenizer-model-more-codebooks", lambda m, c: AudioTokenizer(str(c / "models/more")), ModelLoadError,
     ["more", "missing"]),
    ("tokenizer-kbps-and-n-quantizers", lambda m, c: AudioTokenizer(m, n_quantizers=2, kbps=1.0), ValueError,
     ["not both"]),
    ("tokenizer-undecodable-bytes", lambda m, c: AudioTokenizer(m)({"audio": b"RIFF garbage" * 9}), AudioError,
     ["108 bytes of audio", "unreadable or corrupt"]),
    ("tokenizer-corrupt-file", lambda m, c: AudioTokenizer(m).tokenize(str(c / "audio/corrupt.wav")), AudioError,
     ["corrupt.wav", "unreadable or corrupt"]),
    ("tokenizer-missing-file", lambda m, c: AudioTokenizer(m).tokenize(str(c / "audio/missing.wav")), AudioError,
     ["missing.wav", "no such file"]),
    ("tokenizer-fifo", lambda m, c: AudioTokenizer(m).tokenize(str(c / "audio/fifo.wav")), AudioError,
     ["fifo.wav", "not a regular file"]),
    ("tokenizer-rate-0", lambda m, c: AudioTokenizer(m).tokenize(MONO, 0), AudioError, ["`sampling_rate`", "0"]),
    ("tokenizer-rate-in-cell",
     lambda m, c: AudioTokenizer(m)({"audio": {"array": MONO, "sampling_rate": "x"}}), AudioError,
     ["`sampling_rate`", "'x'"]),
    ("tokenizer-nan", lambda m, c: AudioTokenizer(m).tokenize(ONE_NAN, 44100), AudioError, ["`audio`", "NaN"]),
    ("tokenizer-samples-channels", lambda m, c: AudioTokenizer(m).tokenize(tone(2, 4410, 44100), 44100), AudioError,
     ["`audio`", "transpose"]),
]
# fmt: on


# transformers' entry points are strict too: the same refusals, with the cause chained, where transformers alone would
# initialise missing or mis-shaped weights at random, or raise its own errors
# fmt: off
LOADERS = {"from-pretrained": RvqganModel.from_pretrained, "auto-model": AutoModel.from_pretrained}
FOLDERS = [
    ("trunc", ["incomplete metadata"]),
    ("shape", ["4 mismatched"]),
    ("more", ["10 missing"]),
    ("extra", ["1 unexpected"]),
    ("pickle", ["model.safetensors"]),
]
# fmt: on


@pytest.mark.parametrize("folder, words", FOLDERS, ids=[folder for folder, _ in FOLDERS])
@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
def test_from_pretrained_is_strict(corpus, monkeypatch, loader, folder, words):
    monkeypatch.setattr(pickle, "load", None)  # a pickle is never read: this would raise
    monkeypatch.setattr(torch, "load", None)
    with pytest.raises(ModelLoadError) as raised:
        loader(str(corpus / "models" / folder))
    message = one_line(str(raised.value))
    assert folder in message and all(word in message for word in words), message
    assert raised.value.__cause__ is not None or "does not fit" in message


@pytest.mark.parametrize("call, error, words", [case[1:] for case in API_CASES], ids=[case[0] for case in API_CASES])
def test_api_bad_input(model, corpus, call, error, words):
    before = snapshot(corpus)
    with pytest.raises(error) as raised:
        call(model, corpus)
    assert raised.type.__module__.split(".")[0] in ("rvqgan", "builtins")
    message = one_line(str(raised.value))
    assert all(word in message for word in words), message
    assert snapshot(corpus) == before


def test_api_takes_integral_float_and_numpy_rates_ints_scaled_lists_and_tensors(model):
    reference = compress(model, MONO, 44100)
    for rate in (44100.0, np.float32(44100.0), np.int64(44100)):
        assert compress(model, MONO, rate) == reference
    assert compress(model, MONO.tolist(), 44100) == reference
    assert compress(model, torch.from_numpy(MONO), 44100) == reference
    pcm = np.round(MONO * 32767).astype(np.int16)
    assert compress(model, pcm, 44100) == compress(model, pcm / np.float32(32768), 44100)
    decoded, rate = decompress(model, compress(model, pcm, 22050.0, normalize=False))
    assert rate == 22050 and decoded.shape == (1, 4410) and np.abs(decoded).max() < 1  # not 32767 times too loud
    tokenizer = AudioTokenizer(model)
    np.testing.assert_array_equal(tokenizer.tokenize(MONO, 44100.0), tokenizer.tokenize(MONO, 44100))


MALICIOUS = """
class Payload:
    def __reduce__(self):
        return (open, ({marker!r}, "w"))
"""


def converter_inputs(corpus: Path, folder: Path) -> dict[str, Path]:
    """Checkpoints `--from descript` must refuse."""
    folder.mkdir(exist_ok=True)
    (folder / "garbage.pth").write_bytes(np.random.default_rng(0).bytes(3000))
    namespace = {}
    exec(MALICIOUS.format(marker=str(folder / "pwned")), namespace)
    (folder / "malicious.pth").write_bytes(pickle.dumps({"state_dict": namespace["Payload"]()}))
    torch.save({"state_dict": {"w": torch.zeros(100)}, "metadata": {"kwargs": {}}}, folder / "whole.pth")
    (folder / "truncated.pth").write_bytes((folder / "whole.pth").read_bytes()[:300])
    torch.save([1, 2, 3], folder / "list.pth")
    kwargs = dict(
        encoder_dim=8,
        encoder_rates=[2, 4],
        decoder_dim=16,
        n_codebooks=2,
        codebook_size=64,
        codebook_dim=4,
        sample_rate=16000,
    )
    torch.save(
        {"state_dict": {"encoder.block.x.y": torch.zeros(1)}, "metadata": {"kwargs": kwargs}}, folder / "badkey.pth"
    )
    torch.save({"state_dict": {}, "metadata": {"kwargs": {"encoder_dim": 8}}}, folder / "nokwargs.pth")
    return {p.stem: p for p in folder.glob("*.pth")}


# fmt: off
CONVERTER_CASES = [  # (id, arguments, words); {C} checkpoints, {M} models
    ("garbage", "--from descript {C}/garbage.pth", ["garbage.pth", "not a readable PyTorch checkpoint"]),
    ("malicious", "--from descript {C}/malicious.pth", ["malicious.pth", "not a readable PyTorch checkpoint"]),
    ("truncated", "--from descript {C}/truncated.pth", ["truncated.pth", "not a readable PyTorch checkpoint"]),
    ("not-a-dict", "--from descript {C}/list.pth", ["list.pth", "not a DAC checkpoint"]),
    ("bad-key", "--from descript {C}/badkey.pth", ["badkey.pth", "not a DAC checkpoint"]),
    ("missing-kwargs", "--from descript {C}/nokwargs.pth", ["nokwargs.pth", "not a DAC checkpoint", "KeyError"]),
    ("missing-pth", "--from descript {C}/missing.pth", ["missing.pth", "No such file"]),
    ("to-dac-truncated", "--to dac {M}/trunc", ["trunc", "incomplete metadata"]),
    ("to-dac-more-codebooks", "--to dac {M}/more", ["more", "10 missing"]),
    ("to-dac-pickle-only", "--to dac {M}/pickle", ["pickle", "model.safetensors"]),
    ("to-dac-missing", "--to dac {M}/missing", ["missing", "no such directory"]),
    ("from-dac-truncated", "--from dac {M}/trunc", ["trunc", "incomplete metadata"]),
    ("from-dac-extra-key", "--from dac {M}/extra", ["extra", "1 unexpected (decoder.extra)"]),
    ("output-is-the-input", "--to dac {M}/good {M}/good", ["good", "is the input"]),
]
# fmt: on


@pytest.mark.parametrize(
    "arguments, words", [case[1:] for case in CONVERTER_CASES], ids=[case[0] for case in CONVERTER_CASES]
)
def test_converter_bad_input(corpus, tmp_path, capsys, arguments, words):
    checkpoints = converter_inputs(corpus, tmp_path / "checkpoints")
    argv = arguments.format(C=tmp_path / "checkpoints", M=corpus / "models").split()
    argv += [] if len(argv) == 4 else [str(tmp_path / "out")]
    before = snapshot(corpus, tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        convert(argv)
    message = one_line(str(exit_info.value.code))
    assert message.startswith("error: ") and all(word in message for word in words), message
    assert snapshot(corpus, tmp_path) == before and not (tmp_path / "out").exists()
    assert not (tmp_path / "checkpoints" / "pwned").exists() and checkpoints


@pytest.fixture(scope="module")
def space_app():
    for name in ("gradio", "librosa", "matplotlib"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"needs {name}")
    spec = importlib.util.spec_from_file_location("space_app", ROOT / "spaces_demo" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


# fmt: off
SPACE_CASES = [  # (id, file in audio/, words)
    ("corrupt", "corrupt.wav", ["corrupt.wav", "unreadable or corrupt"]),
    ("empty", "empty.wav", ["empty.wav", "unreadable or corrupt"]),
    ("text", "text.wav", ["text.wav", "unreadable or corrupt"]),
    ("nan", "nan.wav", ["nan.wav", "NaN"]),
    ("one-inf", "inf.wav", ["inf.wav", "infinite"]),
    ("too-short", "valid/one_sample.wav", ["one_sample.wav", "shorter than 0.1 s"]),
    ("fifo", "fifo.wav", ["fifo.wav", "not a regular file"]),
    ("missing", "missing.wav", ["missing.wav", "no such file"]),
]
# fmt: on


@pytest.mark.parametrize("name, words", [case[1:] for case in SPACE_CASES], ids=[case[0] for case in SPACE_CASES])
def test_space_upload_handler_bad_input(space_app, corpus, name, words):
    before = snapshot(corpus)
    with pytest.raises(space_app.gr.Error) as raised:
        space_app.load_clip(str(corpus / "audio" / name))
    message = one_line(raised.value.message)
    assert all(word in message for word in words) and str(corpus) not in message, message  # the name, not our path
    assert snapshot(corpus) == before


@pytest.mark.parametrize("name", ["three_channels_22k.wav", "hi_96k.flac", "uint8_11k.wav", "mono.ogg"])
def test_space_upload_handler_keeps_rate_and_length_of_unusual_files(space_app, corpus, name):
    channels, samples, rate, _ = VALID[name]
    audio, got_rate, notices = space_app.load_clip(str(corpus / "audio" / "valid" / name))
    assert (audio.shape, audio.dtype, got_rate) == ((samples,), np.float32, rate)
    assert (f"Mixed down from {channels} channels to mono." in notices) == (channels > 1)


def test_space_refuses_a_model_that_does_not_fit_its_weights(space_app, corpus):
    with pytest.raises(ModelLoadError, match="more: model.safetensors does not fit config.json"):
        space_app.build_demo([str(corpus / "models" / "more")])


FORGED = {
    "channels": [0, 1, 3, 0xFFFF],
    "sample_rate": [0, 1, 8000, 44100, 768000, 768001, 0xFFFFFFFF],
    "original_length": [0, 1, 23999, 24000, 24001, 25000, 48000, 240000, 1 << 40, (1 << 64) - 1],
    "n_q": [0, 1, 3, 5, 255],
    "bits": [0, 5, 7, 16],
    "frames": [0, 1, 688, 689, 691, 692, 10**6, 0xFFFFFFFF],
    "gain_db": [-1e30, -1000.0, -120.5, -120.0, -3.5, 119.9, 121.0, 1e30, float("inf"), float("nan")],
    "flags": [0, 2, 255],
}


def decodes_as_declared(model, data: bytes) -> bool:
    """Our error (False), or audio of exactly the declared shape, finite, decoded within 256 MB of numpy memory."""
    tracemalloc.start()
    try:
        audio, rate = decompress(model, data)
    except RvqFormatError:
        return False
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    header, _ = read(data)
    assert audio.shape == (header.channels, header.original_length) and rate == header.sample_rate
    assert np.isfinite(audio).all() and peak < 256 << 20
    return True


def test_fuzz_forged_header_fields_decode_as_declared_or_raise_our_error(model, corpus):
    good = (corpus / "rvq" / "good.rvq").read_bytes()
    assert decodes_as_declared(model, good)
    accepted = 0
    for name, values in FORGED.items():
        for value in values:
            accepted += decodes_as_declared(model, forge(good, **{name: value}))
    rng = np.random.default_rng(7)
    for _ in range(150):  # several fields forged at once
        fields = {name: values[rng.integers(len(values))] for name, values in FORGED.items() if rng.random() < 0.4}
        accepted += decodes_as_declared(model, forge(good, **fields))
    assert accepted >= 5  # forgeries within the bounds (a length a sample longer, another gain) still decode
