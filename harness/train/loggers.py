"""Experiment trackers for `rlvr train`, beside the JSON-lines log that is always written (OUT/train_log.jsonl).

`loggers:` in the training config lists them: `jsonl` (the default, always on), `tensorboard` (OUT/tensorboard),
`wandb` (Weights & Biases) and `trackio` (Hugging Face's local-first tracker). Each gets every numeric field of
each step's JSON line under the same tag (`train/reward_mean`, `method/pg_clipfrac`, `time/time_step_s`, at the
step of the line) and, for wandb and trackio, the run's config (train.json's `config` and `method`). The packages
are optional extras (`pip install 'rlvr-harness[wandb]'`, `[trackio]`, `[tensorboard]`), imported only when
listed; a missing one is a one-line config error before the model loads.

Where the data go is the tracker's own business, set by its environment variables: wandb's WANDB_MODE=offline
(files under OUT/wandb, uploaded later with `wandb sync`), WANDB_PROJECT, WANDB_ENTITY; trackio's TRACKIO_DIR
(its local store, default ~/.cache/huggingface/trackio) or TRACKIO_SPACE_ID. The project is the config's
`project` (default "rlvr"), the run name its `label` or the name of OUT.

Resuming: the wandb run is resumed under the id kept in OUT/wandb_run_id, the trackio run under its name, and
TensorBoard purges the events past the resumed step. Steps done again after a resume from an earlier checkpoint
are logged again; wandb keeps the values it received first for a step it has seen (train_log.jsonl holds the
steps of the resumed run, the discarded ones in train_log.discarded.jsonl).
"""

from __future__ import annotations

import importlib.util
import json
import secrets
from pathlib import Path
from typing import Any

from rlvr.harness.errors import UserError

LOGGERS = ("jsonl", "tensorboard", "wandb", "trackio")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


def installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):      # ValueError: a module whose import was blocked (sys.modules[name] is None)
        return False


def missing_error(name: str) -> UserError:
    return UserError(f"field 'loggers': {name!r} needs the {PACKAGES[name]} package "
                     f"(pip install 'rlvr-harness[{name}]')")


def check_loggers(names: list[str]) -> None:
    """Known names whose packages are installed; else a one-line error naming the field."""
    unknown = sorted(set(names) - set(LOGGERS))
    if unknown:
        raise UserError(f"field 'loggers': unknown logger {unknown[0]!r} (known: {', '.join(LOGGERS)})")
    for name in names:
        if name in PACKAGES and not installed(PACKAGES[name]):
            raise missing_error(name)


def tag(key: str) -> str:
    """The tracker tag of a JSON-line field: method stats keep their `method/` prefix, timings go under time/."""
    return key if "/" in key else ("time/" + key if key.startswith("time_") else "train/" + key)


def scalars(record: dict) -> dict[str, float]:
    """The numeric fields of one step's JSON line, by tag (the step itself is the x axis, not a value)."""
    return {tag(k): v for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoard:
    def __init__(self, out: Path, resume_step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise missing_error("tensorboard") from None
        # purge_step: events at or past it (from steps a resume does again) are dropped from the view
        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Wandb:
    def __init__(self, out: Path, project: str, name: str, config: dict):
        try:
            import wandb
        except ImportError:
            raise missing_error("wandb") from None
        id_file = out / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(6)
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=project, name=name, id=run_id, resume="allow", config=config, dir=str(out))

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class Trackio:
    def __init__(self, project: str, name: str, config: dict):
        try:
            import trackio
        except ImportError:
            raise missing_error("trackio") from None
        self.run = trackio.init(project=project, name=name, config=config, resume="allow", embed=False,
                                auto_log_gpu=False, auto_log_cpu=False)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class Trackers:
    """The trackers `loggers` lists besides jsonl, opened at the first logged step (a resume with nothing
    left to train opens none) and closed by `close`."""

    def __init__(self, names: list[str], out: Path, project: str, name: str, config: dict, resume_step: int):
        self.names = [n for n in names if n != "jsonl"]
        self.out, self.project, self.name = out, project, name
        self.config = json.loads(json.dumps(config, default=str))
        self.resume_step = resume_step
        self.open: list[Any] | None = None

    def log(self, record: dict) -> None:
        if not self.names:
            return
        if self.open is None:
            self.open = []
            for n in self.names:
                self.open.append(TensorBoard(self.out, self.resume_step) if n == "tensorboard"
                                 else Wandb(self.out, self.project, self.name, self.config) if n == "wandb"
                                 else Trackio(self.project, self.name, self.config))
        values = scalars(record)
        for t in self.open:
            t.log(int(record["step"]), values)

    def close(self) -> None:
        for t in self.open or []:
            t.close()
        self.open = None
