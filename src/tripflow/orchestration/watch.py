"""The asset whose events start the DAG when the lake sends bucket events: the landing dir,
watched on the triggerer through the events' queue (TRIPFLOW_EVENTS_URL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tripflow.lake import LANDING

if TYPE_CHECKING:
    from airflow.sdk import Asset

    from tripflow.config import Settings

ASSET_NAME = "tripflow_landing"
WATCHER_NAME = "tripflow_bucket_events"
# The Airflow connection the Kafka trigger consumes with (`airflow_environment` sets it).
KAFKA_CONN_ID = "kafka_default"


def landing_asset(settings: Settings) -> Asset:
    """Return the landing dir as an asset with a watcher on the events' Kafka topic."""
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
    from airflow.sdk import Asset, AssetWatcher

    if settings.events is None:
        raise ValueError("TRIPFLOW_EVENTS_URL is not set: the landing dir has no events")
    _broker, topic = settings.events
    trigger = MessageQueueTrigger(
        scheme="kafka",
        topics=[topic],
        kafka_config_id=KAFKA_CONN_ID,
        # Runs on the triggerer for every message: an upload into the landing dir becomes an
        # asset event, anything else is passed over.
        apply_function="tripflow.orchestration.events.landed_files",
        apply_function_kwargs={"lake_url": settings.lake_root},
        # Waits this long for a message when the topic is quiet.
        poll_timeout=1,
        # Sleeps this long after each message passed over. Every object the lake writes is
        # an event (Spark's output, archive moves: dozens per batch), and at 0.5 s each the
        # next upload's event waited ~13 s behind the previous batch's.
        poll_interval=0,
    )
    return Asset(
        name=ASSET_NAME,
        uri=f"{settings.lake_root}/{LANDING}/",
        watchers=[AssetWatcher(name=WATCHER_NAME, trigger=trigger)],
    )
