#!/usr/bin/env bats
# Crash consistency: the server is killed with SIGKILL at random moments during
# copy-ups of large files, an untar over lower files, a rename storm and an
# rm -rf. After each kill the overlay is mounted again and the merged view must
# be a state the workload passed through (tests/tools/crashwl.py replays the
# log of completed operations on a model): no partial file, no lost whiteout,
# no file shown twice, no temp file in view; and the work dir leftovers of the
# killed server are gone after the new mount.
#
# CRASH_KILLS (per workload, default 13) and CRASH_MAX_DELAY_MS scale the run.

load helpers

CRASHWL=$STRATA_REPO/tests/tools/crashwl.py

setup() {
	common_setup
	need_python
	need_real_stratafs
	KILLS=${CRASH_KILLS:-13}
}

teardown() {
	common_teardown
}

# crash_setup KIND SEED: layers in $T/c, the model in $T/c/state (and its
# first version in state0, with upper0 the upper to start each fresh cycle from).
crash_setup() {
	C=$T/c
	mkdir -p "$C/lower" "$C/upper" "$C/work" "$C/mnt"
	python3 "$CRASHWL" init "$1" "$C/state" "$C/lower" "$2"
	if [ "$1" = rmrf ]; then
		mount_strata "$C/lower" "$C/upper" "$C/work" "$C/mnt"
		python3 "$CRASHWL" prep "$C/state" "$C/mnt"
		umount_strata "$C/mnt"
	fi
	cp "$C/state" "$C/state0"
	cp -a "$C/upper" "$C/upper0"
}

# check_layers: nothing of the killed server's temp objects is left after the
# remount: the work dir was emptied, and no temp name reached the upper.
check_layers() {
	local left
	left=$(ls -A "$C/work/work")
	if [ -n "$left" ]; then
		echo "work dir not cleaned at mount: $left" >&2
		return 1
	fi
	left=$(find "$C/upper" -name '#strata*' | head)
	if [ -n "$left" ]; then
		echo "temp objects in the upper layer: $left" >&2
		return 1
	fi
}

fresh_layers() {
	cp "$C/state0" "$C/state"
	rm -rf "${C:?}/upper" "${C:?}/work"
	cp -a "$C/upper0" "$C/upper"
	mkdir "$C/work"
}

# calibrate KIND: runs the workload to its end once (no kill) and sets MAXDELAY
# to how long it took, so that the kills land inside it on any machine.
calibrate() {
	fresh_layers
	mount_strata "$C/lower" "$C/upper" "$C/work" "$C/mnt" || return 1
	: >"$C/log"
	timeout -k 5 120 python3 "$CRASHWL" run "$1" "$C/state" "$C/mnt" "$C/log" 1 || return 1
	MAXDELAY=$(awk '$1 == "D" { print $2 }' "$C/log")
	umount_strata "$C/mnt" || return 1
	echo "# $1: the whole workload takes ${MAXDELAY} ms" >&3
	[ "$MAXDELAY" -ge 20 ] || MAXDELAY=20
}

# crash_cycles KIND FRESH [MAX_DELAY_MS]: KILLS cycles of mount, run, random delay,
# kill -9, remount and check. FRESH=1 starts each cycle from state0/upper0 (the
# workload has an end: the delays are spread over its measured length); FRESH=0
# carries the state on (an endless workload).
crash_cycles() {
	local kind=$1 fresh=$2 i wl delay rc mid=0 pid tmp=0 took
	MAXDELAY=${3:-}
	if [ "$fresh" = 1 ]; then
		calibrate "$kind" || return 1
	fi
	MAXDELAY=${CRASH_MAX_DELAY_MS:-$MAXDELAY}
	for ((i = 1; i <= KILLS; i++)); do
		[ "$fresh" = 1 ] && fresh_layers
		mount_strata "$C/lower" "$C/upper" "$C/work" "$C/mnt" || return 1
		pid=$STRATA_PID
		: >"$C/log"
		# spread over the first 3/4 of the workload's length
		delay=$((RANDOM % (MAXDELAY * 3 / 4 + 1)))
		timeout -k 5 120 python3 "$CRASHWL" run "$kind" "$C/state" "$C/mnt" "$C/log" \
			"$((i * 7919 + ${#kind}))" "$pid" "$delay" &
		wl=$!
		wait "$wl" && rc=0 || rc=$?
		wait_pids_gone 10 "$pid" || return 1
		# 0: finished before the kill; 3: stopped by the dead connection
		if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
			echo "cycle $i: workload failed with status $rc: $(tail -n 2 "$C/log")" >&2
			return 1
		fi
		if grep -q '^D' "$C/log"; then
			# finished before the kill (a warm cache runs faster than the calibration):
			# aim the next kills within the time it took now
			took=$(awk '$1 == "D" { print $2 }' "$C/log")
			if [ "$fresh" = 1 ] && [ "$took" -ge 10 ] && [ "$took" -lt "$MAXDELAY" ]; then
				MAXDELAY=$took
			fi
		else
			mid=$((mid + 1))
		fi
		umount -l "$C/mnt"
		_unregister_mount "$C/mnt"
		# a temp object left in the work dir: killed inside a copy-up or a create
		[ -z "$(ls -A "$C/work/work")" ] || tmp=$((tmp + 1))
		mount_strata "$C/lower" "$C/upper" "$C/work" "$C/mnt" || return 1
		check_layers || { echo "cycle $i (killed after ${delay} ms)" >&2; return 1; }
		python3 "$CRASHWL" check "$C/state" "$C/mnt" "$C/log" >"$C/check.out" 2>&1 || {
			echo "cycle $i (killed after ${delay} ms):" >&2
			cat "$C/check.out" >&2
			return 1
		}
		umount_strata "$C/mnt" || return 1
	done
	echo "# $kind: $KILLS kills ($mid during the workload, $tmp left temp objects in the work dir)," \
		"last: $(cat "$C/check.out")" >&3
	echo "$kind $KILLS $mid $tmp" >>"${CRASH_TALLY:-/dev/null}"
	# a good part of the kills must have hit the running workload, or the test proves little
	[ $((mid * 3)) -ge "$KILLS" ]
}

@test "crash: kill -9 during copy-ups of 4 MiB lower files" {
	crash_setup copyup 1
	crash_cycles copyup 1
}

@test "crash: kill -9 during an untar over lower files" {
	crash_setup untar 2
	crash_cycles untar 1
}

@test "crash: kill -9 during a rename storm over lower and upper objects" {
	crash_setup rename 3
	crash_cycles rename 0 200
}

@test "crash: kill -9 during rm -rf of a lower/upper tree" {
	crash_setup rmrf 4
	crash_cycles rmrf 1
}
