#!/usr/bin/env bash
# Validate the Kubernetes manifests: build each Kustomize directory (default
# deploy/kubernetes) and check every resource against the Kubernetes JSON schemas with
# kubeconform in strict mode (unknown fields are errors). Exit status 0 only when all pass.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools=$here/tools.sh
"$tools" kubeconform
"$tools" k8s-schemas
kustomize=$("$tools" path kustomize)
kubeconform=$("$tools" path kubeconform)

dirs=("$@")
[[ ${#dirs[@]} -gt 0 ]] || dirs=("$here/../kubernetes")
for dir in "${dirs[@]}"; do
  "$kustomize" build "$dir" | "$kubeconform" -strict -summary \
    -kubernetes-version "$("$tools" path k8s-version)" \
    -schema-location "$("$tools" path k8s-schemas)" -
done
