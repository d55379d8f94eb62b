"""Bucket events that start the DAG: S3 notifications ("Records") read from a durable queue.

The triggerer calls `landed_files` on each message (an AssetWatcher's filter): a message
naming a complete file created in the landing dir becomes an asset event, and so a DAG run;
any other message (a delete, the processed/ or trusted/ areas, a half-written name) is
passed over. AWS names events `ObjectCreated:Put`; versitygw, as MinIO, `s3:ObjectCreated:Put`:
both are accepted."""

from __future__ import annotations

import json
import posixpath
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from tripflow.lake import LANDING, is_in_flight

CREATED = "ObjectCreated:"


def landing_prefix(lake_url: str) -> tuple[str, str]:
    """Return the bucket and the key prefix of an s3:// lake's landing dir."""
    parts = urlsplit(lake_url)
    root = parts.path.strip("/")
    return parts.netloc, posixpath.join(root, LANDING) + "/" if root else LANDING + "/"


def created_keys(document: Any, bucket: str, prefix: str) -> list[str]:
    """Return the keys of complete files created directly under `prefix` in `bucket` that an
    S3 event document names (none for anything else, or for a document of another shape)."""
    if not isinstance(document, dict) or not isinstance(document.get("Records"), list):
        return []
    keys = []
    for record in document["Records"]:
        if not isinstance(record, dict):
            continue
        name = str(record.get("eventName", "")).removeprefix("s3:")
        s3 = record.get("s3") if isinstance(record.get("s3"), dict) else {}
        found_bucket = (s3.get("bucket") or {}).get("name") if isinstance(s3, dict) else None
        raw_key = (s3.get("object") or {}).get("key") if isinstance(s3, dict) else None
        if not name.startswith(CREATED) or found_bucket != bucket or not isinstance(raw_key, str):
            continue
        # AWS URL-encodes keys in notifications (a space is "+"); versitygw does not.
        for key in dict.fromkeys((raw_key, unquote_plus(raw_key))):
            relative = key[len(prefix) :] if key.startswith(prefix) else ""
            if relative and "/" not in relative and not is_in_flight(relative):
                keys.append(key)
                break
    return keys


def landed_files(message: Any, lake_url: str) -> str | None:
    """Turn a queue message into an asset event's payload (JSON: the bucket and the keys of
    the files that landed), or None to pass over it. Called by the triggerer."""
    value = message.value() if hasattr(message, "value") else message
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    try:
        document = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    bucket, prefix = landing_prefix(lake_url)
    keys = created_keys(document, bucket, prefix)
    if not keys:
        return None
    return json.dumps({"bucket": bucket, "keys": keys})
