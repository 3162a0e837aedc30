"""The training data of the default model, from licensed audio that Debian packages install.

    python -m rvqgan.training.make_default_data --out data/default [--workers 2]

Writes `train/{speech,music,general}/` (FLAC, mono, 16-bit, each file's own rate), `selection/{speech,music,general}/`
(the held-out recordings that choose the run's best checkpoint, see `hold_out`) and `LICENSES.md`:
- speech: real voices: KLettres letters and syllables read by native speakers (`klettres-data`, 20 locales), the
  Hedgewars voice packs (`hedgewars-data`), KTuberling's spoken words (`ktuberling-data`, 26 locales), the Asterisk
  prompts in English, French and Spanish (`asterisk-core-sounds-{en,fr,es}-g722`, 16 kHz) and the `alsa-utils`
  channel announcements; plus sentences synthesised by `espeak-ng` in several voices and languages;
- music: the soundtracks of Wesnoth (`wesnoth-1.16-music`), Colobot (`colobot-common-sounds`), Nexuiz (`nexuiz-music`,
  read from its `music.pk3` archive) and Frozen-Bubble (`frozen-bubble-data`), Hedgewars' Ride of the Valkyries and
  the `sonic-pi-samples` loops, instruments and drums;
- general: desktop event sounds (`sound-theme-freedesktop`, `oxygen-sounds`), the sound effects of Hedgewars, Colobot
  and Frozen-Bubble, Nexuiz's thunder track and the `sonic-pi-samples` ambience and effects.
Files longer than 10 s are cut into equal segments of at most 10 s (`<source>-<path>-<k>.flac`), so that the training
stream, which draws one excerpt per file per pass, samples each category roughly by duration; the three categories get
equal weights in `training/configs/default.yaml`, as in the paper. Short files are kept (the stream zero-pads them),
segments peaking below -60 dBFS are dropped and each recording is kept once (by content). The held-out evaluation set of
`rvqgan.evaluation.make_eval_set` is excluded: its files, any byte-identical copy and the freedesktop channel
announcements (re-encodings of the ALSA ones); a source inside a package of its unseen set (`EVALUATION_ONLY`) is
refused. Rebuilding into the same folder gives the same files.
"""

import argparse
import hashlib
import io
import math
import subprocess
import zipfile
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from rvqgan.evaluation.make_eval_set import ALSA, CLIPS, EVALUATION_ONLY, SONIC_PI
from tqdm.auto import tqdm

