#!/usr/bin/env bash
# The runtime stage of the images installs only what the built binaries link, found here:
#   deploy/runtime-libs.sh list BINARY...   the Debian packages owning every library `ldd` reports
#                                           for the binaries, one a line, sorted (fails naming any
#                                           library `ldd` cannot find or no package owns)
#   deploy/runtime-libs.sh install FILE     installs the packages FILE lists (one a line), those
#                                           not installed yet, without recommends (idempotent)
# The Dockerfiles run both; tests/deploy/test_dockerfiles.py (ctest DockerImages) runs both on the
# binaries of the build, so CI checks what the image would hold.
set -euo pipefail

# dpkg may know a library as /lib/... or /usr/lib/... (merged /usr), or only the file a link names.
variants() {
  local path=$1 real p
  real=$(readlink -f "$path")
  for p in "$path" "$real"; do
    echo "$p"
    case "$p" in
      /usr/lib/*) echo "${p#/usr}" ;;
      /lib/* | /lib64/*) echo "/usr$p" ;;
    esac
  done
}

case "${1:-}" in
  list)
    shift
    (($# > 0)) || { echo "runtime-libs: list needs at least one binary" >&2; exit 2; }
    declare -A libraries=() owners=() packages=()
    status=0
    for bin in "$@"; do
      [[ -x "$bin" ]] || { echo "runtime-libs: $bin: not an executable" >&2; exit 2; }
      while read -r line; do
        if [[ "$line" == *"=> not found"* ]]; then
          echo "runtime-libs: $bin: ${line%% *} not found by ldd" >&2
          status=1
          continue
        fi
        # "libx.so.1 => /lib/.../libx.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        path=$(sed -n 's/.*=> \(\/[^ ]*\) (.*/\1/p; s/^\(\/[^ ]*\) (.*/\1/p' <<<"$line")
        [[ -n "$path" ]] && libraries[$path]="$bin"  # none for linux-vdso.so.1: no file
      done < <(ldd "$bin")
    done
    # One dpkg-query for every variant of every path ("pkg:arch[, pkg2:arch]: /path" lines).
    mapfile -t all < <(for path in "${!libraries[@]}"; do variants "$path"; done | sort -u)
    while IFS= read -r line; do
      pkg=${line%%: /*}
      pkg=${pkg%%,*}
      owners[${line#*: }]=${pkg%%:*}
    done < <(dpkg-query -S "${all[@]}" 2>/dev/null || true)
    for path in "${!libraries[@]}"; do
      found=""
      while read -r v; do
        [[ -z "$found" && -n "${owners[$v]:-}" ]] && found=${owners[$v]}
      done < <(variants "$path")
      if [[ -n "$found" ]]; then
        packages[$found]=1
      else
        echo "runtime-libs: ${libraries[$path]}: $path belongs to no Debian package" >&2
        status=1
      fi
    done
    ((status == 0)) || exit 1
    printf '%s\n' "${!packages[@]}" | sort
    ;;
  install)
    file=${2:?runtime-libs: install needs a FILE of package names}
    mapfile -t wanted < <(grep -v '^\s*$' "$file")
    missing=()
    for p in "${wanted[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
      echo "runtime-libs: all ${#wanted[@]} packages present"
    else
      SUDO=""
      if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
      export DEBIAN_FRONTEND=noninteractive
      $SUDO apt-get update -qq
      $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
      echo "runtime-libs: installed ${missing[*]}"
    fi
    ;;
  *)
    echo "usage: deploy/runtime-libs.sh list BINARY... | install FILE" >&2
    exit 2
    ;;
esac
