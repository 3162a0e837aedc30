"""The paper's objective table (Table 3) for any codec and bitrate, with plots.

    python -m benchmarks.quality --codec rvqgan:MODEL_DIR@1.78,2.67,5.33,7.75 --codec opus@6,12,24 \
        --codec mp3@8,16,32 --data eval_set/ --out results/ [--workers N] [--max-seconds 5]

Codecs: `rvqgan:DIR_OR_REPO@kbps,...` (`rvqgan:default`, or plain `rvqgan@...`, is `rvqgan.models.load_model(None)`;
no `@` means all codebooks), `opus@kbps,...`, `mp3@kbps,...` (ffmpeg; `rvqgan.evaluation.baselines`).

Every audio file under `--data` is read, mixed to mono, resampled to `--rate` (44.1 kHz, the paper's full-band
rate) and cut to `--max-seconds`. rvqgan clips go through `rvqgan.compress` / `decompress` (resampling to the
model's rate and back, -16 LUFS normalisation undone), so `true_kbps` is the `.rvq` size on disk; baselines
report their encoded file size. As DAC's `get_samples.py` does, each reconstruction is then loudness-matched to its
input (ITU-R BS.1770, `rvqgan.feature_extraction.audio`) before scoring. The category is the first folder on the file's
path under `--data` named `speech`, `music` or `general` (default `general`); ViSQOL-speech, PESQ-WB and STOI are
computed for speech only.

Writes `OUT/results.csv` (one row per file, codec and bitrate), `OUT/summary.csv` and `OUT/summary.md` (means per
codec / bitrate, for all files and per category, in the paper's column order) and `OUT/plots/*.png` (each metric vs
true kbps, one line per codec; `OUT/plots/quality.png` has them all).
"""

import argparse
import csv
import math
import os
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".m4a"}
CATEGORIES = ("speech", "music", "general")
# column name, label, higher is better, format
COLUMNS = (
    ("mel", "Mel ↓", False, "{:.2f}"),
    ("stft", "STFT ↓", False, "{:.2f}"),
    ("visqol", "ViSQOL ↑", True, "{:.2f}"),
    ("si_sdr", "SI-SDR ↑", True, "{:.2f}"),
    ("waveform", "L1 ↓", False, "{:.4f}"),
    ("visqol_speech", "ViSQOL-speech ↑", True, "{:.2f}"),
    ("pesq_wb", "PESQ-WB ↑", True, "{:.2f}"),
    ("stoi", "STOI ↑", True, "{:.3f}"),
)
METRIC_NAMES = tuple(name for name, *_ in COLUMNS)


@dataclass(frozen=True)
class CodecSpec:
    kind: str  # rvqgan | opus | mp3
    arg: str | None  # rvqgan: model dir / repo, None for the default model
    rates: tuple  # kbps values; (None,) = the codec's full rate (rvqgan only)

    @property
    def label(self) -> str:
        if self.kind != "rvqgan":
            return self.kind
        return "rvqgan" if self.arg is None else f"rvqgan ({Path(self.arg).name or self.arg})"


def parse_codec(text: str) -> CodecSpec:
    """`rvqgan:DIR@1.78,7.75`, `rvqgan:default`, `opus@6,12`, `mp3@8,16` -> `CodecSpec`."""
    name, _, rates = text.partition("@")
    kind, _, arg = name.partition(":")
    kind = kind.strip().lower()
    if kind not in ("rvqgan", "opus", "mp3"):
        raise argparse.ArgumentTypeError(f"unknown codec {kind!r} in {text!r}: rvqgan[:MODEL], opus or mp3")
    if kind != "rvqgan" and arg:
        raise argparse.ArgumentTypeError(f"{kind} takes no model argument: {text!r}")
    try:
        values = tuple(float(r) for r in rates.split(",") if r.strip()) if rates else ()
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad bitrate list in {text!r}") from None
    if not values:
        if kind != "rvqgan":
            raise argparse.ArgumentTypeError(f"{kind} needs bitrates: {kind}@6,12,24")
        values = (None,)
    if any(v is not None and not (v > 0 and math.isfinite(v)) for v in values):
        raise argparse.ArgumentTypeError(f"bitrates must be positive: {text!r}")
    return CodecSpec(kind, None if arg in ("", "default") else arg, values)


def category_of(path: Path, root: Path) -> str:
    for part in path.relative_to(root).parts[:-1]:
        if part.lower() in CATEGORIES:
            return part.lower()
    return "general"


