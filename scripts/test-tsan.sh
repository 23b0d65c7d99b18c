#!/usr/bin/env bash
# Runs the thread tests under ThreadSanitizer with everything instrumented: the library, its
# dependencies (rayon's pool, crossbeam) and the standard library itself (-Zbuild-std, so that
# std's futex-based locks and atomics are seen; a detector that sees only the C side, or
# valgrind's DRD/helgrind, which do not understand them, would prove little). Needs a nightly
# toolchain with rust-src (added here). Its own target directory, so the normal one stays as
# it is. Any report fails the run (halt_on_error); there are no suppressions. Arguments go to
# the test binaries (`scripts/test-tsan.sh -- --nocapture` prints the figures).
#
#   tests/threads.rs       many handles x many threads, many threads on one handle, messages,
#                          set_num_threads while others step
#   tests/panic_poison.rs  a panic on a worker thread, carried to the caller and into the lock
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain=${ADAM8BIT_TSAN_TOOLCHAIN:-nightly}
rustup toolchain list | grep -q "^$toolchain" ||
    rustup toolchain install "$toolchain" --profile minimal
rustup component add rust-src --toolchain "$toolchain"

host=$(rustc +"$toolchain" -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Zsanitizer=thread"
export TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}"
cargo +"$toolchain" test --locked -Zbuild-std --target "$host" --target-dir target/tsan \
    --test threads --test panic_poison "$@"
