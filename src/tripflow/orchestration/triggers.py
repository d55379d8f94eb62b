"""A trigger that waits, in Airflow's triggerer, for complete files in the lake's landing dir."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from tripflow.config import Settings
from tripflow.lake import LANDING, Lake, file_sizes, open_lake, stable_files


class LandingFilesTrigger(BaseTrigger):
    """Fire once files in a lake directory kept the same size over two consecutive polls.

    The lake already leaves out hidden, `_COPYING_` and `.tmp` files; the size check also
    covers writers that grow a file in place. Any fsspec URL works (file://, hdfs://, s3://).
    """

    def __init__(
        self,
        lake_url: str | None = None,
        poll_seconds: float = 5.0,
        directory: str = LANDING,
        lake_options: dict[str, Any] | None = None,
    ) -> None:
        # Airflow's own signatures here carry no annotations.
        super().__init__()  # type: ignore[no-untyped-call]
        self.lake_url = lake_url
        self.poll_seconds = poll_seconds
        self.directory = directory
        # Storage options of the lake (WebHDFS port and user); never secrets, which would
        # be stored with the serialized trigger.
        self.lake_options = lake_options or {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and arguments that rebuild this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "lake_url": self.lake_url,
                "poll_seconds": self.poll_seconds,
                "directory": self.directory,
                "lake_options": self.lake_options,
            },
        )

    def _open_lake(self) -> Lake:
        if self.lake_url is None:
            # Read in the triggerer when the trigger (re)starts, not stored with it: a
            # deferred sensor then follows a lake moved by `tripflow up` with new settings.
            return open_lake(Settings())
        return Lake(self.lake_url, **self.lake_options)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the directory until some files are stable; yield them once, sorted by path."""
        # fsspec calls block (and HDFS/S3 ones wait on the network): keep them off the
        # triggerer's event loop, which every other deferred task shares.
        lake = await asyncio.to_thread(self._open_lake)
        previous: dict[str, int] | None = None
        while True:
            current = await asyncio.to_thread(file_sizes, lake, self.directory)
            ready = stable_files(previous, current) if previous is not None else []
            if ready:
                self.log.info("%d complete file(s) in %s", len(ready), lake.uri(self.directory))
                files = [{"path": path, "size": current[path]} for path in ready]
                yield TriggerEvent({"files": files})  # type: ignore[no-untyped-call]
                return
            previous = current
            await asyncio.sleep(self.poll_seconds)
