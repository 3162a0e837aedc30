"""`evaluate.load` script for the stft metric (see evaluation/evaluate_module.py)."""

from rvqgan.evaluation.evaluate_module import metric_class

Stft = metric_class("stft")
