#!/bin/sh
# bench/run.sh: mdgan against PyTorch on this machine, same threads, same shapes (see
# bench/README.md). Prints each run's own lines, then one table.
#
#   sh bench/run.sh [--threads N] [--iters N] [--min-time S] [--warmup N] [--quick]
#                   [--cases train,infer] [--layers] [--no-torch] [--unset-openblas-env]
#                   [--env VAR=VALUE]... [--bin PATH]
#
# Exits 0 whenever every run completed, whichever side is faster; 1 when a run failed
# (crash, non-zero exit, no result line); 2 on bad usage or a missing binary.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/build/release/bench/bench_step"
py=/usr/bin/python3
threads=2 iters=5 min_time=10 warmup=2 cases="train,infer" layers=0 torch=1 unset_env=0 extra_env=""

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    cat <<'EOF'
options:
  --threads N           threads for both sides (default 2)
  --iters N             timed steps at least (default 5)
  --min-time S          and keep timing until S seconds have passed (default 10)
  --warmup N            untimed steps first (default 2)
  --quick               --iters 3 --min-time 0 --warmup 1 (a smoke run, noisier)
  --cases LIST          train, infer or train,infer (default)
  --layers              also time each convolution of the C side alone (--layers of bench_step)
  --no-torch            the C side only
  --unset-openblas-env  unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for BOTH sides
  --env VAR=VALUE       set a variable for BOTH sides (repeatable), e.g. OMP_WAIT_POLICY=passive
  --bin PATH            bench_step binary (default build/release/bench/bench_step)
EOF
}

die_usage() { echo "bench/run.sh: $*" >&2; echo "(see sh bench/run.sh --help)" >&2; exit 2; }
is_uint() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }

while [ $# -gt 0 ]; do
    case "$1" in
    --threads | --iters | --min-time | --warmup | --cases | --env | --bin)
        [ $# -ge 2 ] || die_usage "option $1 needs a value"
        case "$1" in
        --threads) is_uint "$2" && [ "$2" -ge 1 ] || die_usage "--threads: '$2' is not a positive integer"; threads=$2 ;;
        --iters) is_uint "$2" && [ "$2" -ge 1 ] || die_usage "--iters: '$2' is not a positive integer"; iters=$2 ;;
        --warmup) is_uint "$2" || die_usage "--warmup: '$2' is not an integer >= 0"; warmup=$2 ;;
        --min-time) is_uint "$2" || die_usage "--min-time: '$2' is not a whole number of seconds"; min_time=$2 ;;
        --cases)
            case "$2" in train | infer | train,infer | infer,train) cases=$2 ;;
            *) die_usage "--cases: '$2' is not train, infer or train,infer" ;; esac ;;
        --env)
            case "$2" in [A-Za-z_]*=*) ;; *) die_usage "--env: '$2' is not VAR=VALUE" ;; esac
            extra_env="$extra_env $2" ;;
        --bin) bin=$2 ;;
        esac
        shift 2 ;;
    --quick) iters=3 min_time=0 warmup=1; shift ;;
    --layers) layers=1; shift ;;
    --no-torch) torch=0; shift ;;
    --unset-openblas-env) unset_env=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown option '$1'" ;;
    esac
done

[ -x "$bin" ] || die_usage "no benchmark binary at $bin: build it with 'make bench' (or give --bin)"

# ---------------------------------------------------------------- environment
note_unset=""
if [ "$unset_env" = 1 ]; then
    note_unset="OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE were UNSET for both sides by --unset-openblas-env (were: CORETYPE=${OPENBLAS_CORETYPE-(unset)}, L2_SIZE=${OPENBLAS_L2_SIZE-(unset)})"
    unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
