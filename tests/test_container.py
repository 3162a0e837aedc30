"""Bit packing, the adaptive range coder and the .rvq container, including what `read` does with hostile bytes."""

import math
import struct
import zlib

import numpy as np
import pytest

from rvqgan.container import MAX_CODES, RvqFormatError, RvqHeader, read, write
from rvqgan.entropy import entropy_decode, entropy_encode, pack_bits, unpack_bits

FRAME_RATE = 44100 / 512  # 86.13 Hz
# The layout, written out independently of rvqgan.container: prefix, fields, model identity, payload length.
PREFIX, FIELDS, U32 = struct.Struct("<4sB"), struct.Struct("<HIQBBIfBB"), struct.Struct("<I")
FIELD_NAMES = ["channels", "sample_rate", "original_length", "n_q", "bits", "frames", "gain_db", "flags", "id_len"]


def skewed_codes(rng, shape, bits):
    """Zipf-distributed codes, each held for a geometric number of frames (60 % chance to repeat)."""
    values = np.minimum(rng.zipf(1.3, shape), 1 << bits) - 1
    hold = rng.random(shape) < 0.6
    hold[..., :1] = False
    source = np.maximum.accumulate(np.where(hold, 0, np.arange(shape[-1])), axis=-1)
    return np.take_along_axis(values, source, axis=-1)


def make_header(codes, bits, entropy_coded=True, **changes):
    fields = dict(
        model_id="descript/dac_44khz",
        sample_rate=48000,
        channels=codes.shape[0],
        original_length=480000,
        n_q=codes.shape[1],
        bits=bits,
        frames=codes.shape[2],
        gain_db=-3.5,
        entropy_coded=entropy_coded,
    )
    return RvqHeader(**{**fields, **changes})


def assemble(model_id=b"descript/dac_44khz", payload=b"", magic=b"RVQ\x00", version=1, **fields):
    """.rvq bytes built by hand, with a valid checksum."""
    defaults = dict(channels=1, sample_rate=44100, original_length=44100, n_q=1, bits=10, frames=0, gain_db=0, flags=1)
    values = {**defaults, "id_len": len(model_id), **fields}
    body = PREFIX.pack(magic, version) + FIELDS.pack(*(values[n] for n in FIELD_NAMES)) + model_id
    body += U32.pack(len(payload)) + payload
    return body + U32.pack(zlib.crc32(body))


def with_field(data, name, value):
    """`data` with one header field replaced and the checksum recomputed."""
    values = dict(zip(FIELD_NAMES, FIELDS.unpack_from(data, PREFIX.size)), **{name: value})
    body = data[: PREFIX.size] + FIELDS.pack(*(values[n] for n in FIELD_NAMES)) + data[PREFIX.size + FIELDS.size : -4]
    return body + U32.pack(zlib.crc32(body))


@pytest.mark.parametrize("bits", range(1, 17))
def test_pack_bits_round_trip(bits):
    rng = np.random.default_rng(bits)
    for count in [0, 1, 7, 13, 101]:
        codes = rng.integers(0, 1 << bits, count)
        data = pack_bits(codes, bits)
        assert len(data) == math.ceil(count * bits / 8)
        np.testing.assert_array_equal(unpack_bits(data, bits, count), codes)


def test_pack_bits_layout_and_errors():
    assert pack_bits([1, 2, 3], 2) == bytes([0b01101100])
    assert pack_bits([0x3FF, 0], 10) == bytes([0xFF, 0xC0, 0x00])
    with pytest.raises(ValueError, match="must lie in"):
        pack_bits([4], 2)
    with pytest.raises(ValueError, match="need 1 bytes"):
        unpack_bits(b"\x00\x00", 2, 3)


