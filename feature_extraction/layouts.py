"""Token layouts for codec codes in language-model pretraining, each with an exact inverse.

A codec frame holds `n_q` codes, one per codebook, each in `[0, codebook_size)`. The layouts below arrange a
`(n_q, T)` code matrix for a language model:

- `"codes"`: the `(n_q, T)` matrix as is (identity). For models with one embedding table per codebook.
- `"flat"`: one 1-D sequence of `n_q * T` ids, frame-major (`t0k0, t0k1, ..., t0k{n_q-1}, t1k0, ...`), where the id
  of code `c` of codebook `k` is `k * codebook_size + c`. The vocabulary has `n_q * codebook_size` ids, so codebooks
  never share ids. Frame `t` is `tokens[t * n_q : (t + 1) * n_q]`.
- `"delay"`: the MusicGen delay pattern (Copet et al. 2023): codebook `k` is shifted right by `k` frames, giving a
  `(n_q, T + n_q - 1)` matrix whose step `s` holds codebook `k`'s code of frame `s - k`. Positions with no code (the
  first `k` steps of row `k` and the last `n_q - 1 - k` steps) hold the pad id, by default `codebook_size`, one id
  past the codebook, as MusicGen does (each codebook's embedding then has `codebook_size + 1` rows). Codes keep their
  per-codebook values (no offset).

Batches: every function also accepts a leading batch axis, `(B, n_q, T)` <-> `(B, n_q * T)` / `(B, n_q, T + n_q - 1)`.
Inputs may be numpy arrays or torch tensors; the output has the same type (and device). `from_layout` checks that
its input is well formed (ids in range, pads exactly where the layout puts them) and raises `ValueError` otherwise.

>>> codes = np.array([[1, 2, 3], [4, 5, 6]])           # n_q = 2, T = 3, codebook_size = 8
>>> to_layout(codes, "flat", 8)
array([ 1, 12,  2, 13,  3, 14])
>>> to_layout(codes, "delay", 8)
array([[1, 2, 3, 8],
       [8, 4, 5, 6]])
"""

import numpy as np

LAYOUTS = ("codes", "flat", "delay")


def _as_numpy(x):
    """Return (numpy array, function mapping a numpy result back to the input's type)."""
    if hasattr(x, "detach"):  # torch tensor
        import torch

        device = x.device
        return x.detach().cpu().numpy(), lambda y: torch.from_numpy(np.ascontiguousarray(y)).to(device)
    return np.asarray(x), lambda y: y


def _check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r}; expected one of {LAYOUTS}")


def default_pad_id(codebook_size: int) -> int:
    """The pad id of the `"delay"` layout: `codebook_size`."""
    return int(codebook_size)


def vocab_size(layout: str, n_q: int, codebook_size: int) -> int:
    """Number of distinct ids a layout uses: `codebook_size` per codebook ("codes"), `n_q * codebook_size`
    ("flat") or `codebook_size + 1` per codebook, pad included ("delay")."""
    _check_layout(layout)
    return {"codes": codebook_size, "flat": n_q * codebook_size, "delay": codebook_size + 1}[layout]


def layout_frames(tokens, layout: str, n_q: int) -> int:
    """Number of codec frames `T` held by `tokens` in `layout`."""
    _check_layout(layout)
    shape = np.shape(tokens) if not hasattr(tokens, "shape") else tuple(tokens.shape)
    if layout == "codes":
        return shape[-1]
    if layout == "flat":
        return shape[-1] // n_q
    return shape[-1] - n_q + 1


