#!/usr/bin/env bash
# Builds and runs keng's libFuzzer targets (tests/fuzz/). Each target runs on a copy of its
# seed corpus (tests/fuzz/corpus/<target>/), so a run never changes the repository unless
# asked to with --keep.
#
#   scripts/fuzz.sh smoke [TARGET...]     each target for FUZZ_SMOKE_SECONDS (10): make test
#   scripts/fuzz.sh run [--keep] [TARGET...]
#                                         each target for FUZZ_SECONDS (60): make fuzz;
#                                         --keep merges new coverage back into the seeds
#   scripts/fuzz.sh repro TARGET FILE...  runs TARGET once on each FILE (a crash reproducer)
#   scripts/fuzz.sh seeds                 rewrites the Avro seeds (valid ones via keng-avro)
#   scripts/fuzz.sh build                 only configures and builds the targets
#
# The build is FUZZ_BUILD_DIR (default build-fuzz): clang, Debug, address and undefined
# sanitizers, libFuzzer. Every run uses -malloc_limit_mb=512, so an input that makes keng or
# Avro-C ask for gigabytes (a hostile length prefix) is reported as a crash, not survived.
#
# A crash prints its stack and the path of its reproducer; the run goes on with the next
# target and the script exits 1 at the end. Reproducers of bugs not fixed yet are kept in
# tests/fuzz/crashes/; once fixed, move them into the target's corpus, which every run
# replays first.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
# Absolute, since targets run from inside their work folders.
[[ $build == /* ]] || build=$root/$build
fuzz_src=$root/tests/fuzz
all_targets=(fuzz_event_json fuzz_avro_decode fuzz_import_line fuzz_http_request fuzz_log_and_auth
    fuzz_web_config)

# Limits of every run: see the header.
common_flags=(-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1)

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

die() {
    echo "fuzz: $*" >&2
    exit 2
}

build_targets() {
    command -v clang >/dev/null || die "clang is missing; run scripts/install-deps.sh"
    # clang links libFuzzer and the sanitizers from libclang-rt-14-dev, which Debian only
    # recommends: say so plainly rather than fail in the middle of the build.
    if ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
        clang -x c -fsanitize=fuzzer,address,undefined - -o /dev/null 2>/dev/null; then
        die "clang cannot link libFuzzer and the sanitizers: install libclang-rt-14-dev"
    fi
    local log=$build/fuzz-build.log
    mkdir -p "$build"
    # A build dir configured by another compiler or without KENG_FUZZ cannot be reused.
    if [[ -f $build/CMakeCache.txt ]] &&
        ! grep -q '^KENG_FUZZ:BOOL=ON' "$build/CMakeCache.txt"; then
        die "$build is not a fuzz build; remove it or set FUZZ_BUILD_DIR"
    fi
    if ! CC=clang cmake -S "$root" -B "$build" -DKENG_FUZZ=ON \
        -DKENG_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug >"$log" 2>&1 ||
        ! cmake --build "$build" --target keng_fuzz -j"$(nproc)" >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "the fuzz build failed (whole log: $log)"
    fi
}

# max_len per target: an HTTP request carries headers and a body up to the 8 KiB limit
# the target sets; the others need room for a full event with a long summary.
max_len_of() {
    case $1 in
    fuzz_http_request) echo 12288 ;;
    *) echo 8192 ;;
    esac
}

# The dictionary of a target: field names, enum symbols and, for HTTP, request syntax.
dict_of() {
    local target=$1 out=$2
    cat "$fuzz_src/event.dict" >"$out"
    [[ $target == fuzz_http_request ]] && cat "$fuzz_src/http.dict" >>"$out"
    [[ $target == fuzz_import_line ]] && cat "$fuzz_src/csv.dict" >>"$out"
    echo "$out"
}

# Runs one target for $2 seconds. Returns non-zero on a crash, a leak, a timeout or a
# broken property, after printing the report and the reproducer's path.
run_target() {
    local target=$1 seconds=$2 keep=$3
    local bin=$build/fuzz/$target
    local work=$build/fuzz-work/$target
    local seeds=$fuzz_src/corpus/$target
    local log=$work/log.txt

    [[ -x $bin ]] || die "no such target: $target"
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp -R "$seeds/." "$work/corpus/"
    local dict
    dict=$(dict_of "$target" "$work/dict")

    local rc=0
    (cd "$work" && "$bin" "${common_flags[@]}" -max_total_time="$seconds" \
        -max_len="$(max_len_of "$target")" -dict="$dict" \
        -artifact_prefix="$work/artifacts/" "$work/corpus" >"$log" 2>&1) || rc=$?

    local execs cov
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    if [[ $rc -ne 0 ]]; then
        echo "fuzz: $target FAILED (exit $rc) after ${execs:-?} runs; the report:"
        # The log from the first line of the sanitizer's, libFuzzer's or the property's report.
        local start
        start=$(grep -n -m1 -E '^==[0-9]+==|runtime error|fuzz property broken|^ALARM|ERROR: libFuzzer' \
            "$log" | cut -d: -f1 || true)
        if [[ -n $start ]]; then
            sed -n "${start},\$p" "$log" | head -n 80
        else
            tail -n 40 "$log"
        fi
        local a
        for a in "$work"/artifacts/*; do
            [[ -e $a ]] || continue
            echo "fuzz: reproducer: $a"
            echo "fuzz: replay it with: scripts/fuzz.sh repro $target $a"
        done
        echo "fuzz: whole log: $log"
        return 1
    fi
    echo "fuzz: $target ok: ${execs:-?} runs in ${seconds}s, coverage ${cov:-?} edges," \
        "corpus $(find "$work/corpus" -type f | wc -l) inputs"
    if [[ $keep == yes ]]; then
        # Merge keeps only the inputs that add coverage over what the seeds have.
        "$bin" -merge=1 -max_len="$(max_len_of "$target")" "${common_flags[@]}" \
            "$seeds" "$work/corpus" >"$work/merge.txt" 2>&1 ||
            echo "fuzz: $target: merging into $seeds failed (see $work/merge.txt)"
        echo "fuzz: $target: seeds now $(find "$seeds" -type f | wc -l) inputs"
    fi
    return 0
}

run_all() {
    local seconds=$1 keep=$2
    shift 2
    local targets=("$@")
    [[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")
    build_targets
    local passed=0 failed=0 t
    for t in "${targets[@]}"; do
        if run_target "$t" "$seconds" "$keep"; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
        fi
    done
    echo "fuzz: $passed passed, $failed failed"
    [[ $failed -eq 0 ]]
}

repro() {
    [[ $# -ge 2 ]] || die "usage: scripts/fuzz.sh repro TARGET FILE..."
    local target=$1
    shift
    build_targets
    "$build/fuzz/$target" "${common_flags[@]}" -runs=1 "$@"
}

# Zigzag varint of a non-negative or negative 64-bit number, as printf escapes.
varint() {
    local n=$1 v out=""
    v=$(((n << 1) ^ (n >> 63)))
    while true; do
        # Shift as unsigned: bash has signed 64-bit arithmetic only.
        local low=$((v & 0x7f))
        v=$(((v >> 7) & 0x01ffffffffffffff))
        if [[ $v -eq 0 ]]; then
            out+=$(printf '\\x%02x' "$low")
            break
        fi
        out+=$(printf '\\x%02x' $((low | 0x80)))
    done
    printf '%s' "$out"
}

# Avro string: length then bytes.
avro_string() {
    printf '%s%s' "$(varint ${#1})" "$1"
}

seeds() {
    local dir=$fuzz_src/corpus/fuzz_avro_decode json=$fuzz_src/corpus/fuzz_event_json
    local avro=${KENG_AVRO:-$root/build/bin/keng-avro} tmp
    [[ -x $avro ]] || die "no keng-avro at $avro; build keng or set KENG_AVRO"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN

    # Valid framed messages of both kinds, from the JSON seeds.
    cat "$json/incident_full.json" "$json/incident_minimal.json" |
        "$avro" encode --kind incident --out-dir "$tmp/i" 2>/dev/null
    cat "$json/mediation_full.json" "$json/mediation_minimal.json" |
        "$avro" encode --kind mediation --out-dir "$tmp/m" 2>/dev/null
    cp "$tmp/i/000001.bin" "$dir/incident_full.bin"
    cp "$tmp/i/000002.bin" "$dir/incident_minimal.bin"
    cp "$tmp/m/000001.bin" "$dir/mediation_full.bin"
    cp "$tmp/m/000002.bin" "$dir/mediation_minimal.bin"

    local gib8=$((8 << 30)) incident='\x00\x00\x00\x00\x01' mediation='\x00\x00\x00\x00\x02'
    local alert='\x00\x00\x00\x00\x03'
    # The case of the issue: the framing, then a first string (event_id) that claims 8 GiB.
    printf "$incident$(varint $gib8)" >"$dir/hostile_8gib_string.bin"
    # The same with a few bytes of the string present (an 8-byte datum).
    printf "$incident$(varint $gib8)abc" >"$dir/hostile_8gib_string_8byte_datum.bin"
    # An 8 GiB board_id after a good event_id, and an 8 GiB summary after a whole mediation.
    printf "$incident$(avro_string e-1)$(varint $gib8)x" >"$dir/hostile_8gib_board_id.bin"
    head -c -1 "$dir/mediation_minimal.bin" >"$dir/hostile_8gib_summary.bin"
    printf "\\x02$(varint $gib8)" >>"$dir/hostile_8gib_summary.bin"
    printf "$incident$(varint -5)xy" >"$dir/hostile_negative_length.bin"
    printf "$incident"'\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01' >"$dir/hostile_endless_varint.bin"
    printf "$mediation$(avro_string m-1)$(avro_string D01-C001-B01)\\x00" \
        >"$dir/hostile_mediation_truncated.bin"
    printf '\x00\x00\x00\x00\x63\x00' >"$dir/hostile_unknown_id.bin"
    printf '\x01\x00\x00\x00\x01\x00' >"$dir/hostile_bad_magic.bin"

    # Alerts: a valid one (decodes as the wrong record), then hostile block counts.
    local prefix
    prefix="$alert$(avro_string a-1)$(avro_string f)$(avro_string board-spike)\\x00\\x00"
    prefix+="$(avro_string D07-C012-B03)$(avro_string 24h)\\x18\\x14\\x00\\x00$(avro_string '')"
    printf "$prefix\\x04$(avro_string e-1)$(avro_string e-2)\\x00" >"$dir/alert_valid.bin"
    printf "$prefix$(varint $((1 << 40)))$(avro_string e-1)\\x00" >"$dir/hostile_alert_block_count.bin"
    printf "$prefix$(varint $((-(1 << 40))))$(varint 4)$(avro_string e-1)\\x00" \
        >"$dir/hostile_alert_negative_block.bin"
    printf "$prefix$(varint -1)$(varint $gib8)$(avro_string e-1)\\x00" \
        >"$dir/hostile_alert_block_size.bin"
    printf "$prefix\\x02$(avro_string e-1)$(varint $((1 << 40)))\\x00" \
        >"$dir/hostile_alert_second_block.bin"
    printf "$alert$(varint $gib8)" >"$dir/hostile_alert_8gib_id.bin"
    echo "fuzz: wrote $(find "$dir" -type f | wc -l) seeds in $dir"
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
smoke)
    run_all "${FUZZ_SMOKE_SECONDS:-10}" no "$@"
    ;;
run)
    keep=no
    if [[ ${1:-} == --keep ]]; then
        keep=yes
        shift
    fi
    run_all "${FUZZ_SECONDS:-60}" "$keep" "$@"
    ;;
repro)
    repro "$@"
    ;;
seeds)
    seeds
    ;;
build)
    build_targets
    echo "fuzz: targets built in $build/fuzz"
    ;;
*)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    [[ $cmd == -h || $cmd == --help ]] && exit 0
    exit 2
    ;;
esac
