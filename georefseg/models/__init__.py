"""Referring segmentation models and the registry that builds them by name or checkpoint."""
