#!/usr/bin/env bash
# Builds the pinned tools of hack/tools/go.mod into a cache directory and prints
# that directory. The directory is keyed on a hash of hack/tools/go.mod and
# go.sum, so a binary is rebuilt only when a pinned version changes.
#
#   hack/build-tools.sh            build what is missing, print the bin dir
#   hack/build-tools.sh --print    print the bin dir without building
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/hack/tools"
key=$(cat "$tools/go.mod" "$tools/go.sum" "$0" | sha256sum | cut -c1-16)
cache=${PORTICO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-tools}
bin="$cache/$key/bin"

if [[ "${1:-}" == "--print" ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$bin"

version_of() { (cd "$tools" && go list -m -f '{{.Version}}' "$1"); }

build() { # name package [ldflags]
  local name=$1 pkg=$2 ldflags=${3:-}
  [[ -x "$bin/$name" ]] && return 0
  echo ">> building $name from $pkg" >&2
  (cd "$tools" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
}

kube=$(version_of k8s.io/kubernetes)
minor=${kube#v1.}; minor=${minor%%.*}
kube_ld=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ld+=" -X $p.gitVersion=$kube -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  kube_ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
etcd=$(version_of go.etcd.io/etcd/server/v3)

build etcd go.etcd.io/etcd/server/v3 "-X go.etcd.io/etcd/api/v3/version.GitSHA=${etcd}"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kube_ld"
build kubectl k8s.io/kubernetes/cmd/kubectl "$kube_ld"
build controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen
build staticcheck honnef.co/go/tools/cmd/staticcheck

echo "$bin"
