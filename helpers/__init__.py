"""Helpers for the llama32-mcq-cot notebooks: data, prompts, answers, models, training, pairs, evaluation."""

__version__ = "0.1.0"
