#!/bin/sh
# The soak test (issue 9, "Bounds and leaks"): a whole run (coordinator, mdgan-base
# train, then mdgan-base serve + mdgan-refine train) at a tiny shape for --minutes M,
# with a SIGKILL every --kill-every seconds to one process in turn (each stage while it
# runs, and the coordinator, which this script then resumes with `mdgan resume`).
# Every minute it logs each live process of the run (role, pid, age, VmRSS, open
# descriptors, threads), the database and the run folder's size, to soak.csv and
# stdout. At the end it stops the run, waits for every process, checks the database
# (PRAGMA integrity_check), that the run resumes, that the checkpoint folder holds no
# more than `keep` (+1 being written) files per stage, and prints a summary per role.
#
# Fails (exit 1) when, for a role, over its warm samples (process age >= 60 s, so a
# just-restarted process is never compared with a warm one) from its reference on:
# the RSS at the end (median of the last TAIL samples) or the peak RSS (VmHWM, the
# kernel's high-water mark of each process) exceeds 1.25 x the reference's + 16 MiB,
# or its descriptors exceed the reference + FD_SLACK; the reference is the role's first
# warm sample at minute >= 3 (for a stage that starts later, its first warm sample).
# A sample's RSS alone cannot be the bound: a stage's evaluation allocates its buffers
# for a fraction of a second every few seconds at this shape (mdgan-refine: 61 -> 98
# MiB), and a sample that lands on one is a transient, not growth; the high-water mark
# sees every such peak, and must not grow.
#   sh tests/soak.sh [--bin DIR] [--minutes M] [--kill-every S] [--out DIR]
# The binaries are copied into the soak folder first, so a rebuild of bin/ during the
# run does not change what restarts execute.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/../bin MINUTES=30 KILL_EVERY=150 OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --minutes) MINUTES=$2; shift 2 ;;
    --kill-every) KILL_EVERY=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
case "$MINUTES$KILL_EVERY" in *[!0-9]*) echo "soak.sh: --minutes and --kill-every take whole numbers" >&2; exit 2 ;; esac
[ "$MINUTES" -ge 4 ] || { echo "soak.sh: --minutes must be at least 4 (the reference is minute 3)" >&2; exit 2; }
for b in mdgan mdgan-base mdgan-refine; do
    [ -x "$BIN/$b" ] || { echo "soak.sh: no $BIN/$b (make first)" >&2; exit 2; }
done
RSS_PCT=25 RSS_SLACK_KB=16384 FD_SLACK=2 WARM_S=60 REF_MINUTE=3 TAIL=5
DIR=${OUT:-$HERE/../build/soak/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)
[ -z "$(ls -A "$DIR")" ] || { echo "soak.sh: $DIR is not empty" >&2; exit 2; }
SBIN=$DIR/bin CONF=$DIR/soak.conf RUN=soak CSV=$DIR/soak.csv LOG=$DIR/soak.log
RUNDIR=$DIR/runs/$RUN DB=$DIR/mdgan.db
mkdir -p "$SBIN" && cp "$BIN/mdgan" "$BIN/mdgan-base" "$BIN/mdgan-refine" "$SBIN/" || exit 1

say() { echo "soak: $*" | tee -a "$LOG"; }
now() { date +%s; }

