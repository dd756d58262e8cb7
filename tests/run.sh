#!/bin/bash
# run.sh - run strata's tests and print one summary line at the very end:
#
#   N passed, N failed, N skipped
#
# What runs:
#   - every unit test binary build/tests/test_* (built by `make unit`). They print
#     "ok - NAME", "not ok - NAME" or "ok - NAME # skip REASON"; exit 77 means the
#     whole binary was skipped (counted as 1 skip), any other nonzero exit without
#     a "not ok" line counts as 1 failure (a crash).
#   - every tests/bats/*.bats with `bats --tap`, each under a timeout. A bats file
#     that exits nonzero without a "not ok" line, or runs fewer tests than its plan,
#     counts as 1 failure named after the file.
#   - with PT_STRATAFS=BINARY (make check sets it when the passthrough build exists): the
#     bats files in PT_TESTS once more with STRATAFS=BINARY. Without it, PT_FAIL=REASON
#     counts 1 failure (the build broke) and PT_SKIP=REASON 1 skip (no libfuse >= 3.16).
#   - with CHECK_FORMAT=1 (make check sets it): `make format-check`, as one test.
#   - a leak check: fuse.stratafs mounts and stratafs processes that appeared
#     during the run and are still there at the end are 1 failure.
#
#   - with STRATA_ASAN=1 (make check sets it, after `make asan`): the unit tests of
#     build/asan and the ASAN_SUITES bats files (default: semantics copyup cli) again,
#     against the ASan+UBSan stratafs; any sanitizer report (LeakSanitizer at the
#     daemon's exit included) is 1 failure.
#
# TESTS="tests/bats/foo.bats build/tests/test_params" tests/run.sh runs a subset
# (a unit test can also be named as tests/unit/test_X.c or test_X).
# BATS_TIMEOUT (seconds, default 900) and UNIT_TIMEOUT (default 300) bound each file.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

BATS_TIMEOUT=${BATS_TIMEOUT:-900}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}
# Debian installs bats-support/-assert/-file here; tests can `bats_load_library bats-assert`
# or `load /usr/lib/bats/bats-assert/load`.
export BATS_LIB_PATH=${BATS_LIB_PATH:-/usr/lib/bats}
export STRATA_ROOT=$ROOT
export STRATAFS=${STRATAFS:-$ROOT/build/stratafs}

passed=0
failed=0
skipped=0
failures=()

LOG=$(mktemp -t strata-run.XXXXXX) || exit 2
trap 'rm -f "$LOG"' EXIT

# ---- leak-check baseline ---------------------------------------------------
stratafs_pids() {
	local d comm
	for d in /proc/[0-9]*; do
		{ read -r comm <"$d/comm"; } 2>/dev/null || continue
		[ "$comm" = stratafs ] || continue
		# a zombie has let go of everything; its parent just has not reaped it yet
		[ "$(sed -E 's/^.*\) (.).*/\1/' "$d/stat" 2>/dev/null)" = Z ] && continue
		echo "${d#/proc/}"
	done | sort
}
stratafs_mounts() {
	# /proc/mounts escapes spaces as \040; keep the line as the kernel wrote it.
	awk '$3 == "fuse.stratafs" { print $2 }' /proc/mounts 2>/dev/null | sort
}
PIDS_BEFORE=$(stratafs_pids)
MOUNTS_BEFORE=$(stratafs_mounts)

# note_leaks NAME: points at the file that left a mount behind (the leak check
# at the end is what counts). Only mounts: a daemon may take a moment to exit.
NOTED_MOUNTS=$MOUNTS_BEFORE
note_leaks() {
	local m
	for m in $(comm -13 <(echo "$NOTED_MOUNTS") <(stratafs_mounts)); do
		echo "# warning: fuse.stratafs mount $m is still there after $1"
		NOTED_MOUNTS=$(printf '%s\n%s\n' "$NOTED_MOUNTS" "$m" | grep . | sort)
	done
}

