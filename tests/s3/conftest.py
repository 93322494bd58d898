"""The ``serve_s3`` fixture (helpers in ``s3kit.py``)."""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from s3kit import S3Served, ServeS3, in_process_storage


@pytest.fixture
def serve_s3(seaweed: Any) -> Iterator[ServeS3]:
    """Start ``fileferry serve s3://<bucket>/<fresh prefix> ARGS``; stopped at teardown."""
    started: list[S3Served] = []

    def start(*args: str, prefix: str | None = None, env: dict[str, str] | None = None) -> S3Served:
        served = S3Served(seaweed, prefix or f"e2e-{uuid.uuid4().hex[:10]}", args, env=env)
        started.append(served)
        return served.start()

    try:
        yield start
    finally:
        for served in started:
            with contextlib.suppress(Exception):
                served.stop(signal.SIGKILL)


@pytest.fixture
def s3(seaweed: Any) -> Iterator[Any]:
    """An ``S3Storage`` on a fresh prefix (``prefix_for_test``), in this process."""
    prefix = f"inproc-{uuid.uuid4().hex[:10]}"
    url = f"s3://{seaweed.bucket}/{prefix}"
    with in_process_storage(seaweed.env(), url, seaweed.ports["s3"]) as storage:
        storage.prefix_for_test = prefix
        yield storage