# "role pid" for every live process of this soak: the binaries in $SBIN are ours alone.
# A coordinator's child between fork and exec still has the coordinator's command line:
# it is skipped (its parent is a coordinator too).
scan() {
    grep -l -F "$SBIN/" /proc/[0-9]*/cmdline 2>/dev/null | while read -r f; do
        d=${f%/cmdline} pid=${f#/proc/}; pid=${pid%/cmdline}
        a=$( { tr '\0' ' ' <"$f"; } 2>/dev/null) || continue
        case "$a" in
        "$SBIN/mdgan run "* | "$SBIN/mdgan resume "*)
            pp=$(sed -n 's/^PPid:[[:space:]]*//p' "$d/status" 2>/dev/null)
            case "$( { tr '\0' ' ' <"/proc/$pp/cmdline"; } 2>/dev/null)" in
            "$SBIN/mdgan run "* | "$SBIN/mdgan resume "*) continue ;;
            esac
            r=coord ;;
        "$SBIN/mdgan-base train "*) r=base ;;
        "$SBIN/mdgan-base serve "*) r=serve ;;
        "$SBIN/mdgan-refine train "*) r=refine ;;
        "$SBIN/"*) r=other ;;
        *) continue ;;
        esac
        state=$(sed 's/.*) //' "$d/stat" 2>/dev/null | cut -c1)
        case "$state" in Z | X | "") continue ;; esac
        echo "$r $pid"
    done
}
pid_of() { scan | awk -v r="$1" '$1 == r { print $2; exit }'; }
alive() { [ -n "$(scan)" ]; }

COORD=""
cleanup() {
    trap - EXIT INT TERM
    left=$(scan | awk '{ print $2 }')
    if [ -n "$left" ]; then
        echo "soak: killing what is left of the run: $(echo $left)" >&2
        kill -KILL $left 2>/dev/null
    fi
    [ -n "$COORD" ] && wait "$COORD" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Wait up to $2 seconds for pid $1 (a child of ours) to end; 0 if it did.
wait_pid() {
    w=0
    while [ -d "/proc/$1" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]; do
        [ "$w" -ge "$2" ] && return 1
        sleep 1; w=$((w + 1))
    done
    return 0
}
# Wait up to $1 seconds for every process of the run to end; 0 if they did.
wait_all() {
    w=0
    while alive; do
        [ "$w" -ge "$1" ] && return 1
        sleep 1; w=$((w + 1))
    done
    return 0
}

# -- data, calibration, config
say "folder $DIR"
"$SBIN/mdgan" data synth --out "$DIR/data" --clips 24 --frames 16 --size 32 --per-video 4 >>"$LOG" 2>&1 ||
    { say "mdgan data synth failed (see $LOG)"; exit 1; }
write_conf() { # $1 = base epochs, $2 = refine epochs
    cat >"$CONF" <<CONF
# the soak test's run (tests/soak.sh): a tiny shape, one thread per process
[run]
name = $RUN
dir = $DIR/runs
threads = 1
[data]
root = $DIR/data
frames = 16
size = 32
[base]
ngf = 8
ndf = 8
batch = 4
epochs = $1
ckpt_every = 200
sample_every = 200
keep = 3
[refine]
ngf = 8
ndf = 8
batch = 4
epochs = $2
ckpt_every = 200
sample_every = 200
keep = 3
[coord]
db = $DB
heartbeat_s = 30
restart = true
max_restarts = 1000
CONF
}
# Stage I's epochs from a timed 200-step run of it, so that it takes about 40% of the
# soak; Stage II gets more epochs than it can run.
write_conf 1000 1000000
t0=$(date +%s%N)
"$SBIN/mdgan-base" train --config "$CONF" --set run.dir="$DIR/calib" --set run.name=calib --steps 200 \
    >"$DIR/calib.log" 2>&1 || { say "calibration run failed (see $DIR/calib.log)"; exit 1; }
t1=$(date +%s%N)
ntrain=$(sed -n 's/.*: \([0-9][0-9]*\) for training.*/\1/p' "$DIR/calib.log" | head -n 1)
spe=$((${ntrain:-20} / 4))
EPOCHS=$(awk -v ns="$((t1 - t0))" -v m="$MINUTES" -v spe="$spe" \
    'BEGIN { r = 200 / (ns / 1e9); e = int(r * 0.4 * m * 60 / spe); print (e < 2 ? 2 : e) }')
rm -rf "$DIR/calib"
write_conf "$EPOCHS" 1000000
say "Stage I: $EPOCHS epochs of $spe steps (200 steps took $(( (t1 - t0) / 1000000 )) ms); Stage II: 1000000 epochs"

# -- the run
echo "minute,t_s,role,pid,age_s,rss_kb,fds,threads,db_kb,wal_kb,run_kb,hwm_kb" >"$CSV"
TICK=$(getconf CLK_TCK)
sample() { # $1 = minute
    t=$(( $(now) - START ))
    dbk=$(( $(stat -c %s "$DB" 2>/dev/null || echo 0) / 1024 ))
    walk=$(( $(stat -c %s "$DB-wal" 2>/dev/null || echo 0) / 1024 ))
    runk=$(du -sk "$RUNDIR" 2>/dev/null | cut -f1)
    up=$(cut -d' ' -f1 /proc/uptime)
    line="min $1:"
    for rp in $(scan | sort | tr ' ' ':'); do
        r=${rp%%:*} p=${rp#*:}
        rss=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$p/status" 2>/dev/null)
        hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$p/status" 2>/dev/null)
        thr=$(sed -n 's/^Threads:[[:space:]]*//p' "/proc/$p/status" 2>/dev/null)
        fds=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
        st=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f20)
        [ -n "$rss" ] && [ -n "$st" ] || continue
        age=$(awk -v u="$up" -v s="$st" -v k="$TICK" 'BEGIN { printf "%d", u - s / k }')
        echo "$1,$t,$r,$p,$age,$rss,$fds,$thr,$dbk,$walk,${runk:-0},${hwm:-0}" >>"$CSV"
        line="$line $r $p ${age}s $((rss / 1024))M ${fds}fd |"
    done
    say "$line db ${dbk}K wal ${walk}K run $(( ${runk:-0} / 1024 ))M"
}
start_coord() { # $1 = run | resume
    if [ "$1" = run ]; then
        "$SBIN/mdgan" run "$CONF" >>"$DIR/coord.log" 2>&1 &
    else
        "$SBIN/mdgan" resume "$RUN" --config "$CONF" >>"$DIR/coord.log" 2>&1 &
    fi
    COORD=$!
}
CYCLE="base serve refine coord" KI=0 KILLS="" FAIL=0
kill_next() {
    i=0
    while [ $i -lt 4 ]; do
        r=$(echo $CYCLE | cut -d' ' -f$((KI % 4 + 1)))
        KI=$((KI + 1)) i=$((i + 1))
        p=$(pid_of "$r")
        [ -n "$p" ] || continue
        # a process still starting is left alone: it has nothing to lose yet
        st=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f20)
        age=$(awk -v u="$(cut -d' ' -f1 /proc/uptime)" -v s="${st:-0}" -v k="$TICK" 'BEGIN { printf "%d", u - s / k }')
        [ "$age" -ge 15 ] || continue
        kill -KILL "$p" 2>/dev/null || continue
        KILLS="$KILLS $r"
        say "t=$(( $(now) - START ))s: SIGKILL $r (pid $p, age ${age}s)"
        if [ "$r" = coord ]; then
            wait "$COORD" 2>/dev/null
            start_coord resume
            say "  started mdgan resume $RUN (pid $COORD)"
        fi
        return
    done
    say "t=$(( $(now) - START ))s: no process old enough to kill"
}

