"""The README's settings table is the user's reference: it must list every setting the service
reads, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_settings_table_lists_every_setting() -> None:
    documented = set(re.findall(r"^\| `(XMR_[A-Z0-9_]+)` \|", README.read_text(), re.M))
    read = {f"XMR_{name.upper()}" for name in Settings.model_fields}
    assert documented == read, {"undocumented": read - documented, "unknown": documented - read}
