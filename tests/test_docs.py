"""The README documents every recipe key the schema accepts."""

from __future__ import annotations

from edgedistill.recipe_reference import all_rows

from .conftest import ROOT


def test_every_recipe_key_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [path.strip() for path, *_ in all_rows() if f"`{path.strip()}`" not in readme]
    assert not missing, f"undocumented recipe keys (run python -m edgedistill.recipe_reference --write README.md): {missing}"
