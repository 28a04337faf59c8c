#!/bin/sh
# bench/run.sh: mdgan against PyTorch on this machine, same threads, same shapes (see
# bench/README.md). Prints each run's own lines, then the tables, the last one a
# summary of every case, shape, batch, thread count and mode.
#
#   sh bench/run.sh [--threads N | --threads-list N,M,...] [--iters N] [--min-time S]
#                   [--warmup N] [--heavy-iters N] [--quick] [--cases train,refine,infer]
#                   [--shapes cpu,paper-b1,paper-b4] [--layers] [--no-torch]
#                   [--unset-openblas-env | --both-modes] [--env VAR=VALUE]... [--bin PATH]
#
# Exits 0 whenever every run completed, whichever side is faster; 1 when a run failed
# (crash, non-zero exit, no result line) or --both-modes found our outputs differing by
# more than 1e-4; 2 on bad usage or a missing binary.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/build/release/bench/bench_step"
py=/usr/bin/python3
threads_list=2 iters=5 min_time=10 warmup=2 heavy_iters=3 quick=0
cases="train,refine,infer" shapes="cpu,paper-b1,paper-b4" layers=0 torch=1 modes=env extra_env=""
tol=1e-4 # --both-modes: largest |difference| allowed between the two modes' outputs

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    cat <<'EOF'

options:
  --threads N           threads for both sides (default 2)
  --threads-list LIST   run everything at each of these thread counts (e.g. 1,2) and print
                        the scaling: time at the first count / time at each other
  --iters N             timed steps at least, light cases (default 5)
  --min-time S          and keep timing until S seconds have passed, light cases (default 10)
  --warmup N            untimed steps first, light cases (default 2)
  --heavy-iters N       timed steps of the heavy cases, train and refine at the paper shape
                        (default 3; they take 1 warm-up step and no minimum time)
  --quick               minimal iterations, nothing skipped: light cases 1 warm-up + 3 timed,
                        heavy ones 1 + 1 (a smoke run, noisier)
  --cases LIST          any of train, refine, infer, comma-separated (default all three)
  --shapes LIST         shapes of train and refine, any of cpu (T=32 64x64 nf=16 batch 4),
                        paper-b1, paper-b4 (T=32 128x128 nf=32, batch 1 / 4); default all three.
                        infer always runs at T=32 128x128 nf=32 batch 1
  --layers              also time each convolution of the C side alone (bench_step --layers)
                        at the cpu shape and at the paper shape batch 1 (the ones --shapes keeps)
  --no-torch            the C side only
  --unset-openblas-env  unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for BOTH sides
  --both-modes          run everything twice: with the environment as set, then with
                        OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for both sides; checks that
                        mdgan's first-step outputs in the two modes agree within 1e-4
  --env VAR=VALUE       set a variable for both sides (repeatable), e.g. OMP_WAIT_POLICY=passive
  --bin PATH            bench_step binary (default build/release/bench/bench_step)
EOF
}

die_usage() { echo "bench/run.sh: $*" >&2; echo "(see sh bench/run.sh --help)" >&2; exit 2; }
is_uint() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }
# check_list OPTION VALUE ALLOWED...: VALUE is a comma list of ALLOWED words, none twice
check_list() {
    opt=$1 val=$2; shift 2
    case "$val" in '' | ,* | *, | *,,*) die_usage "$opt: '$val' is not a comma-separated list" ;; esac
    seen=","
    for w in $(echo "$val" | tr ',' ' '); do
        ok=0
        for a in "$@"; do [ "$w" = "$a" ] && ok=1; done
        [ "$ok" = 1 ] || die_usage "$opt: '$w' is not one of: $*"
        case "$seen" in *",$w,"*) die_usage "$opt: '$w' given twice" ;; esac
        seen="$seen$w,"
    done
}

