"""Corpus format, importers, image decoding and the feature datasets built on them."""
