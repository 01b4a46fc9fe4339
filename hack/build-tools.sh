#!/usr/bin/env bash
# Builds the pinned tools of hack/tools/go.mod into a cache and prints the
# directory that holds them all (KUBEBUILDER_ASSETS for envtest).
#
# Each binary is cached under its own key: its name, the version of the module
# that provides it, and the Go version. A binary is rebuilt only when its
# pinned version (or Go) changes; adding a tool rebuilds nothing else.
#
#   hack/build-tools.sh            build what is missing, print the bin dir
#   hack/build-tools.sh --print    print the bin dir without building
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/hack/tools"
cache=${PORTICO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-tools}
gover=$(go env GOVERSION)

# name | package | module whose version keys the build
specs=(
  "etcd|go.etcd.io/etcd/server/v3|go.etcd.io/etcd/server/v3"
  "kube-apiserver|k8s.io/kubernetes/cmd/kube-apiserver|k8s.io/kubernetes"
  "kubectl|k8s.io/kubernetes/cmd/kubectl|k8s.io/kubernetes"
  "controller-gen|sigs.k8s.io/controller-tools/cmd/controller-gen|sigs.k8s.io/controller-tools"
  "staticcheck|honnef.co/go/tools/cmd/staticcheck|honnef.co/go/tools"
  "helm|helm.sh/helm/v4/cmd/helm|helm.sh/helm/v4"
)

mods=()
for s in "${specs[@]}"; do mods+=("${s##*|}"); done
mapfile -t versions < <(cd "$tools" && go list -m -f '{{.Path}} {{.Version}}' "${mods[@]}" | sort -u)
version_of() { local m; for m in "${versions[@]}"; do [[ "${m%% *}" == "$1" ]] && { echo "${m#* }"; return; }; done; }

keys=""
for s in "${specs[@]}"; do
  IFS='|' read -r name _ mod <<<"$s"
  keys+="$name@$(version_of "$mod") "
done
bin="$cache/bin/$(echo "$gover $keys" | sha256sum | cut -c1-16)"

if [[ "${1:-}" == "--print" ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$bin"

kube=$(version_of k8s.io/kubernetes)
minor=${kube#v1.}; minor=${minor%%.*}
kube_ld=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ld+=" -X $p.gitVersion=$kube -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  kube_ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
etcd=$(version_of go.etcd.io/etcd/server/v3)
helm=$(version_of helm.sh/helm/v4)

ldflags_for() {
  case "$1" in
    kube-apiserver|kubectl) echo "$kube_ld" ;;
    etcd) echo "-X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd" ;;
    helm) echo "-X helm.sh/helm/v4/internal/version.version=$helm" ;;
  esac
}

for s in "${specs[@]}"; do
  IFS='|' read -r name pkg mod <<<"$s"
  out="$cache/$name/$(version_of "$mod")-$gover/$name"
  if [[ ! -x "$out" ]]; then
    echo ">> building $name $(version_of "$mod") from $pkg" >&2
    mkdir -p "$(dirname "$out")"
    (cd "$tools" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $(ldflags_for "$name")" -o "$out.tmp" "$pkg")
    mv "$out.tmp" "$out"
  fi
  ln -sfn "$out" "$bin/$name"
done

echo "$bin"
