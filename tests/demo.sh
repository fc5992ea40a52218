#!/usr/bin/env bash
# The main job, end to end on this machine: a real local Tahoe grid with an updates server beside
# each storage node, a shared folder and a news directory, and `tahoe-notifier watch` raising
# desktop notifications as a writer adds a file every 20 s and the operator posts news.
# Installs what is missing first. Ctrl-C stops everything it started.
#
#   tests/demo.sh                 # run until Ctrl-C
#   tests/demo.sh --seconds 60    # stop by itself (used as a smoke test)
set -euo pipefail
cd "$(dirname "$0")/.."
tests/bootstrap.sh
echo "demo: building (the first build takes a few minutes)"
cargo build --quiet -p updates-server -p notifier-core --bins
# The tray app; the demo falls back to `tahoe-notifier watch` with --no-app.
cargo build --quiet -p tahoe-notifier-app
cargo build --quiet -p local-grid --example demo
demo=target/debug/examples/demo

if [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  # A desktop session: its own keyring and notification daemon.
  exec "$demo" "$@"
fi
echo "demo: no desktop session here: using a private D-Bus session with gnome-keyring and dunst (on a virtual display)"
exec dbus-run-session -- keyctl session - tests/with-desktop-services.sh "$demo" "$@"
