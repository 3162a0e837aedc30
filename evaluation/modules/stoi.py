"""`evaluate.load` script for the stoi metric (see evaluation/evaluate_module.py)."""

from rvqgan.evaluation.evaluate_module import metric_class

Stoi = metric_class("stoi")
