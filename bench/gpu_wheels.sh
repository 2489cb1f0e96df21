#!/usr/bin/env bash
# Downloads, where pip reaches PyPI, the wheels the device machine lacks (bench/gpu_check/wheels.txt) into
# .whl/ at the repo root, for its Python 3.12 on x86-64, and keeps .whl/ out of git (.git/info/exclude).
# A device run then names `.whl` in its carry list; bench/gpu_check.sh installs them there.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2> /dev/null || echo '/.whl/' >> "$exclude"
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl -r bench/gpu_check/wheels.txt
ls -l .whl
du -sh .whl
