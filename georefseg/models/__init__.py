"""Referring segmentation models, found by name or by their weights in the backend table."""

from georefseg.models.registry import list_models, load_model

__all__ = ["list_models", "load_model"]