SEGMENT_SECONDS = 10.0
SELECTION = 5  # recordings per category held out for checkpoint selection
SELECTION_SECONDS = 3.0  # ... each with a segment at least this long
SILENCE_PEAK = 1e-3  # -60 dBFS
ROOTS = {
    "klettres": Path("/usr/share/klettres"),
    "hedgewars": Path("/usr/share/games/hedgewars/Data/Sounds"),
    "ktuberling": Path("/usr/share/ktuberling/sounds"),
    "asterisk": Path("/usr/share/asterisk/sounds"),
    "alsa": ALSA,
    "wesnoth": Path("/usr/share/games/wesnoth/1.16/data/core/music"),
    "colobot": Path("/usr/share/games/colobot"),
    "nexuiz": Path("/usr/share/games/nexuiz/data/music.pk3/sound/cdtracks"),
    "frozen-bubble": Path("/usr/share/games/frozen-bubble/snd"),
    "sonic-pi": SONIC_PI,
    "freedesktop": Path("/usr/share/sounds/freedesktop/stereo"),
    "oxygen": Path("/usr/share/sounds"),
}
GENERAL_PREFIXES = ("ambi_", "misc_", "vinyl_")
HEDGEWARS_MUSIC = "ride_of_the_valkyries.ogg"
NEXUIZ_GENERAL = "thunder.ogg"
# Listed in /usr/share/doc/sound-theme-freedesktop/copyright; the `audio-channel-*` announcements and the test noise
# are left out (re-encodings of the ALSA files of the evaluation set), and so are the four unlisted files.
FREEDESKTOP = """alarm-clock-elapsed audio-volume-change bell camera-shutter complete device-added device-removed
    dialog-information message message-new-instant network-connectivity-established network-connectivity-lost
    phone-incoming-call phone-outgoing-busy phone-outgoing-calling power-plug power-unplug screen-capture service-login
    service-logout suspend-error trash-empty""".split()
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
    "klettres": "Debian `klettres-data`: letters and syllables recorded by native speakers, GPL-2.0-or-later, "
    "© 2001-2011 Anne-Marie Mahfouf and the KLettres authors (/usr/share/doc/klettres-data/copyright)",
    "hedgewars": "Debian `hedgewars-data`: voice packs, sound effects and `ride_of_the_valkyries.ogg` (`Data/Sounds`), "
    "GFDL-1.3 with no Invariant Sections, no Front-Cover and no Back-Cover Texts, © 2004-2006 Andrey "
    "Korotaev; `Droplet*.ogg` CC-BY-SA-3.0, saugox (freesound.org/people/saugox/sounds/37548, which the "
    "copyright file notes shows CC-BY-3.0) (/usr/share/doc/hedgewars-data/copyright)",
    "ktuberling": "Debian `ktuberling-data`: spoken words, GPL-2.0-or-later, © 1999-2017 Albert Astals Cid, Éric "
    "Bischoff, Meni Livne, the KDE Team and others (/usr/share/doc/ktuberling-data/copyright)",
    "asterisk": "Asterisk core sound prompts (Debian `asterisk-core-sounds-{en,fr,es}-g722`), CC-BY-SA-3.0, "
    "© 2003-2010 Allison Smith (en, es), © 2006-2008 June Wallack (fr) "
    "(/usr/share/doc/asterisk-core-sounds-*-g722/copyright)",
    "alsa": "Debian `alsa-utils`: speaker-test's channel announcements, GPL-2, © 1998-2022 Jaroslav Kysela and "
    "others (/usr/share/doc/alsa-utils/copyright)",
    "espeak": "synthesised with `espeak-ng` (Debian `espeak-ng`, `espeak-ng-data`), GPL-3.0-or-later, © 2005-2016 "
    "Jonathan Duddington, Reece H. Dunn (/usr/share/doc/espeak-ng-data/copyright)",
    "wesnoth": "Debian `wesnoth-1.16-music`: The Battle for Wesnoth soundtrack, GPL-2.0-or-later, © 2003-2009 David "
    "White and the Wesnoth contributors (/usr/share/doc/wesnoth-1.16-music/copyright)",
    "colobot": "Debian `colobot-common-sounds`: music and sound effects, GPL-3.0-or-later, © 2001-2016 Daniel Roux, "
    "EPSITEC SA & TerranovaTeam (/usr/share/doc/colobot-common-sounds/copyright)",
    "nexuiz": "Debian `nexuiz-music`: the Nexuiz soundtrack (`music.pk3`), GPL-2.0-or-later, © 2002-2009 Alientrap, "
    "Lee Vermeulen (/usr/share/doc/nexuiz-music/copyright)",
    "frozen-bubble": "Debian `frozen-bubble-data`: soundtrack and sound effects, GPL-2 (version 2 only), © 2000-2010 "
    "The Frozen-Bubble Team, 2012 Kartik Thakore (/usr/share/doc/frozen-bubble-data/copyright)",
    "sonic-pi": "Debian `sonic-pi-samples`, CC0 1.0, freesound.org authors named per file "
    "(/usr/share/doc/sonic-pi-samples/copyright, /usr/share/sonic-pi/samples/README.md)",
    "freedesktop": "Debian `sound-theme-freedesktop`, per file: CC-BY-SA-3.0 (Tim/corsica_s, Lucas McCallister, "
    "horsthorstensen, Ivica Bukvic, Red Hat, Inc.), CC-BY-3.0 (Dr. Richard Boulanger et al), "
    "GPL-2.0-or-later (Damien Sandras), GPL-2 (the Pidgin developers) "
    "(/usr/share/doc/sound-theme-freedesktop/copyright)",
    "oxygen": "Debian `oxygen-sounds`, LGPL-3.0-or-later, © 2008 Nuno Filipe Povoa "
    "(/usr/share/doc/oxygen-sounds/copyright)",
}


