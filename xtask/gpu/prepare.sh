#!/usr/bin/env bash
# Prepares .device/ (git-ignored through .git/info/exclude) for xtask/gpu/run.sh on a GPU
# machine that has CUDA, python3 and torch but no Rust toolchain and no network:
#   .device/trm        trm built here with --features cuda (stripped)
#   .device/xtask      the xtask binary (runs `xtask bench --trm` there)
#   .device/official/  the official TinyRecursiveModels checkout's Python files
#   .device/parity/    the parity fixtures (../shared/fixtures/parity)
#   .device/whl/       wheels the official model imports and that machine lacks (pydantic)
# Usage: xtask/gpu/prepare.sh OFFICIAL_CHECKOUT [PARITY_DIR]
set -euo pipefail
official=${1:?usage: xtask/gpu/prepare.sh OFFICIAL_CHECKOUT [PARITY_DIR]}
parity=${2:-../shared/fixtures/parity}
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device && mkdir -p .device/whl
cargo build --release --locked -p trm-cli --features cuda
cargo build --release --locked -p xtask
target=${CARGO_TARGET_DIR:-target}
strip -o .device/trm "$target/release/trm"
strip -o .device/xtask "$target/release/xtask"
[ -f "$official/models/recursive_reasoning/trm.py" ] || { echo "$official is not a TinyRecursiveModels checkout" >&2; exit 1; }
# Its Python sources only (the checkout also holds ~12 MB of ARC data the bench does not read).
mkdir -p .device/official && (cd "$official" && git ls-files -z '*.py' | xargs -0 cp --parents -t "$OLDPWD/.device/official")
if [ -d "$parity" ]; then cp -r "$parity" .device/parity; else echo "no parity fixtures at $parity: run.sh will skip parity" >&2; fi
# The GPU image's python is 3.12 (x86-64); pydantic 2 and what it needs beyond that image.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .device/whl \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
du -sh .device