# ---- TAP accounting ----------------------------------------------------------
# count_tap FILE PREFIX: adds FILE's TAP results to the totals. Prints nothing
# (the output was already shown). Sets TAP_FAILS / TAP_RESULTS / TAP_PLAN.
count_tap() {
	local file=$1 prefix=$2 out
	out=$(awk '
		function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
		/^1\.\.[0-9]+/ { plan = substr($0, 4) + 0; next }
		/^(not )?ok([ \t]|$)/ {
			notok = ($0 ~ /^not ok/)
			rest = $0; sub(/^(not )?ok[ \t]*/, "", rest)
			sub(/^[0-9]+[ \t]*/, "", rest)       # bats: test number
			sub(/^-[ \t]*/, "", rest)            # unit: "ok - NAME"
			directive = ""
			if (match(rest, /[ \t]#[ \t]*([Ss][Kk][Ii][Pp]|[Tt][Oo][Dd][Oo])/)) {
				directive = tolower(substr(rest, RSTART, RLENGTH))
				rest = substr(rest, 1, RSTART - 1)
			}
			name = trim(rest)
			if (directive ~ /skip|todo/) { s++ }
			else if (notok) { f++; print "F\t" name }
			else { p++ }
			n++
		}
		END { printf "C\t%d\t%d\t%d\t%d\t%d\n", p, f, s, n, (plan == "" ? -1 : plan) }
	' "$file")
	TAP_FAILS=0
	while IFS=$'\t' read -r tag a b c d e; do
		case $tag in
		F) failures+=("$prefix: $a") ;;
		C)
			passed=$((passed + a))
			failed=$((failed + b))
			skipped=$((skipped + c))
			TAP_FAILS=$b
			TAP_RESULTS=$d
			TAP_PLAN=$e
			;;
		esac
	done <<<"$out"
}

fail_one() { # NAME REASON
	echo "not ok - $1: $2"
	failed=$((failed + 1))
	failures+=("$1: $2")
}
skip_one() { # NAME REASON
	echo "ok - $1 # skip $2"
	skipped=$((skipped + 1))
}
pass_one() {
	echo "ok - $1"
	passed=$((passed + 1))
}

# status_reason STATUS TIMEOUT: words for a failing exit status
status_reason() {
	case $1 in
	124) echo "timed out after $2s" ;;
	137) echo "killed (SIGKILL, after timeout?)" ;;
	*) if [ "$1" -gt 128 ]; then echo "died of signal $(($1 - 128))"; else echo "exited with status $1"; fi ;;
	esac
}

# run_logged TIMEOUT KILL_AFTER CMD...: runs CMD under timeout with its output in
# $LOG, shown live; sets RUN_STATUS. The output goes to a file, not a pipe: a
# daemon that leaks out of a test keeps its inherited fds, and a reader waiting
# for EOF on a pipe would wait for it forever. tail --pid stops with the command.
run_logged() {
	local t=$1 k=$2 pid tpid
	shift 2
	: >"$LOG"
	timeout -k "$k" "$t" "$@" </dev/null >"$LOG" 2>&1 &
	pid=$!
	CUR_PID=$pid
	# tail in the background too: bash runs the INT/TERM trap only between commands,
	# and `wait` is a command a signal interrupts.
	tail -n +1 -s 0.2 -f --pid="$pid" "$LOG" &
	tpid=$!
	# (2>/dev/null: the exit status already says "died of signal N")
	wait "$pid" 2>/dev/null
	RUN_STATUS=$?
	CUR_PID=""
	wait "$tpid"
}
# timeout runs the test in its own process group, out of reach of a terminal's ^C:
# pass INT/TERM on (timeout forwards it to the whole group).
CUR_PID=""
on_signal() {
	[ -n "$CUR_PID" ] && kill -TERM "$CUR_PID" 2>/dev/null
	echo "# interrupted"
	exit 130
}
trap on_signal INT TERM

