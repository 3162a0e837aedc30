"""`evaluate.load` script for the waveform metric (see evaluation/evaluate_module.py)."""

from rvqgan.evaluation.evaluate_module import metric_class

Waveform = metric_class("waveform")
