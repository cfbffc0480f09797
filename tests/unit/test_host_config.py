"""Project configuration: JSONC and TOML parsing, and a clear message for every mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dynamic_workflows.core.tenancy import TenantPolicy
from dynamic_workflows.host import Project, ProjectConfigError, ProjectLoadError, load_config
from dynamic_workflows.host.jsonc import JSONCError, loads

ROOT = Path(__file__).parents[2]

ENTRY = """
from workers import WorkerEntrypoint, WorkflowEntrypoint, Response

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")

class Flow(WorkflowEntrypoint):
    async def run(self, event, step):
        return 1
"""


def project(
    tmp_path: Path, config: str, *, name: str = "wrangler.jsonc", entry: str = ENTRY
) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "entry.py").write_text(textwrap.dedent(entry))
    (tmp_path / name).write_text(textwrap.dedent(config))
    return tmp_path


def error(tmp_path: Path, config: str, **kwargs: str) -> ProjectConfigError:
    with pytest.raises(ProjectConfigError) as info:
        load_config(project(tmp_path, config, **kwargs))
    return info.value


# -- JSONC ----------------------------------------------------------------------------------------


def test_jsonc_comments_and_trailing_commas() -> None:
    text = """
    // a line comment
    {
      /* a block
         comment */ "a": "keeps // and /* inside strings */",
      "b": [1, 2, 3,],  // trailing comma in a list
      "c": {"d": "\\" escaped quote, // still a string",},
    }
    """
    assert loads(text) == {
        "a": "keeps // and /* inside strings */",
        "b": [1, 2, 3],
        "c": {"d": '" escaped quote, // still a string'},
    }


def test_jsonc_errors_point_at_the_original_line() -> None:
    with pytest.raises(JSONCError) as info:
        loads('{\n  // fine\n  "a": 1\n  "b": 2\n}')
    assert (info.value.line, info.value.column) == (4, 3)
    with pytest.raises(JSONCError, match="unterminated /\\* comment"):
        loads('{"a": 1} /* never closed')


# -- valid configurations -------------------------------------------------------------------------


def test_the_saas_example_config() -> None:
    config = load_config(ROOT / "examples" / "saas")
    assert config.name == "saas-dispatcher"
    assert config.main == (ROOT / "examples" / "saas" / "src" / "entry.py").resolve()
    assert config.compatibility_date == "2026-01-01"
    assert config.compatibility_flags == ("python_workers",)
    assert [lb.binding for lb in config.worker_loaders] == ["LOADER"]
    [wf] = config.workflows
    assert (wf.name, wf.binding, wf.class_name, wf.concurrency) == (
        "tenant-workflows",
        "WORKFLOWS",
        "TenantWorkflows",
        200,
    )
    assert config.tenant_defaults == TenantPolicy(
        max_running=20, max_live=10000, create_rate=20.0, create_burst=100, weight=1
    )
    assert config.fair is True
    assert config.unused == ()


def test_toml_config_and_vars_and_unused_fields(tmp_path: Path) -> None:
    config = load_config(
        project(
            tmp_path,
            """
            name = "shop"
            main = "src/entry.py"
            compatibility_date = "2026-01-01"
            account_id = "not used here"

            [[worker_loaders]]
            binding = "LOADER"

            [[workflows]]
            name = "orders"
            binding = "ORDERS"
            class_name = "Flow"

            [workflows.concurrency]
            limit = 10

            [dynamic_workflows]
            fair = false

            [dynamic_workflows.tenants]
            max_running = 5
            create_rate = 2.5

            [vars]
            GREETING = "hi"
            LIMITS = { max = 3 }
            """,
            name="wrangler.toml",
        )
    )
    assert config.path.name == "wrangler.toml"
    orders = config.workflow("orders")
    assert orders is not None
    assert orders.concurrency == 10
    assert config.tenant_defaults == TenantPolicy(max_running=5, create_rate=2.5)
    assert config.fair is False
    assert config.vars == {"GREETING": "hi", "LIMITS": {"max": 3}}
    assert config.unused == ("account_id",)


def test_name_defaults_to_the_folder_and_a_config_file_can_be_named(tmp_path: Path) -> None:
    folder = project(tmp_path, '{"main": "src/entry.py"}')
    assert load_config(folder).name == tmp_path.name
    assert load_config(folder / "wrangler.jsonc").name == tmp_path.name


def test_a_folder_with_several_config_files_uses_wranglers_order(tmp_path: Path) -> None:
    # wrangler's findWranglerConfig: wrangler.json, then wrangler.jsonc, then wrangler.toml, so
    # that dwf dev and wrangler dev read the same file of a folder.
    project(tmp_path, 'name = "from-toml"\nmain = "src/entry.py"\n', name="wrangler.toml")
    assert load_config(tmp_path).name == "from-toml"
    project(tmp_path, '{"name": "from-jsonc", "main": "src/entry.py",}', name="wrangler.jsonc")
    assert load_config(tmp_path).name == "from-jsonc"
    project(tmp_path, '{"name": "from-json", "main": "src/entry.py"}', name="wrangler.json")
    assert load_config(tmp_path).name == "from-json"


# -- every mistake: file, field, problem ----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field", "problem"),
    [
        ("{}", "main", "is required"),
        ('{"main": 3}', "main", "must be a non-empty string, got a number"),
        ('{"main": "src/index.ts"}', "main", "is not a Python module (.py)"),
        ('{"main": "src/nope.py"}', "main", "'src/nope.py' does not exist"),
        ('{"main": "src/entry.py", "name": ""}', "name", "must be a non-empty string"),
        (
            '{"main": "src/entry.py", "compatibility_date": "yesterday"}',
            "compatibility_date",
            'must be a "YYYY-MM-DD" string',
        ),
        (
            '{"main": "src/entry.py", "compatibility_flags": "python_workers"}',
            "compatibility_flags",
            "must be a list of strings",
        ),
        ('{"main": "src/entry.py", "workflows": {}}', "workflows", "must be a list, got an object"),
        ('{"main": "src/entry.py", "workflows": [1]}', "workflows[0]", "must be an object"),
        (
            '{"main": "src/entry.py", "workflows": [{"name": "a", "binding": "A"}]}',
            "workflows[0].class_name",
            "must be a non-empty string, got null",
        ),
        (
            '{"main": "src/entry.py", "workflows": [{"name": "a", "binding": "A", '
            '"class_name": "my-class"}]}',
            "workflows[0].class_name",
            "'my-class' is not a valid name",
        ),
        (
            '{"main": "src/entry.py", "workflows": [{"name": "-a", "binding": "A", '
            '"class_name": "Flow"}]}',
            "workflows[0].name",
            "must be 1-64 characters",
        ),
        (
            '{"main": "src/entry.py", "workflows": [{"name": "a", "binding": "A", '
            '"class_name": "Flow", "retries": 3}]}',
            "workflows[0]",
            "unknown field(s) retries",
        ),
        (
            '{"main": "src/entry.py", "workflows": [{"name": "a", "binding": "A", '
            '"class_name": "Flow", "script_name": "other-worker"}]}',
            "workflows[0].script_name",
            "workflows of another worker are not supported",
        ),
        (
            '{"main": "src/entry.py", "worker_loaders": [{"binding": "X"}], '
            '"workflows": [{"name": "a", "binding": "X", "class_name": "Flow"}]}',
            "workflows[0].binding",
            "'X' is already bound by worker_loaders[0].binding",
        ),
        (
            '{"main": "src/entry.py", "workflows": [{"name": "a", "binding": "A", '
            '"class_name": "Flow"}, {"name": "a", "binding": "B", "class_name": "Flow"}]}',
            "workflows[1].name",
            "'a' is already used by workflows[0]",
        ),
        (
            '{"main": "src/entry.py", "worker_loaders": [{"binding": "LOADER", "size": 1}]}',
            "worker_loaders[0]",
            "unknown field(s) size",
        ),
        ('{"main": "src/entry.py", "vars": []}', "vars", "must be an object, got a list"),
        (
            '{"main": "src/entry.py", "workflows": [{"name": "a", "binding": "A", '
            '"class_name": "Flow", "concurrency": {"limit": 0}}]}',
            "workflows[0].concurrency.limit",
            "must be a positive integer (instances running at once), got 0",
        ),
        (
            '{"main": "src/entry.py", "workflows": [{"name": "a", "binding": "A", '
            '"class_name": "Flow", "concurrency": 10}]}',
            "workflows[0].concurrency",
            'must be an object like {"limit": 10}',
        ),
        (
            '{"main": "src/entry.py", "dynamic_workflows": {"tenants": {"max_live": -1}}}',
            "dynamic_workflows.tenants.max_live",
            "must be an integer of at least 1, got -1",
        ),
        (
            '{"main": "src/entry.py", "dynamic_workflows": {"tenants": {"create_rate": 0}}}',
            "dynamic_workflows.tenants.create_rate",
            "must be a positive number (instances per second), got 0",
        ),
        (
            '{"main": "src/entry.py", "dynamic_workflows": {"tenants": {"speed": 1}}}',
            "dynamic_workflows.tenants",
            "unknown field(s) speed",
        ),
        (
            '{"main": "src/entry.py", "dynamic_workflows": {"fair": "yes"}}',
            "dynamic_workflows.fair",
            "must be true or false",
        ),
    ],
)
def test_config_errors_name_the_file_the_field_and_the_problem(
    tmp_path: Path, config: str, field: str, problem: str
) -> None:
    exc = error(tmp_path, config)
    assert exc.file.endswith("wrangler.jsonc")
    assert exc.field == field
    assert problem in exc.problem
    assert str(exc).startswith(f"{exc.file}: {field}: ")


def test_syntax_errors_give_the_position(tmp_path: Path) -> None:
    exc = error(tmp_path, '{\n  "main": "src/entry.py"\n  "name": "x"\n}')
    assert "wrangler.jsonc" in str(exc)
    assert "invalid JSONC: line 3 column 3: Expecting ',' delimiter" in str(exc)
    (tmp_path / "t").mkdir()
    exc = error(tmp_path / "t", 'main = "src/entry.py"\nname = \n', name="wrangler.toml")
    assert "wrangler.toml" in str(exc)
    assert "invalid TOML" in str(exc)
    assert "line 2" in str(exc)
    (tmp_path / "j").mkdir()
    exc = error(tmp_path / "j", "[1, 2]", name="wrangler.json")
    assert "must hold an object, not a list" in str(exc)


def test_a_folder_without_a_config(tmp_path: Path) -> None:
    with pytest.raises(
        ProjectConfigError, match=r"no wrangler.json, wrangler.jsonc or wrangler\.toml"
    ):
        load_config(tmp_path)
    with pytest.raises(ProjectConfigError, match="no such file or folder"):
        load_config(tmp_path / "missing")


# -- what main must export ------------------------------------------------------------------------

WORKFLOW_CONFIG = """
{"main": "src/entry.py",
 "workflows": [{"name": "flow", "binding": "FLOW", "class_name": "Flow"}]}
"""


def load_project(folder: Path) -> Project:
    return Project(load_config(folder), storage_url="memory://", loader_mode="in-process")


def test_main_that_fails_to_import_shows_only_the_project_frames(tmp_path: Path) -> None:
    folder = project(tmp_path, WORKFLOW_CONFIG, entry="import helper\n")
    (folder / "src" / "helper.py").write_text("x = 1\ny = undefined_name\n")
    with pytest.raises(ProjectLoadError) as info:
        load_project(folder)
    message = str(info.value)
    assert "src/entry.py" in message
    assert "failed to import" in message
    assert 'helper.py", line 2' in message
    assert "NameError: name 'undefined_name' is not defined" in message
    assert "dynamic_workflows" not in message.split("failed to import")[1]


def test_main_without_default_or_without_the_workflow_class(tmp_path: Path) -> None:
    folder = project(tmp_path, WORKFLOW_CONFIG, entry="x = 1\n")
    with pytest.raises(ProjectLoadError, match=r"must export `class Default\(WorkerEntrypoint\)`"):
        load_project(folder)
    no_flow = ENTRY.replace("class Flow", "class Other")
    folder = project(tmp_path, WORKFLOW_CONFIG, entry=no_flow)
    with pytest.raises(ProjectLoadError, match=r"workflows\[0\]\.class_name: .* exports no 'Flow'"):
        load_project(folder)


def test_modules_beside_main_import_by_plain_name_without_touching_sys_modules(
    tmp_path: Path,
) -> None:
    import sys

    entry = (
        ENTRY + "\nfrom tenants import NAMES\nfrom lib.util import twice\nVALUE = twice(NAMES)\n"
    )
    folder = project(tmp_path, WORKFLOW_CONFIG, entry=entry)
    (folder / "src" / "tenants.py").write_text("NAMES = ['a']\n")
    (folder / "src" / "lib").mkdir()
    (folder / "src" / "lib" / "__init__.py").write_text("")
    (folder / "src" / "lib" / "util.py").write_text(
        "from .more import factor\n\ndef twice(x):\n    return x * factor\n"
    )
    (folder / "src" / "lib" / "more.py").write_text("factor = 2\n")
    loaded = load_project(folder)
    main = loaded.modules.load("entry")
    assert main.VALUE == ["a", "a"]
    assert "tenants" not in sys.modules
    assert "entry" not in sys.modules
    assert sys.modules[f"{loaded.modules.prefix}.tenants"].NAMES == ["a"]
    loaded.modules.close()
    assert f"{loaded.modules.prefix}.tenants" not in sys.modules


# -- schedules and retention ----------------------------------------------------------------------


def test_schedules_and_retention_of_a_workflow_and_of_the_project(tmp_path: Path) -> None:
    from dynamic_workflows.core.retention import Retention

    config = load_config(
        project(
            tmp_path,
            """{
              "main": "src/entry.py",
              "retention": {"errorRetention": "30 days"},
              "workflows": [
                {"name": "a", "binding": "A", "class_name": "Flow", "schedules": "*/5 * * * *",
                 "retention": {"successRetention": 3600000}},
                {"name": "b", "binding": "B", "class_name": "Flow",
                 "schedules": ["0 * * * *", "30 2 * * MON"]},
                {"name": "c", "binding": "C", "class_name": "Flow"}
              ]
            }""",
        )
    )
    a, b, c = config.workflows
    assert a.schedules == ("*/5 * * * *",)
    assert a.retention == Retention(success=3600.0)
    assert b.schedules == ("0 * * * *", "30 2 * * MON")
    assert b.retention is None
    assert c.schedules == ()
    assert c.retention is None
    assert config.retention == Retention(error=30 * 86400.0)
    assert "retention" not in config.unused


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('"schedules": "61 * * * *"', "workflows[0].schedules: '61 * * * *' is not a valid cron"),
        ('"schedules": ["* * * * *", "* *"]', "workflows[0].schedules[1]: '* *' has 2 field(s)"),
        ('"schedules": 5', "workflows[0].schedules: must be a cron expression or a list"),
        ('"retention": {"successRetention": "soon"}', "workflows[0].retention.successRetention"),
        ('"retention": {"keep": 1}', "workflows[0].retention: unknown field(s) keep"),
    ],
)
def test_a_bad_schedule_or_retention_names_the_file_and_the_field(
    tmp_path: Path, entry: str, message: str
) -> None:
    exc = error(
        tmp_path,
        '{"main": "src/entry.py", "workflows": [{"name": "a", "binding": "A", '
        f'"class_name": "Flow", {entry}}}]}}',
    )
    assert str(exc).startswith("wrangler.jsonc: ") or "wrangler.jsonc" in str(exc)
    assert message in str(exc)


def test_a_schedule_on_a_dynamic_workflow_entrypoint_is_refused_at_load(tmp_path: Path) -> None:
    entry = ENTRY + (
        "\nfrom dynamic_workflows import create_dynamic_workflow_entrypoint\n"
        "Dyn = create_dynamic_workflow_entrypoint(lambda args: None)\n"
    )
    config = """{"main": "src/entry.py", "workflows": [
        {"name": "d", "binding": "D", "class_name": "Dyn", "schedules": "* * * * *"}]}"""
    with pytest.raises(ProjectLoadError, match=r"workflows\[0\]\.schedules: 'Dyn' is a dynamic"):
        load_project(project(tmp_path, config, entry=entry))
    # Its own class may be scheduled.
    config = config.replace('"Dyn"', '"Flow"')
    loaded = load_project(project(tmp_path, config, entry=entry))
    assert loaded.engine.triggers.schedules == {"d": ("* * * * *",)}
    loaded.modules.close()
