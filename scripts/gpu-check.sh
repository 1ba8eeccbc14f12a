#!/usr/bin/env bash
# Builds the CUDA tests of the engine here and bundles them for a GPU machine that has CUDA 13
# (driver, cuBLAS) but none of this machine's Debian libraries (issue 15, "Run it on a GPU").
#
#   scripts/gpu-check.sh [BUNDLE]     build into build-gpu/ (engine only, sm_80 + sm_90 + PTX),
#                                     write BUNDLE (default build-gpu/bundle)
#   BUNDLE/run.sh                     on the GPU machine: every CUDA test, logs and gtest JSON to
#                                     $OUT (default BUNDLE/out), a short table last
#
# The bundle holds the test binaries, the conformance kits they read, and every shared library
# they load except glibc's own, the CUDA driver (libcuda) and cuBLAS (hundreds of MiB; the GPU
# machine has it: run.sh looks in $CUDA_HOME/lib64, /usr/local/cuda/lib64 and $LD_LIBRARY_PATH).
# Abseil's and the CUDA runtime travel in lib/, libstdc++ and libgcc_s in lib/fallback (used
# only where the machine's own are too old). glibc does not travel: the test binaries need glibc
# 2.34, the fallback libstdc++ 2.36 (Debian 12's); run.sh reports a binary that cannot load.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bundle=${1:-build-gpu/bundle}
build=build-gpu
tests=(cuda_kernels_test cuda_slot_pool_test cuda_conformance_test)

command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]] || { echo "gpu-check: no nvcc here" >&2; exit 1; }
export PATH=$PATH:/usr/local/cuda/bin
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRETAIN_ENGINE_ONLY=ON \
  -DCMAKE_CUDA_ARCHITECTURES="80-real;90-real;90-virtual" >/dev/null
cmake --build "$build" --parallel "$(nproc)" --target "${tests[@]}"

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib/fallback" "$bundle/data/conformance"
for t in "${tests[@]}"; do cp "$build/tests/$t" "$bundle/bin/"; done
# The kits the CUDA tests open (RETAIN_TEST_DATA_DIR points there at run time).
for k in rwkv7-tiny rwkv7-tiny-bf16 rwkv4-tiny retnet-tiny transnormer-tiny; do
  cp -r "tests/data/conformance/$k" "$bundle/data/conformance/"
done
# Every library ldd resolves, less glibc's, the driver's and cuBLAS's.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libresolv|libcuda\.so|libcublas)'
for t in "${tests[@]}"; do
  ldd "$build/tests/$t" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] && continue
  # libstdc++ and libgcc_s go to lib/fallback: this one needs glibc 2.36, so run.sh uses it only
  # where the machine's own is too old for the binaries.
  if [[ $name =~ ^(libstdc\+\+|libgcc_s) ]]; then
    cp -L "$path" "$bundle/lib/fallback/$name"
  else
    cp -L "$path" "$bundle/lib/$name"
  fi
done

cat > "$bundle/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs every CUDA test of the bundle; logs and gtest JSON to $OUT (default ./out beside this file),
# a summary table last. Exit status: 0 when every binary exits 0. On a GPU exactly one test skips
# (CudaBackend.WithoutADeviceRefusesToStartSayingSo); any other skip means the device was not found.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib:${CUDA_HOME:-/usr/local/cuda}/lib64:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
if ldd "$here"/bin/* 2>&1 | grep -q "not found"; then
  export LD_LIBRARY_PATH="$here/lib/fallback:$LD_LIBRARY_PATH"  # this machine's libstdc++ is too old
fi
export RETAIN_TEST_DATA_DIR="$here/data"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "no nvidia-smi"; } | tee "$out/device.txt"
status=0
rows=()
for bin in "$here"/bin/*; do
  name=$(basename "$bin")
  missing=$(ldd "$bin" 2>&1 | grep -E "not found|version .* not found" || true)
  if [[ -n $missing ]]; then
    echo "$missing" > "$out/$name.ldd.txt"
    rows+=("$(printf '%-24s %s' "$name" "CANNOT LOAD (see $name.ldd.txt)")")
    status=1
    continue
  fi
  "$bin" --gtest_output="json:$out/$name.json" > "$out/$name.log" 2>&1
  rc=$?
  passed=$(grep -oE '^\[  PASSED  \] [0-9]+' "$out/$name.log" | grep -oE '[0-9]+$' || echo 0)
  skipped=$(grep -oE '^\[  SKIPPED \] [0-9]+' "$out/$name.log" | grep -oE '[0-9]+$' || echo 0)
  failed=$(grep -oE '^\[  FAILED  \] [0-9]+ test' "$out/$name.log" | grep -oE '[0-9]+' || echo 0)
  [[ $rc -ne 0 ]] && status=1
  rows+=("$(printf '%-24s rc=%-3s passed=%-4s skipped=%-4s failed=%s' "$name" "$rc" "$passed" "$skipped" "$failed")")
done
grep -h "cuda conformance" "$out"/*.log 2>/dev/null | tee "$out/conformance.txt"
echo "---- retain CUDA tests (full logs in $out) ----"
printf '%s\n' "${rows[@]}"
echo "(on a GPU: skipped=1 in cuda_conformance_test, the no-device test; 0 elsewhere)"
exit $status
RUN
chmod +x "$bundle/run.sh"
du -sh "$bundle"
echo "gpu-check: bundle in $bundle; copy it to the GPU machine and run $bundle/run.sh there"
