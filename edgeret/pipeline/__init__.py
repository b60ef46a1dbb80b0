"""Whole-pipeline runs built from the stages' functions: the demo, and the steps several commands share."""
