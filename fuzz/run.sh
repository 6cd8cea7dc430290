#!/bin/sh
# Runs one fuzz target for SECONDS (default 600) at the lowest priority,
# with its committed seeds and a local corpus (fuzz/corpus/TARGET, not in
# git); libFuzzer's output goes to fuzz/logs/TARGET.log, crashes to
# fuzz/artifacts/TARGET/. Build first (from fuzz/):
#   RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz build -O
set -eu
cd "$(dirname "$0")"
target=$1
seconds=${2:-600}
bin=target/x86_64-unknown-linux-gnu/release/$target
mkdir -p "corpus/$target" "artifacts/$target" logs
seeds="seeds/$target"
[ -d "$seeds" ] || seeds=
exec nice -n 19 "$bin" "corpus/$target" $seeds \
    -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=25 \
    -artifact_prefix="artifacts/$target/" >"logs/$target.log" 2>&1