def archive(path: Path) -> Path | None:
    """The `.pk3` (zip) archive that `path` names a member of, if any."""
    return next((p for p in path.parents if p.suffix == ".pk3"), None)


def raw(path: Path) -> bytes:
    """The bytes of a file or of an archive member."""
    if (pk3 := archive(path)) is None:
        return path.read_bytes()
    with zipfile.ZipFile(pk3) as z:
        return z.read(path.relative_to(pk3).as_posix())


def members(root: Path) -> list[Path]:
    """The `.ogg` files under `root`, a folder inside a `.pk3` archive."""
    pk3 = archive(root)
    with zipfile.ZipFile(pk3) as z:
        return sorted(pk3 / name for name in z.namelist() if name.endswith(".ogg") and (pk3 / name).parent == root)


def candidates() -> dict[str, list[tuple[str, Path]]]:
    """Category -> [(source key, file)] of every file used, before exclusions."""
    r = ROOTS
    piano = {f"{i}{note}.ogg" for i, note in enumerate("CDEFGABCD", 1)}  # 0.5 s notes, not effects
    effects = [p for p in sorted(r["hedgewars"].glob("*.ogg")) if p.name not in piano | {HEDGEWARS_MUSIC}]
    nexuiz = members(r["nexuiz"])
    sonic = sorted(r["sonic-pi"].glob("*.flac"))
    return {
        "speech": [("klettres", p) for p in sorted(r["klettres"].glob("*/*/*.ogg"))]
        + [("hedgewars", p) for p in sorted(r["hedgewars"].glob("voices/*/*.ogg"))]
        + [("ktuberling", p) for p in sorted(r["ktuberling"].glob("*/*.ogg"))]
        + [("asterisk", p) for lang in ("en", "fr", "es") for p in sorted(set(r["asterisk"].glob(f"{lang}/**/*.g722")))]
        + [("alsa", p) for p in sorted(r["alsa"].glob("*.wav")) if p.stem != "Noise"],
        "music": [("wesnoth", p) for p in sorted(r["wesnoth"].glob("*.ogg"))]
        + [("colobot", p) for p in sorted(r["colobot"].glob("music/*.ogg"))]
        + [("nexuiz", p) for p in nexuiz if p.name != NEXUIZ_GENERAL]
        + [("frozen-bubble", p) for p in sorted(r["frozen-bubble"].glob("*zik*.ogg"))]
        + [("hedgewars", r["hedgewars"] / HEDGEWARS_MUSIC)]
        + [("sonic-pi", p) for p in sonic if not p.name.startswith(GENERAL_PREFIXES)],
        "general": [("freedesktop", r["freedesktop"] / f"{name}.oga") for name in FREEDESKTOP]
        + [("oxygen", p) for p in sorted(r["oxygen"].glob("Oxygen-*.ogg"))]
        + [("hedgewars", p) for p in effects]
        + [("colobot", p) for p in sorted(r["colobot"].glob("sounds/*.wav"))]
        + [("nexuiz", p) for p in nexuiz if p.name == NEXUIZ_GENERAL]
        + [("frozen-bubble", p) for p in sorted(r["frozen-bubble"].glob("*.ogg")) if "zik" not in p.name]
        + [("sonic-pi", p) for p in sonic if p.name.startswith(GENERAL_PREFIXES)],
    }


