#!/usr/bin/env bash
# The project's test command: installs what is missing, then runs every test of the workspace
# inside a private D-Bus session with an unlocked gnome-keyring, a kernel session keyring and a
# notification daemon, so keyring and notification tests talk to the real services.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/bootstrap.sh
echo "run: building tests"
cargo test --workspace --no-run --quiet
exec dbus-run-session -- keyctl session - tests/with-desktop-services.sh cargo test --workspace --no-fail-fast "$@"
