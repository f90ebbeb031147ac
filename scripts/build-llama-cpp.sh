#!/usr/bin/env bash
# llama.cpp, the peer every figure of BENCHMARKS.md is measured against, built from the sources
# vendored in the PyPI sdist of llama-cpp-python (PyPI is reachable here; GitHub releases are
# not): a Vulkan build (runs on lavapipe here, and on a real GPU) and a CPU build.
#
#   scripts/build-llama-cpp.sh            # → target/llama.cpp/{vulkan,cpu}/bin/llama-bench
#
# Needs cmake, glslc and libvulkan-dev (Debian's packages; installed when missing and root).
# Debian 12's Vulkan headers (1.3.239) predate VK_EXT_layer_settings, which llama.cpp uses to
# turn on the validation layer's best-practice checks when that layer is present: the patch
# below compiles that part only where the headers have it. Debian 12's glslc is too old for
# llama.cpp's cooperative-matrix and integer-dot shaders, which it then leaves out (as it says
# at configure time). Took 8 minutes on 2 cores. Set JOBS to change -j.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.3.35
sha256=1139dbb54509074b70893fab8554e3b079aa9f4d312058ce4018ef0019e3de12
root=target/llama.cpp
src=$root/src/llama_cpp_python-$version/vendor/llama.cpp
jobs=${JOBS:-$(nproc)}

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v glslc >/dev/null || need+=(glslc)
[ -f /usr/include/vulkan/vulkan.h ] || need+=(libvulkan-dev)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "missing: ${need[*]} (install them, or run as root)" >&2; exit 1; }
  apt-get install -y -q "${need[@]}" >/dev/null
fi

if [ ! -f "$src/CMakeLists.txt" ]; then
  mkdir -p "$root/src"
  tarball=$root/src/llama_cpp_python-$version.tar.gz
  if [ ! -f "$tarball" ]; then
    # The sdist's address, from PyPI's simple index (pip download would build its metadata).
    url=$(curl -fsS "https://pypi.org/simple/llama-cpp-python/" |
      grep -o "https://[^\"#]*llama_cpp_python-$version.tar.gz" | head -1)
    [ -n "$url" ] || { echo "llama-cpp-python $version: no sdist on PyPI's index" >&2; exit 1; }
    curl -fsSL -o "$tarball.part" "$url"
    mv "$tarball.part" "$tarball"
  fi
  echo "$sha256  $tarball" | sha256sum -c --quiet
  tar -xzf "$tarball" -C "$root/src"
fi

# Guard VK_EXT_layer_settings (see above); a no-op where the sources no longer need it.
python3 - "$src/ggml/src/ggml-vulkan/ggml-vulkan.cpp" <<'EOF'
import sys
path = sys.argv[1]
text = open(path).read()
start = text.find("    std::vector<vk::LayerSettingEXT> settings = {")
end_marker = "&layer_setting_info);\n"
if start >= 0 and "#ifdef VK_EXT_layer_settings\n    std::vector<vk::LayerSettingEXT>" not in text:
    end = text.index(end_marker, start) + len(end_marker)
    block = text[start:end]
    plain = "    vk::InstanceCreateInfo instance_create_info(vk::InstanceCreateFlags{}, &app_info, layers, extensions);\n"
    text = text[:start] + "#ifdef VK_EXT_layer_settings\n" + block + "#else\n" + plain + "#endif\n" + text[end:]
    open(path, "w").write(text)
EOF

build() { # name, cmake options...
  local name=$1
  shift
  if [ ! -x "$root/$name/bin/llama-bench" ]; then
    cmake -S "$src" -B "$root/build-$name" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF \
      -DCMAKE_INSTALL_PREFIX="$PWD/$root/$name" "$@" >"$root/build-$name.log"
    cmake --build "$root/build-$name" --target llama-bench llama-perplexity -j "$jobs" >>"$root/build-$name.log"
    mkdir -p "$root/$name/bin"
    cp "$root/build-$name/bin/llama-bench" "$root/build-$name/bin/llama-perplexity" "$root/$name/bin/"
  fi
  echo "$root/$name/bin/llama-bench"
}
build cpu -DGGML_NATIVE=ON
build vulkan -DGGML_VULKAN=ON -DGGML_NATIVE=ON
