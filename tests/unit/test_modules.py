"""Resolving relative imports for code the runtime loads from source (host and sandbox alike)."""

from __future__ import annotations

import pytest

from dynamic_workflows.modules import absolute_import_name


@pytest.mark.parametrize(
    ("name", "package", "level", "expected"),
    [
        ("b", "pkg.sub", 1, "pkg.sub.b"),  # from .b import x
        ("b", "pkg.sub", 2, "pkg.b"),  # from ..b import x
        ("", "pkg.sub", 1, "pkg.sub"),  # from . import x
        ("", "pkg.sub", 2, "pkg"),  # from .. import x
        ("c.d", "pkg", 1, "pkg.c.d"),
    ],
)
def test_relative_names_resolve_against_the_package(
    name: str, package: str, level: int, expected: str
) -> None:
    assert absolute_import_name(name, package, level) == expected


def test_going_above_the_top_package_is_an_import_error() -> None:
    with pytest.raises(ImportError, match="beyond top-level package"):
        absolute_import_name("x", "pkg", 3)