START=$(now)
start_coord run
say "started mdgan run (pid $COORD) for $MINUTES minutes, a SIGKILL every $KILL_EVERY s"
minute=0 next_kill=$((START + 75))
while :; do
    t=$(now)
    if [ "$t" -ge $((START + minute * 60)) ]; then
        sample "$minute"
        minute=$((minute + 1))
        [ "$minute" -gt "$MINUTES" ] && break
    fi
    if [ "$t" -ge "$next_kill" ]; then
        kill_next
        next_kill=$((next_kill + KILL_EVERY))
    fi
    if wait_pid "$COORD" 0; then
        wait "$COORD"; rc=$?
        say "the coordinator (pid $COORD) ended by itself with status $rc before the end (see $DIR/coord.log)"
        FAIL=1; COORD=""
        break
    fi
    sleep 1
done
END=$(now)

# -- stop, wait, check
if [ -n "$COORD" ]; then
    say "stopping the run (mdgan stop)"
    timeout 300 "$SBIN/mdgan" stop "$RUN" --config "$CONF" --wait 240 >>"$LOG" 2>&1 ||
        { say "mdgan stop failed or timed out (see $LOG)"; FAIL=1; }
    if wait_pid "$COORD" 60; then
        wait "$COORD"; rc=$?
        say "the coordinator ended with status $rc"
        case "$rc" in 0 | 130 | 143) ;; *) FAIL=1 ;; esac
    else
        say "the coordinator did not end within 60 s of mdgan stop"; FAIL=1
    fi
    COORD=""