run_unit() {
	local bin=$1 name=${2:-$(basename "$1")} st
	echo "# unit: $name"
	run_logged "$UNIT_TIMEOUT" 10 "$bin"
	st=$RUN_STATUS
	note_leaks "$name"
	if [ "$st" -eq 77 ]; then
		# the whole binary is skipped: 1 skip, but a "not ok" printed before still counts
		local keep_p=$passed keep_s=$skipped
		count_tap "$LOG" "$name"
		passed=$keep_p
		skipped=$keep_s
		local why
		# reason from a "# skip: REASON" or "1..0 # SKIP REASON" line
		why=$(grep -iE '^(1\.\.0 *)?# *skip' "$LOG" | tail -n 1 | sed -E 's/^(1\.\.0 *)?# *[Ss][Kk][Ii][Pp]:? *//')
		skip_one "$name" "${why:-exit status 77}"
		return
	fi
	count_tap "$LOG" "$name"
	if [ "$st" -ne 0 ] && { [ "$TAP_FAILS" -eq 0 ] || [ "$st" -gt 123 ]; }; then
		fail_one "$name" "$(status_reason "$st" "$UNIT_TIMEOUT")"
	elif [ "$TAP_RESULTS" -eq 0 ] && [ "$st" -eq 0 ]; then
		fail_one "$name" "printed no test results"
	fi
}

run_bats() {
	local file=$1 st label=${2:-$1}
	echo "# bats: $label"
	if ! command -v bats >/dev/null 2>&1; then
		fail_one "$file" "bats is not installed (make deps)"
		return
	fi
	run_logged "$BATS_TIMEOUT" 30 bats --tap "$file"
	st=$RUN_STATUS
	note_leaks "$label"
	count_tap "$LOG" "$label"
	if [ "$st" -ne 0 ] && { [ "$TAP_FAILS" -eq 0 ] || [ "$st" -gt 123 ]; }; then
		fail_one "$label" "bats $(status_reason "$st" "$BATS_TIMEOUT")"
	elif [ "$TAP_PLAN" -ge 0 ] && [ "$TAP_RESULTS" -lt "$TAP_PLAN" ]; then
		fail_one "$label" "only $TAP_RESULTS of $TAP_PLAN tests reported"
	fi
}

run_format_check() {
	echo "# format-check"
	if make -s --no-print-directory format-check </dev/null >"$LOG" 2>&1; then
		cat "$LOG"
		pass_one "format-check"
	else
		# show what clang-format would change, bounded
		head -n 60 "$LOG"
		fail_one "format-check" "clang-format would change files (run: make format)"
	fi
}

# ---- what to run -------------------------------------------------------------
units=()
batsfiles=()
if [ -n "${TESTS:-}" ]; then
	for t in $TESTS; do
		case $t in
		*.bats) batsfiles+=("$t") ;;
		tests/unit/test_*.c) units+=("build/tests/$(basename "$t" .c)") ;;
		test_*) units+=("build/tests/$t") ;;
		*) units+=("$t") ;;
		esac
	done
