"""Convert checkpoints between the official DAC release, transformers' `DacModel` and `RvqganModel`.

    python -m rvqgan.modeling.convert --from descript weights.pth OUT_DIR   # official DAC .pth (weight-normed)
    python -m rvqgan.modeling.convert --from dac DAC_DIR OUT_DIR             # a transformers DacModel directory
    python -m rvqgan.modeling.convert --to dac RVQGAN_DIR OUT_DIR            # for stock transformers, no remote code

Every output directory holds model.safetensors, config.json and preprocessor_config.json.
"""

import argparse
import sys
from pathlib import Path

import torch
from transformers import DacConfig, DacFeatureExtractor, DacModel

from .configuration_rvqgan import RvqganConfig
from .loading_rvqgan import ModelLoadError, first_line, load_pretrained, load_state_dict
from .modeling_rvqgan import RvqganModel

# fields RvqganConfig shares with DacConfig
SHARED_FIELDS = [
    "encoder_hidden_size",
    "downsampling_ratios",
    "decoder_hidden_size",
    "n_codebooks",
    "codebook_size",
    "codebook_dim",
    "quantizer_dropout",
    "commitment_loss_weight",
    "codebook_loss_weight",
    "sampling_rate",
]
RESIDUAL_UNIT = {"0": "snake1", "1": "conv1", "2": "snake2", "3": "conv2"}


def descript_key(key: str, n_blocks: int) -> str:
    """Rename one key of the official DAC state dict to our (= transformers' DacModel) name; keys that fit no
    rule come back unchanged, to be reported as unknown."""
    prefix, *parts = key.split(".")
    if prefix not in ("encoder", "decoder") or len(parts) < 3:
        return key
    index, rest = int(parts[1]), parts[2:]
    ends = {0: "conv1", n_blocks + 1: "snake1", n_blocks + 2: "conv2"}
    if index in ends:
        return ".".join([prefix, ends[index], *rest])
    layer, first_unit = int(rest[1]), {"encoder": 0, "decoder": 2}[prefix]
    if first_unit <= layer < first_unit + 3 and len(rest) > 3:  # block.{layer}.block.{k}.param
        unit = f"res_unit{layer - first_unit + 1}"
        return ".".join([prefix, "block", str(index - 1), unit, RESIDUAL_UNIT.get(rest[3], rest[3]), *rest[4:]])
    names = {"encoder": {3: "snake1", 4: "conv1"}, "decoder": {0: "snake1", 1: "conv_t1"}}[prefix]
    return ".".join([prefix, "block", str(index - 1), names.get(layer, str(layer)), *rest[2:]])


def fold_weight_norm(state_dict: dict) -> dict:
    """Replace old-style `weight_g`/`weight_v` pairs with the plain `weight` they stand for."""
    folded = {}
    for key, value in state_dict.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            base = key[: -len("_v")]
            key, value = base, torch._weight_norm(value, state_dict[base + "_g"], 0)
        folded[key] = value
    return folded


def config_from_descript(kwargs: dict) -> RvqganConfig:
    """RvqganConfig from the `metadata["kwargs"]` of an official DAC checkpoint."""
    rates = list(kwargs["encoder_rates"])
    if list(kwargs.get("decoder_rates", rates[::-1])) != rates[::-1]:
        raise ValueError(f"decoder_rates {kwargs['decoder_rates']} must be the encoder_rates {rates} reversed.")
    dropout = kwargs.get("quantizer_dropout")
    return RvqganConfig(
        encoder_hidden_size=kwargs["encoder_dim"],
        downsampling_ratios=rates,
        decoder_hidden_size=kwargs["decoder_dim"],
        hidden_size=kwargs.get("latent_dim"),
        n_codebooks=kwargs["n_codebooks"],
        codebook_size=kwargs["codebook_size"],
        codebook_dim=kwargs["codebook_dim"],
        sampling_rate=kwargs["sample_rate"],
        # DAC records its class default (False) rather than the 0.5 the released models were trained with
        **({} if isinstance(dropout, bool) or dropout is None else {"quantizer_dropout": float(dropout)}),
    )


def from_descript(path: str | Path) -> RvqganModel:
    """An official DAC checkpoint (`{"state_dict", "metadata": {"kwargs"}}`) as an RvqganModel. Never unpickles code;
    anything else is a ModelLoadError naming the file."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError (code, garbage), RuntimeError (a truncated zip), OSError, EOFError
        raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint ({first_line(error)})") from error
    if (
        not isinstance(checkpoint, dict)
        or "state_dict" not in checkpoint
        or "kwargs" not in checkpoint.get("metadata", {})
    ):
        raise ModelLoadError(
            f"{path} is not a DAC checkpoint: expected a dict with 'state_dict' and 'metadata' -> 'kwargs'."
        )
    try:
        config = config_from_descript(checkpoint["metadata"]["kwargs"])
        n_blocks = len(config.downsampling_ratios)
        state_dict = {descript_key(k, n_blocks): v for k, v in fold_weight_norm(checkpoint["state_dict"]).items()}
        model = RvqganModel(config)
        load_state_dict(model, state_dict, str(path))
    except ModelLoadError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as error:  # malformed contents
        raise ModelLoadError(f"{path} is not a DAC checkpoint ({type(error).__name__}: {first_line(error)})") from error
    return model.eval()


def from_dac(dac: DacModel) -> RvqganModel:
    config = RvqganConfig(**{name: getattr(dac.config, name) for name in SHARED_FIELDS})
    model = RvqganModel(config)
    load_state_dict(model, dac.state_dict(), "the DacModel")
    return model.eval()


def to_dac(model: RvqganModel) -> DacModel:
    """The same weights as a stock transformers DacModel (odd strides there keep the reference's 8-sample loss)."""
    config = model.config
    if config.hidden_size != config.encoder_hidden_size * 2 ** len(config.downsampling_ratios):
        raise ValueError(
            f"DacModel cannot express hidden_size={config.hidden_size} (it derives it from encoder_hidden_size)."
        )
    dac = DacModel(DacConfig(**{name: getattr(config, name) for name in SHARED_FIELDS}))
    load_state_dict(dac, model.state_dict(), "the RvqganModel")
    return dac.eval()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m rvqgan.modeling.convert", description=__doc__.split("\n")[0])
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument(
        "--from", dest="source", choices=["descript", "dac"], help="convert into an RvqganModel directory"
    )
    direction.add_argument("--to", dest="target", choices=["dac"], help="convert an RvqganModel directory")
    parser.add_argument("input", help="a DAC .pth file, or a model directory")
    parser.add_argument("output", help="the directory to write")
    args = parser.parse_args(argv)
    if Path(args.output).resolve() == Path(args.input).resolve():
        sys.exit(f"error: {args.output}: is the input and would be written over")
    from rvqgan.model_folder import save_model_folder  # a layer above the model: imported by the command only

    try:
        if args.source == "descript":
            save_model_folder(args.output, from_descript(args.input))
        elif args.source == "dac":
            save_model_folder(args.output, from_dac(load_pretrained(DacModel, args.input)))
        else:
            dac = to_dac(RvqganModel.from_pretrained(args.input))
            extractor = DacFeatureExtractor(sampling_rate=dac.config.sampling_rate, hop_length=dac.config.hop_length)
            save_model_folder(args.output, dac, extractor=extractor)
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
