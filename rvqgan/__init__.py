"""Compress audio files with the codec: the `.rvq` container, chunk-invariant coding and the `rvqgan` command."""

from .codec import compress, decompress
from .container import RvqFormatError, RvqHeader
from .models import load_model

__all__ = ["compress", "decompress", "load_model", "RvqFormatError", "RvqHeader"]
