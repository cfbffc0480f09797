"""WorkerCode: accepted shapes and clear errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from dynamic_workflows.errors import ConfigurationError
from dynamic_workflows.sandbox.code import INHERIT, WorkerCode, WorkerLimits
from dynamic_workflows.sandbox.errors import WorkerCodeError

SRC = "from workers import WorkerEntrypoint\nclass Default(WorkerEntrypoint): pass\n"


def test_camel_case_dict() -> None:
    code = WorkerCode.from_value(
        {
            "compatibilityDate": "2026-01-01",
            "compatibilityFlags": ["python_workers"],
            "mainModule": "main.py",
            "modules": {
                "main.py": SRC,
                "lib/util.py": {"py": "X = 1"},
                "greeting.txt": {"text": "hi"},
                "conf.json": {"json": {"a": [1]}},
                "blob.bin": {"data": b"\x00\x01"},
            },
            "globalOutbound": None,
            "limits": {"cpuMs": 50, "memoryMb": 64, "wallMs": 1000, "subRequests": 3},
        }
    )
    assert code.main_module == "main.py"
    assert code.compatibility_flags == ("python_workers",)
    assert code.global_outbound is None
    assert code.limits == WorkerLimits(cpu_ms=50, memory_mb=64, wall_ms=1000, sub_requests=3)
    names = {s.filename: (s.name, s.kind) for s in code.sources().values()}
    assert names["lib/util.py"] == ("lib.util", "py")
    assert names["greeting.txt"] == ("greeting", "text")
    assert names["blob.bin"] == ("blob", "data")


def test_snake_case_and_defaults() -> None:
    code = WorkerCode.from_value({"main_module": "main.py", "modules": {"main.py": SRC}})
    assert code.global_outbound is INHERIT
    assert code.limits == WorkerLimits()
    assert dict(code.env) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not a dict", r"get_code must return a WorkerCode or a dict, got str"),
        ({"modules": {"main.py": SRC}}, r"WorkerCode\.main_module: is required"),
        ({"main_module": "main.py"}, r"WorkerCode\.modules: is required"),
        ({"main_module": "main.py", "modules": {}}, r"WorkerCode\.modules: must be a non-empty"),
        (
            {"main_module": "app.py", "modules": {"main.py": SRC}},
            r"WorkerCode\.main_module: 'app\.py' is not one of the modules \['main\.py'\]",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC}, "mainModule": "main.py"},
            r"WorkerCode\.main_module: given twice",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC}, "bogus": 1},
            r"WorkerCode\.bogus: unknown field",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": 3}},
            r"WorkerCode\.modules\['main\.py'\]: must be a source string",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC, "a.txt": "text"}},
            r"WorkerCode\.modules\['a\.txt'\]: a bare source string needs a '\.py' name",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC, "x.py": {"py": 1}}},
            r"WorkerCode\.modules\['x\.py'\]\.py: must be a str, got int",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC, "x.py": {"py": "", "text": ""}}},
            r"exactly one of the keys",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC, "x.bin": {"data": "str"}}},
            r"WorkerCode\.modules\['x\.bin'\]\.data: must be bytes, got str",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC, "x.json": {"json": {1j}}}},
            r"WorkerCode\.modules\['x\.json'\]\.json: is not a JSON value",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC, "my-mod.py": ""}},
            r"WorkerCode\.modules\['my-mod\.py'\]: a module name must be a path of Python "
            r"identifiers",
        ),
        (
            {
                "main_module": "main.py",
                "modules": {"main.py": SRC, "a.txt": {"text": "x"}, "a.json": {"json": 1}},
            },
            r"imports as 'a', like 'a\.txt'",
        ),
        (
            {"main_module": "t.txt", "modules": {"main.py": SRC, "t.txt": {"text": "x"}}},
            r"WorkerCode\.main_module: 't\.txt' is not a Python module",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC}, "compatibility_date": "soon"},
            r"WorkerCode\.compatibility_date: must be a 'YYYY-MM-DD' string, got 'soon'",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC}, "compatibility_flags": "x"},
            r"WorkerCode\.compatibility_flags: must be a list of strings",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC}, "env": [1]},
            r"WorkerCode\.env: must be a dict, got list",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC}, "globalOutbound": 5},
            r"WorkerCode\.global_outbound: must be omitted, None, or a binding with a fetch\(\)",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC}, "limits": {"cpu_ms": -1}},
            r"WorkerCode\.limits\.cpu_ms: must be a positive integer, got -1",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC}, "limits": {"gpu": 1}},
            r"WorkerCode\.limits\.gpu: unknown limit",
        ),
        (
            {"main_module": "main.py", "modules": {"main.py": SRC}, "limits": 5},
            r"WorkerCode\.limits: must be a dict, got int",
        ),
    ],
)
def test_bad_fields_name_the_field(value: Any, message: str) -> None:
    with pytest.raises(WorkerCodeError, match=message) as info:
        WorkerCode.from_value(value)
    assert isinstance(info.value, ConfigurationError)
