"""`rlvr eval --task-option KEY=VALUE`: scoring options of the tasks that accept them.

An option is a keyword of a task's `with_options` that the task lists in `eval_options` (one that acts
through `extract`, so the verifier pool honours it), e.g. `answer_mode=any_boxed` for the math tasks
(BBG's any-box scoring). The value is read as YAML (`fallback=true`). `EvalConfig.task_options` holds
them per task; run.json records them under `tasks.<task>.options`, so a resume or a merge with other
options is refused.
"""

from __future__ import annotations

import typing
from typing import Any

from rlvr.harness.config import _convert, yaml_load
from rlvr.harness.errors import UserError
from rlvr.tasks.base import Task

from rlvr import tasks as task_registry

FLAG = "--task-option"


def parse_task_options(items: list[str], task_names: list[str]) -> dict[str, dict[str, Any]]:
    """`KEY=VALUE` items -> {task: {key: value}} for each task among `task_names` that accepts KEY;
    UserError when an item is malformed, no task accepts its key, or a value is invalid."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"{FLAG} {item!r}: expected KEY=VALUE, e.g. answer_mode=any_boxed")
        try:
            value = yaml_load(raw)
        except yaml.YAMLError:
            raise UserError(f"{FLAG} {item!r}: the value is not valid YAML") from None
        hits = [t for t in task_names if key in task_registry.get(t).eval_options]
        if not hits:
            offered = sorted({o for t in task_names for o in task_registry.get(t).eval_options})
            raise UserError(f"{FLAG} {key}: no task among --tasks accepts it (they accept: "
                            f"{', '.join(offered) or 'none'})")
        for t in hits:
            out.setdefault(t, {})[key] = value
    for t, options in out.items():
        configured_task(t, options)   # check the values now, before a model is loaded
    return out


def configured_task(name: str, options: dict[str, Any] | None) -> Task:
    """The registered task `name`, or its `with_options(**options)` copy; UserError naming the flag when
    the task does not accept an option or a value is invalid."""
    task = task_registry.get(name)
    if not options:
        return task
    hints = typing.get_type_hints(type(task).with_options)
    checked = {}
    for key, value in options.items():
        if key not in task.eval_options:
            raise UserError(f"{FLAG} {key}: task {name} does not accept it (it accepts: "
                            f"{', '.join(task.eval_options) or 'none'})")
        try:
            checked[key] = _convert(value, hints[key], key)
        except UserError as e:
            raise UserError(f"{FLAG}: task {name}: {e}") from None
    try:
        return task.with_options(**checked)
    except UserError as e:
        raise UserError(f"{FLAG}: {e}") from None
