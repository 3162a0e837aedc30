"""`rvqgan`: compress audio files into `.rvq` files and back.

rvqgan encode INPUT... -o OUT [--model ID_OR_DIR] [--kbps K | --n-quantizers N] [--no-entropy]
rvqgan decode FILE... -o OUT [--format wav|flac]
rvqgan info FILE...

OUT is a folder, or with one input file, the output file itself where it ends in .rvq (encode) or .wav / .flac
(decode): `rvqgan encode song.wav -o song.rvq`, `rvqgan decode song.rvq -o song.flac`.
"""

import argparse
import logging
import sys
from pathlib import Path

import transformers
from tqdm.auto import tqdm

from rvqgan.feature_extraction.audio_io import (
    AudioFileError,
    check_regular,
    iter_blocks,
    open_audio,
    refuse_existing,
    write_atomically,
    write_audio,
)
from rvqgan.modeling import kbps_on_disk

from .codec import compress_blocks, decompress_blocks
from .container import RvqFormatError, read
from .models import load_model

DECODED_SUFFIXES = {".wav", ".flac"}  # what decode writes
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".webm", ".mka"}


def find_inputs(
    paths: list[str], suffixes: set[str], out: Path, new_suffix: str, kind: str, file_suffixes: set[str]
) -> list[tuple[Path, Path]]:
    """(input, output) pairs: an OUT ending in one of `file_suffixes` that is not a folder is the output file of the
    one input file; otherwise files map to OUT/name, directories are searched recursively and mirrored under OUT.
    AudioFileError, before any work, for an OUT file with other inputs, an OUT that is not a folder, a folder without
    `kind` files, or an output that is an input of the command or the output of another input."""
    if out.suffix.lower() in file_suffixes and not out.is_dir():
        if len(paths) != 1 or Path(paths[0]).is_dir():
            raise AudioFileError(f"{out}: names one output file, so the input must be one file (for more, a folder)")
        if out.resolve() == Path(paths[0]).resolve():
            raise AudioFileError(f"{out}: is the input of this command and would be written over")
        return [(Path(paths[0]), out)]
    if out.exists() and not out.is_dir():
        raise AudioFileError(f"{out}: the output must be a folder")
    pairs = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not files:
                raise AudioFileError(f"{path}: the folder holds no {kind} files")
            pairs += [(f, out / path.name / f.relative_to(path).with_suffix(new_suffix)) for f in files]
        else:
            pairs.append((path, out / path.with_suffix(new_suffix).name))
    sources, targets = {source.resolve() for source, _ in pairs}, {}
    for source, target in pairs:
        if target.resolve() in sources:
            raise AudioFileError(f"{target}: is an input of this command and would be written over")
        if target.resolve() in targets:
            raise AudioFileError(f"{target}: both {targets[target.resolve()]} and {source} would be written to it")
        targets[target.resolve()] = source
    return pairs


def encode(args) -> int:
    pairs = find_inputs(args.inputs, AUDIO_SUFFIXES, Path(args.output), ".rvq", "audio", {".rvq"})
    model, identity = load_model(args.model, args.device)
    n_quantizers = model.config.resolve_n_quantizers(args.n_quantizers, args.kbps)
    failures = 0
    for source, target in tqdm(pairs, disable=args.quiet, unit="file"):
        try:
            refuse_existing(target, args.force)  # before the work
            with open_audio(source) as file:
                data = compress_blocks(
                    model,
                    lambda: iter_blocks(file),
                    file.samplerate,
                    file.channels,
                    file.frames / file.samplerate,
                    n_quantizers,
                    None,
                    not args.no_entropy,
                    not args.no_normalize,
                    identity,
                    not args.quiet,
                )
            write_atomically(target, lambda tmp: Path(tmp).write_bytes(data), args.force)  # noqa: B023 (called here)
        except (AudioFileError, RvqFormatError, ValueError) as error:
            failures += report(source, error)
    return 1 if failures else 0


def decode(args) -> int:
    pairs = find_inputs(args.inputs, {".rvq"}, Path(args.output), f".{args.format}", ".rvq", DECODED_SUFFIXES)
    model, identity = load_model(args.model, args.device)
    failures = 0
    for source, target in tqdm(pairs, disable=args.quiet, unit="file"):
        try:
            header, blocks = decompress_blocks(model, read_bytes(source), identity=identity, progress=not args.quiet)
            write_audio(target, blocks, header.sample_rate, header.channels, args.force)
        except (AudioFileError, RvqFormatError, ValueError) as error:
            failures += report(source, error)
    return 1 if failures else 0


def info(args) -> int:
    failures = 0
    for path in map(Path, args.inputs):
        try:
            data = read_bytes(path)
            header, _ = read(data)
        except (AudioFileError, RvqFormatError) as error:
            failures += report(path, error)
            continue
        seconds = header.original_length / header.sample_rate
        print(
            f"{path}: model {header.model_id}, {header.sample_rate} Hz, {header.channels} channel(s), {seconds:.3f} s, "
            f"{header.n_q} codebooks x {header.frames} frames, "
            f"{'entropy-coded' if header.entropy_coded else 'bit-packed'}, "
            f"{kbps_on_disk(len(data), seconds):.3f} kbps on disk"
        )
    return 1 if failures else 0


def read_bytes(path: Path) -> bytes:
    try:
        return check_regular(path).read_bytes()
    except OSError as error:
        raise AudioFileError(f"{path}: {error.strerror}") from None


def report(path: Path, error: Exception) -> int:
    message = str(error)
    print(f"rvqgan: error: {message if message.startswith(str(path)) else f'{path}: {message}'}", file=sys.stderr)
    return 1


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="rvqgan", description="Neural audio compression with the Improved RVQGAN codec."
    )
    commands = main.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("encode", "audio files or folders -> .rvq files"),
        ("decode", ".rvq files or folders -> audio files"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("inputs", nargs="+", metavar="INPUT")
        command.add_argument(
            "-o",
            "--output",
            required=True,
            help="output folder, or for one input file the output file (.rvq / .wav, .flac)",
        )
        command.add_argument("--model", help="model directory or Hub repo id (default: the default model)")
        command.add_argument("--device", default="cpu", help="cpu or cuda")
        command.add_argument("--force", action="store_true", help="overwrite existing outputs")
        command.add_argument("--quiet", action="store_true", help="no progress bars")
        command.set_defaults(run=globals()[name])
    encoder = commands.choices["encode"]
    bitrate = encoder.add_mutually_exclusive_group()
    bitrate.add_argument("--kbps", type=float, help="bitrate: the nearest number of codebooks (default: all)")
    bitrate.add_argument("--n-quantizers", type=int, help="number of codebooks (default: all)")
    encoder.add_argument("--no-entropy", action="store_true", help="bit-pack the codes without entropy coding")
    encoder.add_argument("--no-normalize", action="store_true", help="skip the -16 LUFS loudness normalisation")
    commands.choices["decode"].add_argument(
        "--format", choices=["wav", "flac"], default="wav", help="of the files written into an output folder"
    )
    describe = commands.add_parser("info", help="describe .rvq files")
    describe.add_argument("inputs", nargs="+", metavar="FILE")
    describe.set_defaults(run=info)
    return main


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(format="rvqgan: %(message)s", level=logging.ERROR if quiet else logging.WARNING)
    if quiet:
        transformers.utils.logging.disable_progress_bar()  # "Loading weights"
    try:
        return args.run(args)
    except (OSError, ValueError) as error:  # e.g. a model that cannot be loaded
        print(f"rvqgan: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the temporary file of the output being written is already removed
        print("rvqgan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
