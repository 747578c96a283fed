#!/usr/bin/env bash
# `pip install 'vggdeploy[cpu]'` alone (no dev, data or report extras), in a fresh venv beside .venv:
# the main job on vgg-mini works, INT8 on the bundled digits (which need [data]) is refused before
# the FP32 export, and `bench --out` writes its report without plots, saying why. CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-cpu-only
rm -rf "$VENV" /tmp/vggdeploy-extras
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$VENV/bin/python" -m pip install -q -e '.[cpu]'
VGG="$VENV/bin/vggdeploy"
out=/tmp/vggdeploy-extras
for missing in matplotlib mlxtend pytest; do
  if "$VENV/bin/python" -c "import $missing" 2>/dev/null; then echo "FAIL: $missing is installed by [cpu]"; exit 1; fi
done
"$VGG" export vgg-mini --form all --fp16 --out "$out/mini"
set +e
"$VGG" export vgg-mini --int8 --target cpu --out "$out/int8" 2>"$out/int8.err"
code=$?
set -e
if [ "$code" != 3 ] || [ -e "$out/int8" ] || ! grep -q "vggdeploy\[data\]" "$out/int8.err"; then
  echo "FAIL: INT8 without [data] should be refused (exit 3) before any export; got $code:"; cat "$out/int8.err"; exit 1
fi
"$VGG" bench "$out/mini" --batch 1 --runs 3 --out "$out/run"
grep -q "No plots: they need matplotlib" "$out/run/report.html" || { echo "FAIL: report.html does not say why it has no plots"; exit 1; }
grep -q "classifier" "$out/run/bench.md"
rm -rf "$VENV" "$out"
echo "extras check: [cpu] alone runs the main job; INT8 without [data] refused before work; report without plots says why"
