#!/usr/bin/env bash
# Build examples/cpp on a fresh Debian 12 machine (DESIGN.md fact 10), as root:
# - stb_image, nlohmann/json and a compiler from the system's own packages;
# - ONNX Runtime's C/C++ headers from the next Debian release's libonnxruntime-dev, downloaded
#   and unpacked here (.deps/), without touching the system's apt sources: Debian 12 has none;
# - the runtime library from the onnxruntime wheel in the project's venv, linked through a folder
#   of two symlinks (its SONAME is libonnxruntime.so.1) with an rpath.
# Prints the path of the built vgg_classify. Usage: examples/cpp/build.sh [PYTHON]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${1:-$here/../../.venv/bin/python}
deps=$here/.deps
if ! [ -f /usr/include/stb/stb_image.h ] || ! [ -d /usr/include/nlohmann ]; then
  (apt-get update -qq && apt-get install -y -qq libstb-dev nlohmann-json3-dev cmake g++) >/dev/null
fi
if ! [ -f "$deps/root/usr/include/onnxruntime/onnxruntime_cxx_api.h" ]; then
  mkdir -p "$deps/apt/lists/partial" "$deps/apt/cache/archives/partial" "$deps/debs"
  # the mirror this machine already uses, with the next release's suite
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$deps/trixie.list"
  opts=(-o "Dir::Etc::SourceList=$deps/trixie.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$deps/apt/lists" -o "Dir::Cache=$deps/apt/cache")
  apt-get "${opts[@]}" update -qq >/dev/null
  (cd "$deps/debs" && apt-get "${opts[@]}" download libonnxruntime-dev >/dev/null)
  dpkg -x "$deps"/debs/libonnxruntime-dev_*.deb "$deps/root"
fi
lib=$("$python" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.*")))[-1])')
mkdir -p "$deps/lib"
ln -sf "$lib" "$deps/lib/libonnxruntime.so"
ln -sf "$lib" "$deps/lib/libonnxruntime.so.1"
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release -DORT_INCLUDE_DIR="$deps/root/usr/include" \
      -DORT_LIB_DIR="$deps/lib" >/dev/null
cmake --build "$here/build" -j 2 >/dev/null
echo "$here/build/vgg_classify"
