#!/usr/bin/env bash
# The widget's CI: install the locked toolchain, unit-test the queue logic, check the size
# budget, and fail when the committed build (webapp/widget/static/widget.js) is not what
# the sources build to. Needs node 20+ and npm; takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")"

npm ci --no-audit --no-fund --loglevel=error
node --test test/
# Builds in memory, prints the gzipped size against the 6 KiB budget (fails over it) and
# compares with the committed file (fails when they differ).
node build.mjs --check
