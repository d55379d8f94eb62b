#!/usr/bin/env bash
# Fetch the jars Spark needs, beyond pyspark's own, to read and write an S3 lake through Hadoop's
# S3A connector (hadoop-aws and a slim set of AWS SDK v2 modules) into a cache directory,
# resolved by Maven from hadoop/s3a/pom.xml. Idempotent: a complete cache returns at once
# (scripts/lib/maven-jars.sh).
#
#   TRIPFLOW_S3A_JARS  where the jars go
#                      (default ${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/s3a-3.5.0/jars)
set -euo pipefail
cd "$(dirname "$0")/.."

HADOOP_VERSION=3.5.0
NAME=fetch-s3a
POM=hadoop/s3a/pom.xml
JARS="${TRIPFLOW_S3A_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/s3a-${HADOOP_VERSION}/jars}"
. scripts/lib/maven-jars.sh

maven_jars_current && exit 0
maven_jars_resolve "S3A (hadoop-aws ${HADOOP_VERSION})"
require_jars "hadoop-aws-${HADOOP_VERSION}.jar"
# The pom excludes the 686 MB SDK bundle: one coming back means an exclusion stopped working.
if compgen -G "$staging/bundle-*.jar" >/dev/null; then
  jars_fail "the AWS SDK bundle came back; check the exclusions in $POM"
fi
maven_jars_install
