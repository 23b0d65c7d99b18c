#!/usr/bin/env bash
# Installs libadam8bit into a temporary prefix with the top-level CMake project, then builds and
# runs consumers the way users do, outside this tree:
#   1. a CMake project with find_package(adam8bit CONFIG REQUIRED): shared, static and C++17;
#   2. a plain compiler line with `pkg-config --cflags --libs adam8bit` (and --static);
#   3. examples-c/ built standalone against the installed package, under ctest (-LE valgrind).
# Also checks the installed file set and that programs record the soname, not a build path.
# Usage: scripts/test-install.sh [build-dir]   (default: build; reuses its cargo build)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$repo/build}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
version="$(sed -n 's/^version *= *"\([0-9.]*\)".*/\1/p' "$repo/Cargo.toml" | head -1)"
abi="$(sed -n 's/^pub const BNB_ADAM8BIT_ABI_VERSION: u32 = \([0-9]*\);$/\1/p' "$repo/src/ffi/types.rs")"
soname_want="libadam8bit.so.$abi"
say() { printf '\n== %s\n' "$*"; }
fail() { echo "test-install: FAIL: $*" >&2; exit 1; }

say "configure, build and install into $prefix"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target adam8bit_cargo >/dev/null
cmake --install "$build" --prefix "$prefix"

say "installed files"
libdir="$prefix/lib"
[ -d "$libdir" ] || libdir="$(dirname "$(find "$prefix" -name 'libadam8bit.a' | head -1)")"
for f in "$libdir/libadam8bit.so" "$libdir/$soname_want" "$libdir/libadam8bit.so.$version" "$libdir/libadam8bit.a" \
         "$prefix/include/adam8bit.h" "$prefix/include/adam8bit.hpp" \
         "$libdir/cmake/adam8bit/adam8bitConfig.cmake" \
         "$libdir/cmake/adam8bit/adam8bitConfigVersion.cmake" "$libdir/pkgconfig/adam8bit.pc"; do
  [ -e "$f" ] || fail "missing $f"
  echo "ok  ${f#$prefix/}"
done
[ "$(readlink "$libdir/libadam8bit.so")" = "$soname_want" ] || fail "libadam8bit.so is not a link to $soname_want"
[ "$(readlink "$libdir/$soname_want")" = "libadam8bit.so.$version" ] || fail "$soname_want is not a link to libadam8bit.so.$version"
soname="$(objdump -p "$libdir/libadam8bit.so.$version" | awk '/SONAME/ {print $2}')"
[ "$soname" = "$soname_want" ] || fail "soname is '$soname', expected $soname_want"
echo "ok  soname $soname (ABI version $abi)"

say "CMake consumer: find_package(adam8bit $version CONFIG REQUIRED)"
cmake -S "$repo/scripts/consumer" -B "$work/cmake-consumer" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCONSUMER_EXPECT_VERSION="$version" >/dev/null
cmake --build "$work/cmake-consumer" -j2 >/dev/null
needed="$(objdump -p "$work/cmake-consumer/consumer_shared" | awk '/NEEDED/ && /adam8bit/ {print $2}')"
[ "$needed" = "$soname_want" ] || fail "consumer records '$needed', not the soname"
if objdump -p "$work/cmake-consumer/consumer_static" | grep -q 'NEEDED.*adam8bit'; then
  fail "consumer_static depends on the shared library"
fi
LD_LIBRARY_PATH="$libdir" "$work/cmake-consumer/consumer_shared"
"$work/cmake-consumer/consumer_static"
LD_LIBRARY_PATH="$libdir" "$work/cmake-consumer/consumer_cpp"
# A version the package must refuse: the next minor release.
next_minor="$(echo "$version" | awk -F. '{print $1"."$2+1}')"
if cmake -S "$repo/scripts/consumer" -B "$work/cmake-wrong" -DCMAKE_PREFIX_PATH="$prefix" \
     -DCONSUMER_EXPECT_VERSION="$next_minor" >/dev/null 2>&1; then
  fail "find_package accepted version $next_minor"
fi
echo "ok  find_package($next_minor) is refused"

say "pkg-config consumer"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
[ "$(pkg-config --modversion adam8bit)" = "$version" ] || fail "pkg-config --modversion"
# shellcheck disable=SC2046
cc -std=c99 -O2 -DCONSUMER_EXPECT_VERSION="\"$version\"" "$repo/scripts/consumer/consumer.c" \
   $(pkg-config --cflags --libs adam8bit) -lm -o "$work/pc_shared"
LD_LIBRARY_PATH="$libdir" "$work/pc_shared"
# shellcheck disable=SC2046
cc -std=c99 -O2 -DCONSUMER_EXPECT_VERSION="\"$version\"" "$repo/scripts/consumer/consumer.c" \
   "$libdir/libadam8bit.a" $(pkg-config --static --libs-only-l adam8bit | sed 's/-ladam8bit//') \
   $(pkg-config --cflags adam8bit) -lm -o "$work/pc_static"
"$work/pc_static"
# shellcheck disable=SC2046
c++ -std=c++17 -O2 "$repo/scripts/consumer/consumer.cpp" $(pkg-config --cflags --libs adam8bit) \
    -o "$work/pc_cpp"
LD_LIBRARY_PATH="$libdir" "$work/pc_cpp"

say "examples-c standalone against the installed package"
cmake -S "$repo/examples-c" -B "$work/examples" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/examples" -j2 >/dev/null
LD_LIBRARY_PATH="$libdir" ctest --test-dir "$work/examples" -LE valgrind --output-on-failure

say "test-install: OK"
