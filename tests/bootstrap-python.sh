#!/usr/bin/env bash
# Creates the Python virtual environment that holds the real Tahoe-LAFS used by
# the integration tests (tests/local-grid) and the demo, and magic-folder beside
# it with a magic-wormhole mailbox server (the magic-folder bridge's end-to-end
# test: its daemons invite and join through a local mailbox).
#
# Idempotent: when the venv already reports tahoe-lafs 1.20.0 and magic-folder
# 24.3.0 it does nothing.
#
# Environment:
#   TAHOE_NOTIFIER_VENV  where the venv lives (default: <repo>/.venv)
#   PYTHON               the interpreter used to create it (default: python3)
set -euo pipefail

TAHOE_VERSION="1.20.0"
MAGIC_FOLDER_VERSION="24.3.0"
MAILBOX_VERSION="0.8.0"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TAHOE_NOTIFIER_VENV:-${repo_root}/.venv}"
python="${PYTHON:-python3}"

log() { printf 'bootstrap-python: %s\n' "$*"; }
die() {
    printf 'bootstrap-python: error: %s\n' "$*" >&2
    exit 1
}

tahoe="${venv}/bin/tahoe"
magic_folder="${venv}/bin/magic-folder"

installed_version() {
    # `tahoe --version` prints e.g. "tahoe-lafs/1.20.0" first; anything else
    # (missing binary, broken venv) counts as "not installed".
    if [[ -x "${tahoe}" ]]; then
        "${tahoe}" --version 2>/dev/null | head -n 1 || true
    fi
}

magic_folder_version() {
    # `magic-folder --version` prints "Magic Folder version 24.3.0".
    if [[ -x "${magic_folder}" ]]; then
        "${magic_folder}" --version 2>/dev/null | head -n 1 || true
    fi
}

mailbox_installed() {
    "${venv}/bin/python" -c 'import wormhole_mailbox_server' >/dev/null 2>&1
}

install_magic_folder() {
    if [[ "$(magic_folder_version)" == "Magic Folder version ${MAGIC_FOLDER_VERSION}" ]] &&
        mailbox_installed; then
        return 0
    fi
    log "installing magic-folder==${MAGIC_FOLDER_VERSION} and magic-wormhole-mailbox-server==${MAILBOX_VERSION} (takes about 5 s)"
    "${venv}/bin/python" -m pip install --disable-pip-version-check --quiet \
        "magic-folder==${MAGIC_FOLDER_VERSION}" "tahoe-lafs==${TAHOE_VERSION}" \
        "magic-wormhole-mailbox-server==${MAILBOX_VERSION}" ||
        die "pip could not install magic-folder==${MAGIC_FOLDER_VERSION} into ${venv}"
    mailbox_installed || die "after installing, the magic-wormhole mailbox server is not importable in ${venv}"
    local got
    got="$(magic_folder_version)"
    [[ "${got}" == "Magic Folder version ${MAGIC_FOLDER_VERSION}" ]] ||
        die "after installing, '${magic_folder} --version' reports '${got:-nothing}' instead of ${MAGIC_FOLDER_VERSION}"
}

if [[ "$(installed_version)" == "tahoe-lafs/${TAHOE_VERSION}" ]]; then
    install_magic_folder
    log "tahoe-lafs ${TAHOE_VERSION} and magic-folder ${MAGIC_FOLDER_VERSION} already installed in ${venv}; nothing to do"
    exit 0
fi

if [[ ! -x "${venv}/bin/python" ]]; then
    command -v "${python}" >/dev/null 2>&1 ||
        die "'${python}' not found; install Python 3 (with the venv module) or set PYTHON"
    log "creating virtual environment ${venv} with ${python}"
    "${python}" -m venv "${venv}" ||
        die "'${python} -m venv ${venv}' failed (on Debian/Ubuntu: apt-get install python3-venv)"
else
    log "reusing virtual environment ${venv}"
fi

log "installing tahoe-lafs==${TAHOE_VERSION} (takes about 15 s)"
"${venv}/bin/python" -m pip install --disable-pip-version-check --quiet "tahoe-lafs==${TAHOE_VERSION}" ||
    die "pip could not install tahoe-lafs==${TAHOE_VERSION} into ${venv}"

got="$(installed_version)"
[[ "${got}" == "tahoe-lafs/${TAHOE_VERSION}" ]] ||
    die "after installing, '${tahoe} --version' reports '${got:-nothing}' instead of tahoe-lafs/${TAHOE_VERSION}"

install_magic_folder
log "ready: ${tahoe} (${got}), ${magic_folder} ($(magic_folder_version))"
