#!/usr/bin/env bash
# Fetch the jars Spark needs, beyond pyspark's own, to read and write an S3 lake through Hadoop's
# S3A connector (hadoop-aws and a slim set of AWS SDK v2 modules) into a cache directory,
# resolved by Maven from hadoop/s3a/pom.xml. Idempotent: a complete cache (marked by a file
# written last, naming the pom it came from) returns at once.
#
#   TRIPFLOW_S3A_JARS  where the jars go
#                      (default ${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/s3a-3.5.0/jars)
set -euo pipefail
cd "$(dirname "$0")/.."

HADOOP_VERSION=3.5.0
POM=hadoop/s3a/pom.xml
JARS="${TRIPFLOW_S3A_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/s3a-${HADOOP_VERSION}/jars}"
MARKER="$JARS/.complete"
# The marker records the pom's checksum: a changed pom (another version, another jar) refetches.
WANT="$(sha256sum "$POM" | cut -d' ' -f1)"

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$WANT" ]; then
  exit 0
fi
command -v mvn >/dev/null 2>&1 || { echo "fetch-s3a: mvn not found (apt-get install maven)" >&2; exit 1; }

# Copy into a sibling directory, then swap it in: an interrupted fetch never leaves a cache
# that looks complete.
parent="$(dirname "$JARS")"
mkdir -p "$parent"
staging="$(mktemp -d "$parent/.jars.XXXXXX")"
trap 'rm -rf "$staging" "$staging.log"' EXIT

echo "fetch-s3a: resolving S3A (hadoop-aws ${HADOOP_VERSION}) jars with Maven into $JARS"
if ! mvn --batch-mode -f "$POM" \
  org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$staging" >"$staging.log" 2>&1; then
  tail -40 "$staging.log" >&2
  echo "fetch-s3a: Maven could not resolve $POM" >&2
  exit 1
fi
rm -f "$staging.log"

ls "$staging/hadoop-aws-${HADOOP_VERSION}.jar" >/dev/null 2>&1 || {
  echo "fetch-s3a: hadoop-aws-${HADOOP_VERSION}.jar missing after resolution" >&2
  exit 1
}
# The pom excludes the 686 MB SDK bundle: one coming back means an exclusion stopped working.
if ls "$staging"/bundle-*.jar >/dev/null 2>&1; then
  echo "fetch-s3a: the AWS SDK bundle came back; check the exclusions in $POM" >&2
  exit 1
fi

rm -rf "$JARS"
mv "$staging" "$JARS"
trap - EXIT
echo "$WANT" >"$MARKER"
echo "fetch-s3a: $(ls "$JARS"/*.jar | wc -l) jars in $JARS"
