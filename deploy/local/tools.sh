#!/usr/bin/env bash
# Tools the scripts and tests need beyond Python, installed from the package registries
# when missing (idempotent; a second call only checks):
#
#   tools.sh prometheus     Debian's prometheus package (prometheus and promtool)
#   tools.sh kubeconform    kubeconform and kustomize, built from the Go module proxy
#   tools.sh k8s-schemas    the Kubernetes JSON schemas kubeconform validates against
#   tools.sh all            all of the above
#   tools.sh path NAME      print where NAME (kubeconform, kustomize, k8s-schemas) lives
#
# The Go tools and the schemas live in PUSHLINE_CACHE_DIR (default ~/.cache/pushline).
# The schemas come from the kubernetes-validate wheel on PyPI (a dev dependency, so it is in
# .venv): kubeconform normally downloads them from GitHub, which these machines cannot reach.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${PUSHLINE_CACHE_DIR:-$HOME/.cache/pushline}
python=${PUSHLINE_PYTHON:-$root/.venv/bin/python}
KUBECONFORM_VERSION=v0.7.0
KUSTOMIZE_VERSION=v5.7.1
# The Kubernetes version the manifests are validated against.
K8S_VERSION=1.33.0

log() { printf 'tools: %s\n' "$*" >&2; }

prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    return
  fi
  log "installing Debian's prometheus package"
  export DEBIAN_FRONTEND=noninteractive
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  # No recommends: they add exporters and services nobody here runs. Without systemd the
  # package's own service does not start; prometheus.sh runs the binary itself.
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  command -v promtool >/dev/null || { log "promtool missing after the install"; exit 1; }
}

# go_tool NAME MODULE VERSION: `go install` MODULE@VERSION into $cache/bin/NAME-VERSION.
go_tool() {
  local name=$1 module=$2 version=$3 bin=$cache/bin
  if [[ -x $bin/$name-$version ]]; then
    return
  fi
  command -v go >/dev/null || { log "Go is needed to build $name"; exit 1; }
  log "building $name $version from the Go module proxy"
  mkdir -p "$bin"
  local tmp
  tmp=$(mktemp -d)
  GOBIN=$tmp go install "$module@$version"
  mv "$tmp/$name" "$bin/$name-$version"
  rm -rf "$tmp"
}

kubeconform() {
  go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
  go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
}

# The wheel's schemas refer to their shared definitions as "/api/_definitions.json", a
# path that only its own resolver maps; kubeconform follows file URLs, so a copy of one
# version's directory gets its references rewritten to the copy's absolute path.
k8s_schemas() {
  local dir=$cache/k8s-schemas/v$K8S_VERSION-local-strict
  if [[ -f $dir/.done ]]; then
    return
  fi
  local package
  package=$("$python" -c 'import kubernetes_validate, os; print(os.path.dirname(kubernetes_validate.__file__))') \
    || { log "kubernetes-validate is missing from $python's environment (make install)"; exit 1; }
  local source=$package/kubernetes-json-schema/v$K8S_VERSION-local-strict
  [[ -d $source ]] || { log "no schemas for Kubernetes $K8S_VERSION in $package"; exit 1; }
  log "preparing Kubernetes $K8S_VERSION schemas in $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$source"/*.json "$dir"/
  sed -i "s|\"/api/_definitions.json#|\"file://$dir/_definitions.json#|g" "$dir"/*.json
  touch "$dir/.done"
}

path() {
  case $1 in
    kubeconform) echo "$cache/bin/kubeconform-$KUBECONFORM_VERSION" ;;
    kustomize) echo "$cache/bin/kustomize-$KUSTOMIZE_VERSION" ;;
    k8s-schemas) echo "$cache/k8s-schemas/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" ;;
    k8s-version) echo "$K8S_VERSION" ;;
    *) echo "unknown tool $1" >&2; exit 2 ;;
  esac
}

case ${1:-} in
  prometheus) prometheus ;;
  kubeconform) kubeconform ;;
  k8s-schemas) k8s_schemas ;;
  all) prometheus; kubeconform; k8s_schemas ;;
  path) path "${2:-}" ;;
  *)
    echo "usage: $0 prometheus|kubeconform|k8s-schemas|all|path NAME" >&2
    exit 2
    ;;
esac
