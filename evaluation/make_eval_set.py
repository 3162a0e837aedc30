"""Two small real evaluation sets for `benchmarks.quality`, from licensed audio installed on this machine.

    python -m rvqgan.evaluation.make_eval_set --out eval_set/ [--set held-out | unseen] [--seconds 5]

`held-out` (the default, 10 clips), recordings of packages that also feed the training data, held out of it:
- `music/`: loops and instrument clips from Debian's `sonic-pi-samples` (/usr/share/sonic-pi/samples, CC0 1.0).
- `general/`: ambience and sound-effect clips from the same package (CC0 1.0).
- `speech/`: the spoken channel announcements of `alsa-utils` (/usr/share/sounds/alsa, GPL-2.0-or-later).

`unseen` (14 clips), only from packages that no training source reads (`EVALUATION_ONLY`, which
`rvqgan.training.make_default_data` refuses):
- `music/`: a violin, a cello and a bassoon (`tuxpaint-stamps-default`), a flute and harpsichord piece (`warmux-data`)
  and a piano ringtone (`lomiri-sounds`);
- `speech/`: stamp descriptions read by five speakers in French, Spanish, Romanian, Danish and Belarusian
  (`tuxpaint-stamps-default`);
- `general/`: a fire engine and a blackbird (`tuxpaint-stamps-default`), an aircraft and a burning fuse (`warmux-data`).

Each clip is cut to `--seconds` from its start (after leading silence), mixed to mono and written as 16-bit FLAC at its
own rate (the unseen set's are all 44.1 kHz), with `LICENSES.md` naming every source. The sets are generated,
not committed: `scripts/system-packages.sh` installs the held-out set's packages, and
`scripts/system-packages.sh tuxpaint-stamps-default warmux-data lomiri-sounds` the unseen set's.
"""

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

SONIC_PI = Path("/usr/share/sonic-pi/samples")
ALSA = Path("/usr/share/sounds/alsa")
TUXPAINT = Path("/usr/share/tuxpaint/stamps")
WARMUX = Path("/usr/share/games/warmux")
LOMIRI = Path("/usr/share/sounds/lomiri")
EVALUATION_ONLY = {TUXPAINT: "tuxpaint-stamps-default", WARMUX: "warmux-data", LOMIRI: "lomiri-sounds"}
CLIPS = {
    "music": [SONIC_PI / name for name in ("loop_amen.flac", "loop_tabla.flac", "guit_em9.flac", "loop_garzul.flac")],
    "general": [SONIC_PI / name for name in ("ambi_choir.flac", "ambi_lunar_land.flac", "vinyl_hiss.flac")],
    "speech": [ALSA / name for name in ("Front_Center.wav", "Rear_Left.wav", "Side_Right.wav")],
}
UNSEEN = {
    "music": [
        TUXPAINT / "hobbies/music/string/violin.ogg",
        TUXPAINT / "hobbies/music/string/cello.ogg",
        TUXPAINT / "hobbies/music/wind/bassoon.ogg",
        WARMUX / "music/menu/Divertissement_pour_flute.ogg",
        LOMIRI / "ringtones/Melody piano.ogg",
    ],
    "speech": [
        TUXPAINT / "symbols/chess/w_4_knight_desc_fr.ogg",
        TUXPAINT / "symbols/chess/w_4_knight_desc_es.ogg",
        TUXPAINT / "seasonal/hanukkah/menorah_desc_ro.ogg",
        TUXPAINT / "space/planets/6_saturn_desc_da.ogg",
        TUXPAINT / "symbols/chess/w_2_queen_desc_be.ogg",
    ],
    "general": [
        TUXPAINT / "vehicles/emergency/firetruck.ogg",
        TUXPAINT / "animals/birds/blackbird.ogg",
        WARMUX / "sound/default/weapons/aircraft_flying.ogg",
        WARMUX / "sound/default/weapons/dynamite_fuze.ogg",
    ],
}
SETS = {"held-out": CLIPS, "unseen": UNSEEN}
LICENSES = {
    SONIC_PI: "Debian package `sonic-pi-samples` (Sonic Pi's sample pack), CC0 1.0 Universal "
    "(see /usr/share/doc/sonic-pi-samples/copyright)",
    ALSA: "Debian package `alsa-utils` (speaker-test's channel announcements), GPL-2.0-or-later "
    "(see /usr/share/doc/alsa-utils/copyright)",
    TUXPAINT: "Debian package `tuxpaint-stamps-default` (Tux Paint's stamps: their sounds and spoken descriptions), "
    "GPL-2.0-or-later, © 2002-2022 Bill Kendrick (see /usr/share/doc/tuxpaint-stamps-default/copyright)",
    WARMUX: "Debian package `warmux-data` (the WarMUX game's music and sounds), GPL-2.0-or-later, © 2001-2011 the "
    "WarMUX team and contributors (see /usr/share/doc/warmux-data/copyright and /usr/share/games/warmux/authors.xml)",
    LOMIRI: "Debian package `lomiri-sounds` (`ringtones/Melody piano.ogg`: CC-BY-SA-3.0, © 2013 Canonical Ltd.; see "
    "/usr/share/doc/lomiri-sounds/copyright)",
}


def trim(audio: np.ndarray, rate: int, seconds: float, threshold: float = 1e-3) -> np.ndarray:
    """Mono audio from its first sample above `threshold` (less 10 ms), at most `seconds` long."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    start = max(0, int(loud[0]) - rate // 100) if loud.size else 0
    return audio[start : start + int(seconds * rate)]


def build(out: Path, seconds: float = 5.0, categories=CLIPS) -> list[Path]:
    out = Path(out)
    written, missing, sources = [], [], []
    for category, paths in categories.items():
        for path in paths:
            if not path.exists():
                missing.append(path)
                continue
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
            clip = trim(audio.mean(1), rate, seconds)
            target = out / category / (path.stem + ".flac")
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(target, clip, rate, subtype="PCM_16")
            written.append(target)
            sources.append((target.relative_to(out), path, rate, len(clip) / rate))
    if missing:
        packages = sorted({package for root, package in EVALUATION_ONLY.items() for p in missing if root in p.parents})
        command = " ".join(["scripts/system-packages.sh", *packages])
        raise SystemExit(f"missing (run {command}): " + ", ".join(map(str, missing)))
    lines = [
        "# Licences of this evaluation set",
        "",
        "Generated by `python -m rvqgan.evaluation.make_eval_set`; every clip is a mono excerpt of the file named.",
        "",
    ]
    used = {root for root in LICENSES for _, path, _, _ in sources if root in path.parents}
    lines += [f"- `{root}`: {text}" for root, text in LICENSES.items() if root in used]
    lines += ["", "| clip | source | rate | seconds |", "|---|---|---:|---:|"]
    lines += [f"| {clip} | {source} | {rate} | {length:.2f} |" for clip, source, rate, length in sources]
    (out / "LICENSES.md").write_text("\n".join(lines) + "\n")
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", choices=SETS, default="held-out", help="which set (default held-out)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each clip (default 5)")
    args = parser.parse_args(argv)
    for path in build(args.out, args.seconds, SETS[args.set]):
        print(path)
    print(args.out / "LICENSES.md")


if __name__ == "__main__":
    main()
