#!/usr/bin/env bash
# Rebuild tests/goldens/micro-quick from a fresh `rlvr reproduce micro --quick` run (see README.md here).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=runs/micro-quick-golden
rm -rf "$out"
rlvr reproduce micro --quick --out "$out"
dest=tests/goldens/micro-quick
rm -rf "$dest"
mkdir -p "$dest/runs"
cp "$out/recipe.json" "$out/table.md" "$out/times.json" "$out/boundary.md" "$out/learning.json" "$dest/"
for run in "$out"/runs/*/; do
    label=$(basename "$run")
    mkdir -p "$dest/runs/$label"
    cp "$run/run.json" "$run/metrics.json" "$run/samples.jsonl" "$dest/runs/$label/"
done
echo "goldens refreshed in $dest; review 'git diff --stat $dest' and commit them with the change that needed them"
