#!/usr/bin/env bash
# Fetch the CUDA 11.8 headers and link stubs (and, with --nvcc, the PTX
# compiler) from Debian's non-free packages into a private folder, without
# touching the system's apt configuration or needing a GPU:
#
#   scripts/cuda-sdk.sh [--nvcc] [DIR]      (DIR defaults to .cuda-sdk)
#
# DIR/include and DIR/lib/stubs are what `make build-cuda` compiles and links
# gorgonia.org/cu against (cu v0.9.6 does not compile against CUDA 13's
# cuda.h). DIR/bin/nvcc (with --nvcc) is what `make ptx` regenerates
# internal/cuda/kernels.ptx with; it needs gcc-12 or older.
set -euo pipefail
nvcc=no
if [ "${1:-}" = "--nvcc" ]; then nvcc=yes; shift; fi
dir=$(realpath -m "${1:-.cuda-sdk}")
if [ -f "$dir/include/cuda.h" ] && [ -f "$dir/lib/stubs/libcuda.so" ] && { [ $nvcc = no ] || [ -x "$dir/bin/nvcc" ]; }; then
  echo "CUDA SDK already in $dir"; exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb http://deb.debian.org/debian bookworm main contrib non-free" >"$work/sources.list"
apt=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Sandbox::User=root)
apt-get "${apt[@]}" update -qq
pkgs=(nvidia-cuda-dev)
[ $nvcc = yes ] && pkgs+=(nvidia-cuda-toolkit libnvvm4)
(cd "$work" && apt-get "${apt[@]}" download "${pkgs[@]}" -qq)
mkdir -p "$dir/include" "$dir/lib/stubs"
dpkg-deb --fsys-tarfile "$work"/nvidia-cuda-dev_*.deb | tar -x -C "$work" ./usr/include ./usr/lib/x86_64-linux-gnu/stubs
cp -a "$work/usr/include/." "$dir/include/"
cp -a "$work/usr/lib/x86_64-linux-gnu/stubs/." "$dir/lib/stubs/"
if [ $nvcc = yes ]; then
  mkdir -p "$work/tk" "$dir/bin" "$dir/nvvm/libdevice"
  dpkg-deb -x "$work"/nvidia-cuda-toolkit_*.deb "$work/tk"
  dpkg-deb -x "$work"/libnvvm4_*.deb "$work/tk"
  cp "$work/tk/usr/lib/nvidia-cuda-toolkit/bin/nvcc" "$dir/bin/"  # /usr/bin/nvcc is a wrapper
  for b in cudafe++ ptxas fatbinary nvlink bin2c; do cp "$work/tk/usr/bin/$b" "$dir/bin/"; done
  cp "$work/tk/usr/lib/nvidia-cuda-toolkit/bin/cicc" "$dir/bin/"
  cp -a "$work/tk/usr/lib/nvidia-cuda-toolkit/bin/crt" "$dir/bin/" 2>/dev/null || true
  cp "$work/tk/usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc" "$dir/nvvm/libdevice/"
  cp -a "$work"/tk/usr/lib/x86_64-linux-gnu/libnvvm.so* "$dir/lib/"
  # nvcc reads nvcc.profile beside itself; paths relative to it keep DIR movable.
  cat >"$dir/bin/nvcc.profile" <<'PROFILE'
TOP = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
LD_LIBRARY_PATH += $(TOP)/lib:
PATH += $(_HERE_):
INCLUDES += "-I$(TOP)/include" $(_SPACE_)
LIBRARIES =+ $(_SPACE_) "-L$(TOP)/lib/stubs"
PROFILE
fi
echo "CUDA 11.8 SDK (headers, stubs$([ $nvcc = yes ] && echo ', nvcc')) in $dir: $(du -sh "$dir" | cut -f1)"
