#!/bin/sh
# Installs prefork from a built checkout into PREFIX (default /usr/lib/prefork):
#   PREFIX/bin/prefork            the launcher (ForceCommand: PREFIX/bin/prefork connect)
#   PREFIX/lib/prefork-connect    the per-connection client
#   PREFIX/lib/java/              preforkd and its libraries
#   PREFIX/python/                the template and worker agent
# With --system it also installs /etc/prefork/prefork.toml (when absent) and the
# systemd unit. Everything under PREFIX is readable by all: every bzr user runs
# PREFIX/bin/prefork connect. Build first: mvn -q -DskipTests package
set -eu

system=no
[ "${1:-}" = --system ] && { system=yes; shift; }
prefix=${1:-/usr/lib/prefork}
src=$(cd "$(dirname "$0")/.." && pwd)

for built in "$src/pool-manager/target/pool-manager.jar" "$src/protocol/target/prefork-connect"; do
    [ -f "$built" ] || { echo "install: $built is missing; run: mvn -q -DskipTests package" >&2; exit 1; }
done

umask 022
mkdir -p "$prefix/bin" "$prefix/lib/java" "$prefix/python"
install -m 0755 "$src/bin/prefork" "$prefix/bin/prefork"
install -m 0755 "$src/protocol/target/prefork-connect" "$prefix/lib/prefork-connect"
install -m 0644 "$src/pool-manager/target/pool-manager.jar" "$src/pool-manager/target/lib/"*.jar \
    "$prefix/lib/java/"
(cd "$src/worker-stub/src/main/python" && find . -name '*.py' -exec install -D -m 0644 {} "$prefix/python/{}" \;)

if [ $system = yes ]; then
    mkdir -p /etc/prefork
    [ -f /etc/prefork/prefork.toml ] || install -m 0644 "$src/deploy/prefork.toml" /etc/prefork/prefork.toml
    install -m 0644 "$src/deploy/systemd/preforkd.service" /etc/systemd/system/preforkd.service
    install -m 0644 "$src/deploy/openssh/sshd_config.d-prefork.conf" "$prefix/sshd_config.d-prefork.conf"
    echo "install: see $prefix/sshd_config.d-prefork.conf for the OpenSSH side" >&2
fi
echo "install: prefork installed in $prefix" >&2
