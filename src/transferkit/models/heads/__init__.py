"""Heads that turn pooled features into predictions."""

from transferkit.models.heads.bottleneck import BottleneckHead
from transferkit.models.heads.linear import LinearHead
from transferkit.models.heads.multitask import HeadSet
from transferkit.models.heads.prototype import PrototypeHead
from transferkit.models.heads.regression import RegressionHead

#: Head class names (as saved in a model folder's config.json) -> classes.
HEAD_TYPES = {"LinearHead": LinearHead, "BottleneckHead": BottleneckHead, "RegressionHead": RegressionHead,
              "PrototypeHead": PrototypeHead}

__all__ = ["HEAD_TYPES", "BottleneckHead", "HeadSet", "LinearHead", "PrototypeHead", "RegressionHead"]
