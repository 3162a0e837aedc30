"""Full-band harmonic music for training: MIDI phrases generated here, rendered by FluidSynth through a sampled GM
soundfont.

    python -m rvqgan.training.render_music --out DIR [--minutes 60] [--seed 0]

Each phrase (5-10 s) is played by one acoustic instrument of `INSTRUMENTS` (piano, strings, woodwinds, brass, organ,
guitars, harp, mallets, voices), taken in turn in a shuffled order, in a window of its real register: a melody, long
held notes or chords (block or broken), in a random key, scale, tempo, dynamic and articulation (staccato to legato);
a third of the melodies and held notes get a second instrument, playing chords or a line low in its register.
`fluidsynth` (Debian `fluidsynth`) renders each one at 44.1 kHz through the FluidR3 GM soundfont (Debian
`fluid-soundfont-gm`, MIT), with its reverb and without its chorus; the audio is mixed to mono, peak-normalised to
-1 dBFS, cut after its last sample above -60 dB (from the peak) and written as `DIR/soundfont-<instrument>-<k>.flac`
(16-bit), with `DIR/LICENSES.md`. The same seed gives the same files.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

RATE = 44100
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
PACKAGES = ["fluidsynth", "fluid-soundfont-gm"]  # the Debian packages of the command and of SOUNDFONT
LICENSE = (
    "Debian `fluid-soundfont-gm` (`/usr/share/sounds/sf2/FluidR3_GM.sf2`, the Fluid (R3) General MIDI SoundFont), "
    "MIT, © 2000-2002, 2008 Frank Wen, © 2008 Toby Smithe (/usr/share/doc/fluid-soundfont-gm/copyright)"
)
PEAK = 10 ** (-1 / 20)  # -1 dBFS
SILENCE = 10 ** (-60 / 20)  # relative to the peak
TICKS = 480  # per beat
TAIL = 1.5  # seconds rendered after the last note ends: release and reverb
BAR = "{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]"


class Instrument(NamedTuple):
    name: str
    program: int  # General MIDI program, from 0
    low: int  # the register played, MIDI notes
    high: int
    chords: bool  # plays chords


INSTRUMENTS = [
    Instrument("acoustic-grand-piano", 0, 28, 100, True),
    Instrument("harpsichord", 6, 41, 89, True),
    Instrument("vibraphone", 11, 53, 89, True),
    Instrument("marimba", 12, 45, 96, True),
    Instrument("church-organ", 19, 36, 96, True),
    Instrument("nylon-guitar", 24, 40, 83, True),
    Instrument("steel-guitar", 25, 40, 84, True),
    Instrument("acoustic-bass", 32, 28, 55, False),
    Instrument("violin", 40, 55, 100, False),
    Instrument("viola", 41, 48, 84, False),
    Instrument("cello", 42, 36, 76, False),
    Instrument("contrabass", 43, 28, 60, False),
    Instrument("pizzicato-strings", 45, 36, 84, True),
    Instrument("harp", 46, 24, 103, True),
    Instrument("string-ensemble", 48, 36, 96, True),
    Instrument("choir-aahs", 52, 48, 81, True),
    Instrument("voice-oohs", 53, 48, 79, True),
    Instrument("trumpet", 56, 54, 82, False),
    Instrument("trombone", 57, 40, 72, False),
    Instrument("tuba", 58, 28, 58, False),
    Instrument("french-horn", 60, 41, 77, False),
    Instrument("soprano-sax", 64, 56, 88, False),
    Instrument("alto-sax", 65, 49, 80, False),
    Instrument("tenor-sax", 66, 44, 76, False),
    Instrument("baritone-sax", 67, 37, 68, False),
    Instrument("oboe", 68, 58, 89, False),
    Instrument("english-horn", 69, 52, 81, False),
    Instrument("bassoon", 70, 34, 72, False),
    Instrument("clarinet", 71, 50, 89, False),
    Instrument("piccolo", 72, 74, 102, False),
    Instrument("flute", 73, 60, 96, False),
]
BASSES = [i for i in INSTRUMENTS if i.low <= 40]
SCALES = {
    "major": [0, 2, 4, 5, 7, 9, 11],
    "minor": [0, 2, 3, 5, 7, 8, 10],
    "harmonic-minor": [0, 2, 3, 5, 7, 8, 11],
    "dorian": [0, 2, 3, 5, 7, 9, 10],
    "mixolydian": [0, 2, 4, 5, 7, 9, 10],
    "pentatonic": [0, 2, 4, 7, 9],
}
PACES = [[1.0, 2.0, 3.0], [0.5, 1.0, 1.0, 2.0], [0.25, 0.5, 0.5, 1.0]]  # note lengths in beats: slow, medium, fast
STEPS = [-4, -2, -1, -1, 0, 1, 1, 2, 3]  # melodic motion, in scale degrees

Note = tuple[float, float, int, int]  # start and length in beats, MIDI note, velocity


def varint(n: int) -> bytes:
    """MIDI's variable-length quantity."""
    out = [n & 0x7F]
    while n := n >> 7:
        out.append(0x80 | n & 0x7F)
    return bytes(reversed(out))


