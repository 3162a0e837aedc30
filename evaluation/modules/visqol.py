"""`evaluate.load` script for the visqol metric (see evaluation/evaluate_module.py)."""

from rvqgan.evaluation.evaluate_module import metric_class

Visqol = metric_class("visqol")