fi
if ! wait_all 60; then
    say "processes of the run still alive 60 s after the stop: $(scan | tr '\n' ' ')"; FAIL=1
    cleanup; trap cleanup EXIT
fi
integrity() {
    /usr/bin/python3 - "$DB" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
r = [row[0] for row in c.execute("PRAGMA integrity_check")]
f = c.execute("PRAGMA foreign_key_check").fetchall()
print("integrity_check:", ", ".join(r), "| foreign_key_check:", len(f), "rows")
for s in c.execute("SELECT stage, status, step, total_steps, restarts, exit_status FROM stages ORDER BY id"):
    print("  stage %-6s %-8s step %s/%s restarts %s (%s)" % s)
print("  rows: " + ", ".join("%s %d" % (t, c.execute("SELECT count(*) FROM " + t).fetchone()[0])
      for t in ("runs", "stages", "checkpoints", "metrics", "events", "jobs")))
sys.exit(0 if r == ["ok"] and not f else 1)
PY
}
if integrity >>"$LOG" 2>&1; then INTEGRITY=ok; else INTEGRITY=FAILED; FAIL=1; fi
say "database after the stop: $(grep '^integrity_check' "$LOG" | tail -n 1)"
grep '^  stage\|^  rows' "$LOG" | tail -n 4 | sed 's/^/soak: /'

# checkpoints left: `keep` per stage, one more at most while a write was cut
for s in base refine; do
    n=$(ls "$RUNDIR/checkpoints" 2>/dev/null | grep -c "^${s}_step_[0-9]*\.safetensors$")
    tmp=$(ls -A "$RUNDIR/checkpoints" 2>/dev/null | grep -c -v '\.safetensors$\|\.safetensors\.sha256$')
    say "checkpoints/: $n $s checkpoints, $tmp other files"
    [ "$n" -le 4 ] || { say "  more than keep + 1 = 4 $s checkpoints"; FAIL=1; }
done

# the run resumes: a detached resume, its status once a stage runs, then stop it again
RESUMED=no
if timeout 300 "$SBIN/mdgan" resume "$RUN" --config "$CONF" --detach >>"$LOG" 2>&1; then
    sleep 10
    "$SBIN/mdgan" status "$RUN" --config "$CONF" --once >"$DIR/status.txt" 2>&1
    grep -q 'running' "$DIR/status.txt" && RESUMED=yes
    sed -n '1,8p' "$DIR/status.txt" | sed 's/^/soak:   /'
    timeout 300 "$SBIN/mdgan" stop "$RUN" --config "$CONF" --wait 240 >>"$LOG" 2>&1 || RESUMED=no
    wait_all 60 || { say "the resumed run did not stop within 60 s"; RESUMED=no; }
fi
say "the run resumes: $RESUMED"
[ "$RESUMED" = yes ] || FAIL=1
if integrity >>"$LOG" 2>&1; then :; else INTEGRITY=FAILED; FAIL=1; fi
say "database after the resume: $(grep '^integrity_check' "$LOG" | tail -n 1)"

# -- the curve and the verdict
say "ran $(( (END - START) / 60 )) min $(( (END - START) % 60 )) s; kills:$KILLS"
for r in base coord serve refine; do
    echo "$KILLS" | tr ' ' '\n' | grep -c "^$r$" | sed "s/^/soak:   $r killed /;s/$/ times/"
