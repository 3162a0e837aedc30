"""Loading pretrained weights strictly: from safetensors only, every weight the config asks for and no other."""

from pathlib import Path

from transformers import PreTrainedModel
from transformers.utils import logging


class ModelLoadError(OSError, ValueError):
    """A model directory, Hub repo or checkpoint that cannot be loaded as it is; the message names it and the reason.
    Both an OSError (as transformers' loading errors) and a ValueError (as a bad input)."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _listed(kind: str, keys) -> str:
    """`3 missing (a, b, c, ...)`; a mismatched key comes as (name, shape in the file, shape in the config)."""
    keys = sorted(f"{k[0]} {list(k[1])} for {list(k[2])}" if isinstance(k, tuple) else str(k) for k in keys)
    return f"{len(keys)} {kind} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"


def load_pretrained(model_class: type[PreTrainedModel], name_or_path, **kwargs) -> PreTrainedModel:
    """`model_class.from_pretrained(name_or_path)`, strict (`strict_from_pretrained`); for classes whose own
    `from_pretrained` is not (transformers' `DacModel`). `RvqganModel.from_pretrained` is strict itself."""
    return strict_from_pretrained(model_class.from_pretrained, name_or_path, **kwargs)


def strict_from_pretrained(from_pretrained, name_or_path, *model_args, **kwargs):
    """`from_pretrained(name_or_path, ...)` (a transformers `PreTrainedModel.from_pretrained`), refusing pickled
    weights (`pytorch_model.bin` is never read) and weights that do not fit the config (missing, unexpected or
    mis-shaped), where transformers would warn and initialise them at random (its load report, a warning, is replaced
    by the error): a codec has no part that may start untrained. Any failure is a ModelLoadError naming
    `name_or_path`, with the cause chained. With `output_loading_info=True`, returns (model, loading info)."""
    loading_info = kwargs.pop("output_loading_info", False)
    kwargs.update(use_safetensors=True, ignore_mismatched_sizes=True, output_loading_info=True)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        model, info = from_pretrained(name_or_path, *model_args, **kwargs)
    except ModelLoadError:  # from a class whose from_pretrained is strict itself
        raise
    except Exception as error:  # OSError, SafetensorError, JSON and config errors: all mean "cannot be loaded"
        local = Path(name_or_path).is_absolute() or str(name_or_path).startswith(".")
        reason = "no such directory" if local and not Path(name_or_path).exists() else first_line(error)
        raise ModelLoadError(f"{name_or_path}: cannot load the model ({reason})") from error
    finally:
        logging.set_verbosity(verbosity)
    problems = [
        _listed(kind, info[f"{kind}_keys"]) for kind in ("missing", "unexpected", "mismatched") if info[f"{kind}_keys"]
    ]
    problems += [first_line(message) for message in info.get("error_msgs", [])]
    if problems:
        raise ModelLoadError(f"{name_or_path}: model.safetensors does not fit config.json: {'; '.join(problems)}")
    return (model, info) if loading_info else model
