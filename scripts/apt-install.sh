#!/usr/bin/env bash
# Install the given Debian packages (the callers pass only the missing ones); the first
# argument names the caller in messages. Needs root: otherwise it says what to install.
set -euo pipefail
caller=$1
shift
[ $# -gt 0 ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "$caller: missing Debian packages: $* (run as root, or install them)" >&2
  exit 1
fi
echo "$caller: installing $*"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
