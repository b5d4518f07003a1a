"""Shared fixtures: tiny seeded corpora made on the fly (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import make_wikipedia_layout


@pytest.fixture
def wikipedia_src(tmp_path: Path) -> Path:
    return make_wikipedia_layout(tmp_path / "wiki-src")


@pytest.fixture
def wikipedia_src_chinese(tmp_path: Path) -> Path:
    return make_wikipedia_layout(tmp_path / "wiki-zh", chinese=True)
