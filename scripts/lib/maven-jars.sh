# Resolve a pom's runtime jars with Maven into a cache directory: the part scripts/fetch-hadoop.sh,
# fetch-s3a.sh and fetch-kafka.sh share. Source it after setting NAME (the prefix of every
# message), POM and JARS, then:
#
#   maven_jars_current && exit 0      # the cache already holds this pom's jars
#   maven_jars_resolve "Kafka 4.1.2"  # resolve into $staging, a sibling of $JARS
#   require_jars "kafka_2.13-4.1.2.jar" "log4j-core-*.jar"   # and any other check on $staging
#   maven_jars_install                # swap $staging in, then mark the cache complete
#
# The marker, written last, records the pom's checksum: a changed pom (another version, another
# jar) refetches, and an interrupted fetch never leaves a cache that looks complete.

MARKER="$JARS/.complete"
WANT="$(sha256sum "$POM" | cut -d' ' -f1)"

jars_fail() {
  echo "$NAME: $*" >&2
  exit 1
}

maven_jars_current() {
  [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$WANT" ]
}

maven_jars_resolve() {
  command -v mvn >/dev/null 2>&1 || jars_fail "mvn not found (apt-get install maven)"
  local parent
  parent="$(dirname "$JARS")"
  mkdir -p "$parent"
  staging="$(mktemp -d "$parent/.jars.XXXXXX")"
  trap 'rm -rf "$staging" "$staging.log"' EXIT
  echo "$NAME: resolving $1 jars with Maven into $JARS"
  if ! mvn --batch-mode -f "$POM" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$staging" >"$staging.log" 2>&1; then
    tail -40 "$staging.log" >&2
    jars_fail "Maven could not resolve $POM"
  fi
  rm -f "$staging.log"
}

# Fail unless every pattern matches a jar the resolution put in $staging.
require_jars() {
  local pattern
  for pattern in "$@"; do
    compgen -G "$staging/$pattern" >/dev/null || jars_fail "$pattern missing after resolution"
  done
}

maven_jars_install() {
  rm -rf "$JARS"
  mv "$staging" "$JARS"
  trap - EXIT
  echo "$WANT" >"$MARKER"
  echo "$NAME: $(ls "$JARS"/*.jar | wc -l) jars in $JARS"
}