def to_layout(codes, layout: str, codebook_size: int, pad_id: int | None = None):
    """
    Arrange `(n_q, T)` (or `(B, n_q, T)`) codes in `layout` (see the module docstring).

    Args:
        codes: integer codes in `[0, codebook_size)`, numpy array or torch tensor.
        layout: `"codes"`, `"flat"` or `"delay"`.
        codebook_size: entries per codebook.
        pad_id: pad id of the `"delay"` layout; `codebook_size` by default.

    Returns:
        `(n_q, T)` for "codes", `(n_q * T,)` for "flat", `(n_q, T + n_q - 1)` for "delay" (with the batch axis first
        when given), int64 ("codes" keeps the input dtype), same type as `codes`.
    """
    _check_layout(layout)
    array, back = _as_numpy(codes)
    if array.ndim not in (2, 3):
        raise ValueError(f"Expected codes of shape (n_q, T) or (B, n_q, T), got {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= codebook_size):
        raise ValueError(f"Codes must be in [0, {codebook_size}), got [{array.min()}, {array.max()}]")
    if layout == "codes":
        return back(array.copy())
    array = array.astype(np.int64)
    n_q, frames = array.shape[-2:]
    if layout == "flat":
        offsets = (np.arange(n_q, dtype=np.int64) * codebook_size)[:, None]
        ids = array + offsets  # (..., n_q, T)
        return back(np.swapaxes(ids, -1, -2).reshape(*array.shape[:-2], n_q * frames))
    pad_id = default_pad_id(codebook_size) if pad_id is None else int(pad_id)
    out = np.full((*array.shape[:-2], n_q, frames + n_q - 1), pad_id, dtype=np.int64)
    for k in range(n_q):
        out[..., k, k : k + frames] = array[..., k, :]
    return back(out)


def from_layout(tokens, layout: str, n_q: int, codebook_size: int, pad_id: int | None = None):
    """
    Exact inverse of `to_layout`: tokens in `layout` back to `(n_q, T)` (or `(B, n_q, T)`) int64 codes.

    Raises `ValueError` when `tokens` cannot come from `to_layout` (wrong shape, a length that is not a multiple of
    `n_q`, ids of the wrong codebook, pads missing or misplaced).
    """
    _check_layout(layout)
    array, back = _as_numpy(tokens)
    if layout == "codes":
        if array.ndim not in (2, 3) or array.shape[-2] != n_q:
            raise ValueError(f"Expected codes of shape (n_q={n_q}, T) or (B, n_q, T), got {array.shape}")
        if array.size and (array.min() < 0 or array.max() >= codebook_size):
            raise ValueError(f"Codes must be in [0, {codebook_size})")
        return back(array.copy())
    array = array.astype(np.int64)
    if layout == "flat":
        if array.ndim not in (1, 2) or array.shape[-1] % n_q:
            raise ValueError(f"Expected flat ids of shape (n_q * T,) or (B, n_q * T) with n_q={n_q}, got {array.shape}")
        frames = array.shape[-1] // n_q
        ids = np.swapaxes(array.reshape(*array.shape[:-1], frames, n_q), -1, -2)  # (..., n_q, T)
        offsets = (np.arange(n_q, dtype=np.int64) * codebook_size)[:, None]
        codes = ids - offsets
        if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
            raise ValueError("Flat ids are not frame-major k * codebook_size + code (an id is in the wrong codebook)")
        return back(codes)
    pad_id = default_pad_id(codebook_size) if pad_id is None else int(pad_id)
    if array.ndim not in (2, 3) or array.shape[-2] != n_q or array.shape[-1] < n_q - 1:
        raise ValueError(f"Expected delayed tokens of shape (n_q={n_q}, T + n_q - 1) or (B, ...), got {array.shape}")
    frames = array.shape[-1] - n_q + 1
    codes = np.stack([array[..., k, k : k + frames] for k in range(n_q)], axis=-2)
    pads = np.ones(array.shape[-2:], dtype=bool)
    for k in range(n_q):
        pads[k, k : k + frames] = False
    if not (array[..., pads] == pad_id).all():
        raise ValueError(f"Delayed tokens must hold the pad id {pad_id} outside the shifted codes")
    if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"Delayed codes must be in [0, {codebook_size})")
    return back(codes)


__all__ = ["LAYOUTS", "default_pad_id", "from_layout", "layout_frames", "to_layout", "vocab_size"]
