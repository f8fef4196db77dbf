#!/usr/bin/env bash
# Validates the Kubernetes manifests against the API's schemas (strict: an
# unknown field fails) and checks that every kustomization names files that
# exist. No cluster needed; the tools come from scripts/deps.sh (.ci/venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.ci/venv/bin
mapfile -t manifests < <(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
"$venv/kubernetes-validate" --strict --quiet -k 1.31.0 "${manifests[@]}"
"$venv/python" - <<'PY'
import pathlib
import sys

import yaml

missing = []
for kustomization in sorted(pathlib.Path("deploy/kubernetes").rglob("kustomization.yaml")):
    doc = yaml.safe_load(kustomization.read_text())
    for resource in doc.get("resources", []):
        if not (kustomization.parent / resource).exists():
            missing.append(f"{kustomization}: {resource}")
if missing:
    sys.exit("kustomization resources missing: " + ", ".join(missing))
PY
echo "deploy: ${#manifests[@]} manifests valid against Kubernetes 1.31, kustomizations complete" >&2
