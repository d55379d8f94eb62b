"""A deferrable sensor: wait, without holding a worker slot, for files in the landing dir."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from tripflow.config import Settings
from tripflow.lake import LANDING
from tripflow.orchestration.triggers import LandingFilesTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class LandingFilesSensor(BaseSensorOperator):
    """Defer at once to `LandingFilesTrigger`; finish with the paths of the ready files.

    The lake URL and the poll interval default to tripflow's settings, read when the task
    runs (TRIPFLOW_LAKE_URL, TRIPFLOW_SENSOR_POLL_SECONDS), so parsing the DAG reads nothing.
    """

    def __init__(
        self,
        *,
        lake_url: str | None = None,
        poll_seconds: float | None = None,
        directory: str = LANDING,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lake_url = lake_url
        self.poll_seconds = poll_seconds
        self.directory = directory

    def trigger(self) -> LandingFilesTrigger:
        """Build the trigger this sensor defers to."""
        poll_seconds = (
            Settings().sensor_poll_seconds if self.poll_seconds is None else self.poll_seconds
        )
        # Without an explicit lake, the trigger reads the settings' lake where it runs.
        return LandingFilesTrigger(self.lake_url, poll_seconds, self.directory)

    def execute(self, context: Context) -> None:
        """Hand the waiting to the triggerer straight away."""
        self.defer(
            trigger=self.trigger(),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[str]:
        """Return the paths the trigger found complete (pushed as the task's XCom)."""
        paths = [item["path"] for item in event["files"]]
        self.log.info("Ready in the landing dir: %s", ", ".join(paths))
        return paths
