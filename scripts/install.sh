#!/usr/bin/env bash
# Create .venv beside the repository and install the pinned stack plus the package (editable).
#   bash scripts/install.sh          # what the app needs
#   bash scripts/install.sh --test   # plus Debian chromium for the real-browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade "pip>=24"
.venv/bin/python -m pip install --quiet -r requirements.txt
if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install Debian chromium; browser tests will be skipped" >&2
  fi
fi
