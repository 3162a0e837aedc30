"""The versioned `.rvq` container: a small header, the codes (entropy-coded or bit-packed) and a CRC32.

Layout (little-endian):
    magic b"RVQ\\0" | version u8 | FIELDS (26 bytes) | model identity (id_len bytes, UTF-8)
    | payload length u32 | payload | CRC32 u32 of everything before it
With an 18-byte model identity the overhead is 57 bytes: 10 s of 9 codebooks x 10 bits at 86.13 Hz takes
9,755 bytes, 7.80 kbps on disk for 7.75 kbps nominal.
"""

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .entropy import MAX_BITS, entropy_decode, entropy_encode, pack_bits, unpack_bits

MAGIC = b"RVQ\x00"
FORMAT_VERSION = 1
MAX_CODES = 1 << 27  # refuse more before allocating: 1 GiB of int64, 48 h of 9 codebooks at 86 Hz
MAX_SAMPLE_RATE = 768_000
MAX_GAIN_DB = 120.0  # loudness normalisation stays far within; more would only turn noise into overflow
_PREFIX = struct.Struct("<4sB")  # magic, version
# channels, sample_rate, original_length, n_q, bits, frames, gain_db, flags, id_len
_FIELDS = struct.Struct("<HIQBBIfBB")
_U32 = struct.Struct("<I")
_ENTROPY_CODED = 1  # the only flag bit defined in version 1


class RvqFormatError(ValueError):
    """The bytes are not a valid .rvq file; the only exception `read` raises."""


@dataclass(frozen=True)
class RvqHeader:
    """Everything besides the codes; the codes have shape (channels, n_q, frames).

    model_id: the model that made the codes (a Hub repo id or a config hash), at most 255 bytes of UTF-8.
    sample_rate, original_length: of the original audio, to resample and trim the decoded audio.
    gain_db: loudness gain to apply after decoding, stored as float32.
    entropy_coded: range-coded payload (`entropy.entropy_encode`) rather than bit-packed (`entropy.pack_bits`).
    """

    model_id: str
    sample_rate: int
    channels: int
    original_length: int
    n_q: int
    bits: int
    frames: int
    gain_db: float = 0.0
    entropy_coded: bool = True
    version: int = FORMAT_VERSION


def _problem(header: RvqHeader) -> str | None:
    """What is wrong with a header's fields, or None."""
    limits = {
        "channels": (1, 0xFFFF),
        "sample_rate": (1, MAX_SAMPLE_RATE),
        "original_length": (1, (1 << 64) - 1),
        "n_q": (1, 0xFF),
        "frames": (0, 0xFFFFFFFF),
    }
    for name, (low, high) in limits.items():
        if not low <= getattr(header, name) <= high:
            return f"{name} = {getattr(header, name)} is out of range [{low}, {high}]"
    if not 1 <= header.bits <= MAX_BITS:
        return f"bits per code must be in [1, {MAX_BITS}], got {header.bits}"
    if not math.isfinite(header.gain_db):
        return f"gain_db = {header.gain_db} is not finite"
    if abs(header.gain_db) > MAX_GAIN_DB:
        return f"gain_db = {header.gain_db:g} is out of range [-{MAX_GAIN_DB:g}, {MAX_GAIN_DB:g}]"
    if len(header.model_id.encode()) > 255:
        return "model identity is longer than 255 bytes"
    if header.channels * header.n_q * header.frames > MAX_CODES:
        return f"{header.channels} x {header.n_q} x {header.frames} codes exceed the limit of {MAX_CODES}"
    return None


def write(header: RvqHeader, codes) -> bytes:
    """RvqHeader + integer codes of shape (channels, n_q, frames) in [0, 2**bits) -> .rvq bytes."""
    codes = np.asarray(codes)
    if header.version != FORMAT_VERSION:
        raise ValueError(f"this writer only writes format version {FORMAT_VERSION}")
    if problem := _problem(header):
        raise ValueError(problem)
    shape = (header.channels, header.n_q, header.frames)
    if codes.shape != shape:
        raise ValueError(f"codes have shape {codes.shape}, the header says {shape}")
    payload = entropy_encode(codes, header.bits) if header.entropy_coded else pack_bits(codes, header.bits)
    model_id = header.model_id.encode()
    fields = (
        header.channels,
        header.sample_rate,
        header.original_length,
        header.n_q,
        header.bits,
        header.frames,
        header.gain_db,
        _ENTROPY_CODED * header.entropy_coded,
        len(model_id),
    )
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION) + _FIELDS.pack(*fields) + model_id + _U32.pack(len(payload)) + payload
    return body + _U32.pack(zlib.crc32(body))


def check_span(header: RvqHeader, frame_samples: float) -> None:
    """RvqFormatError unless `original_length` fits `frames` frames of `frame_samples` samples at the original rate,
    give or take the frame that resampling can add or take."""
    span = (header.frames - 2) * frame_samples < header.original_length <= (header.frames + 1) * frame_samples
    if header.frames == 0 or not span:
        raise RvqFormatError(
            f"original_length = {header.original_length} samples does not fit {header.frames} frames "
            f"of {frame_samples:g} samples"
        )


def _need(data: bytes, end: int) -> None:
    if len(data) < end:
        raise RvqFormatError(f"truncated: needs at least {end} bytes, got {len(data)}")


def read(data: bytes) -> tuple[RvqHeader, np.ndarray]:
    """.rvq bytes -> (RvqHeader, int64 codes of shape (channels, n_q, frames)); raises only RvqFormatError."""
    data = bytes(data)
    if data[:4] != MAGIC:
        raise RvqFormatError("not an .rvq file (bad magic)")
    _need(data, _PREFIX.size)
    if data[4] != FORMAT_VERSION:
        raise RvqFormatError(f"format version {data[4]} is not supported (this reader knows {FORMAT_VERSION})")
    _need(data, _PREFIX.size + _FIELDS.size)
    *fields, flags, id_len = _FIELDS.unpack_from(data, _PREFIX.size)
    start = _PREFIX.size + _FIELDS.size + id_len + _U32.size
    _need(data, start)
    (payload_len,) = _U32.unpack_from(data, start - _U32.size)
    end = start + payload_len
    _need(data, end + _U32.size)
    if len(data) > end + _U32.size:
        raise RvqFormatError(f"{len(data) - end - _U32.size} unexpected bytes after the checksum")
    if zlib.crc32(data[:end]) != _U32.unpack_from(data, end)[0]:
        raise RvqFormatError("corrupt: checksum mismatch")
    if flags & ~_ENTROPY_CODED:
        raise RvqFormatError(f"unknown flags {flags:#04x}")
    try:
        model_id = data[start - _U32.size - id_len : start - _U32.size].decode()
    except UnicodeDecodeError as error:
        raise RvqFormatError("model identity is not valid UTF-8") from error
    channels, sample_rate, original_length, n_q, bits, frames, gain_db = fields
    header = RvqHeader(model_id, sample_rate, channels, original_length, n_q, bits, frames, gain_db, bool(flags))
    if problem := _problem(header):
        raise RvqFormatError(problem)
    shape, payload = (channels, n_q, frames), data[start:end]
    if not header.entropy_coded:
        if payload_len != -(-math.prod(shape) * bits // 8):
            raise RvqFormatError(f"bit-packed payload of {payload_len} bytes does not hold {shape} {bits}-bit codes")
        return header, unpack_bits(payload, bits, math.prod(shape)).reshape(shape)
    try:
        return header, entropy_decode(payload, bits, shape)
    except Exception as error:  # the range decoder's errors vary; none may escape as another type
        raise RvqFormatError(f"payload does not decode: {error}") from error
