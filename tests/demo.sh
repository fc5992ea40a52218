#!/usr/bin/env bash
# The main job, end to end on this machine: a real local Tahoe grid with an updates server beside
# each storage node, a shared folder and a news directory, and the tray app (or, with --no-app,
# `tahoe-notifier watch`) raising desktop notifications as a writer adds a file every 20 s and
# the operator posts news. Installs what is missing first. Ctrl-C stops everything it started.
#
#   tests/demo.sh                 # run until Ctrl-C
#   tests/demo.sh --seconds 60    # stop by itself
#
# TAHOE_NOTIFIER_DEMO_TARGET_DIR=DIR uses binaries already built in DIR (tahoe-notifier,
# tahoe-updates-server, tahoe-notifier-tray, tahoe-notifier-app, examples/demo) instead of building: the CI smoke
# test (src-tauri/tests/demo_smoke.rs) builds them first, since a build started from inside
# `cargo test` would wait on cargo's lock.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/bootstrap.sh
if [ -n "${TAHOE_NOTIFIER_DEMO_TARGET_DIR:-}" ]; then
  bin_dir="$TAHOE_NOTIFIER_DEMO_TARGET_DIR"
  for needed in tahoe-notifier tahoe-updates-server examples/demo; do
    [ -x "$bin_dir/$needed" ] || { echo "demo: $bin_dir/$needed is missing: build it or unset TAHOE_NOTIFIER_DEMO_TARGET_DIR" >&2; exit 1; }
  done
else
  echo "demo: building (the first build takes a few minutes)"
  cargo build --quiet -p updates-server -p tahoe-notifier-cli --bins
  # The tray (the engine host with its icon) and the window it opens; the demo falls back to
  # `tahoe-notifier watch` with --no-app.
  cargo build --quiet -p tahoe-notifier-tray -p tahoe-notifier-app
  cargo build --quiet -p local-grid --example demo
  bin_dir="${CARGO_TARGET_DIR:-target}/debug"
fi
demo="$bin_dir/examples/demo"

if [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  # A desktop session: its own keyring and notification daemon.
  exec "$demo" "$@"
fi
echo "demo: no desktop session here: using a private D-Bus session with gnome-keyring and dunst (on a virtual display)"
# Ctrl-C reaches every process of the job. It is for the demo, which then stops what it started
# in order; the session bus, display, keyring and dunst it runs on must outlive that (they are
# stopped once the demo is done), so they ignore it. Otherwise dbus-run-session died at once, the
# shell got its prompt back with the demo still tearing down, and the exit status was SIGINT's.
trap '' INT
exec dbus-run-session -- keyctl session - tests/with-desktop-services.sh "$demo" "$@"
