"""Lossless coding of codec tokens: plain bit packing and an adaptive range coder.

Codes are integer arrays of shape (n_streams, n_q, frames) with values in [0, 2**bits), 1 <= bits <= 16.

The entropy coder walks the frames in blocks (1, 2, 4, ... up to BLOCK frames) and, for each codebook k
in turn, sends
  1. a "repeat" flag per code: is it equal to the code of the same stream and codebook at the previous
     frame (the code before frame 0 counts as 0)? Its probability comes from adaptive counts in the
     context (codebook k, flag of codebook k-1 at the same frame), since silence or steady sounds
     repeat in every codebook at once;
  2. the codes that do not repeat, with adaptive per-codebook frequency counts (+ PRIOR each).
The models are frozen within a block and updated between blocks with vectorised counts, so one
constriction call codes a whole block of a codebook, and encoder and decoder see the same probabilities.
"""

import constriction
import numpy as np

MAX_BITS = 16
BLOCK = 64  # frames per block once the models have warmed up
PRIOR = 0.5  # pseudo-count of every code value (the Krichevsky-Trofimov estimator)
_FAMILY = constriction.stream.model.Categorical(perfect=False)


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in [1, {MAX_BITS}], got {bits}")


def _as_codes(codes, bits: int, ndim: int | None = None) -> np.ndarray:
    """Validate integer codes in [0, 2**bits); returns them as int32 (any shape, or `ndim` dimensions)."""
    _check_bits(bits)
    codes = np.asarray(codes)
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got {codes.dtype}")
    if ndim is not None and codes.ndim != ndim:
        raise ValueError(f"codes must have shape (n_streams, n_q, frames), got {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= 1 << bits):
        raise ValueError(f"codes must lie in [0, {1 << bits}) for {bits} bits")
    return codes.astype(np.int32)


def pack_bits(codes, bits: int) -> bytes:
    """Codes of any shape -> ceil(codes.size * bits / 8) bytes, `bits` bits a code, most significant first."""
    codes = _as_codes(codes, bits).ravel()
    matrix = np.unpackbits(codes.astype(">u2").view(np.uint8)).reshape(-1, 16)  # (count, 16)
    return np.packbits(matrix[:, 16 - bits :]).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of pack_bits: `data` (exactly ceil(count * bits / 8) bytes) -> int64 codes of shape (count,)."""
    _check_bits(bits)
    if count < 0 or len(data) != -(-count * bits // 8):
        raise ValueError(f"{count} codes of {bits} bits need {-(-count * bits // 8)} bytes, got {len(data)}")
    matrix = np.zeros((count, 16), np.uint8)
    matrix[:, 16 - bits :] = np.unpackbits(np.frombuffer(data, np.uint8), count=count * bits).reshape(count, bits)
    return np.packbits(matrix, axis=1).view(">u2")[:, 0].astype(np.int64)


def _blocks(frames: int):
    """Yield (t0, t1) frame ranges of sizes 1, 2, 4, ..., BLOCK, BLOCK, ... covering [0, frames)."""
    t0, size = 0, 1
    while t0 < frames:
        yield t0, min(frames, t0 + size)
        t0, size = t0 + size, min(2 * size, BLOCK)


class _Model:
    """Adaptive counts shared by encoder and decoder: repeat flags and non-repeated codes, per codebook."""

    def __init__(self, n_q: int, bits: int):
        self.flags = np.ones((n_q, 2, 2))  # [codebook, flag of codebook k-1, flag]
        self.literals = np.full((n_q, 1 << bits), PRIOR)  # [codebook, code]

    def flag_probabilities(self, k: int, above: np.ndarray) -> np.ndarray:
        """(n_streams, B) flags of codebook k-1 -> (n_streams * B, 2) probabilities of the flags of codebook k."""
        return self.flags[k, above.ravel().astype(np.intp)]

    def literal_model(self, k: int):
        return constriction.stream.model.Categorical(self.literals[k], perfect=False)

    def update(self, k: int, above: np.ndarray, flags: np.ndarray, literals: np.ndarray) -> None:
        self.flags[k] += np.bincount((2 * above + flags).ravel(), minlength=4).reshape(2, 2)
        self.literals[k] += np.bincount(literals, minlength=self.literals.shape[1])


def _fill(first: np.ndarray, flags: np.ndarray, literals: np.ndarray) -> np.ndarray:
    """Rebuild a (n_streams, B) block: repeat flags take the previous code, the rest take `literals` in order."""
    values = np.empty((flags.shape[0], flags.shape[1] + 1), np.int32)
    values[:, 0] = first
    values[:, 1:][~flags] = literals
    fresh = np.concatenate([np.ones((flags.shape[0], 1), bool), ~flags], axis=1)
    source = np.maximum.accumulate(np.where(fresh, np.arange(fresh.shape[1]), 0), axis=1)
    return np.take_along_axis(values, source, axis=1)[:, 1:]


def entropy_encode(codes, bits: int) -> bytes:
    """(n_streams, n_q, frames) codes -> range-coded bytes (a multiple of 4). Shape and bits are not stored."""
    codes = _as_codes(codes, bits, ndim=3)
    n_streams, n_q, frames = codes.shape
    padded = np.concatenate([np.zeros((n_streams, n_q, 1), np.int32), codes], axis=2)
    model, encoder = _Model(n_q, bits), constriction.stream.queue.RangeEncoder()
    for t0, t1 in _blocks(frames):
        above = np.zeros((n_streams, t1 - t0), bool)
        for k in range(n_q):
            block = padded[:, k, t0 + 1 : t1 + 1]
            flags = block == padded[:, k, t0:t1]
            literals = block[~flags]
            encoder.encode(flags.ravel().astype(np.int32), _FAMILY, model.flag_probabilities(k, above))
            encoder.encode(literals, model.literal_model(k))
            model.update(k, above, flags, literals)
            above = flags
    return encoder.get_compressed().astype("<u4").tobytes()


def entropy_decode(data: bytes, bits: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of entropy_encode: bytes -> int64 codes of `shape` (n_streams, n_q, frames)."""
    _check_bits(bits)
    if len(data) % 4:
        raise ValueError(f"range-coded data is a whole number of 32-bit words, got {len(data)} bytes")
    n_streams, n_q, frames = shape
    padded = np.zeros((n_streams, n_q, frames + 1), np.int32)
    model = _Model(n_q, bits)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))
    for t0, t1 in _blocks(frames):
        above = np.zeros((n_streams, t1 - t0), bool)
        for k in range(n_q):
            flags = decoder.decode(_FAMILY, model.flag_probabilities(k, above)).reshape(above.shape).astype(bool)
            literals = decoder.decode(model.literal_model(k), int((~flags).sum()))
            padded[:, k, t0 + 1 : t1 + 1] = _fill(padded[:, k, t0], flags, literals)
            model.update(k, above, flags, literals)
            above = flags
    return padded[:, :, 1:].astype(np.int64)
