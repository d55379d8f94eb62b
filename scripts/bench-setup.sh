#!/usr/bin/env bash
# What the benchmarks need beyond `make setup`: the PostgreSQL JDBC driver (the seed's
# Spark-over-JDBC path) and wrk (the API load generator). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
scripts/apt-install.sh bench-setup ${missing[@]+"${missing[@]}"}
