"""What ``explore`` computes on the frozen features of a dataset: a 2-D map, clusters and their summaries,
near-duplicates within and across splits, outliers, label issues and suggested labels.

The functions here work on arrays of features (``(N, D)`` float32) and labels; the verb that loads data, runs the
backbone through the feature cache and writes the outputs is :mod:`transferkit.workflows.explore`.
"""
