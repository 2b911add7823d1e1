"""The operations guide lists every setting, so operators never meet an undocumented one."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from jobs.settings import Settings

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


@pytest.mark.parametrize("name", [item.name for item in fields(Settings)])
def test_operations_guide_lists_setting(name: str) -> None:
    variable = f"MAILSCAN_{name.upper()}"
    assert f"`{variable}`" in GUIDE.read_text(), f"{variable} is missing from {GUIDE}"
