#!/usr/bin/env bash
# Builds the pinned tools into a cache and prints the directory that holds
# them all (KUBEBUILDER_ASSETS for envtest and internal/testenv).
#
# The pins live in two tools modules: hack/tools/go.mod (the control plane:
# kube-apiserver, kube-controller-manager, kubectl and etcd from
# k8s.io/kubernetes and etcd sources, plus controller-gen, staticcheck, helm)
# and hack/tools/kwok/go.mod (kwok, the simulated kubelets, which is built
# against its own k8s.io versions). kube-controller-manager shares most of its
# packages with kube-apiserver and is built after it, so it compiles only its
# controllers (about 2.5 minutes on 2 cores, against 8 for the apiserver);
# kwok, cold, about 3 minutes of CPU.
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

# name | package | module whose version keys the build | tools module (dir under hack/tools)
specs=(
  "etcd|go.etcd.io/etcd/server/v3|go.etcd.io/etcd/server/v3|."
  "kube-apiserver|k8s.io/kubernetes/cmd/kube-apiserver|k8s.io/kubernetes|."
  "kube-controller-manager|k8s.io/kubernetes/cmd/kube-controller-manager|k8s.io/kubernetes|."
  "kubectl|k8s.io/kubernetes/cmd/kubectl|k8s.io/kubernetes|."
  "kwok|sigs.k8s.io/kwok/cmd/kwok|sigs.k8s.io/kwok|kwok"
  "controller-gen|sigs.k8s.io/controller-tools/cmd/controller-gen|sigs.k8s.io/controller-tools|."
  "staticcheck|honnef.co/go/tools/cmd/staticcheck|honnef.co/go/tools|."
  "helm|helm.sh/helm/v4/cmd/helm|helm.sh/helm/v4|."
  "promtool|github.com/prometheus/prometheus/cmd/promtool|github.com/prometheus/prometheus|promtool"
)

versions=()
for dir in $(for s in "${specs[@]}"; do echo "${s##*|}"; done | sort -u); do
  mods=()
  for s in "${specs[@]}"; do
    IFS='|' read -r _ _ mod d <<<"$s"
    [[ "$d" == "$dir" ]] && mods+=("$mod")
  done
  mapfile -t -O "${#versions[@]}" versions < <(cd "$tools/$dir" && go list -m -f '{{.Path}} {{.Version}}' "${mods[@]}" | sort -u)
done
version_of() { local m; for m in "${versions[@]}"; do [[ "${m%% *}" == "$1" ]] && { echo "${m#* }"; return; }; done; }

keys=""
for s in "${specs[@]}"; do
  IFS='|' read -r name _ mod _ <<<"$s"
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
# Prometheus tags v3.X.Y as module version v0.3XX.Y.
prom=$(version_of github.com/prometheus/prometheus)
prom=${prom#v0.}
prom="${prom:0:1}.${prom:1}"

ldflags_for() {
  case "$1" in
    kube-apiserver|kube-controller-manager|kubectl) echo "$kube_ld" ;;
    etcd) echo "-X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd" ;;
    helm) echo "-X helm.sh/helm/v4/internal/version.version=$helm" ;;
    promtool) echo "-X github.com/prometheus/common/version.Version=$prom" ;;
  esac
}

for s in "${specs[@]}"; do
  IFS='|' read -r name pkg mod dir <<<"$s"
  out="$cache/$name/$(version_of "$mod")-$gover/$name"
  if [[ ! -x "$out" ]]; then
    echo ">> building $name $(version_of "$mod") from $pkg" >&2
    mkdir -p "$(dirname "$out")"
    (cd "$tools/$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $(ldflags_for "$name")" -o "$out.tmp" "$pkg")
    mv "$out.tmp" "$out"
  fi
  ln -sfn "$out" "$bin/$name"
done

echo "$bin"
