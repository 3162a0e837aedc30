"""Training curves of a run as one PNG: the generator's losses and the validation scores against the step.

python -m rvqgan.training.plot_curves runs/default --out curves.png
"""

import argparse
import json
from pathlib import Path

PANELS = (
    ("training: mel distance", ["loss/mel"]),
    ("training: adversarial and feature matching", ["loss/adversarial", "loss/feature", "loss/discriminator"]),
    ("training: codebook and commitment", ["loss/codebook", "loss/commitment"]),
    ("validation: mel and STFT distance", ["val/mel", "val/stft"]),
    ("validation: SI-SDR (dB)", ["val/si_sdr"]),
    ("codebook usage (share of entries, per codebook)", [f"codebooks/usage_{k}" for k in range(32)]),
)


def plot(run_dir: Path, out: Path, smooth: int = 20, first_step: int = 0):
    """`first_step`: the step the run's weights started at (a continued run), added to its own steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    figure, axes = plt.subplots(2, 3, figsize=(15, 7))
    for axis, (title, keys) in zip(axes.flat, PANELS):
        for key in keys:
            points = [(first_step + row["step"], row[key]) for row in rows if key in row]
            if not points:
                continue
            steps, values = map(np.asarray, zip(*points))
            window = min(smooth, len(values)) if key.startswith(("loss/", "codebooks/")) else 1
            smoothed = np.convolve(values, np.ones(window) / window, mode="valid")
            axis.plot(steps[window - 1 :], smoothed, label=key.split("/")[-1])
        axis.set(title=title, xlabel="step")
        axis.grid(alpha=0.3)
        if len(keys) <= 4 and axis.lines:
            axis.legend(fontsize=8)
    figure.suptitle(f"{run_dir.name}: {rows[-1]['step']} steps" + (f" from step {first_step}" if first_step else ""))
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default RUN_DIR/curves.png)")
    args = parser.parse_args(argv)
    plot(args.run_dir, args.out or args.run_dir / "curves.png")


if __name__ == "__main__":
    main()
