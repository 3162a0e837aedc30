"""`evaluate.load` script for the visqol_speech metric (see evaluation/evaluate_module.py)."""

from rvqgan.evaluation.evaluate_module import metric_class

VisqolSpeech = metric_class("visqol_speech")