fi
for kv in $extra_env; do export "$kv"; done

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
echo "== mdgan bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm)"
echo "CPU: ${cpu:-unknown} ($ncpu online CPUs); threads per side: $threads; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-(unset)} OMP_WAIT_POLICY=${OMP_WAIT_POLICY-(unset)} OMP_NUM_THREADS=${OMP_NUM_THREADS-(unset)} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS-(unset)}"
[ -n "$note_unset" ] && echo "NOTE: $note_unset"
[ -n "$extra_env" ] && echo "NOTE: extra environment for both sides:$extra_env"
echo "timing: $warmup warm-up steps, then at least $iters timed steps and at least ${min_time} s of them"
echo

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
failed=""
timing="--threads $threads --warmup $warmup --iters $iters --min-time $min_time"

# run NAME CMD...: runs one side of one case into $tmp/NAME.log, shows its lines but
# the machine ones, and checks it printed a RESULT line.
run() {
    name=$1; shift
    echo "-- $name: $*" | sed "s|$root/||g"
    "$@" >"$tmp/$name.log" 2>&1
    rc=$?
    grep -v -E '^(ENV|RESULT|PHASE|LAYER) ' "$tmp/$name.log" | sed 's/^/   /'
    if [ "$rc" -ne 0 ]; then
        failed="$failed $name(exit $rc)"
    elif ! grep -q '^RESULT ' "$tmp/$name.log" && [ "$name" != layers ]; then
        failed="$failed $name(no result line)"
    fi
}

for c in $(echo "$cases" | tr ',' ' '); do
    # shellcheck disable=SC2086
    run "mdgan-$c" "$bin" --case "$c" $timing
    if [ "$torch" = 1 ]; then
        # shellcheck disable=SC2086
        run "torch-$c" "$py" "$root/bench/bench_torch.py" --case "$c" $timing
    fi
done
if [ "$layers" = 1 ]; then
    run layers "$bin" --layers --threads "$threads"
fi

