#!/usr/bin/env bash
# Install what tripflow needs and is missing: Java 17, Maven, PostgreSQL 15 + PostGIS 3, Redis
# (the Celery executor's broker), npm and Chromium (the web page's libraries come from npm;
# its browser test drives Chromium), uv, the locked Python environment, the web page's
# libraries, the Hadoop jars of the local HDFS, the S3A jars, the local S3 server and the
# Kafka jars. Idempotent, and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || missing+=(postgresql-15-postgis-3)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
scripts/apt-install.sh setup ${missing[@]+"${missing[@]}"}

if ! command -v uv >/dev/null 2>&1; then
  echo "setup: installing uv"
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
# --frozen: the environment is exactly uv.lock; quick no-op when already in sync.
uv sync --frozen --quiet
# Leaflet and uPlot, pinned versions from npm, into the package's static files.
scripts/vendor-web.sh
# The NameNode and DataNode jars (Hadoop 3.5.0, pyspark's client version), cached once.
scripts/fetch-hadoop.sh
# Hadoop's S3A and a slim AWS SDK (Spark on an s3:// lake), cached once.
scripts/fetch-s3a.sh
# The local S3 server of an s3:// lake (versitygw, built once with Go).
scripts/fetch-versitygw.sh
# The Kafka broker of the lake's bucket events (Kafka 4.1, KRaft), cached once.
scripts/fetch-kafka.sh