def find_files(root: Path) -> list[Path]:
    root = Path(root)
    files = (
        [root]
        if root.is_file()
        else sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    )
    if not files:
        raise SystemExit(f"no audio files under {root}")
    return files


def loudness_match(reference: np.ndarray, estimate: np.ndarray, rate: int) -> np.ndarray:
    """`estimate` with a gain that gives it the reference's integrated loudness (audiotools' `normalize`)."""
    from rvqgan.feature_extraction.audio import apply_gain, integrated_loudness

    if len(reference) < int(0.4 * rate) or not np.any(reference) or not np.any(estimate):
        return estimate
    ref_lufs, est_lufs = integrated_loudness(reference, rate), integrated_loudness(estimate, rate)
    if not (np.isfinite(ref_lufs) and np.isfinite(est_lufs)):
        return estimate
    return apply_gain(estimate, ref_lufs - est_lufs)


_MODELS: dict = {}


def _rvqgan_roundtrip(
    arg: str | None, audio: np.ndarray, rate: int, kbps: float | None
) -> tuple[np.ndarray, float, float]:
    import torch
    from rvqgan.modeling import kbps_on_disk

    from rvqgan import compress, decompress
    from rvqgan.models import load_model

    if arg not in _MODELS:
        _MODELS[arg] = load_model(arg)
    model, identity = _MODELS[arg]
    with torch.no_grad():
        data = compress(model, audio, rate, kbps=kbps, identity=identity)
        decoded, _ = decompress(model, data, identity=identity)
    config = model.config
    nominal = config.n_quantizers_to_kbps(config.resolve_n_quantizers(kbps=kbps))
    return decoded[0], kbps_on_disk(len(data), len(audio) / rate), nominal


def load_clip(path: Path, rate: int, max_seconds: float | None) -> np.ndarray:
    from rvqgan.feature_extraction.audio import mono_at
    from rvqgan.feature_extraction.audio_io import read_audio

    audio, file_rate = read_audio(path)
    if max_seconds:
        audio = audio[:, : int(max_seconds * file_rate)]
    return np.ascontiguousarray(mono_at(audio, file_rate, rate), dtype=np.float32)


def evaluate_one(
    path: str,
    root: str,
    spec: CodecSpec,
    kbps: float | None,
    rate: int,
    max_seconds: float | None,
    metric_names=METRIC_NAMES,
) -> dict:
    """One row of `results.csv`: the file's clip through one codec at one bitrate, scored."""
    from rvqgan.evaluation.baselines import encode_decode
    from rvqgan.evaluation.metrics import METRICS

    path, root = Path(path), Path(root)
    category = category_of(path, root)
    reference = load_clip(path, rate, max_seconds)
    if spec.kind == "rvqgan":
        estimate, true_kbps, nominal = _rvqgan_roundtrip(spec.arg, reference, rate, kbps)
    else:
        estimate, true_kbps = encode_decode(reference, rate, spec.kind, kbps)
        nominal = kbps
    estimate = loudness_match(reference, estimate, rate)
    row = {
        "file": str(path.relative_to(root)) if path != root else path.name,
        "category": category,
        "codec": spec.label,
        "kbps": round(nominal, 2),
        "true_kbps": true_kbps,
        "seconds": len(reference) / rate,
    }
    for name in METRIC_NAMES:
        function, _, speech_only = METRICS[name]
        wanted = name in metric_names and (category == "speech" or not speech_only)
        row[name] = function(reference, estimate, rate) if wanted else float("nan")
    return row