def refuse_evaluation_only(files: dict[str, list[tuple[str, Path]]]):
    """Exit with a one-line error if a source file lies in a package kept for evaluation (`EVALUATION_ONLY`)."""
    for key, path in (item for items in files.values() for item in items):
        for root, package in EVALUATION_ONLY.items():
            if root in path.parents:
                raise SystemExit(f"training source {key} reads {path}: `{package}` is for evaluation only")


def sources() -> dict[str, list[tuple[str, Path]]]:
    """`candidates()` with each recording once, and none with the bytes of an evaluation file."""
    listed = candidates()
    refuse_evaluation_only(listed)
    seen = {hashlib.sha1(raw(path)).digest() for paths in CLIPS.values() for path in paths if path.exists()}
    kept = {}
    for category, files in listed.items():
        kept[category] = []
        for key, path in files:
            digest = hashlib.sha1(raw(path)).digest()
            if digest not in seen:
                seen.add(digest)
                kept[category].append((key, path))
    return kept


def stem(key: str, path: Path) -> str:
    """`<source>-<path below the source's root>`, e.g. `klettres-fr-alpha-a`."""
    return "-".join([key, *path.relative_to(ROOTS[key]).with_suffix("").parts])


def decode(source: Path | tuple[str, str]) -> tuple[np.ndarray, int]:
    """`(T,)` float32 mono audio and its rate: a file soundfile reads, an archive member, an Asterisk G.722 prompt
    (through ffmpeg, 16 kHz) or an `(espeak voice, text)` pair, synthesised."""
    if isinstance(source, tuple):
        voice, text = source
        data = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True).stdout
    elif source.suffix == ".g722":
        pcm = subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-f",
                "g722",
                "-i",
                str(source),
                "-ac",
                "1",
                "-ar",
                "16000",
                "-f",
                "s16le",
                "-",
            ],
            check=True,
            capture_output=True,
        ).stdout
        return np.frombuffer(pcm, np.int16).astype(np.float32) / 32768, 16000
    else:
        data = raw(source)
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def write(job: tuple[Path, str, Path | tuple[str, str]]) -> list[tuple[str, float, int]]:
    """Decode one source into `<folder>/<name>-<k>.flac` segments; return (file name, seconds, rate) of each."""
    folder, name, source = job
    audio, rate = decode(source)
    written = []
    for k, segment in enumerate(np.array_split(audio, max(1, math.ceil(len(audio) / (SEGMENT_SECONDS * rate))))):
        if np.abs(segment).max(initial=0) >= SILENCE_PEAK:
            sf.write(folder / f"{name}-{k}.flac", np.clip(segment, -1, 1), rate, subtype="PCM_16")
            written.append((f"{name}-{k}.flac", len(segment) / rate, rate))
    return written


def jobs(train: Path) -> list[tuple[str, str, tuple[Path, str, Path | tuple[str, str]]]]:
    """(category, source key, `write` job) of every source, the espeak-ng sentences last."""
    listed = [
        (category, key, (train / category, stem(key, path), path))
        for category, files in sources().items()
        for key, path in files
    ]
    spoken = [
        (
            "speech",
            "espeak",
            (train / "speech", f"espeak-{language}{voice.replace('+', '-')}", (language + voice, text)),
        )
        for language, text in SENTENCES
        for voice in VOICES
    ]
    return listed + spoken


def table(stats: dict[tuple[str, str], list[tuple[float, int]]]) -> list[str]:
    """Markdown rows: files, hours and rates per source, and per category after its sources."""
    rows = ["| category | source | files | hours | rates (Hz) |", "|---|---|---:|---:|---|"]
    for category in dict.fromkeys(category for category, _ in stats):
        for (c, key), segments in stats.items():
            if c == category:
                rates = ", ".join(str(rate) for rate in sorted({rate for _, rate in segments}))
                hours = sum(seconds for seconds, _ in segments) / 3600
                rows.append(f"| {category} | {key} | {len(segments)} | {hours:.3f} | {rates} |")
        segments = [seconds for (c, _), ss in stats.items() if c == category for seconds, _ in ss]
        rows.append(f"| **{category}** | all | {len(segments)} | {sum(segments) / 3600:.3f} | |")
    return rows


