"""Losses, one idea per file. Metric losses take a similarity matrix S (rows: anchors of one
modality, columns: candidates of the other) with boolean positive and negative masks, and
return a scalar (pytorch-metric-learning style), so each is tested against a loop."""
