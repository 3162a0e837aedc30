"""The training data of the default model, from licensed audio that Debian packages install.

    python -m training.make_default_data --out data/default

Writes `train/{speech,music,general}/` (FLAC, mono, each file's own rate) and `LICENSES.md`:
- speech: the Asterisk voice prompts in English, French and Spanish (`asterisk-core-sounds-{en,fr,es}-g722`, real
  recordings at 16 kHz, CC-BY-SA-3.0), the `alsa-utils` channel announcements (GPL-2.0-or-later) and sentences
  synthesised by `espeak-ng` in several voices and languages (GPL-3.0-or-later);
- music: `sonic-pi-samples` loops, instruments and drums (CC0 1.0) and the `fb-music-high` Frozen-Bubble soundtrack
  (GPL-2.0-or-later);
- general: `sonic-pi-samples` ambience and effects (CC0 1.0) and the Frozen-Bubble sound effects (GPL-2.0-or-later).
The held-out evaluation set of `benchmarks.make_eval_set` (10 clips) is excluded file by file, so training never
hears it; it is the validation set of `training/configs/default.yaml`.
"""

import argparse
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from benchmarks.make_eval_set import ALSA, CLIPS, SONIC_PI

ASTERISK = Path("/usr/share/asterisk/sounds")
FROZEN_BUBBLE = Path("/usr/share/games/frozen-bubble/snd")
GENERAL_PREFIXES = ("ambi_", "misc_", "vinyl_")
SENTENCES = [
    ("en", "The quick brown fox jumps over the lazy dog while the radio plays softly in the kitchen."),
    ("en-us", "Please leave your message after the tone, and we will call you back as soon as possible."),
    ("fr", "Le petit chat dort au soleil pendant que les enfants jouent dans le jardin."),
    ("de", "Heute Abend gehen wir zusammen ins Kino und danach essen wir eine Pizza."),
    ("es", "La música suena en la plaza y todos bailan hasta que sale la luna."),
    ("it", "Domani mattina partiamo presto per vedere il mare e le montagne."),
]
VOICES = ["", "+f2", "+m3", "+f4"]
LICENSES = {
    "asterisk": "Asterisk core sound prompts (Debian `asterisk-core-sounds-{en,fr,es}-g722`), CC-BY-SA-3.0, "
                "recorded by Allison Smith (en), June Wallack (fr) and others (see /usr/share/doc/asterisk-core-sounds-*/copyright)",
    "alsa": "Debian `alsa-utils` channel announcements, GPL-2.0-or-later (/usr/share/doc/alsa-utils/copyright)",
    "espeak": "synthesised with `espeak-ng` (Debian `espeak-ng`), GPL-3.0-or-later voices and rules",
    "sonic-pi": "Debian `sonic-pi-samples`, CC0 1.0 (/usr/share/doc/sonic-pi-samples/copyright)",
    "frozen-bubble": "Debian `fb-music-high` (Frozen-Bubble soundtrack), GPL-2.0-or-later "
                     "(/usr/share/doc/fb-music-high/copyright)",
}


def sources() -> dict[str, list[tuple[str, Path]]]:
    """Category -> [(licence key, file)], without the held-out evaluation files."""
    held_out = {path for paths in CLIPS.values() for path in paths}
    sonic = [p for p in sorted(SONIC_PI.glob("*.flac")) if p not in held_out]
    return {
        "speech": [("asterisk", p) for lang in ("en", "fr", "es") for p in sorted(set(ASTERISK.glob(f"{lang}/**/*.g722")))]
                  + [("alsa", p) for p in sorted(ALSA.glob("*.wav")) if p not in held_out and p.stem != "Noise"],
        "music": [("sonic-pi", p) for p in sonic if not p.name.startswith(GENERAL_PREFIXES)]
                 + [("frozen-bubble", p) for p in sorted(FROZEN_BUBBLE.glob("*mainzik*.ogg"))
                    + sorted(FROZEN_BUBBLE.glob("introzik.ogg"))],
        "general": [("sonic-pi", p) for p in sonic if p.name.startswith(GENERAL_PREFIXES)]
                   + [("frozen-bubble", p) for p in sorted(FROZEN_BUBBLE.glob("*.ogg")) if "zik" not in p.name],
    }


def convert(source: Path, target: Path):
    """Any file ffmpeg or soundfile reads -> mono 16-bit FLAC at its own rate."""
    if source.suffix == ".g722":
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "g722", "-i", str(source), "-ac", "1",
                        "-c:a", "flac", "-sample_fmt", "s16", str(target)], check=True)
        return
    audio, rate = sf.read(source, dtype="float32", always_2d=True)
    sf.write(target, audio.mean(axis=1), rate, subtype="PCM_16")


def espeak(text: str, voice: str, target: Path):
    wav = target.with_suffix(".wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
    audio, rate = sf.read(wav, dtype="float32")
    sf.write(target, audio, rate, subtype="PCM_16")
    wav.unlink()


def build(out: Path) -> dict[str, int]:
    counts = {}
    for category, files in sources().items():
        folder = out / "train" / category
        folder.mkdir(parents=True, exist_ok=True)
        for licence, path in tqdm(files, desc=category):
            convert(path, folder / f"{licence}-{path.parent.name}-{path.stem}.flac")
        counts[category] = len(files)
    speech = out / "train" / "speech"
    for (language, text), voice in tqdm([(s, v) for s in SENTENCES for v in VOICES], desc="espeak-ng"):
        espeak(text, language + voice, speech / f"espeak-{language}{voice.replace('+', '-')}.flac")
    counts["speech"] += len(SENTENCES) * len(VOICES)
    hours = sum(sf.info(p).duration for p in (out / "train").rglob("*.flac")) / 3600
    lines = ["# Licences of the default model's training data", "",
             "Generated by `python -m training.make_default_data`. Files are named `<source>-<folder>-<name>.flac`.", ""]
    lines += [f"- `{key}-*`: {text}" for key, text in LICENSES.items()]
    lines += ["", f"Files: {counts}; {hours:.2f} hours in all.", ""]
    (out / "LICENSES.md").write_text("\n".join(lines))
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/default"))
    args = parser.parse_args(argv)
    counts = build(args.out)
    print(f"wrote {counts} files under {args.out}/train")


if __name__ == "__main__":
    main()
