"""Pretrained models behind one interface, looked up by name."""

from transferkit.backbones.base import Backbone
from transferkit.backbones.registry import create_backbone, list_backbones, register_backbone

__all__ = ["Backbone", "create_backbone", "list_backbones", "register_backbone"]
