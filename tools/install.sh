#!/usr/bin/env bash
# Set up everything clipseek needs on a fresh Debian/Ubuntu machine (or any machine with ffmpeg):
# the ffmpeg binary, a Python 3.11 virtual environment in .venv, torch, and clipseek itself.
# Idempotent: a second run with nothing changed takes a second.
#   tools/install.sh          engine + tests
#   EXTRAS=test,web tools/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
EXTRAS=${EXTRAS:-test,web}
APT_PACKAGES=${APT_PACKAGES:-ffmpeg}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

missing=""
for pkg in $APT_PACKAGES; do
  case "$pkg" in
    ffmpeg) command -v ffmpeg >/dev/null 2>&1 || missing="$missing ffmpeg" ;;
    chromium) [ -x /usr/bin/chromium ] || missing="$missing chromium" ;;
    *) dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg" ;;
  esac
done
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages:$missing"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "please install:$missing (e.g. with your package manager)" >&2
    exit 1
  fi
fi

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "clipseek needs Python 3.11 (jina has no wheels past 3.11)"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.clipseek-installed-$(cat pyproject.toml tools/install.sh | sha256sum | cut -c1-16)-${EXTRAS//,/_}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade "pip<26"
  # torch first and pinned: these builds import here and with PyPI's torchvision.
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
  rm -f .venv/.clipseek-installed-*
  touch "$stamp"
fi
echo "clipseek is installed in .venv ($(.venv/bin/python -c 'import clipseek; print(clipseek.__version__)'))"
