"""Importers turn raw corpora into the pinned corpus format (models.data.corpus)."""
