#!/bin/sh
# Runs every test program given (cmocka) and prints one closing line
# "N passed, N failed" over all of them. Exits non-zero if any test failed, or any
# program exited non-zero or printed no cmocka summary (a crash).
passed=0; failed=0; broken=""
log=$(mktemp); trap 'rm -f "$log"' EXIT
for t in "$@"; do
    echo "== $(basename "$t")"
    "$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] || ! grep -q '^\[==========\] .*test(s) run\.' "$log"; then
        broken="$broken $(basename "$t")(exit $rc)"; failed=$((failed + 1))
    fi
done
[ -n "$broken" ] && echo "programs that crashed or exited non-zero without a failed test:$broken"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
