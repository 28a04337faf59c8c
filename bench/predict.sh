#!/bin/sh
# The whole-process benchmarks (issue 8, target 3), side by side in one run:
# - `mdgan predict` through G1 and G2 at the paper's shape (T=32, 128x128, ngf=32),
#   against one PyTorch process that loads the same safetensors and does the same
#   (bench/predict_torch.py);
# - `mdgan-refine infer` on a folder of 8 Base-Net output clips, against
#   bench/refine_infer_torch.py;
# - `mdgan-base serve` start-up: from exec to its 'serving ENDPOINT' line. The checkpoints are real training checkpoints (G1 or G2 with its
# discriminator and both Adam states, 603 MB each), made once by one training step of
# each stage on synthetic 128x128 clips, in $BENCH_DIR (default build/bench/predict).
#   sh bench/predict.sh [--bin DIR] [--runs N] [--threads N]
set -eu
BIN=bin RUNS=5 THREADS=2
while [ $# -gt 0 ]; do
    case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --quick) RUNS=2; shift ;;
    *) echo "predict.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${BENCH_DIR:-$HERE/../build/bench/predict}
mkdir -p "$DIR"
CK=$DIR/runs/p/checkpoints
if [ ! -f "$CK/refine_step_00000001.safetensors" ]; then
    echo "== making paper-shape checkpoints in $DIR (once)"
    rm -rf "$DIR/data" "$DIR/runs" "$DIR/y1"
    "$BIN/mdgan" data synth --out "$DIR/data" --clips 4 --frames 32 --size 128 --per-video 2 >/dev/null
    cat >"$DIR/p.conf" <<CONF
[run]
dir = $DIR/runs
name = p
threads = $THREADS
[data]
root = $DIR/data
frames = 32
size = 128
val_fraction = 0.5
[base]
ngf = 32
ndf = 32
batch = 1
[refine]
ngf = 32
ndf = 32
batch = 1
init = random
CONF
    "$BIN/mdgan-base" train --config "$DIR/p.conf" --steps 1 >/dev/null 2>&1
    "$BIN/mdgan-base" infer --checkpoint "$CK/base_step_00000001.safetensors" --data "$DIR/data" --out "$DIR/y1" >/dev/null 2>&1
    "$BIN/mdgan-refine" train --config "$DIR/p.conf" --base-outputs "$DIR/y1" --steps 1 >/dev/null 2>&1
fi
# The table of one whole-process case: "$DIR/times" holds "side seconds maxrss_kb"
# lines, "$DIR/forwards" our process's own forward times (one a run); $1 names them.
summary() {
    awk -v nets="$1" '
function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
FILENAME ~ /times$/ { n[$1]++; w[$1, n[$1]] = $2; if ($3 > rss[$1]) rss[$1] = $3 }
FILENAME ~ /forwards$/ { nc++; g[nc] = $1 }
END {
    for (s in n) { for (i = 1; i <= n[s]; i++) x[i] = w[s, i]; med[s] = median(x, n[s]); delete x }
    for (i = 1; i <= nc; i++) y[i] = g[i]; fw = median(y, nc)
    printf "   side   median s  peak RSS MiB\n"
    printf "   mdgan  %8.3f  %12.1f   (its %s forwards: median %.3f s)\n", med["mdgan"], rss["mdgan"] / 1024, nets, fw
    printf "   torch  %8.3f  %12.1f\n", med["torch"], rss["torch"] / 1024
    printf "   mdgan/torch time %.3f (target <= 0.15); mdgan whole/forwards %.2f (target <= 1.3); RSS mdgan/torch %.2f\n",
        med["mdgan"] / med["torch"], med["mdgan"] / fw, rss["mdgan"] / rss["torch"]
}' "$DIR/times" "$DIR/forwards"
}

IMG=$DIR/data/video_000/clip_000/frame_000.png
BASE=$CK/base_step_00000001.safetensors REFINE=$CK/refine_step_00000001.safetensors
if [ ! -f "$DIR/y1_8/.done" ]; then
    echo "== making 8 Base-Net output clips in $DIR/y1_8 (once)"
    rm -rf "$DIR/data8" "$DIR/y1_8"
    "$BIN/mdgan" data synth --out "$DIR/data8" --clips 8 --frames 32 --size 128 --per-video 4 >/dev/null
    "$BIN/mdgan-base" infer --checkpoint "$BASE" --data "$DIR/data8" --out "$DIR/y1_8" >/dev/null 2>&1
    : >"$DIR/y1_8/.done"