def midi(parts: list[tuple[int, list[Note]]], tempo: float) -> bytes:
    """A one-track (format 0) MIDI file: part i, `(program, notes)`, on channel i; it ends `TAIL` s after the last
    note."""
    events = [(0, 0, b"\xff\x51\x03" + round(60e6 / tempo).to_bytes(3, "big"))]
    for channel, (program, notes) in enumerate(parts):
        events.append((0, 1, bytes([0xC0 | channel, program])))
        for start, length, pitch, velocity in notes:
            events.append((round(start * TICKS), 3, bytes([0x90 | channel, pitch, velocity])))
            events.append((round((start + length) * TICKS), 2, bytes([0x80 | channel, pitch, 0])))  # offs first
    events.sort(key=lambda e: e[:2])
    events.append((events[-1][0] + round(TAIL * tempo / 60 * TICKS), 4, b"\xff\x2f\x00"))
    track, now = b"", 0
    for tick, _, data in events:
        track += varint(tick - now) + data
        now = tick
    return (
        b"MThd"
        + (6).to_bytes(4, "big")
        + bytes([0, 0, 0, 1])
        + TICKS.to_bytes(2, "big")
        + (b"MTrk" + len(track).to_bytes(4, "big") + track)
    )


def window(rng: np.random.Generator, instrument: Instrument, key: int, scale: list[int], span: int) -> list[int]:
    """The notes of the scale in a random window of at most `span` semitones of the instrument's register."""
    span = min(span, instrument.high - instrument.low)
    low = int(rng.integers(instrument.low, instrument.high - span + 1))
    return [p for p in range(low, low + span + 1) if (p - key) % 12 in scale]


def dynamics(rng: np.random.Generator, notes: list[tuple[float, float, int]], beats: float, loud: float) -> list[Note]:
    """`(start, length, pitch)` notes with velocities: around `loud`, a crescendo or diminuendo, a little jitter."""
    swell = rng.uniform(-25, 25)
    return [
        (start, length, pitch, int(np.clip(loud + swell * (start / beats - 0.5) + rng.normal(0, 5), 12, 127)))
        for start, length, pitch in notes
    ]


def melody(rng: np.random.Generator, pool: list[int], beats: float, legato: float) -> list[tuple[float, float, int]]:
    """A stepwise line with leaps over `pool`, at one of `PACES`; the last note is held."""
    pace, i, t, notes = PACES[rng.integers(len(PACES))], int(rng.integers(len(pool))), 0.0, []
    while t < beats:
        length = float(rng.choice(pace))
        notes.append((t, length * legato, pool[i]))
        i = abs(i + int(rng.choice(STEPS)))  # reflected at both ends
        i = i if i < len(pool) else 2 * (len(pool) - 1) - i
        t += length
    notes[-1] = (notes[-1][0], max(notes[-1][1], 2.0), notes[-1][2])
    return notes


def held(rng: np.random.Generator, pool: list[int], beats: float, tempo: float, voices: int) -> list:
    """Long notes (1.5-3.5 s) of `voices` notes each, nearly legato."""
    t, notes = 0.0, []
    while t < beats:
        length = rng.uniform(1.5, 3.5) * tempo / 60
        start = int(rng.integers(len(pool)))
        notes += [(t, length * 0.95, pool[(start + 2 * v) % len(pool)]) for v in range(voices)]
        t += length
    return notes


def chords(rng: np.random.Generator, pool: list[int], beats: float, legato: float, broken: bool) -> list:
    """A progression of triads (sometimes sevenths) in `pool`, one or two per bar of 4 beats, struck together or
    broken (arpeggiated on eighths)."""
    t, notes, length = 0.0, [], float(rng.choice([2.0, 4.0]))
    while t < beats:
        root, size = int(rng.integers(max(1, len(pool) - 6))), int(rng.choice([3, 3, 4]))
        chord = [pool[min(root + 2 * v, len(pool) - 1)] for v in range(size)]
        if broken:
            notes += [(t + k / 2, length - k / 2, p) for k, p in enumerate(chord * int(length))][: int(2 * length)]
        else:
            notes += [(t, length * legato, p) for p in chord]
        t += length
    return notes


