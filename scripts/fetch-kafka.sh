#!/usr/bin/env bash
# Fetch the Apache Kafka jars a single-node KRaft broker (broker and controller in one JVM)
# runs from into a cache directory, resolved by Maven from kafka/pom.xml. Idempotent: a
# complete cache returns at once (scripts/lib/maven-jars.sh).
#
#   TRIPFLOW_KAFKA_JARS  where the jars go
#                        (default ${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/kafka-4.1.2/jars)
set -euo pipefail
cd "$(dirname "$0")/.."

KAFKA_VERSION=4.1.2
NAME=fetch-kafka
POM=kafka/pom.xml
JARS="${TRIPFLOW_KAFKA_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/kafka-${KAFKA_VERSION}/jars}"
. scripts/lib/maven-jars.sh

maven_jars_current && exit 0
maven_jars_resolve "Kafka ${KAFKA_VERSION}"
# The server and its formatting tool, the modules they load at start, and the logging chain
# (slf4j -> log4j 2): a missing one would only show when the broker is started.
for module in kafka_2.13 kafka-clients kafka-server kafka-raft kafka-metadata kafka-storage; do
  require_jars "${module}-${KAFKA_VERSION}.jar"
done
require_jars "log4j-core-*.jar" "log4j-slf4j-impl-*.jar"
maven_jars_install