unset_env=0 both=0
while [ $# -gt 0 ]; do
    case "$1" in
    --threads | --threads-list | --iters | --min-time | --warmup | --heavy-iters | --cases | --shapes | --env | --bin)
        [ $# -ge 2 ] || die_usage "option $1 needs a value"
        case "$1" in
        --threads) is_uint "$2" && [ "$2" -ge 1 ] || die_usage "--threads: '$2' is not a positive integer"; threads_list=$2 ;;
        --threads-list)
            case "$2" in '' | ,* | *, | *,,*) die_usage "--threads-list: '$2' is not a comma-separated list" ;; esac
            for t in $(echo "$2" | tr ',' ' '); do
                is_uint "$t" && [ "$t" -ge 1 ] || die_usage "--threads-list: '$t' is not a positive integer"
            done
            threads_list=$2 ;;
        --iters) is_uint "$2" && [ "$2" -ge 1 ] || die_usage "--iters: '$2' is not a positive integer"; iters=$2 ;;
        --heavy-iters) is_uint "$2" && [ "$2" -ge 1 ] || die_usage "--heavy-iters: '$2' is not a positive integer"; heavy_iters=$2 ;;
        --warmup) is_uint "$2" || die_usage "--warmup: '$2' is not an integer >= 0"; warmup=$2 ;;
        --min-time) is_uint "$2" || die_usage "--min-time: '$2' is not a whole number of seconds"; min_time=$2 ;;
        --cases) check_list --cases "$2" train refine infer; cases=$2 ;;
        --shapes) check_list --shapes "$2" cpu paper-b1 paper-b4; shapes=$2 ;;
        --env)
            case "$2" in [A-Za-z_]*=*) ;; *) die_usage "--env: '$2' is not VAR=VALUE" ;; esac
            extra_env="$extra_env $2" ;;
        --bin) bin=$2 ;;
        esac
        shift 2 ;;
    --quick) quick=1; shift ;;
    --layers) layers=1; shift ;;
    --no-torch) torch=0; shift ;;
    --unset-openblas-env) unset_env=1; shift ;;
    --both-modes) both=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown option '$1'" ;;
    esac
done
[ "$unset_env" = 1 ] && [ "$both" = 1 ] &&
    die_usage "--unset-openblas-env and --both-modes: --both-modes already runs the unset mode"
for kv in $extra_env; do
    case "${kv%%=*}" in OPENBLAS_CORETYPE | OPENBLAS_L2_SIZE)
        [ "$both" = 1 ] || [ "$unset_env" = 1 ] && die_usage "--env ${kv%%=*}: the OpenBLAS mode options set that one themselves" ;;
    esac
done
[ "$both" = 1 ] && modes="env unset"
[ "$unset_env" = 1 ] && modes=unset

[ -x "$bin" ] || die_usage "no benchmark binary at $bin: build it with 'make bench' (or give --bin)"

if [ "$quick" = 1 ]; then
    light="--warmup 1 --iters 3 --min-time 0" heavy="--warmup 1 --iters 1 --min-time 0"
else
    hw=$warmup; [ "$hw" -gt 1 ] && hw=1
    light="--warmup $warmup --iters $iters --min-time $min_time" heavy="--warmup $hw --iters $heavy_iters --min-time 0"
fi

# ---------------------------------------------------------------- environment
for kv in $extra_env; do export "$kv"; done
was="OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-(unset)}"
# mode_note MODE: what a mode does to the environment, for the top and the bottom
mode_note() {
    case "$1" in
    env) echo "mode env: the environment as set ($was)" ;;
    unset) echo "mode unset: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE UNSET for BOTH sides (were: $was)" ;;
    esac
}
loud_notes() {
    for m in $modes; do
        [ "$m" = env ] && [ "$both" = 0 ] && continue
        echo "NOTE: $(mode_note "$m")"
    done
    if [ "$both" = 1 ]; then
        echo "NOTE: --both-modes: every case runs once per mode (the mode column says which)"
        [ -z "${OPENBLAS_CORETYPE+x}" ] && [ -z "${OPENBLAS_L2_SIZE+x}" ] &&
            echo "NOTE: neither variable is set here: the two modes are the same environment"
    fi
    [ -n "$extra_env" ] && echo "NOTE: extra environment for both sides:$extra_env"
    return 0
}

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
echo "== mdgan bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm)"
echo "CPU: ${cpu:-unknown} ($ncpu online CPUs); threads per side: $(echo "$threads_list" | tr ',' ' '); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-(unset)} OMP_WAIT_POLICY=${OMP_WAIT_POLICY-(unset)} OMP_NUM_THREADS=${OMP_NUM_THREADS-(unset)} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS-(unset)}"
loud_notes
echo "timing: light cases $light; heavy cases (train, refine at the paper shape) $heavy"
echo

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
failed=""
: >"$tmp/all.txt"

