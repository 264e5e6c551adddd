"""RSRefSeg 2 (Chen et al., 2025): the model and its parity entry point (:mod:`.model`), the SAM 2.1
parts it keeps (:mod:`.sam2`), its cascaded prompter (:mod:`.prompter`) and the authors'
checkpoint with its two base models (:mod:`.checkpoint`)."""

from georefseg.models.rsrefseg2.model import RSRefSeg2, reference_logits

__all__ = ["RSRefSeg2", "reference_logits"]
