"""Finding a task's data: a local directory first, then the Hugging Face hub.

Local layout (the same as `shared/data/`): `<data_dir>/<task.local_dir>/test.jsonl`. The data
directory comes from the `--data-dir` flag or the `RLVR_DATA_DIR` environment variable. Benchmark
files are never committed to this repository.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rlvr.tasks.errors import UserError

if TYPE_CHECKING:
    from rlvr.tasks.base import Task

DATA_DIR_ENV = "RLVR_DATA_DIR"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The explicit argument wins; otherwise `$RLVR_DATA_DIR`; otherwise None (hub only)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
    return rows


def local_file(task: Task, data_dir: str | Path | None, filename: str = "test.jsonl") -> Path | None:
    root = resolve_data_dir(data_dir)
    if root is None or not task.local_dir:
        return None
    path = root / task.local_dir / filename
    return path if path.is_file() else None


def load_records(task: Task, data_dir: str | Path | None = None,
                 filename: str = "test.jsonl") -> tuple[list[dict], dict[str, Any]]:
    """Return (rows, source) where source is the provenance recorded in run.json."""
    path = local_file(task, data_dir, filename)
    if path is not None:
        return read_jsonl(path), {"kind": "local", "path": str(path.resolve()), "sha256": sha256_file(path)}
    if task.hub is not None:
        try:
            return _load_hub(task)
        except UserError:
            raise
        except Exception as e:  # no network, unknown id, missing `datasets`: say where else to look
            root = resolve_data_dir(data_dir)
            where = f"{root / task.local_dir / filename}" if root else f"--data-dir / ${DATA_DIR_ENV} (unset)"
            raise UserError(
                f"task {task.name}: no local data at {where}, and the hub dataset {task.hub.path}"
                f"{'/' + task.hub.name if task.hub.name else ''} could not be loaded "
                f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                f"pass --data-dir DIR holding {task.local_dir}/{filename}, or give this machine hub access"
            ) from None
    root = resolve_data_dir(data_dir)
    where = f"{root / task.local_dir / filename}" if root else f"--data-dir / ${DATA_DIR_ENV} (unset)"
    raise UserError(f"task {task.name}: no local data at {where}, and the task has no hub source")


def hub_kwargs(task: Task) -> dict[str, Any]:
    """The exact arguments given to `datasets.load_dataset` (tested without network)."""
    assert task.hub is not None
    files = getattr(task, "hub_data_files", None)
    if files:   # plain files of the repository, read by the json builder (no loading script)
        repo = task.hub.path + (f"@{task.hub.revision}" if task.hub.revision else "")
        return {"path": "json", "data_files": [f"hf://datasets/{repo}/{f}" for f in files], "split": "train"}
    kwargs: dict[str, Any] = {"path": task.hub.path, "split": task.hub.split}
    if task.hub.name:
        kwargs["name"] = task.hub.name
    if task.hub.revision:
        kwargs["revision"] = task.hub.revision
    kwargs.update(getattr(task, "hub_extra_kwargs", {}))
    return kwargs


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connect. Without it, `from_pretrained` retries a
    hub id for about half a minute per file before it looks in the local cache. False when
    HF_HUB_OFFLINE is set; True (not probed) behind a proxy, where a direct connect proves nothing."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    proxies = urllib.request.getproxies()       # the environment's, and the system's on macOS and Windows
    if proxies.get("https") or proxies.get("all"):
        return True
    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout_s).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def hub_or_local_cache():
    """Around `datasets.load_dataset`. When the hub cannot be reached and `datasets` is not offline already
    (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE), the call runs in offline mode: `datasets` reads its local cache at
    once, where it would retry the hub for about half a minute first, and a dataset the cache lacks fails at
    once, saying so."""
    import datasets
    from huggingface_hub import constants

    if datasets.config.HF_HUB_OFFLINE or hub_reachable():
        yield
        return
    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    except Exception as e:
        raise ConnectionError(f"the hub is not reachable from here, and datasets' local cache does not hold it "
                              f"({type(e).__name__})") from None
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _load_hub(task: Task) -> tuple[list[dict], dict[str, Any]]:
    import datasets  # heavy; only when the hub is really used

    kwargs = hub_kwargs(task)
    with hub_or_local_cache():
        ds = datasets.load_dataset(**kwargs)
    rows = [dict(r) for r in ds]
    fingerprint = getattr(ds, "_fingerprint", None)
    return rows, {"kind": "hub", **{k: v for k, v in kwargs.items()}, "fingerprint": fingerprint}
