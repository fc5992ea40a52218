#!/usr/bin/env bash
# Installs what the tests and the demo need on a Debian/Ubuntu machine, skipping what is there:
# system packages (apt), the Python venv with tahoe-lafs, and cargo tools.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

packages=(
  build-essential pkg-config   # C toolchain for -sys crates (SQLite, libdbus)
  libdbus-1-dev                # the keyring crate talks to the Secret Service over libdbus
  dbus dbus-x11                # a session bus for keyring and notification tests
  gnome-keyring libsecret-tools keyutils   # the real OS keyring, unlocked per test run
  dunst                        # a real notification daemon
  xvfb xauth                   # a headless X server for dunst and the app
  python3-venv                 # the venv that holds tahoe-lafs
  nats-server                  # the broker of the updates server's watcher/edge roles (tests/cluster.rs)
  iproute2                     # ss: per-socket byte counts in the magic-folder test and the bench
  # The tray app (src-tauri): Tauri's build dependencies on Debian 12 (libappindicator3-dev has
  # no candidate there; ayatana is what tray-icon loads at run time)…
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev
  # …and its end-to-end tests: WebKitWebDriver, screenshots, clicks.
  webkit2gtk-driver imagemagick x11-utils x11-apps xdotool
  # …and a real StatusNotifierItem host to draw the tray's menu for its screenshot.
  haskell-status-notifier-item-utils haskell-gtk-sni-tray-utils
  # The Debian packages (packaging/build.sh: dpkg-shlibdeps) and their tests (tests/packages):
  # a clean Debian root, lintian, and the validators of desktop entries and AppStream metainfo.
  dpkg-dev mmdebstrap lintian desktop-file-utils appstream
)
# systemd-analyze checks the service unit; machines without systemd as init may lack it.
command -v systemd-analyze >/dev/null || packages+=(systemd)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing system packages: ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "bootstrap: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo_cmd=(sudo)
  fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "bootstrap: system packages present"
fi

command -v cargo >/dev/null || { echo "bootstrap: cargo not found: install Rust from https://rustup.rs first" >&2; exit 1; }

# The WebDriver front end the app's end-to-end tests talk to (it starts WebKitWebDriver).
if ! command -v tauri-driver >/dev/null; then
  echo "bootstrap: installing tauri-driver"
  cargo install tauri-driver --locked --quiet
fi

# Builds the .debs from the package metadata in the Cargo.toml files (packaging/build.sh).
if ! cargo deb --version >/dev/null 2>&1; then
  echo "bootstrap: installing cargo-deb"
  cargo install cargo-deb --locked --quiet
fi

"$here/bootstrap-python.sh"