# shape_args NAME: bench options of a shape
shape_args() {
    case "$1" in
    cpu) echo "--frames 32 --size 64 --nf 16 --batch 4" ;;
    paper-b1) echo "--frames 32 --size 128 --nf 32 --batch 1" ;;
    paper-b4) echo "--frames 32 --size 128 --nf 32 --batch 4" ;;
    esac
}

# run MODE NAME CMD...: runs one side of one case into $tmp/NAME.log (in MODE's
# environment), shows its lines but the machine ones, checks it printed a RESULT line
# (a LAYERSUM line for --layers), and appends its machine lines, tagged with the mode,
# to $tmp/all.txt.
run() {
    mode=$1 name=$2; shift 2
    echo "-- [$mode] $name: $*" | sed "s|$root/||g"
    if [ "$mode" = unset ]; then
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@" >"$tmp/$name.log" 2>&1
    else
        "$@" >"$tmp/$name.log" 2>&1
    fi
    rc=$?
    grep -v -E '^(ENV|RESULT|PHASE|LAYER|LAYERSUM) ' "$tmp/$name.log" | sed 's/^/   /'
    want=RESULT
    case "$name" in *layers*) want=LAYERSUM ;; esac
    if [ "$rc" -ne 0 ]; then
        failed="$failed $name(exit $rc)"
    elif ! grep -q "^$want " "$tmp/$name.log"; then
        failed="$failed $name(no $want line)"
    fi
    echo "RUN name=$name" >>"$tmp/all.txt"
    sed -n -E "s/^(ENV|RESULT|PHASE|LAYERSUM) /\\1 mode=$mode /p" "$tmp/$name.log" >>"$tmp/all.txt"
}

mkdir "$tmp/dump" || exit 1
for mode in $modes; do
    for th in $(echo "$threads_list" | tr ',' ' '); do
        for c in train refine infer; do
            case ",$cases," in *",$c,"*) ;; *) continue ;; esac
            if [ "$c" = infer ]; then cshapes=infer; else cshapes=$(echo "$shapes" | tr ',' ' '); fi
            for sh in $cshapes; do
                if [ "$c" = infer ]; then sa=$(shape_args paper-b1); else sa=$(shape_args "$sh"); fi
                t=$light
                case "$c.$sh" in train.paper-* | refine.paper-*) t=$heavy ;; esac
                tag="t$th.$c.$sh"
                dump=""
                [ "$both" = 1 ] && dump="--dump $tmp/dump/$mode.$tag.txt"
                # shellcheck disable=SC2086
                run "$mode" "$mode.$tag.mdgan" "$bin" --case "$c" $sa --threads "$th" $t $dump
                if [ "$torch" = 1 ]; then
                    # shellcheck disable=SC2086
                    run "$mode" "$mode.$tag.torch" "$py" "$root/bench/bench_torch.py" --case "$c" $sa --threads "$th" $t
                fi
            done
        done
        if [ "$layers" = 1 ]; then
            case ",$shapes," in *,cpu,*)
                # shellcheck disable=SC2086
                run "$mode" "$mode.t$th.layers.cpu" "$bin" --layers $(shape_args cpu) --threads "$th" ;;
            esac
            case ",$shapes," in *,paper-*)
                # shellcheck disable=SC2086
                run "$mode" "$mode.t$th.layers.paper-b1" "$bin" --layers $(shape_args paper-b1) --threads "$th" ;;
            esac
        fi
    done
done

