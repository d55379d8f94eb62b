#!/usr/bin/env bash
# Fetch the Apache Hadoop jars a single-node HDFS runs from (NameNode + DataNode) into a cache
# directory, resolved by Maven from hadoop/pom.xml. Idempotent: a complete cache (marked by a
# file written last, naming the pom it came from) returns at once.
#
#   TRIPFLOW_HADOOP_JARS  where the jars go
#                         (default ${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/hadoop-3.5.0/jars)
set -euo pipefail
cd "$(dirname "$0")/.."

HADOOP_VERSION=3.5.0
POM=hadoop/pom.xml
JARS="${TRIPFLOW_HADOOP_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/hadoop-${HADOOP_VERSION}/jars}"
MARKER="$JARS/.complete"
# The marker records the pom's checksum: a changed pom (another version, another jar) refetches.
WANT="$(sha256sum "$POM" | cut -d' ' -f1)"

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$WANT" ]; then
  exit 0
fi
command -v mvn >/dev/null 2>&1 || { echo "fetch-hadoop: mvn not found (apt-get install maven)" >&2; exit 1; }

# Copy into a sibling directory, then swap it in: an interrupted fetch never leaves a cache
# that looks complete.
parent="$(dirname "$JARS")"
mkdir -p "$parent"
staging="$(mktemp -d "$parent/.jars.XXXXXX")"
trap 'rm -rf "$staging"' EXIT

echo "fetch-hadoop: resolving Hadoop ${HADOOP_VERSION} jars with Maven into $JARS"
if ! mvn --batch-mode -f "$POM" \
  org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$staging" >"$staging.log" 2>&1; then
  tail -40 "$staging.log" >&2
  rm -f "$staging.log"
  echo "fetch-hadoop: Maven could not resolve $POM" >&2
  exit 1
fi
rm -f "$staging.log"

for required in hadoop-hdfs hadoop-common hadoop-hdfs-client hadoop-auth; do
  ls "$staging/${required}-${HADOOP_VERSION}.jar" >/dev/null 2>&1 || {
    echo "fetch-hadoop: ${required}-${HADOOP_VERSION}.jar missing after resolution" >&2
    exit 1
  }
done

# The daemons look up webapps/hdfs and webapps/datanode as classpath resources: keep that tree
# from the tests jar (the jars directory is itself on the daemons' classpath) and drop the
# jar, whose test classes have no business on a server's classpath.
tests_jar="$staging/hadoop-hdfs-${HADOOP_VERSION}-tests.jar"
python3 - "$tests_jar" "$staging" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as archive:
    archive.extractall(sys.argv[2], [n for n in archive.namelist() if n.startswith("webapps/")])
PY
rm "$tests_jar"
[ -f "$staging/webapps/hdfs/WEB-INF/web.xml" ] || { echo "fetch-hadoop: webapps/hdfs missing" >&2; exit 1; }

rm -rf "$JARS"
mv "$staging" "$JARS"
trap - EXIT
echo "$WANT" >"$MARKER"
echo "fetch-hadoop: $(ls "$JARS"/*.jar | wc -l) jars in $JARS"
