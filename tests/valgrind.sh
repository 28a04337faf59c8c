#!/bin/sh
# valgrind memcheck on the integration path of each executable (issue 9, "Bounds and
# leaks"), at a tiny shape (8 clips of 8 frames of 32x32, ngf = ndf = 8, batch 2) and
# one thread, in a fresh folder build/valgrind/<time>/ (or --out DIR):
#   mdgan data synth; mdgan-base train --steps 3 (checkpoints at steps 2 and 3, samples);
#   mdgan-base infer; mdgan-base serve with mdgan-refine train --steps 2 against it over
#   ipc, both under valgrind (the server stopped with SIGTERM); mdgan-refine infer;
#   mdgan predict through G1 and G2; mdgan eval; mdgan run of a whole tiny pipeline (the
#   coordinator under valgrind, its children natively); mdgan resume of the finished
#   run; mdgan refine --run (a job); mdgan report; mdgan runs; mdgan status --once;
#   another run stopped with mdgan stop in Stage I, and mdgan resume of it to the end.
# Each step: --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 with
# --track-fds=yes and tests/valgrind.supp (third-party noise only; each suppression
# says why). A step fails on any memcheck error (invalid access, uninitialised value,
# definite leak), a descriptor it opened and left open at exit, or an unexpected exit
# status. Prints a line per step (status, errors, definitely and indirectly lost
# bytes, descriptors left open, seconds) and exits 1 if any step failed.
#   sh tests/valgrind.sh [--bin DIR] [--out DIR] [--only STEP|serve|stopped]
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/../bin OUT="" ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    *) echo "valgrind.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
command -v valgrind >/dev/null || { echo "valgrind.sh: no valgrind (apt-get install valgrind)" >&2; exit 2; }
for b in mdgan mdgan-base mdgan-refine; do
    [ -x "$BIN/$b" ] || { echo "valgrind.sh: no $BIN/$b (make first)" >&2; exit 2; }
done
BIN=$(cd "$BIN" && pwd)
DIR=${OUT:-$HERE/../build/valgrind/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)
[ -z "$(ls -A "$DIR")" ] || { echo "valgrind.sh: $DIR is not empty" >&2; exit 2; }
VG="valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 --num-callers=40
    --track-fds=yes --suppressions=$HERE/valgrind.supp"
CONF=$DIR/vg.conf CK=$DIR/runs/vg/checkpoints
FAILED="" SERVE="" RUNPID=""
# what this script started in the background is killed on any exit (the stopped run's
# stages die with its coordinator: PR_SET_PDEATHSIG)
cleanup() {
    for p in $SERVE $RUNPID; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$CONF" <<CONF
# tests/valgrind.sh: a tiny shape, one thread
[run]
name = vg
dir = $DIR/runs
threads = 1
[data]
root = $DIR/data
frames = 8
size = 32
val_fraction = 0.25
[base]
ngf = 8
ndf = 8
batch = 2
epochs = 1
ckpt_every = 2
sample_every = 2
[refine]
ngf = 8
ndf = 8
batch = 2
epochs = 1
ckpt_every = 1
sample_every = 1
[coord]
db = $DIR/mdgan.db
CONF

# The figures of a step's valgrind log: errors, definitely and indirectly lost bytes,
# descriptors the program opened and left open at exit (--track-fds): not the three
# standard ones, not those inherited from this shell, and not the self-pipe of the
# SIGINT/SIGTERM handler (train_install_signals makes it once per process, O_CLOEXEC,
# for the process's whole life: two descriptors by design, not a leak).
figures() {
    awk 'function flush() { if (blk && !inh && !selfpipe) f++; blk = 0 }
         / Open [A-Za-z_ ]*[0-9]+:/ { flush(); blk = 1; inh = 0; selfpipe = 0; next }
         blk && /inherited from parent/ { inh = 1 }
         blk && /train_install_signals/ { selfpipe = 1 }
         blk && /^==[0-9]+== *$/ { flush() }
         /HEAP SUMMARY:/ { flush() }
         /ERROR SUMMARY:/ { e = $4 }
         /definitely lost:/ { d = $4 } /indirectly lost:/ { i = $4 }
         END { flush(); gsub(",", "", d); gsub(",", "", i)
               printf "%s %s %s %d", e == "" ? "?" : e, d == "" ? 0 : d, i == "" ? 0 : i, f }' "$1"
}
# report NAME RC EXPECTED SECONDS: one line; a failure is remembered
report() {
    set -- "$1" "$2" "$3" "$4" $(figures "$DIR/vg-$1.log")
    verdict=ok
    [ "$2" = "$3" ] || verdict="FAILED (exit $2, expected $3)"
    [ "$8" = 0 ] || verdict="FAILED ($8 descriptors left open)"
    [ "$5" = 0 ] || verdict="FAILED ($5 errors)"
    printf "  %-12s exit %-3s errors %-3s definitely lost %-6s indirectly lost %-6s fds left %-2s %5ss  %s\n" \
        "$1" "$2" "$5" "$6" "$7" "$8" "$4" "$verdict" | tee -a "$DIR/summary"
    [ "$verdict" = ok ] || FAILED="$FAILED $1"
}
# Waits up to $2 seconds for child $1 to end (a zombie counts as ended); 0 if it did.
wait_end() {
    w=0
    while [ -d "/proc/$1" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]; do
        [ $w -ge "$2" ] && return 1
        sleep 1; w=$((w + 1))
    done
}
# --only STEP: that step, or the group it is in (the server's, the stopped run's)
GROUP=""
wanted() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ] || { [ -n "$GROUP" ] && [ "$ONLY" = "$GROUP" ]; }; }
# step NAME EXPECTED_EXIT COMMAND...: COMMAND under valgrind, its output in NAME.out
step() {
    name=$1 want=$2; shift 2
    wanted "$name" || return 0
    t0=$(date +%s)
    $VG --log-file="$DIR/vg-$name.log" "$@" >"$DIR/$name.out" 2>&1 </dev/null
    rc=$?
    report "$name" "$rc" "$want" $(( $(date +%s) - t0 ))
}