@pytest.mark.parametrize("bits", [1, 6, 10, 16])
@pytest.mark.parametrize("shape", [(1, 9, 862), (2, 3, 57), (1, 1, 1), (2, 0, 5), (1, 4, 0)])
def test_entropy_round_trip_uniform(bits, shape):
    codes = np.random.default_rng(0).integers(0, 1 << bits, shape)
    data = entropy_encode(codes, bits)
    decoded = entropy_decode(data, bits, shape)
    assert decoded.shape == shape and decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, codes)
    if codes.size > 5000 and bits > 1:  # long enough to learn that the data has no structure
        assert len(data) < 1.05 * len(pack_bits(codes, bits))


@pytest.mark.parametrize("bits", [6, 10])
@pytest.mark.parametrize("shape", [(1, 9, 862), (2, 4, 300)])
def test_entropy_round_trip_skewed(bits, shape):
    codes = skewed_codes(np.random.default_rng(1), shape, bits)
    data = entropy_encode(codes, bits)
    np.testing.assert_array_equal(entropy_decode(data, bits, shape), codes)
    assert len(data) < 0.45 * len(pack_bits(codes, bits))


def test_entropy_coded_bytes_are_pinned():
    """Version-1 files must stay readable: any change to the model or the coder changes these bytes."""
    codes = (np.arange(800) ** 2 // 97 % 16).reshape(2, 2, 200)  # runs that shorten, over 7 block sizes
    data = entropy_encode(codes, 4)
    assert (len(data), zlib.crc32(data)) == (440, 0xFB432918)
    np.testing.assert_array_equal(entropy_decode(data, 4, codes.shape), codes)


def test_entropy_round_trip_constant_and_alternating():
    for codes in [np.zeros((2, 3, 500), int), np.full((1, 2, 300), 63), np.tile([0, 63], (1, 2, 150))]:
        np.testing.assert_array_equal(entropy_decode(entropy_encode(codes, 6), 6, codes.shape), codes)


@pytest.mark.parametrize("entropy_coded", [True, False])
@pytest.mark.parametrize("bits,shape", [(10, (1, 9, 862)), (6, (2, 3, 41)), (16, (1, 2, 5)), (10, (1, 4, 0))])
def test_container_round_trip(entropy_coded, bits, shape):
    codes = skewed_codes(np.random.default_rng(2), shape, bits)
    header = make_header(codes, bits, entropy_coded)
    data = write(header, codes)
    assert data[:5] == b"RVQ\x00\x01"
    got_header, got_codes = read(data)
    assert got_header == header
    np.testing.assert_array_equal(got_codes, codes)
    assert got_codes.dtype == np.int64


def test_layout_matches_the_documented_one():
    codes = np.arange(8).reshape(1, 2, 4)
    data = write(make_header(codes, 6, entropy_coded=False), codes)
    expected = assemble(
        sample_rate=48000,
        original_length=480000,
        n_q=2,
        bits=6,
        frames=4,
        gain_db=-3.5,
        flags=0,
        payload=pack_bits(codes, 6),
    )
    assert data == expected


def test_bitrate_on_disk_is_within_one_percent_of_nominal():
    codes = np.random.default_rng(3).integers(0, 1024, (1, 9, 862))
    data = write(make_header(codes, 10, entropy_coded=False), codes)
    nominal = 9 * 10 * FRAME_RATE  # 7752 bit/s
    assert abs(len(data) * 8 / 10.0 / nominal - 1) < 0.01


def test_write_rejects_inconsistent_input():
    codes = np.zeros((1, 2, 3), int)
    with pytest.raises(ValueError, match="header says"):
        write(make_header(codes, 6, frames=4), codes)
    with pytest.raises(ValueError, match="must lie in"):
        write(make_header(codes, 6), codes + 64)
    with pytest.raises(ValueError, match="255 bytes"):
        write(make_header(codes, 6, model_id="x" * 256), codes)
    with pytest.raises(ValueError, match="bits per code"):
        write(make_header(codes, 17), codes)


@pytest.fixture
def small_file():
    codes = skewed_codes(np.random.default_rng(4), (2, 3, 20), 6)
    return write(make_header(codes, 6, model_id="tiny"), codes), codes


def test_read_errors(small_file):
    data, codes = small_file
    packed = write(make_header(codes, 6, entropy_coded=False), codes)
    cases = {
        b"": "not an .rvq file",
        b"RIFF\x00\x00\x00\x00WAVE": "not an .rvq file",
        b"RVQ\x00": "truncated",
        data[:4] + b"\x02" + data[5:]: "format version 2 is not supported \\(this reader knows 1\\)",
        data[:20]: "truncated",
        data[:-1]: "truncated",
        data + b"\x00": "1 unexpected bytes after the checksum",
        data[:-8] + bytes([data[-8] ^ 1]) + data[-7:]: "corrupt: checksum mismatch",
        data[:-4] + b"\x00\x00\x00\x00": "corrupt: checksum mismatch",
        with_field(data, "bits", 0): "bits per code must be in \\[1, 16\\]",
        with_field(data, "bits", 17): "bits per code must be in \\[1, 16\\]",
        with_field(data, "channels", 0): "channels = 0 is out of range",
        with_field(data, "sample_rate", 0): "sample_rate = 0 is out of range",
        with_field(data, "flags", 3): "unknown flags",
        with_field(data, "gain_db", float("nan")): "gain_db = nan is not finite",
        with_field(data, "frames", 0xFFFFFFFF): f"exceed the limit of {MAX_CODES}",
        with_field(packed, "frames", 21): "bit-packed payload of 90 bytes does not hold \\(2, 3, 21\\) 6-bit codes",
        with_field(packed, "n_q", 2): "does not hold",
        assemble(model_id=b"\xff\xfe"): "not valid UTF-8",
        assemble(frames=3, payload=b"\x00" * 7): "payload does not decode: .* whole number of 32-bit words",
    }
    for bad, message in cases.items():
        with pytest.raises(RvqFormatError, match=message):
            read(bad)


def check_read(data, original):
    """`read` either raises RvqFormatError or returns codes consistent with their header."""
    try:
        header, codes = read(data)
    except RvqFormatError:
        return False
    assert codes.shape == (header.channels, header.n_q, header.frames) and codes.dtype == np.int64
    assert codes.size == 0 or 0 <= codes.min() <= codes.max() < 1 << header.bits
    if data == original[0]:
        np.testing.assert_array_equal(codes, original[1])
    return True


def test_fuzz_read(small_file):
    data, codes = small_file
    rng = np.random.default_rng(5)
    for end in range(len(data)):
        assert not check_read(data[:end], small_file), f"a truncation to {end} bytes was accepted"
    for position in range(len(data)):
        for bit in rng.choice(8, 3, replace=False):
            flipped = data[:position] + bytes([data[position] ^ 1 << bit]) + data[position + 1 :]
            assert not check_read(flipped, small_file), f"a flip of bit {bit} of byte {position} was accepted"
    for _ in range(800):
        check_read(rng.bytes(int(rng.integers(0, 200))), small_file)
        check_read(data[:5] + rng.bytes(int(rng.integers(0, 200))), small_file)
    packed = write(make_header(codes, 6, entropy_coded=False, model_id="tiny"), codes)
    for _ in range(500):  # a random header byte, checksum recomputed (bit-packed: decoding cost follows the size)
        position = int(rng.integers(PREFIX.size, PREFIX.size + FIELDS.size + 4))
        body = packed[:position] + rng.bytes(1) + packed[position + 1 : -4]
        check_read(body + U32.pack(zlib.crc32(body)), (packed, codes))
    interesting = {
        "channels": [0, 1, 3, 255, 0xFFFF],
        "sample_rate": [0, 1, 0xFFFFFFFF],
        "n_q": [0, 1, 2, 4, 255],
        "bits": [0, 1, 5, 7, 16, 17, 255],
        "frames": [0, 1, 19, 21, 1000, 0xFFFFFFFF],
        "flags": [0, 2, 255],
        "gain_db": [float("inf"), -1e30],
        "id_len": [0, 3, 5, 255],
        "original_length": [0, (1 << 64) - 1],
    }
    for name, values in interesting.items():
        for value in values:
            check_read(with_field(data, name, value), small_file)
    assert check_read(data, small_file)
