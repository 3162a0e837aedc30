"""The bad-input corpus of `test_bad_input_cli.py` and `test_bad_input_api.py`: audio files, models, forged `.rvq`
files and FIFOs (`write_corpus`, conftest's `corpus` fixture), and the checks every bad case shares (`snapshot`,
`one_line`).

A bad case must give our error (exit code 1, or a ValueError / OSError subclass of ours), one line naming the file or
argument and the problem, no traceback, nothing in the output folder and no existing file changed. A valid unusual
case must give back its exact rate, channel count and length.
"""

import contextlib
import hashlib
import json
import os
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from conftest import tiny_model
from safetensors.torch import load_file, save_file
from test_container import with_field

from rvqgan import compress, load_model
from rvqgan.container import read, write

ROOT = Path(__file__).parent.parent


@contextlib.contextmanager
def release_fifos_after(folder: Path, seconds: float = 60):
    """A read blocked on one of our FIFOs under `folder` is released after `seconds` (by opening its other end), so
    that a test that would hang fails instead."""
    stop = threading.Event()

    def release():
        if stop.wait(seconds):
            return
        for fifo in folder.rglob("fifo.*"):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # nobody is reading it
                pass

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def tone(channels: int, samples: int, rate: int) -> np.ndarray:
    """(samples, channels) float32: a different quiet sine per channel."""
    t = np.arange(samples) / rate
    return np.stack([0.2 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], axis=1).astype(np.float32)


VALID = {  # name -> (channels, samples, rate, soundfile subtype)
    "one_sample.wav": (1, 1, 8000, "FLOAT"),
    "stereo_one_sample.wav": (2, 1, 48000, "FLOAT"),
    "three_channels_22k.wav": (3, 6615, 22050, "PCM_16"),
    "int16_8k.wav": (1, 2000, 8000, "PCM_16"),
    "uint8_11k.wav": (1, 2205, 11025, "PCM_U8"),
    "hi_96k.flac": (2, 19200, 96000, "PCM_24"),
    "a b ü.wav": (1, 1600, 16000, "FLOAT"),
    "mono.ogg": (1, 22050, 44100, "VORBIS"),
    "silence.wav": (1, 44100, 44100, "PCM_16"),
}


def forge(data: bytes, **fields) -> bytes:
    for name, value in fields.items():
        data = with_field(data, name, value)
    return data


def make_models(folder: Path, model) -> None:
    """good/ and broken variants of it."""
    good = folder / "good"
    model.save_pretrained(good)
    config = json.loads((good / "config.json").read_text())
    for name in ("trunc", "shape", "more", "extra", "pickle", "badjson", "noconfig"):
        shutil.copytree(good, folder / name)
    weights = (good / "model.safetensors").read_bytes()
    (folder / "trunc" / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (folder / "shape" / "config.json").write_text(json.dumps({**config, "codebook_size": 32}))
    (folder / "more" / "config.json").write_text(json.dumps({**config, "n_codebooks": 6}))
    tensors = load_file(good / "model.safetensors")
    save_file(
        {**tensors, "decoder.extra": torch.zeros(3)}, folder / "extra" / "model.safetensors", metadata={"format": "pt"}
    )
    (folder / "pickle" / "model.safetensors").unlink()
    torch.save(tensors, folder / "pickle" / "pytorch_model.bin")
    (folder / "badjson" / "config.json").write_text("{not json")
    (folder / "noconfig" / "config.json").unlink()
    (folder / "emptydir").mkdir()


def make_audio(folder: Path) -> None:
    (folder / "valid").mkdir(parents=True)
    sf.write(folder / "good.wav", tone(2, 24000, 48000), 48000, subtype="FLOAT")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("not audio at all\n")
    sf.write(folder / "nan.wav", np.full(4000, np.nan, np.float32), 16000, subtype="FLOAT")
    one_inf = tone(1, 4000, 16000)
    one_inf[1000] = np.inf
    sf.write(folder / "inf.wav", one_inf, 16000, subtype="FLOAT")
    sf.write(folder / "rate_1mhz.wav", tone(1, 1000, 1_000_000), 1_000_000, subtype="FLOAT")
    (folder / "noaudio.wav").mkdir()
    (folder / "noaudio.wav" / "notes.txt").write_text("no audio here")
    (folder / "emptydir").mkdir()
    for name in ("dup_a", "dup_b"):
        (folder / name).mkdir()
        shutil.copy(folder / "good.wav", folder / name / "x.wav")
    shutil.copy(folder / "good.wav", folder / "same.wav")
    sf.write(folder / "same.flac", tone(1, 4800, 48000), 48000)
    shutil.copy(folder / "good.wav", folder / "audio_named.rvq")  # an input whose output would be itself
    os.mkfifo(folder / "fifo.wav")
    for name, (channels, samples, rate, subtype) in VALID.items():
        sf.write(folder / "valid" / name, tone(channels, samples, rate), rate, subtype=subtype)


def make_rvq(folder: Path, model, identity: str) -> None:
    folder.mkdir()
    good = compress(model, tone(2, 24000, 48000).T, 48000, identity=identity)
    header, codes = read(good)
    rng = np.random.default_rng(0)
    files = {
        "good.rvq": good,
        "truncated.rvq": good[: len(good) // 2],
        "flipped.rvq": good[:40] + bytes([good[40] ^ 0x10]) + good[41:],
        "version9.rvq": good[:4] + b"\x09" + good[5:],
        "empty.rvq": b"",
        "wav.rvq": (folder.parent / "audio" / "good.wav").read_bytes(),
        "other_model.rvq": write(replace(header, model_id="someone/else@sha256:0123456789abcdef"), codes),
        "no_identity.rvq": write(replace(header, model_id=""), codes),
        "length_10x.rvq": forge(good, original_length=10 * header.original_length),
        "length_2e40.rvq": forge(good, original_length=1 << 40),
        "length_0.rvq": forge(good, original_length=0),
        "gain_1000db.rvq": forge(good, gain_db=1000.0),
        "gain_1e30db.rvq": forge(good, gain_db=1e30),
        "gain_nan.rvq": forge(good, gain_db=float("nan")),
        "rate_0.rvq": forge(good, sample_rate=0),
        "rate_1ghz.rvq": forge(good, sample_rate=10**9),
        "channels_0.rvq": forge(good, channels=0),
        "six_codebooks.rvq": write(replace(header, n_q=6), rng.integers(0, 64, (2, 6, header.frames))),
        "eight_bits.rvq": write(replace(header, bits=8), codes),
        "sneaky.wav": good,  # a .rvq file named like the output it decodes to
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "norvq").mkdir()
    (folder / "norvq" / "notes.txt").write_text("no .rvq here")
    os.mkfifo(folder / "fifo.rvq")


def write_corpus(root: Path) -> Path:
    """A folder of audio/, rvq/ and models/ (a tiny 44.1 kHz model, good/, and broken copies of it)."""
    model = tiny_model(sampling_rate=44100)
    make_models(root / "models", model)
    model, identity = load_model(str(root / "models" / "good"))
    make_audio(root / "audio")
    make_rvq(root / "rvq", model, identity)
    return root


def snapshot(*folders: Path) -> dict:
    """Every file under the folders (hidden ones too) with its mode and a hash of its bytes."""
    return {
        p: (p.stat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
        for folder in folders
        for p in folder.rglob("*")
        if p.is_file()
    }


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]