echo "valgrind.sh: $DIR ($(valgrind --version); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
T0=$(date +%s)
step synth 0 "$BIN/mdgan" data synth --out "$DIR/data" --clips 8 --frames 8 --size 32 --per-video 2
[ -d "$DIR/data" ] || "$BIN/mdgan" data synth --out "$DIR/data" --clips 8 --frames 8 --size 32 --per-video 2 >/dev/null
step base-train 0 "$BIN/mdgan-base" train --config "$CONF" --steps 3
[ -f "$CK/base_step_00000003.safetensors" ] ||
    "$BIN/mdgan-base" train --config "$CONF" --steps 3 >"$DIR/base-train-native.out" 2>&1
BASE=$CK/base_step_00000003.safetensors
step base-infer 0 "$BIN/mdgan-base" infer --checkpoint "$BASE" --data "$DIR/data" --out "$DIR/y1" --threads 1

# the server and the trainer at once, both under valgrind, over the run's ipc socket
GROUP=serve
if wanted serve; then
    t0=$(date +%s)
    $VG --log-file="$DIR/vg-serve.log" "$BIN/mdgan-base" serve --checkpoint "$BASE" --config "$CONF" \
        >"$DIR/serve.out" 2>"$DIR/serve.err" </dev/null &
    SERVE=$!
    w=0
    while ! grep -q '^serving' "$DIR/serve.out" 2>/dev/null && kill -0 "$SERVE" 2>/dev/null && [ $w -lt 600 ]; do
        sleep 1; w=$((w + 1))
    done
    step refine-train 0 "$BIN/mdgan-refine" train --config "$CONF" --steps 2
    kill -TERM "$SERVE" 2>/dev/null
    wait_end "$SERVE" 120 || kill -KILL "$SERVE" 2>/dev/null
    wait "$SERVE"; rc=$?; SERVE=""
    report serve "$rc" 143 $(( $(date +%s) - t0 ))
fi
GROUP=""
[ -f "$CK/refine_step_00000002.safetensors" ] ||
    "$BIN/mdgan-refine" train --config "$CONF" --base-outputs "$DIR/y1" --init-g2 "$BASE" --steps 2 \
        >"$DIR/refine-train-native.out" 2>&1
REFINE=$CK/refine_step_00000002.safetensors
[ -d "$DIR/y1" ] || "$BIN/mdgan-base" infer --checkpoint "$BASE" --data "$DIR/data" --out "$DIR/y1" --threads 1 >/dev/null 2>&1
step refine-infer 0 "$BIN/mdgan-refine" infer --checkpoint "$REFINE" --input "$DIR/y1" --out "$DIR/y2" --threads 1
step predict 0 "$BIN/mdgan" predict --checkpoint "$BASE" --refine "$REFINE" \
    --image "$DIR/data/video_000/clip_000/frame_000.png" --out "$DIR/pred" --threads 1
step eval 0 "$BIN/mdgan" eval --pred "$DIR/y1" --real "$DIR/data" --frames 8 --json "$DIR/eval.json"

# the coordinator: a whole pipeline in a run of its own (its children natively)
step run 0 "$BIN/mdgan" run "$CONF" --name whole
step resume-done 0 "$BIN/mdgan" resume whole --config "$CONF"
step refine-job 0 "$BIN/mdgan" refine --run whole --input "$DIR/y1" --out "$DIR/y2-job" --config "$CONF"
step report 0 "$BIN/mdgan" report whole --config "$CONF"
step runs 0 "$BIN/mdgan" runs --config "$CONF"
step status 0 "$BIN/mdgan" status whole --config "$CONF" --once

# a run stopped by `mdgan stop` once Stage I wrote its step-50 checkpoint, then resumed
# to the end: the coordinator's stop, resume and checkpoint-recording paths
GROUP=stopped
if wanted run-stopped; then
    t0=$(date +%s)
    $VG --log-file="$DIR/vg-run-stopped.log" "$BIN/mdgan" run "$CONF" --name part --set base.epochs=100 \
        --set base.ckpt_every=50 --set base.sample_every=50 >"$DIR/run-stopped.out" 2>&1 </dev/null &
    RUNPID=$!
    w=0
    while [ ! -f "$DIR/runs/part/checkpoints/base_step_00000050.safetensors.sha256" ] && kill -0 "$RUNPID" 2>/dev/null &&
        [ $w -lt 600 ]; do
        sleep 1; w=$((w + 1))
    done
    step stop 0 "$BIN/mdgan" stop part --config "$CONF" --wait 300
    wait_end "$RUNPID" 300 || kill -KILL "$RUNPID" 2>/dev/null
    wait "$RUNPID"; rc=$?
    RUNPID=""
    report run-stopped "$rc" 143 $(( $(date +%s) - t0 ))
    step resume 0 "$BIN/mdgan" resume part --config "$CONF"
fi
GROUP=""

echo "valgrind.sh: $(( $(date +%s) - T0 )) s in all; logs $DIR/vg-*.log"
if [ -n "$FAILED" ]; then
    echo "valgrind.sh: FAILED:$FAILED"
    exit 1
fi
echo "valgrind.sh: every step clean"
