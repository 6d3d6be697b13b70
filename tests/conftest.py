import os

# TF 2.16 + TFX 1.16 need tf.keras 2; must be set before TensorFlow is imported anywhere.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every `twinpipe run` with a report measures serving_load (infra/load_test.py): in tests, as a
# small load test (about 1 s or 40 requests per level) -- the figures, not the demo's duration.
os.environ.setdefault("TWINPIPE_SERVING_LOAD_S", "1")
os.environ.setdefault("TWINPIPE_SERVING_LOAD_REQUESTS", "40")

import itertools  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402

_bucket_seq = itertools.count()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """One GCS JSON-API emulator (tests/gcs_emulator.py) on a free loopback port for the session;
    tests get their own bucket from ``gcs_bucket``, so no test sees another's objects."""
    from tests.gcs_emulator import GcsEmulator

    with GcsEmulator(tmp_path_factory.mktemp("gcs") / "data") as emu:
        yield emu


@pytest.fixture
def gcs_bucket(gcs_emulator, monkeypatch):
    """``gs://<fresh bucket>`` on the emulator, with ``STORAGE_EMULATOR_HOST`` set for this
    process and every child it starts (the environment is inherited)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.host)
    return gcs_emulator.bucket(f"t{next(_bucket_seq)}-{uuid.uuid4().hex[:10]}")