# ---------------------------------------------------------------- --both-modes check
# Each dump: a header naming case, shape and threads, then "name value" lines (the
# first step's losses, output means, sampled output values). Same header, same names,
# every value a finite number, and |env - unset| <= tol for every value computed from
# the initial weights. The after_adam.* values (after D's first Adam update, which
# turns the last bits of a near-zero gradient into a step of +-lr) are reported, not
# checked.
: >"$tmp/compare.txt"
if [ "$both" = 1 ]; then
    for a in "$tmp"/dump/env.*.txt; do
        [ -e "$a" ] || continue
        tag=${a#"$tmp"/dump/env.}; tag=${tag%.txt}
        b="$tmp/dump/unset.$tag.txt"
        if [ ! -e "$b" ]; then
            echo "FAIL $tag: no dump from mode unset" >>"$tmp/compare.txt"
            failed="$failed compare-$tag(no dump)"
            continue
        fi
        line=$(awk -v tol="$tol" -v tag="$tag" '
            function num(v) { return v ~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ }
            FNR == 1 { h[++f] = $0; next }
            f == 1 { a[$1] = $2; na++; next }
            {
                nb++
                if (!($1 in a)) { bad = bad " " $1 "(only in unset)"; next }
                if (!num(a[$1]) || !num($2)) { bad = bad " " $1 "(not a finite number: " a[$1] " / " $2 ")"; next }
                d = $2 - a[$1]; if (d < 0) d = -d
                if ($1 ~ /^after_adam\./) { np++; if (d > pmax || pat == "") { pmax = d; pat = $1 }; next }
                n++
                if (d > max || at == "") { max = d; at = $1 }
            }
            END {
                if (h[1] != h[2]) bad = bad " (headers differ: " h[1] " / " h[2] ")"
                if (na != nb) bad = bad " (" na " values against " nb ")"
                verdict = (bad == "" && max <= tol) ? "ok  " : "FAIL"
                post = np ? sprintf("; after Adam (not checked): %.3g at %s over %d", pmax, pat, np) : ""
                printf "%s %-20s max |env - unset| %.3g at %s over %d values%s%s\n", verdict, tag, max, at, n, post, bad
            }' "$a" "$b")
        echo "$line" >>"$tmp/compare.txt"
        case "$line" in FAIL*) failed="$failed compare-$tag" ;; esac
    done
fi

# ---------------------------------------------------------------- tables
echo
echo "== results (seconds per step; ratio = torch time / mdgan time, > 1 means mdgan is faster)"
awk -v torch="$torch" -v compare="$tmp/compare.txt" -v tol="$tol" '
function kv(line, key,    n, i, a, p) {
    n = split(line, a, " ")
    for (i = 2; i <= n; i++) { p = index(a[i], "="); if (substr(a[i], 1, p - 1) == key) return substr(a[i], p + 1) }
    return ""
}
function ratio(t, m) { return (t > 0 && m > 0) ? sprintf("%.2f", t / m) : "-" }
function ph(k, s, n) { return ((k, s, n) in phm) ? phm[k, s, n] : -1 }
function phs(v) { return v >= 0 ? sprintf("%.4f", v) : "-" }
/^RUN / { cur = ""; next }
/^RESULT / {
    s = kv($0, "side"); c = kv($0, "case"); md = kv($0, "mode"); th = kv($0, "threads")
    shp = sprintf("T=%s %sx%s nf=%s", kv($0, "T"), kv($0, "H"), kv($0, "W"), kv($0, "nf")); b = kv($0, "batch")
    k = c SUBSEP shp SUBSEP b SUBSEP th SUBSEP md
    if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
    g = c SUBSEP shp SUBSEP b SUBSEP md # the same run at other thread counts
    if (!(g in gseen)) { gseen[g] = 1; gorder[++ng] = g }
    if (!((g, th) in gth)) { gth[g, th] = 1; gths[g] = gths[g] " " th }
    med[k, s] = kv($0, "median_s"); mn[k, s] = kv($0, "min_s"); it[k, s] = kv($0, "iters")
    cps[k, s] = kv($0, "clips_per_s"); gf[k, s] = kv($0, "gflop"); rss[k, s] = kv($0, "maxrss_mib")
    base[k, s] = kv($0, "base_rss_mib"); oth[k, s] = kv($0, "other_cpus")
    lam[k, s] = kv($0, "lambda_l1") "/" kv($0, "lambda_rank") "/" kv($0, "rank_form")
    cur = k; cside = s; raw[++nr] = $0
    next
}
/^PHASE / { if (cur != "") phm[cur, cside, kv($0, "name")] = kv($0, "median_s"); next }
/^LAYERSUM / {
    nl++; raw[++nr] = $0
    if (kv($0, "other_cpus") + 0 > 0.2)
        ldisturbed = ldisturbed sprintf("%s T=%s %sx%s t%s %s", ldisturbed == "" ? "" : ";", kv($0, "T"), kv($0, "H"),
                                        kv($0, "H"), kv($0, "threads"), kv($0, "mode"))
    lay[nl] = sprintf("  %-30s %3s %-5s %3s of %3s", sprintf("T=%s %sx%s nf=%s batch=%s", kv($0, "T"), kv($0, "H"),
                      kv($0, "H"), kv($0, "nf"), kv($0, "batch")), kv($0, "threads"), kv($0, "mode"), kv($0, "at80"),
                      kv($0, "of"))
    split("G GT D", lk, " ")
    for (q = 1; q <= 3; q++)
        lay[nl] = lay[nl] sprintf("  %3.0f/%3.0f/%3.0f", 100 * kv($0, "worst_" lk[q] "_fwd"),
                                  100 * kv($0, "worst_" lk[q] "_dX"), 100 * kv($0, "worst_" lk[q] "_dW"))
    for (q = 1; q <= 3; q++)
        lay[nl] = lay[nl] sprintf("  %3.0f/%3.0f/%3.0f", 100 * kv($0, "sum_" lk[q] "_fwd"),
                                  100 * kv($0, "sum_" lk[q] "_dX"), 100 * kv($0, "sum_" lk[q] "_dW"))
    next
}
/^ENV / {
    s = kv($0, "side"); key = kv($0, "key"); md = kv($0, "mode"); v = $0; sub(/^.* key=[^ ]+ value=/, "", v)
    if (!((md, s, key) in env)) { env[md, s, key] = v; if (!(md in mseen)) { mseen[md] = 1; morder[++nm] = md } }
    next
}
END {
    # ---- every run, one line per side
    printf "%-6s %-21s %5s %3s %-5s %-6s %5s %9s %9s %8s %8s %10s %10s %6s\n", "case", "shape", "batch", "thr",
           "mode", "side", "steps", "median s", "min s", "clips/s", "GFLOP/s", "maxRSS MiB", "(at start)", "others"
    for (i = 1; i <= nk; i++) {
        k = order[i]; split(k, p, SUBSEP)
        for (j = 1; j <= 2; j++) {
            s = j == 1 ? "mdgan" : "torch"
            if (!((k, s) in med)) continue
            printf "%-6s %-21s %5s %3s %-5s %-6s %5s %9.4f %9.4f %8.3f %8.1f %10.1f %10.1f %6s\n", p[1], p[2], p[3],
                   p[4], p[5], s, it[k, s], med[k, s], mn[k, s], cps[k, s],
                   (med[k, s] > 0 ? gf[k, s] / med[k, s] : 0), rss[k, s], base[k, s], oth[k, s]
            if (oth[k, s] + 0 > 0.2) disturbed = disturbed sprintf("%s %s %s %s b%s t%s %s", disturbed == "" ? "" : ";", s, p[1], p[2], p[3], p[4], p[5])
        }
        if (p[1] == "refine" && ((k, "mdgan") in lam) && ((k, "torch") in lam) && lam[k, "mdgan"] != lam[k, "torch"])
            lamdiff = lamdiff " " p[2] "/b" p[3] "(" lam[k, "mdgan"] " vs " lam[k, "torch"] ")"
    }
    print "(GFLOP/s = nominal conv multiply-adds x 2 / median time, the same count on both sides; maxRSS includes"
    print " the interpreter and libraries: (at start) = RSS before allocating anything (torch: after import torch);"
    print " others = CPUs other processes kept busy while timing, from /proc/stat: above ~0.2 the numbers are disturbed)"
    if (disturbed != "")
        print "WARNING: other processes shared the CPUs during" disturbed "; rerun on an idle machine before trusting the ratios"
    if (lamdiff != "")
        print "WARNING: the two sides ran Stage II with different lambda_l1/lambda_rank/rank_form:" lamdiff

    # ---- phases of the training steps
    split("g_fwd d_fwd_x2 d_bwd_x2 adam_d d_fwd_g dg_bwd adam_g losses", tn, " ")
    split("G1 forward (train BN)|D forward on Y and Y1|D backward x2 (no dx)|Adam on D|D forward on Y1 (G loss)|D + G1 backward (G loss)|Adam on G1|losses, zero_grad", td, "|")
    split("g1_fwd stage2", rn, " ")
    split("frozen G1 forward (running BN)|Stage II step (G2, D2 x6, Adam x2)", rd, "|")
    for (i = 1; i <= nk; i++) {
        k = order[i]; split(k, p, SUBSEP)
        if (p[1] == "infer" || !((k, "mdgan") in med)) continue
        if (!hdr) { print ""; print "training steps by phase (median seconds; mdgan / torch / ratio):"; hdr = 1 }
        printf "  %s %s batch %s, %s threads, mode %s:\n", p[1], p[2], p[3], p[4], p[5]
        if (p[1] == "train") {
            phm[k, "mdgan", "dg_bwd"] = ph(k, "mdgan", "d_bwd_g") + ph(k, "mdgan", "g_bwd")
            for (r = 1; r <= 8; r++) {
                m = ph(k, "mdgan", tn[r]); t = ph(k, "torch", tn[r])
                printf "    %-36s %9s %9s %6s\n", td[r], phs(m), phs(t), (t >= 0 ? ratio(t, m) : "-")
                if (tn[r] == "dg_bwd")
                    printf "      %-34s %9s\n      %-34s %9s\n", "of which D backward to dY1", phs(ph(k, "mdgan", "d_bwd_g")),
                           "of which G1 backward", phs(ph(k, "mdgan", "g_bwd"))
            }
        } else {
            for (r = 1; r <= 2; r++) {
                m = ph(k, "mdgan", rn[r]); t = ph(k, "torch", rn[r])
                printf "    %-36s %9s %9s %6s\n", rd[r], phs(m), phs(t), (t >= 0 ? ratio(t, m) : "-")
            }
        }
    }

    # ---- thread scaling
    for (i = 1; i <= ng; i++) {
        g = gorder[i]; n = split(substr(gths[g], 2), ts, " ")
        if (n < 2) continue
        if (!shdr) {
            print ""
            print "thread scaling (median at the first thread count / median at the other; 2.00 = perfect on 2):"
            shdr = 1
        }
        split(g, p, SUBSEP)
        line = sprintf("  %-6s %-21s batch %-2s mode %-5s", p[1], p[2], p[3], p[4])
        for (j = 1; j <= 2; j++) {
            s = j == 1 ? "mdgan" : "torch"
            k1 = p[1] SUBSEP p[2] SUBSEP p[3] SUBSEP ts[1] SUBSEP p[4]
            if (!((k1, s) in med)) continue
            line = line sprintf(" %s", s)
            for (q = 2; q <= n; q++) {
                kq = p[1] SUBSEP p[2] SUBSEP p[3] SUBSEP ts[q] SUBSEP p[4]
                line = line sprintf(" %s->%s: %s", ts[1], ts[q], ((kq, s) in med) ? ratio(med[k1, s], med[kq, s]) : "-")
            }
        }
        print line
    }

    # ---- per-layer summaries
    if (nl) {
        print ""
        print "per-layer summaries (bench_step --layers): share of sgemm = bare sgemm time / our time, in %, as"
        print "fwd/dX/dW; worst = of the worst layer of the kind, all = sum of sgemm times / sum of ours over the kind"
        printf "  %-30s %3s %-5s %10s  %-11s  %-11s  %-11s  %-11s  %-11s  %-11s\n", "shape", "thr", "mode", ">= 80%",
               "worst G", "worst G^T", "worst D", "all G", "all G^T", "all D"
        for (i = 1; i <= nl; i++) print lay[i]
        if (ldisturbed != "")
            print "WARNING: other processes shared the CPUs during the layers of" ldisturbed "; the small layers are the first to suffer"
    }

    # ---- --both-modes
    while ((getline line < compare) > 0) {
        if (!chdr) {
            print ""
            printf "--both-modes: mdgan first-step outputs (losses, output means, 256 sampled values per output),\n"
            printf "mode env against mode unset, tolerance %s on the values from the initial weights (after_adam.* values\n", tol
            printf "come after D'"'"'s first Adam update, which amplifies the last bits of near-zero gradients):\n"
            chdr = 1
        }
        print "  " line
    }

    # ---- environment
    print ""
    print "environment:"
    for (i = 1; i <= nm; i++) {
        md = morder[i]
        printf "  [%s] mdgan threads %s; OpenBLAS %s\n", md, env[md, "mdgan", "threads"], env[md, "mdgan", "openblas"]
        printf "  [%s] mdgan sees OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n", md, env[md, "mdgan", "OPENBLAS_CORETYPE"],
               env[md, "mdgan", "OPENBLAS_L2_SIZE"]
        if (torch == 1 && ((md, "torch", "threads") in env)) {
            printf "  [%s] torch threads %s; %s\n", md, env[md, "torch", "threads"], env[md, "torch", "torch"]
            printf "  [%s] torch OpenBLAS (in process) %s\n", md, env[md, "torch", "openblas"]
            printf "  [%s] torch sees OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n", md, env[md, "torch", "OPENBLAS_CORETYPE"],
                   env[md, "torch", "OPENBLAS_L2_SIZE"]
        }
    }
    print "(threads: of the first run of the mode; each run sets its own)"

    print ""
    print "machine-readable lines (mode= added by run.sh):"
    for (i = 1; i <= nr; i++) print raw[i]

    # ---- the summary
    print ""
    print "summary (seconds per step; ratio = torch / mdgan, > 1: mdgan faster; RSS ratio = mdgan / torch peak RSS):"
    printf "%-6s %-21s %5s %3s %-5s | %9s %9s | %9s %9s | %6s %6s | %8s %8s %5s\n", "case", "shape", "batch", "thr",
           "mode", "mdgan med", "min", "torch med", "min", "ratio", "(min)", "RSS MiB", "torch", "ratio"
    for (i = 1; i <= nk; i++) {
        k = order[i]; split(k, p, SUBSEP)
        hm = (k, "mdgan") in med; ht = (k, "torch") in med
        printf "%-6s %-21s %5s %3s %-5s | %9s %9s | %9s %9s | %6s %6s | %8s %8s %5s\n", p[1], p[2], p[3], p[4], p[5],
               hm ? sprintf("%.4f", med[k, "mdgan"]) : "-", hm ? sprintf("%.4f", mn[k, "mdgan"]) : "-",
               ht ? sprintf("%.4f", med[k, "torch"]) : "-", ht ? sprintf("%.4f", mn[k, "torch"]) : "-",
               hm && ht ? ratio(med[k, "torch"], med[k, "mdgan"]) : "-", hm && ht ? ratio(mn[k, "torch"], mn[k, "mdgan"]) : "-",
               hm ? sprintf("%.1f", rss[k, "mdgan"]) : "-", ht ? sprintf("%.1f", rss[k, "torch"]) : "-",
               hm && ht ? ratio(rss[k, "mdgan"], rss[k, "torch"]) : "-"
    }
}' "$tmp/all.txt" || failed="$failed tables(awk)"
loud_notes
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "$failed" ]; then
    echo "bench/run.sh: FAILED:$failed" >&2
    exit 1
fi
exit 0