else
	for b in build/tests/test_*; do
		[ -f "$b" ] && [ -x "$b" ] && units+=("$b")
	done
	for f in tests/bats/*.bats; do
		[ -f "$f" ] && batsfiles+=("$f")
	done
fi

for u in ${units[@]+"${units[@]}"}; do
	if [ ! -x "$u" ]; then
		fail_one "$u" "no such test binary (make unit)"
		continue
	fi
	run_unit "$u"
done
for f in ${batsfiles[@]+"${batsfiles[@]}"}; do
	if [ ! -f "$f" ]; then
		fail_one "$f" "no such bats file"
		continue
	fi
	run_bats "$f"
done
# make check: some suites again against the passthrough build (PT_STRATAFS, make passthrough)
if [ -n "${PT_STRATAFS:-}" ]; then
	for f in ${PT_TESTS:-}; do
		echo "# passthrough build ($PT_STRATAFS):"
		STRATAFS=$PT_STRATAFS run_bats "$f"
	done
elif [ -n "${PT_FAIL:-}" ]; then
	fail_one "passthrough build" "$PT_FAIL"
elif [ -n "${PT_SKIP:-}" ]; then
	skip_one "passthrough build" "$PT_SKIP"
fi
if [ "${CHECK_FORMAT:-0}" = 1 ]; then
	run_format_check
fi

# ---- the ASan+UBSan pass ---------------------------------------------------------
run_asan() {
	local dir=$ROOT/${ASAN_BUILD:-build/asan} logs b f n
	echo "# asan: unit tests and ${ASAN_SUITES:=semantics copyup cli} against $dir"
	if [ ! -x "$dir/stratafs" ]; then
		fail_one "asan" "no sanitizer build in $dir (make asan)"
		return
	fi
	logs=$(mktemp -d -t strata-asan.XXXXXX) || return
	# every process (the daemons too, whose stderr is /dev/null) reports into $logs
	export ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
	export UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
	for b in "$dir"/tests/test_*; do
		[ -x "$b" ] && run_unit "$b" "asan:$(basename "$b")"
	done
	for f in $ASAN_SUITES; do
		STRATAFS=$dir/stratafs run_bats "tests/bats/$f.bats" "asan:tests/bats/$f.bats"
	done
	unset ASAN_OPTIONS UBSAN_OPTIONS
	# a daemon writes its leak report when it exits, shortly after its unmount
	local deadline=$((SECONDS + 10)) p busy
	while [ "$SECONDS" -lt "$deadline" ]; do
		busy=
		for p in $(stratafs_pids); do
			[ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$dir/stratafs" ] && busy=1
		done
		[ -z "$busy" ] && break
		sleep 0.2
	done
	n=$(find "$logs" -type f | wc -l)
	if [ "$n" -gt 0 ]; then
		for f in "$logs"/*; do
			echo "# --- $f (pid ${f##*.}):"
			head -n 40 "$f" | sed 's/^/#   /'
		done
		fail_one "asan reports" "$n sanitizer report(s) from the ASan+UBSan build"
	else
		pass_one "asan reports: none"
	fi
	rm -rf "$logs"
}
if [ "${STRATA_ASAN:-0}" = 1 ]; then
	run_asan
fi

# ---- leak check ----------------------------------------------------------------
# A daemon exits shortly after its unmount returns: give leftovers a few seconds.
new_pids=""
new_mounts=""
deadline=$((SECONDS + 10))
while :; do
	new_pids=$(comm -13 <(echo "$PIDS_BEFORE") <(stratafs_pids) | grep . || true)
	new_mounts=$(comm -13 <(echo "$MOUNTS_BEFORE") <(stratafs_mounts) | grep . || true)
	[ -z "$new_pids$new_mounts" ] && break
	[ "$SECONDS" -ge "$deadline" ] && break
	sleep 0.2
done
echo "# leak check"
if [ -n "$MOUNTS_BEFORE" ]; then
	echo "# note: fuse.stratafs mounts that existed before the run (not counted): $(tr '\n' ' ' <<<"$MOUNTS_BEFORE")"
fi
if [ -n "$new_pids$new_mounts" ]; then
	for m in $new_mounts; do echo "# leaked mount: $m"; done
	for p in $new_pids; do
		echo "# leaked process: $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
	done
	fail_one "leak check" "$(echo "$new_mounts" | wc -w) stratafs mount(s), $(echo "$new_pids" | wc -w) stratafs process(es) left behind"
else
	echo "# leak check: no stratafs mounts or processes left behind"
fi

if [ ${#failures[@]} -gt 0 ]; then
	echo "# failed:"
	for f in "${failures[@]}"; do echo "#   $f"; done
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
