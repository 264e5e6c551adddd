"""Backends over transformers models read from local Hugging Face folders (CLIPSeg, SAM 3).

Each reads its folder's own configs (:mod:`georefseg.models.hf.folder`) for its card and its
preprocessing, and loads offline; nothing is downloaded.
"""