done
echo "soak: per minute, RSS MiB/open fds of each role (* = process younger than ${WARM_S} s):"
awk -F, -v warm="$WARM_S" '
NR == 1 { next }
{ m = $1; if (m > maxm) maxm = m
  v = sprintf("%.1f/%d%s", $6 / 1024, $7, $5 < warm ? "*" : ""); k = m SUBSEP $3
  if (k in cell) cell[k] = cell[k] "," v; else cell[k] = v
  db[m] = $9 + $10; run[m] = $11 }
END {
  printf "  %3s %-12s %-12s %-12s %-12s %8s %8s\n", "min", "coord", "base", "serve", "refine", "db KiB", "run MiB"
  for (m = 0; m <= maxm; m++) {
    printf "  %3d", m
    n = split("coord base serve refine", R, " ")
    for (i = 1; i <= n; i++) printf " %-12s", (m, R[i]) in cell ? cell[m, R[i]] : "-"
    printf " %8d %8.1f\n", db[m], run[m] / 1024
  }
}' "$CSV"
echo "soak: per role, from the reference (first warm sample at minute >= $REF_MINUTE): RSS MiB at the reference, at the end (median of the last $TAIL warm samples), largest sample; peak RSS (VmHWM) at the reference and largest; fds at the reference, end, largest. Bounds: end RSS and peak <= ref x 1.$RSS_PCT + $((RSS_SLACK_KB / 1024)) MiB, fds <= ref + $FD_SLACK"
awk -F, -v warm="$WARM_S" -v refm="$REF_MINUTE" -v pct="$RSS_PCT" -v slack="$RSS_SLACK_KB" -v fslack="$FD_SLACK" \
    -v tail="$TAIL" '
function median(a, n,   i, j, t, b) {
  for (i = 1; i <= n; i++) b[i] = a[i]
  for (i = 2; i <= n; i++) for (j = i; j > 1 && b[j - 1] > b[j]; j--) { t = b[j]; b[j] = b[j - 1]; b[j - 1] = t }
  return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
}
NR == 1 { next }
$5 >= warm && $3 != "other" {
  r = $3
  if (!(r in ref)) { if ($1 < refm) next; ref[r] = $6; reff[r] = $7; refmin[r] = $1; refh[r] = $12 }
  n[r]++; v[r, n[r]] = $6; endf[r] = $7; endmin[r] = $1
  if ($6 > mx[r]) mx[r] = $6
  if ($7 > mxf[r]) mxf[r] = $7
  if ($12 > mxh[r]) mxh[r] = $12
}
END {
  bad = 0
  m = split("coord base serve refine", R, " ")
  for (i = 1; i <= m; i++) {
    r = R[i]
    if (!(r in ref)) { printf "  %-7s no warm sample at or after minute %d\n", r, refm; continue }
    k = 0; delete last
    for (j = (n[r] > tail ? n[r] - tail + 1 : 1); j <= n[r]; j++) last[++k] = v[r, j]
    end = median(last, k)
    lim = ref[r] * (1 + pct / 100) + slack
    limh = refh[r] * (1 + pct / 100) + slack
    ok = end <= lim && mxh[r] <= limh && mxf[r] <= reff[r] + fslack
    if (!ok) bad = 1
    printf "  %-7s RSS %6.1f (min %d) -> %6.1f (min %d), max %6.1f (bound %6.1f) | peak %6.1f -> max %6.1f (bound %6.1f) | fds %3d -> %3d, max %3d | %s\n",
      r, ref[r] / 1024, refmin[r], end / 1024, endmin[r], mx[r] / 1024, lim / 1024, refh[r] / 1024, mxh[r] / 1024,
      limh / 1024, reff[r], endf[r], mxf[r], ok ? "ok" : "GROWS"
  }
  exit bad
}' "$CSV" || FAIL=1
say "csv $CSV, log $LOG, run $RUNDIR"
if [ "$FAIL" -eq 0 ]; then say "PASS"; else say "FAIL"; fi
exit "$FAIL"
