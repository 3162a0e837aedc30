"""`evaluate.load` script for the si_sdr metric (see evaluation/evaluate_module.py)."""

from rvqgan.evaluation.evaluate_module import metric_class

SiSdr = metric_class("si_sdr")
