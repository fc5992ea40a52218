#!/usr/bin/env bash
# Runs a command with the desktop services our code talks to, each started here and stopped
# afterwards: an unlocked gnome-keyring (Secret Service) and dunst (notifications) on the
# current session bus, under a private Xvfb display. Meant to run inside dbus-run-session.
set -euo pipefail
[ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] || { echo "with-desktop-services: run me inside dbus-run-session" >&2; exit 1; }

scratch="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

if [ -z "${DISPLAY:-}" ]; then
  display=":$((90 + RANDOM % 800))"
  Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >"$scratch/xvfb.log" 2>&1 & pids+=($!)
  export DISPLAY="$display"
  for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X${display#:}" ] && break; sleep 0.1; done
fi

# A throwaway keyring home: HOME is changed for the daemon only (cargo needs the real one).
mkdir -p "$scratch/home/.local/share"
printf 'test-keyring-password' | HOME="$scratch/home" XDG_DATA_HOME="$scratch/home/.local/share" \
  gnome-keyring-daemon --unlock --components=secrets >"$scratch/keyring.env" 2>"$scratch/keyring.log"

dunst >"$scratch/dunst.log" 2>&1 & pids+=($!)
for _ in $(seq 50); do
  dbus-send --session --dest=org.freedesktop.DBus --print-reply /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.Notifications 2>/dev/null | grep -q true && break
  sleep 0.1
done

export TAHOE_NOTIFIER_DESKTOP_SERVICES=1
status=0
"$@" || status=$?

# Our processes the tests left running on this bus are a test's bug (a tray of a deleted home
# once answered another test's watcher): name them, so the log says which, and stop them.
for environ in /proc/[0-9]*/environ; do
  pid="${environ#/proc/}"; pid="${pid%/environ}"
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
  case "$exe" in */tahoe-notifier*|*/tahoe-updates-server*) ;; *) continue ;; esac
  tr '\0' '\n' <"$environ" 2>/dev/null | grep -qxF "DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS" || continue
  echo "with-desktop-services: left running by the tests: pid $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
  kill "$pid" 2>/dev/null || true
done
exit "$status"