def phrase(rng: np.random.Generator, lead: Instrument) -> tuple[list[tuple[int, list[Note]]], float]:
    """`([(program, notes)], tempo)`: a phrase (5-10 s) led by `lead`, sometimes with a second instrument."""
    tempo = rng.uniform(56, 168)
    beats = rng.uniform(4, 8) * tempo / 60  # with the last note held and its release, 5-10 s
    key, scale = int(rng.integers(12)), list(SCALES.values())[rng.integers(len(SCALES))]
    legato, loud = rng.choice([0.35, 0.6, 0.85, 1.0]), rng.uniform(55, 120)
    texture = rng.choice(["melody", "held", "chords"] if lead.chords else ["melody", "held"])
    pool = window(rng, lead, key, scale, int(rng.integers(12, 25)))
    if texture == "melody":
        notes = melody(rng, pool, beats, legato)
    elif texture == "held":
        notes = held(rng, pool, beats, tempo, int(rng.integers(1, 4)) if lead.chords else 1)
    else:
        notes = chords(rng, window(rng, lead, key, scale, 19), beats, legato, bool(rng.integers(2)))
    parts = [(lead.program, dynamics(rng, notes, beats, loud))]
    if texture != "chords" and rng.random() < 1 / 3:
        others = [i for i in (BASSES if rng.integers(2) else INSTRUMENTS) if i.name != lead.name]
        second = others[rng.integers(len(others))]
        if second.chords:
            accompaniment = chords(rng, window(rng, second, key, scale, 19), beats, 0.9, bool(rng.integers(2)))
        else:  # a line in the low end of its register
            low = second._replace(high=min(second.high, second.low + 14))
            accompaniment = melody(rng, window(rng, low, key, scale, 12), beats, 0.9)
        parts.append((second.program, dynamics(rng, accompaniment, beats, loud - 12)))
    return parts, tempo


def render(parts: list[tuple[int, list[Note]]], tempo: float, tmp: Path) -> np.ndarray:
    """`(T,)` float32 audio at `RATE`: the phrase rendered by fluidsynth, mono, at a peak of -1 dBFS, cut after its
    last sample above -60 dB."""
    (tmp / "phrase.mid").write_bytes(midi(parts, tempo))
    options = ["-n", "-i", "-q", "-C", "0", "-r", str(RATE), "-O", "float", "-T", "wav", "-F", str(tmp / "phrase.wav")]
    subprocess.run(["fluidsynth", *options, str(SOUNDFONT), str(tmp / "phrase.mid")], check=True, capture_output=True)
    audio = sf.read(tmp / "phrase.wav", dtype="float32", always_2d=True)[0].mean(axis=1)
    audio *= PEAK / np.abs(audio).max()
    return audio[: np.flatnonzero(np.abs(audio) >= PEAK * SILENCE)[-1] + 1]


def lead(seed: int, k: int) -> Instrument:
    """The instrument of phrase k: each instrument once in every `len(INSTRUMENTS)` phrases, in a shuffled order."""
    order = np.random.default_rng([seed, 0, k // len(INSTRUMENTS)]).permutation(len(INSTRUMENTS))
    return INSTRUMENTS[order[k % len(INSTRUMENTS)]]


def build(out: Path, minutes: float, seed: int) -> dict[str, list[float]]:
    """Render phrases into `out` until they last `minutes`, and write `LICENSES.md`; return the seconds of each
    instrument's files."""
    missing = [p for p, ok in zip(PACKAGES, (shutil.which("fluidsynth"), SOUNDFONT.exists())) if not ok]
    if missing:
        print(
            f"error: missing {', '.join(missing)} (run scripts/system-packages.sh {' '.join(missing)})", file=sys.stderr
        )
        raise SystemExit(2)
    out.mkdir(parents=True, exist_ok=True)
    written, seconds = set(), defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp, tqdm(total=minutes * 60, desc="rendering", bar_format=BAR) as bar:
        k = 0
        while sum(map(sum, seconds.values())) < minutes * 60:
            instrument = lead(seed, k)
            audio = render(*phrase(np.random.default_rng([seed, 1, k]), instrument), Path(tmp))
            path = out / f"soundfont-{instrument.name}-{k}.flac"
            sf.write(path, audio, RATE, subtype="PCM_16")
            written.add(path)
            seconds[instrument.name].append(len(audio) / RATE)
            bar.update(min(len(audio) / RATE, bar.total - bar.n))  # not past the total, which tqdm would drop
            k += 1
    for stale in set(out.glob("soundfont-*.flac")) - written:
        stale.unlink()
    rows = [f"| {name} | {len(s)} | {sum(s):.1f} |" for name, s in sorted(seconds.items())]
    lines = [
        "# Licence of this training data",
        "",
        f"Generated by `python -m rvqgan.training.render_music --minutes {minutes:g} --seed {seed}`: MIDI phrases "
        "generated by that module, rendered by FluidSynth through the soundfont below, mixed to mono (44.1 kHz, "
        "16-bit FLAC, `soundfont-<instrument>-<k>.flac`).",
        "",
        f"- `soundfont-*`: {LICENSE}",
        "",
        "| instrument | files | seconds |",
        "|---|---:|---:|",
        *rows,
        "",
    ]
    (out / "LICENSES.md").write_text("\n".join(lines))
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0, help="audio to render (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seconds = build(args.out, args.minutes, args.seed)
    total = sum(map(sum, seconds.values()))
    files = sum(map(len, seconds.values()))
    print(f"wrote {files} files ({total / 60:.1f} min, {len(seconds)} instruments) and LICENSES.md to {args.out}")


if __name__ == "__main__":
    main()
