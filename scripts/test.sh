#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo test --all-targets "$@"
