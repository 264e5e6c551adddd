"""RMSIN (Liu et al., CVPR 2024) in the authors' module tree: the model (:mod:`.model`), its
multi-modal Swin backbone (:mod:`.backbone`, :mod:`.swin`, :mod:`.interaction`), its decoder
(:mod:`.decoder`) and the authors' checkpoint files (:mod:`.checkpoint`)."""
