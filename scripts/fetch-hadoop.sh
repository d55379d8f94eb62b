#!/usr/bin/env bash
# Fetch the Apache Hadoop jars a single-node HDFS runs from (NameNode + DataNode) into a cache
# directory, resolved by Maven from hadoop/pom.xml. Idempotent: a complete cache returns at once
# (scripts/lib/maven-jars.sh).
#
#   TRIPFLOW_HADOOP_JARS  where the jars go
#                         (default ${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/hadoop-3.5.0/jars)
set -euo pipefail
cd "$(dirname "$0")/.."

HADOOP_VERSION=3.5.0
POM=hadoop/pom.xml
JARS="${TRIPFLOW_HADOOP_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/hadoop-${HADOOP_VERSION}/jars}"
NAME=fetch-hadoop
. scripts/lib/maven-jars.sh

maven_jars_current && exit 0
maven_jars_resolve "Hadoop ${HADOOP_VERSION}"
for module in hadoop-hdfs hadoop-common hadoop-hdfs-client hadoop-auth; do
  require_jars "${module}-${HADOOP_VERSION}.jar"
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
[ -f "$staging/webapps/hdfs/WEB-INF/web.xml" ] || jars_fail "webapps/hdfs missing"
maven_jars_install
