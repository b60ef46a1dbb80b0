"""Structured pruning of a student and its recovery by distillation (the trainer's loop and settings)."""
