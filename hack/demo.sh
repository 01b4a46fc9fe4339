#!/usr/bin/env bash
# make demo: Portico's local mode end to end on the embedded control plane.
#   hack/demo.sh          run until Ctrl-C (root)
#   hack/demo.sh --down   remove what a killed demo left behind
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--down" ]]; then
  exec go run ./hack/demo --down
fi
hack/build-tools.sh >/dev/null
mkdir -p bin
CGO_ENABLED=0 go build -o bin/portico-forwarder ./cmd/portico-forwarder
# Built and exec'd rather than go run: the demo's exit status is make's, and
# Ctrl-C reaches the demo alone (hack/demo/supervise.go).
go build -o bin/portico-demo ./hack/demo
exec bin/portico-demo --forwarder bin/portico-forwarder