def _init_worker():
    import torch

    torch.set_num_threads(1)


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def run(
    codecs: list[CodecSpec],
    data: Path,
    out: Path,
    workers: int | None = None,
    rate: int = 44100,
    max_seconds: float | None = None,
    metric_names=METRIC_NAMES,
    progress: bool = True,
) -> list[dict]:
    """Score every file with every codec / bitrate, write the CSVs, Markdown and plots under `out`; the rows."""
    from tqdm import tqdm

    data, out = Path(data), Path(out)
    files = find_files(data)
    root = data if data.is_dir() else data.parent
    jobs = [
        (str(f), str(root), spec, kbps, rate, max_seconds, tuple(metric_names))
        for spec in codecs
        for kbps in spec.rates
        for f in files
    ]
    workers = default_workers() if workers is None else max(1, workers)
    rows = []
    with tqdm(total=len(jobs), desc="quality", unit="clip", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                rows.append(evaluate_one(*job))
                bar.update()
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
                for future in as_completed([pool.submit(evaluate_one, *job) for job in jobs]):
                    rows.append(future.result())
                    bar.update()
    codec_order = [spec.label for spec in codecs]
    rows.sort(key=lambda r: (codec_order.index(r["codec"]), r["kbps"], r["file"]))
    write_outputs(rows, out)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Means per (category: all / speech / music / general, codec, nominal kbps), codec order as given."""
    groups = defaultdict(list)
    for row in rows:
        for category in ("all", row["category"]):
            groups[(category, row["codec"], row["kbps"])].append(row)
    codec_order = list(dict.fromkeys(r["codec"] for r in rows))
    summary = []
    for (category, codec, kbps), members in groups.items():
        entry = {
            "category": category,
            "codec": codec,
            "kbps": kbps,
            "files": len(members),
            "true_kbps": float(np.mean([m["true_kbps"] for m in members])),
        }
        for name in METRIC_NAMES:
            values = [m[name] for m in members if np.isfinite(m[name])]
            entry[name] = float(np.mean(values)) if values else float("nan")
        summary.append(entry)
    category_order = {c: i for i, c in enumerate(("all",) + CATEGORIES)}
    summary.sort(key=lambda e: (category_order[e["category"]], codec_order.index(e["codec"]), e["kbps"]))
    return summary


def markdown(summary: list[dict]) -> str:
    lines = []
    for category in ("all",) + CATEGORIES:
        entries = [e for e in summary if e["category"] == category]
        if not entries:
            continue
        columns = [c for c in COLUMNS if any(np.isfinite(e[c[0]]) for e in entries)]
        n_files = max(e["files"] for e in entries)
        lines += [
            f"### {'All files' if category == 'all' else category.capitalize()} ({n_files} clips)",
            "",
            "| Codec | kbps | true kbps | " + " | ".join(c[1] for c in columns) + " |",
            "|---|---:|---:|" + "---:|" * len(columns),
        ]
        for e in entries:
            cells = [fmt.format(e[name]) if np.isfinite(e[name]) else "–" for name, _, _, fmt in columns]
            lines.append(f"| {e['codec']} | {e['kbps']:g} | {e['true_kbps']:.2f} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: list[dict], out_dir: Path) -> list[Path]:
    """Each metric vs true kbps (all files), one line per codec: `plots/<metric>.png` and `plots/quality.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    entries = [e for e in summary if e["category"] == "all"]
    codecs = list(dict.fromkeys(e["codec"] for e in entries))
    columns = [c for c in COLUMNS if any(np.isfinite(e[c[0]]) for e in entries)]
    written = []

    def draw(ax, name, label):
        for codec in codecs:
            points = sorted((e["true_kbps"], e[name]) for e in entries if e["codec"] == codec and np.isfinite(e[name]))
            if points:
                ax.plot(*zip(*points), marker="o", label=codec)
        ax.set_xlabel("true kbps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)

    for name, label, _, _ in columns:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        draw(ax, name, label)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    cols = min(4, len(columns))
    rows = math.ceil(len(columns) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (name, label, _, _) in zip(axes.flat, columns):
        draw(ax, name, label)
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "quality.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return written + [path]


def _write_csv(path: Path, rows: list[dict]):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_outputs(rows: list[dict], out: Path):
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "results.csv", rows)
    summary = summarize(rows)
    _write_csv(out / "summary.csv", summary)
    (out / "summary.md").write_text(markdown(summary))
    plot(summary, out / "plots")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--codec",
        action="append",
        type=parse_codec,
        required=True,
        help="rvqgan[:MODEL]@kbps,..., opus@kbps,..., mp3@kbps,...",
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a folder of audio files (speech/, music/, general/ subfolders set the category)",
    )
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"worker processes (default: CPUs - 1, at most 8: {default_workers()} here)",
    )
    parser.add_argument("--rate", type=int, default=44100, help="evaluation sampling rate (default 44100)")
    parser.add_argument("--max-seconds", type=float, default=None, help="cut each file to this many seconds")
    parser.add_argument(
        "--metrics", default=",".join(METRIC_NAMES), help=f"comma-separated subset of {','.join(METRIC_NAMES)}"
    )
    args = parser.parse_args(argv)
    metric_names = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    unknown = set(metric_names) - set(METRIC_NAMES)
    if unknown:
        parser.error(f"unknown metrics: {', '.join(sorted(unknown))}")
    rows = run(args.codec, args.data, args.out, args.workers, args.rate, args.max_seconds, metric_names)
    print((args.out / "summary.md").read_text())
    print(f"{len(rows)} rows -> {args.out / 'results.csv'}, plots in {args.out / 'plots'}", file=sys.stderr)


if __name__ == "__main__":
    main()
