#!/usr/bin/env bash
# Fetch the Apache Kafka jars a single-node KRaft broker (broker and controller in one JVM)
# runs from into a cache directory, resolved by Maven from kafka/pom.xml. Idempotent: a
# complete cache (marked by a file written last, naming the pom it came from) returns at once.
#
#   TRIPFLOW_KAFKA_JARS  where the jars go
#                        (default ${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/kafka-4.1.2/jars)
set -euo pipefail
cd "$(dirname "$0")/.."

KAFKA_VERSION=4.1.2
POM=kafka/pom.xml
JARS="${TRIPFLOW_KAFKA_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/kafka-${KAFKA_VERSION}/jars}"
MARKER="$JARS/.complete"
# The marker records the pom's checksum: a changed pom (another version, another jar) refetches.
WANT="$(sha256sum "$POM" | cut -d' ' -f1)"

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$WANT" ]; then
  exit 0
fi
command -v mvn >/dev/null 2>&1 || { echo "fetch-kafka: mvn not found (apt-get install maven)" >&2; exit 1; }

# Copy into a sibling directory, then swap it in: an interrupted fetch never leaves a cache
# that looks complete.
parent="$(dirname "$JARS")"
mkdir -p "$parent"
staging="$(mktemp -d "$parent/.jars.XXXXXX")"
trap 'rm -rf "$staging" "$staging.log"' EXIT

echo "fetch-kafka: resolving Kafka ${KAFKA_VERSION} jars with Maven into $JARS"
if ! mvn --batch-mode -f "$POM" \
  org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$staging" >"$staging.log" 2>&1; then
  tail -40 "$staging.log" >&2
  echo "fetch-kafka: Maven could not resolve $POM" >&2
  exit 1
fi
rm -f "$staging.log"

# The server and its formatting tool, the modules they load at start, and the logging chain
# (slf4j -> log4j 2): a missing one would only show when the broker is started.
for required in kafka_2.13 kafka-clients kafka-server kafka-raft kafka-metadata kafka-storage; do
  [ -f "$staging/${required}-${KAFKA_VERSION}.jar" ] || {
    echo "fetch-kafka: ${required}-${KAFKA_VERSION}.jar missing after resolution" >&2
    exit 1
  }
done
for required in log4j-core log4j-slf4j-impl; do
  ls "$staging/${required}-"*.jar >/dev/null 2>&1 || {
    echo "fetch-kafka: ${required} missing after resolution" >&2
    exit 1
  }
done

rm -rf "$JARS"
mv "$staging" "$JARS"
trap - EXIT
echo "$WANT" >"$MARKER"
echo "fetch-kafka: $(ls "$JARS"/*.jar | wc -l) jars in $JARS"
