"""Torch model definitions shared by the teachers and the student."""
