"""The metrics of `rvqgan.evaluation.metrics` as Hugging Face `evaluate` modules.

    metric = evaluate.load("evaluation/modules/mel.py")
    metric.compute(predictions=[decoded], references=[original], sampling_rate=44100)  # {"mel": mean over pairs}

The scripts in `modules/` (one per metric name of `METRICS`) are what `evaluate.load(path)` reads.
"""

import datasets
import evaluate
import numpy as np

from .metrics import METRICS


def metric_class(name: str) -> type[evaluate.Metric]:
    """An `evaluate.Metric` computing the mean of `METRICS[name]` over (prediction, reference) mono waveforms."""
    function, higher_is_better, _ = METRICS[name]

    class AudioMetric(evaluate.Metric):
        def _info(self):
            waveform = datasets.Sequence(datasets.Value("float32"))
            return evaluate.MetricInfo(
                description=f"{name} between decoded and reference audio "
                f"({'higher' if higher_is_better else 'lower'} is better)",
                citation="Kumar et al. 2023, High-Fidelity Audio Compression with Improved RVQGAN",
                inputs_description="predictions, references: lists of mono float waveforms; sampling_rate: int",
                features=datasets.Features({"predictions": waveform, "references": waveform}),
            )

        def _compute(self, predictions, references, sampling_rate: int):
            scores = [
                function(np.asarray(r, np.float32), np.asarray(p, np.float32), sampling_rate)
                for p, r in zip(predictions, references)
            ]
            return {name: float(np.mean(scores))}

    AudioMetric.__name__ = AudioMetric.__qualname__ = "".join(part.title() for part in name.split("_"))
    return AudioMetric
