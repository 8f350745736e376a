"""What `pip install .` installs: every package of the source tree, and the C extension as optional."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_pyproject_lists_every_package_of_the_source_tree():
    """setuptools installs only the packages listed: a package missing from the list is missing
    from a non-editable install (gslb.policy was, and `gslb serve` failed to import there)."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "gslb").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"


def test_the_c_extension_is_optional_so_a_failed_build_does_not_fail_the_install():
    tree = ast.parse((REPO / "setup.py").read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Extension"]
    assert len(calls) == 1
    keywords = {keyword.arg: keyword.value for keyword in calls[0].keywords}
    assert isinstance(keywords.get("optional"), ast.Constant) and keywords["optional"].value is True
