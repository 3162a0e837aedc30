"""`evaluate.load` script for the pesq_wb metric (see evaluation/evaluate_module.py)."""

from rvqgan.evaluation.evaluate_module import metric_class

PesqWb = metric_class("pesq_wb")