# ---------------------------------------------------------------- table
cat "$tmp"/*.log 2>/dev/null | grep -E '^(ENV|RESULT|PHASE) ' >"$tmp/all.txt"
echo
echo "== results ($threads threads per side; seconds per step; ratio = torch time / mdgan time, > 1 means mdgan is faster)"
awk -v torch="$torch" '
function kv(line, key,    n, i, a, p) {
    n = split(line, a, " ")
    for (i = 2; i <= n; i++) { p = index(a[i], "="); if (substr(a[i], 1, p - 1) == key) return substr(a[i], p + 1) }
    return ""
}
function ratio(t, m) { return (t > 0 && m > 0) ? sprintf("%.2f", t / m) : "-" }
/^RESULT / {
    s = kv($0, "side"); c = kv($0, "case")
    shape[c] = sprintf("T=%s %sx%s nf=%s batch=%s", kv($0, "T"), kv($0, "H"), kv($0, "W"), kv($0, "nf"), kv($0, "batch"))
    med[s, c] = kv($0, "median_s"); mn[s, c] = kv($0, "min_s"); it[s, c] = kv($0, "iters")
    cps[s, c] = kv($0, "clips_per_s"); gf[s, c] = kv($0, "gflop"); rss[s, c] = kv($0, "maxrss_mib")
    base[s, c] = kv($0, "base_rss_mib"); oth[s, c] = kv($0, "other_cpus")
}
/^PHASE / { s = kv($0, "side"); n = kv($0, "name"); ph[s, n] = kv($0, "median_s") }
/^ENV / {
    s = kv($0, "side"); k = kv($0, "key"); v = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ value=/, "", v)
    if (!((s, k) in env)) env[s, k] = v
}
END {
    printf "%-6s %-28s %-6s %5s %9s %9s %8s %8s %10s %10s %7s\n", "case", "shape", "side", "steps", "median s",
           "min s", "clips/s", "GFLOP/s", "maxRSS MiB", "(at start)", "others"
    nc = split("train infer", order, " ")
    for (i = 1; i <= nc; i++) {
        c = order[i]
        if (!(c in shape)) continue
        for (j = 1; j <= 2; j++) {
            s = j == 1 ? "mdgan" : "torch"
            if (!((s, c) in med)) continue
            printf "%-6s %-28s %-6s %5s %9.4f %9.4f %8.3f %8.1f %10.1f %10.1f %7s\n", c, shape[c], s, it[s, c],
                   med[s, c], mn[s, c], cps[s, c], (med[s, c] > 0 ? gf[s, c] / med[s, c] : 0), rss[s, c], base[s, c],
                   oth[s, c]
            if (oth[s, c] + 0 > 0.2) disturbed = disturbed " " s "-" c
        }
        if (((("mdgan", c) in med)) && ((("torch", c) in med)))
            printf "%-6s %-28s ratio torch/mdgan: median %s, min %s; peak RSS mdgan/torch %s\n", c, "",
                   ratio(med["torch", c], med["mdgan", c]), ratio(mn["torch", c], mn["mdgan", c]),
                   ratio(rss["mdgan", c], rss["torch", c])
    }
    print "(GFLOP/s = nominal conv multiply-adds x 2 / median time, the same count on both sides; maxRSS includes"
    print " the interpreter and libraries: (at start) = RSS before allocating anything (torch: after import torch);"
    print " others = CPUs other processes kept busy while timing, from /proc/stat: above ~0.2 the numbers are disturbed)"
    if (disturbed != "")
        print "WARNING: other processes shared the CPUs during" disturbed ": rerun on an idle machine before trusting the ratios"
    if (("mdgan", "g_fwd") in ph && ("mdgan", "g_bwd") in ph) {
        print ""
        print "train step by phase (median seconds):"
        printf "  %-34s %9s %9s %7s\n", "phase", "mdgan", "torch", "ratio"
        split("g_fwd d_fwd_x2 d_bwd_x2 adam_d d_fwd_g dg_bwd adam_g losses", names, " ")
        split("G1 forward (train BN)|D forward on Y and Y1|D backward x2 (no dx)|Adam on D|D forward on Y1 (G loss)|D + G1 backward (G loss)|Adam on G1|losses, zero_grad", desc, "|")
        ph["mdgan", "dg_bwd"] = ph["mdgan", "d_bwd_g"] + ph["mdgan", "g_bwd"]
        for (k = 1; k <= 8; k++) {
            n = names[k]; t = (("torch", n) in ph) ? ph["torch", n] : -1
            printf "  %-34s %9.4f %9s %7s\n", desc[k], ph["mdgan", n], (t >= 0 ? sprintf("%.4f", t) : "-"),
                   (t >= 0 ? ratio(t, ph["mdgan", n]) : "-")
            if (n == "dg_bwd") {
                printf "    %-32s %9.4f\n", "of which D backward to dY1", ph["mdgan", "d_bwd_g"]
                printf "    %-32s %9.4f\n", "of which G1 backward", ph["mdgan", "g_bwd"]
            }
        }
    }
    print ""
    print "environment:"
    printf "  mdgan threads %s; OpenBLAS %s\n", env["mdgan", "threads"], env["mdgan", "openblas"]
    printf "  mdgan sees OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n", env["mdgan", "OPENBLAS_CORETYPE"], env["mdgan", "OPENBLAS_L2_SIZE"]
    if (torch == 1 && (("torch", "threads") in env)) {
        printf "  torch threads %s; %s\n", env["torch", "threads"], env["torch", "torch"]
        printf "  torch OpenBLAS (in process) %s\n", env["torch", "openblas"]
        printf "  torch sees OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n", env["torch", "OPENBLAS_CORETYPE"], env["torch", "OPENBLAS_L2_SIZE"]
    }
}' "$tmp/all.txt"
[ -n "$note_unset" ] && echo "NOTE: $note_unset"
[ -n "$extra_env" ] && echo "NOTE: extra environment for both sides:$extra_env"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "$failed" ]; then
    echo "bench/run.sh: FAILED to run:$failed" >&2
    exit 1
fi
exit 0
