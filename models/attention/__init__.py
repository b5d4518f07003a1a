"""Attention blocks: self-attention within a modality (regions, tokens) and the SCAN-style
cross-attention scorer between them."""
