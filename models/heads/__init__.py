"""Heads on top of backbone features: projectors, per-level classifiers, the modality
discriminator and gradient reversal. Methods compose them; none of them knows a method."""
