import os
from pathlib import Path

import pytest

DATA_DIR = Path(os.environ.get("RLVR_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "aime24" / "test.jsonl").exists():
        pytest.skip(f"benchmark data not found at {DATA_DIR} (set RLVR_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A small randomly initialised model in HF format, built offline once per test session."""
    from rlvr.harness.sample.models import TinyModelSpec, init_model

    return init_model(tmp_path_factory.mktemp("models") / "tiny", TinyModelSpec(hidden_size=32, num_layers=1))
