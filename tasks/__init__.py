"""Task registry: `tasks.get(name)`, `tasks.available()`, suites (`math6`, `logic2`, `code2`, `all10`).

A task is registered by decorating its class with `@register`; the modules that define tasks are
imported lazily by `_load_all()` so that `import tasks` stays cheap.
"""

from __future__ import annotations

import importlib

from rlvr.tasks.base import HubSource, Problem, Task, Verdict
from rlvr.tasks.errors import UserError

__all__ = ["HubSource", "Problem", "Task", "Verdict", "register", "get", "available", "expand", "SUITES"]

_REGISTRY: dict[str, Task] = {}

# Modules that hold task definitions; each registers its tasks on import.
_TASK_MODULES: tuple[str, ...] = ("rlvr.tasks.math", "rlvr.tasks.bbh", "rlvr.tasks.synlogic", "rlvr.tasks.reasoning_gym_tasks",
                                  "rlvr.tasks.code", "rlvr.tasks.micro")

SUITES: dict[str, tuple[str, ...]] = {
    "math6": ("aime24", "aime25", "amc23", "math500", "minerva_math", "olympiadbench"),
    "logic2": ("synlogic_easy", "bbh"),
    "code2": ("humaneval_plus", "livecodebench"),
}
SUITES["all10"] = SUITES["math6"] + SUITES["logic2"] + SUITES["code2"]


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: instantiate and register a task under `cls.name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        raise ValueError(f"task {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def _load_all() -> None:
    for mod in _TASK_MODULES:
        importlib.import_module(mod)


def available() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> Task:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}; "
                        f"suites: {', '.join(SUITES)}") from None


def expand(spec: str | list[str]) -> list[str]:
    """Expand a comma-separated list of task and suite names, keeping order, dropping repeats."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        names = SUITES.get(item, (item,))
        for n in names:
            get(n)  # validates
            if n not in out:
                out.append(n)
    if not out:
        raise UserError("--tasks: no task given")
    return out
