#!/bin/sh
# Installs prefork into a temporary prefix with deploy/install.sh, runs the installed
# daemon (test service), and a session through the installed client as an
# unprivileged user who cannot read the checkout. Cleans up whatever happens.
set -eu
src=$(cd "$(dirname "$0")/../../.." && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "install-test: SKIPPED: needs root to create a user and install"
    exit 0
fi

base=$(mktemp -d /tmp/prefork-install-XXXXXX)
chmod 755 "$base"
user=pfinstall$$
daemon=
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    userdel "$user" 2>/dev/null || true
    rm -rf "$base"
}
trap cleanup EXIT
fail() { echo "install-test: FAILED: $*" >&2; exit 1; }

useradd --no-create-home --home-dir / --shell /usr/sbin/nologin "$user"
"$src/deploy/install.sh" "$base/prefork" 2>/dev/null

cat > "$base/prefork.toml" <<TOML
[daemon]
socket = "$base/control.sock"
worker_dir = "$base/workers"
state_dir = "$base/state"
[service]
name = "test"
[policy]
min_uid = 1000
TOML
"$base/prefork/bin/prefork" daemon --config "$base/prefork.toml" > "$base/daemon.log" 2>&1 &
daemon=$!

tries=0
until "$base/prefork/bin/prefork" status --socket "$base/control.sock" >/dev/null 2>&1; do
    tries=$((tries + 1))
    kill -0 "$daemon" 2>/dev/null && [ $tries -lt 120 ] \
        || fail "the installed daemon did not answer: $(cat "$base/daemon.log")"
    sleep 0.5
done

out=$(echo "through the install" | setpriv --reuid="$user" --regid="$user" --init-groups -- \
    "$base/prefork/bin/prefork" connect --socket "$base/control.sock" -- echo) \
    || fail "the installed client failed with status $?"
[ "$out" = "through the install" ] || fail "the session echoed '$out'"

"$base/prefork/bin/prefork" shutdown --socket "$base/control.sock" || fail "shutdown refused"
wait "$daemon" || fail "the daemon exited with status $?"
daemon=
echo "install-test: 1 passed, 0 failed"