fi
# a run of each side first, untimed: both find the files in the page cache
"$BIN/mdgan" predict --checkpoint "$BASE" --refine "$REFINE" --image "$IMG" --out "$DIR/out_c" --threads "$THREADS" >/dev/null 2>&1
/usr/bin/python3 "$HERE/predict_torch.py" "$BASE" "$REFINE" "$IMG" "$DIR/out_t" --threads "$THREADS" >/dev/null 2>&1
: >"$DIR/times"; : >"$DIR/parts_c"; : >"$DIR/parts_t"
i=0
while [ $i -lt "$RUNS" ]; do
    /usr/bin/time -f "mdgan %e %M" -a -o "$DIR/times" "$BIN/mdgan" predict --checkpoint "$BASE" --refine "$REFINE" \
        --image "$IMG" --out "$DIR/out_c" --threads "$THREADS" 2>>"$DIR/parts_c" >/dev/null
    /usr/bin/time -f "torch %e %M" -a -o "$DIR/times" /usr/bin/python3 "$HERE/predict_torch.py" "$BASE" "$REFINE" \
        "$IMG" "$DIR/out_t" --threads "$THREADS" >>"$DIR/parts_t" 2>/dev/null
    i=$((i + 1))
done
echo "== predict as a whole process, T=32 128x128 ngf=32, G1+G2, $THREADS threads, $RUNS runs each (alternating)"
[ -n "${OPENBLAS_CORETYPE:-}" ] && echo "   (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE as the environment sets it)"
awk '/^predict:/ { print $6 + $9 }' "$DIR/parts_c" >"$DIR/forwards"
summary "G1+G2"
tail -n 1 "$DIR/parts_t" | sed 's/^/   last torch run: /'
rm -f "$DIR/parts_c" "$DIR/parts_t" "$DIR/forwards"

# -- mdgan-refine infer on 8 clips
"$BIN/mdgan-refine" infer --checkpoint "$REFINE" --input "$DIR/y1_8" --out "$DIR/rinf_c" --threads "$THREADS" >/dev/null 2>&1
: >"$DIR/times"; : >"$DIR/parts_c"; : >"$DIR/parts_t"
i=0
while [ $i -lt "$RUNS" ]; do
    /usr/bin/time -f "mdgan %e %M" -a -o "$DIR/times" "$BIN/mdgan-refine" infer --checkpoint "$REFINE" \
        --input "$DIR/y1_8" --out "$DIR/rinf_c" --threads "$THREADS" 2>>"$DIR/parts_c" >/dev/null
    /usr/bin/time -f "torch %e %M" -a -o "$DIR/times" /usr/bin/python3 "$HERE/refine_infer_torch.py" "$REFINE" \
        "$DIR/y1_8" "$DIR/rinf_t" --threads "$THREADS" >>"$DIR/parts_t" 2>/dev/null
    i=$((i + 1))
done
echo "== mdgan-refine infer on 8 clips as a whole process, T=32 128x128 ngf=32, $THREADS threads, $RUNS runs each"
sed -n "s/.*G2's forwards \([0-9.]*\) s.*/\1/p" "$DIR/parts_c" >"$DIR/forwards"
summary "G2"
tail -n 1 "$DIR/parts_t" | sed 's/^/   last torch run: /'
rm -f "$DIR/parts_c" "$DIR/parts_t" "$DIR/forwards"

# -- mdgan-base serve start-up: exec to the 'serving ENDPOINT' line (then SIGTERM)
: >"$DIR/times"
i=0
while [ $i -lt "$RUNS" ]; do
    rm -f "$DIR/serve.fifo" && mkfifo "$DIR/serve.fifo"
    t0=$(date +%s%N)
    "$BIN/mdgan-base" serve --checkpoint "$BASE" --config "$DIR/p.conf" --set run.threads="$THREADS" \
        >"$DIR/serve.fifo" 2>"$DIR/serve.err" &
    pid=$!
    read -r line <"$DIR/serve.fifo" || line=""
    t1=$(date +%s%N)
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    case "$line" in serving*) echo "$(( (t1 - t0) / 1000000 ))" >>"$DIR/times" ;;
    *) echo "   mdgan-base serve did not start:"; sed 's/^/     /' "$DIR/serve.err"; break ;; esac
    i=$((i + 1))
done
rm -f "$DIR/serve.fifo"
echo "== mdgan-base serve start-up (load G1 and the clips, bind), T=32 128x128 ngf=32, $RUNS runs"
sort -n "$DIR/times" | awk '{ v[NR] = $1 } END { if (NR) printf "   median %.3f s, min %.3f s\n", v[int((NR + 1) / 2)] / 1000, v[1] / 1000 }'
