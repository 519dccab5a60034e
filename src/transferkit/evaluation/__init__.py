"""Metrics, baselines and the verdict on whether transfer helped."""
