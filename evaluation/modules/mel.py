"""`evaluate.load` script for the mel metric (see evaluation/evaluate_module.py)."""

from rvqgan.evaluation.evaluate_module import metric_class

Mel = metric_class("mel")
