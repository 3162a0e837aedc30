"""Loading pretrained weights strictly: from safetensors only, every weight the config asks for and no other."""

from pathlib import Path

from safetensors.torch import load_file
from torch import nn
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


def _problems(missing, unexpected, mismatched) -> list[str]:
    """`["3 missing (a, b, c, ...)", ...]` for the kinds of key that have any."""
    kinds = {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}
    return [_listed(kind, keys) for kind, keys in kinds.items() if keys]


def load_state_dict(module: nn.Module, state_dict: dict, source: str) -> nn.Module:
    """Load `state_dict` into `module`, or raise a ModelLoadError naming `source` and every missing, unexpected and
    mis-shaped key (the module is left as it was)."""
    expected = module.state_dict()
    problems = _problems(
        expected.keys() - state_dict.keys(),
        state_dict.keys() - expected.keys(),
        [
            (k, state_dict[k].shape, v.shape)
            for k, v in expected.items()
            if k in state_dict and state_dict[k].shape != v.shape
        ],
    )
    if problems:
        raise ModelLoadError(f"{source} does not fit the {type(module).__name__}: {'; '.join(problems)}")
    module.load_state_dict(state_dict)
    return module


def load_safetensors(module: nn.Module, path) -> nn.Module:
    """Load the safetensors file `path` into `module` strictly (`load_state_dict`); nothing is ever unpickled. A file
    that cannot be read (missing, truncated, not safetensors) is a ModelLoadError naming it, with the cause chained."""
    try:
        state_dict = load_file(path)
    except Exception as error:  # FileNotFoundError, SafetensorError (a truncated or foreign file), OSError
        raise ModelLoadError(f"{path}: cannot read the weights ({first_line(error)})") from error
    return load_state_dict(module, state_dict, str(path))


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
    problems = _problems(info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"])
    problems += [first_line(message) for message in info.get("error_msgs", [])]
    if problems:
        raise ModelLoadError(f"{name_or_path}: model.safetensors does not fit config.json: {'; '.join(problems)}")
    return (model, info) if loading_info else model
