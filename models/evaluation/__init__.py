"""Retrieval metrics and evaluation reports."""
