#!/usr/bin/env bash
# The OpenAI clients the client tests run (`cargo test --features e2e/clients`): OpenAI's
# Python package and LangChain's wrappers in a virtual environment, and OpenAI's Node
# package, all under target/clients/, at the versions pinned here and in requirements.txt.
# Needs python3 (with venv), node and npm, and the network the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=target/clients
[ -x "$dir/venv/bin/python" ] || python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
[ -f "$dir/node_modules/openai/package.json" ] ||
    npm install --prefix "$dir" --no-save --no-audit --no-fund --silent openai@6.49.0
echo "clients ready in $dir"
