"""The host: a wrangler-style project folder served over HTTP (``dwf dev``, ``dwf serve``).

The flow, from the folder to a request::

    config.load_config(DIR)           wrangler.jsonc / wrangler.json / wrangler.toml, checked
    project.Project(config, ...)      main module (sources.py), Engine, Worker Loaders, env
    live.LiveProject                  the running project, swapped on reload (dev)
    app.HostApp                       ASGI: dispatcher fetch | admin API | dashboard | metrics
        convert.py                    Starlette request -> workers.Request -> Response back
        admin.py                      wrangler's local explorer API for Workflows (+ tenants.py:
                                      who owns an instance, each tenant's usage)
        dashboard/                    the run viewer: a front end over the admin API
        metrics.py
    server.run_listeners              uvicorn, signals, graceful stop
    client.AdminClient                the admin API from the command line (dwf workflows ...)

Errors (both are :class:`~dynamic_workflows.errors.ConfigurationError`)::

    ProjectConfigError     the config file: names the file, the field and the problem
    ProjectLoadError       main fails to import, or lacks Default or a workflow's class_name
"""

from __future__ import annotations

from .app import create_admin_app, create_dev_app, create_public_app
from .config import ProjectConfig, ProjectConfigError, load_config
from .live import LiveProject
from .metrics import HostMetrics
from .project import LoaderMode, Project, ProjectLoadError

__all__ = [
    "HostMetrics",
    "LiveProject",
    "LoaderMode",
    "Project",
    "ProjectConfig",
    "ProjectConfigError",
    "ProjectLoadError",
    "create_admin_app",
    "create_dev_app",
    "create_public_app",
    "load_config",
]