def recording(name: str) -> str:
    """The recording a segment file `<source>-<path>-<k>.flac` was cut from."""
    return name.rsplit("-", 1)[0]


def hold_out(train: Path, selection: Path) -> list[Path]:
    """Move `SELECTION` recordings per category from `train` to `selection`: those with the lowest SHA-1 of their name
    among the recordings with a segment of at least `SELECTION_SECONDS`; one segment of each (the longest, then the
    first) is kept, the others are deleted, so that no part of a held-out recording is trained on. The set chooses the
    run's best checkpoint, so that the evaluation set of `rvqgan.evaluation.make_eval_set` stays unseen by every
    choice."""
    kept = []
    for folder in sorted(p for p in train.iterdir() if p.is_dir()):
        segments = defaultdict(list)
        for path in sorted(folder.glob("*.flac")):
            segments[recording(path.stem)].append(path)
        long_enough = [
            name for name, paths in segments.items() if any(sf.info(p).duration >= SELECTION_SECONDS for p in paths)
        ]
        (selection / folder.name).mkdir(parents=True, exist_ok=True)
        for name in sorted(long_enough, key=lambda n: hashlib.sha1(n.encode()).digest())[:SELECTION]:
            paths = segments[name]
            chosen = max(paths, key=lambda p: (sf.info(p).duration, -paths.index(p)))
            kept.append(chosen.replace(selection / folder.name / chosen.name))
            for path in paths:
                path.unlink(missing_ok=True)
    return kept


def build(out: Path, workers: int = 2) -> list[str]:
    """Write the training set and its `LICENSES.md` under `out`; return the summary table."""
    missing = [str(root) for root in ROOTS.values() if not (archive(root) or root).exists()]
    if missing:
        raise SystemExit("missing (install the Debian packages the module docstring names): " + ", ".join(missing))
    train = out / "train"
    todo = jobs(train)
    for category in dict.fromkeys(category for category, _, _ in todo):
        (train / category).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers) as pool:
        results = list(tqdm(pool.map(write, [job for _, _, job in todo], chunksize=4), total=len(todo), desc="sources"))
    names = {train / category / name for (category, _, _), written in zip(todo, results) for name, _, _ in written}
    for stale in set(train.glob("*/*.flac")) - names:
        stale.unlink()
    for stale in (out / "selection").glob("*/*.flac"):
        stale.unlink()
    held_out = hold_out(train, out / "selection")
    held = {recording(path.stem) for path in held_out}
    stats = defaultdict(list)
    for (category, key, _), written in zip(todo, results):
        stats[category, key] += [
            (seconds, rate) for name, seconds, rate in written if recording(Path(name).stem) not in held
        ]
    rows = table(stats)
    lines = [
        "# Licences of the default model's training data",
        "",
        "Generated by `python -m rvqgan.training.make_default_data`. Files are named `<source>-<path>-<k>.flac`: "
        "segment k (at most 10 s) of the file at <path> below the source's folder, mixed to mono.",
        "",
    ]
    lines += [f"- `{key}-*`: {text}" for key, text in LICENSES.items()]
    lines += [
        "",
        *rows,
        "",
        "Held out for checkpoint selection (`selection/`, not trained on): "
        + ", ".join(f"`{p.parent.name}/{p.name}`" for p in held_out),
        "",
    ]
    (out / "LICENSES.md").write_text("\n".join(lines))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/default"))
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    args = parser.parse_args(argv)
    print("\n".join(build(args.out, args.workers)))
    print(f"wrote {args.out}/train, {args.out}/selection and {args.out}/LICENSES.md")


if __name__ == "__main__":
    main()
