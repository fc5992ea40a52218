#!/usr/bin/env bash
# The long fuzz run: AFL++ through cargo-afl on one target of crates/fuzz, from its seed corpus
# and dictionary, for SECONDS (default 3600; 0 = until Ctrl-C). docs/fuzzing.md has the details.
#
#   crates/fuzz/run-afl.sh TARGET [SECONDS]     # e.g. crates/fuzz/run-afl.sh proof-verify 300
#   crates/fuzz/run-afl.sh list                 # the targets
#
# Environment: FUZZ_OUT (default target/afl-out): AFL++'s output, one folder per target, resumed
# when run again; CARGO_TARGET_DIR (default target/afl-build): the instrumented build, kept apart
# from the normal one so that neither rebuilds the other; FUZZ_JOBS (default 1): secondary
# afl-fuzz instances (-S) beside the main one (-M), one core each.
# Afterwards: the figures (execs/s, corpus, edges, crashes); each crash is replayed without AFL
# by `cargo run -p fuzz --bin fuzz-replay -- TARGET FILE`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${1:-}"
seconds="${2:-3600}"
[ -n "$target" ] || { sed -n '2,14p' "$0"; exit 2; }

if ! cargo afl --version >/dev/null 2>&1; then
  echo "run-afl: installing cargo-afl (builds AFL++ for this rustc; a few minutes)"
  cargo install cargo-afl --locked --quiet
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/afl-build}"
out_root="${FUZZ_OUT:-$repo/target/afl-out}"
cd "$repo"
cargo afl build --release --quiet -p fuzz --features afl --bin fuzz-afl
bin="$CARGO_TARGET_DIR/release/fuzz-afl"
if [ "$target" = list ]; then "$bin" || true; exit 0; fi
max_len="$("$bin" --max-len "$target")" || { "$bin"; exit 2; }

# A VM's CPU frequency governor is not ours to set; AFL++ would refuse to start over it.
export AFL_SKIP_CPUFREQ=1
# Bind to a free core if there is one, run anyway if another job holds them all.
export AFL_TRY_AFFINITY=1
# Resume a previous run's output instead of refusing to touch it.
export AFL_AUTORESUME=1
# No curses screen without a terminal: periodic status lines instead.
[ -t 1 ] || export AFL_NO_UI=1
# A core_pattern that pipes to a crash handler delays crash detection; AFL++ refuses it unless told.
if [ "$(head -c1 /proc/sys/kernel/core_pattern)" = "|" ]; then
  export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
fi

out="$out_root/$target"
mkdir -p "$out"
args=(-i "$here/corpus/$target" -o "$out" -x "$here/dict/$target.dict" -G "$max_len")
[ "$seconds" -gt 0 ] && args+=(-V "$seconds")
pids=()
for ((n = 1; n <= ${FUZZ_JOBS:-1} - 1; n++)); do
  cargo afl fuzz "${args[@]}" -S "s$n" -- "$bin" "$target" >"$out/s$n.log" 2>&1 &
  pids+=($!)
done
cargo afl fuzz "${args[@]}" -M main -- "$bin" "$target"
for pid in "${pids[@]}"; do wait "$pid" || true; done

# The figures, from each instance's fuzzer_stats.
for stats in "$out"/*/fuzzer_stats; do
  instance="$(basename "$(dirname "$stats")")"
  awk -v t="$target" -v i="$instance" -F' *: *' '
    { v[$1] = $2 }
    END { printf "%s/%s: %s execs in %s s (%s/s), corpus %s, edges %s/%s (%s), crashes %s, hangs %s, stability %s\n",
          t, i, v["execs_done"], v["run_time"], v["execs_per_sec"], v["corpus_count"], v["edges_found"],
          v["total_edges"], v["bitmap_cvg"], v["saved_crashes"], v["saved_hangs"], v["stability"] }' "$stats"
done
crashes=$(find "$out" -path '*/crashes/id:*' -type f | wc -l)
if [ "$crashes" -gt 0 ]; then
  echo "run-afl: $crashes crash input(s) under $out/*/crashes/; reproduce with:"
  echo "  cargo run -p fuzz --bin fuzz-replay -- $target $out/main/crashes"
  exit 1
fi
