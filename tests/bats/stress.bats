#!/usr/bin/env bats
# Stress: several processes create, write, append (copy-up), truncate, rename,
# link, symlink, unlink, mkdir and rmdir at once over lower and upper objects in
# shared directories (tests/tools/stresswl.py: each process owns its names, so
# the result does not depend on scheduling); the same workload on the kernel's
# overlayfs must give the same results and the same trees. And fsx-style random
# read/write/truncate/mmap checking of file contents (build/tools/fsx) on lower
# and upper files, also concurrently.
#
# STRESS_WORKERS (default 6) and STRESS_OPS (per worker, default 4000) size it.

load helpers

STRESSWL=$STRATA_REPO/tests/tools/stresswl.py
FSX=${FSX:-$STRATA_REPO/build/tools/fsx}

setup() {
	common_setup
	need_python
}

teardown() {
	common_teardown
}

build_stress() {
	mk_layers "$1" 1
	python3 "$STRESSWL" build "$1/l1" "$1/upper"
}

ops_stress() {
	local out=$STRESS_OUT/$(basename "$(dirname "$PWD")")
	rm -rf "$out"
	timeout -k 5 600 python3 "$STRESSWL" run . "$STRESS_WORKERS" "$STRESS_OPS" 7 "$out" ||
		echo "workers failed: $?"
	cat "$out"/w*.log
}

@test "stress: concurrent creates, renames, links, writes and deletes give the kernel's results and trees" {
	export STRESS_WORKERS=${STRESS_WORKERS:-6} STRESS_OPS=${STRESS_OPS:-4000} STRESS_OUT=$T/out STRESSWL
	local t0=$SECONDS
	CMP_DIFF_LINES=40 compare_with_kernel build_stress ops_stress
	echo "# $STRESS_WORKERS workers x $STRESS_OPS ops on each of kernel and stratafs" \
		"($(cat "$T"/out/s/w*.log | grep -vc '= E') succeeded, $(cat "$T"/out/s/w*.log | grep -c '= E') failed as on the kernel)," \
		"$((SECONDS - t0)) s with the cross checks" >&3
}

need_fsx() {
	[ -x "$FSX" ] || fail "$FSX missing (make tools)"
}

@test "fsx: random read/write/truncate/mmap on a lower file (copied up by the first write) and on an upper file" {
	need_real_stratafs
	need_fsx
	mk_layers "$T" 1
	prand 300000 5 >"$T/l1/lowerfile"
	prand 100000 6 >"$T/upper/upperfile"
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt"
	"$FSX" -N "${FSX_OPS:-4000}" -S 1 -l 600000 -o 65536 -r "$T/l1/lowerfile" "$T/mnt/lowerfile"
	"$FSX" -N "${FSX_OPS:-4000}" -S 2 -l 600000 -o 65536 "$T/mnt/upperfile"
	# the lower file is untouched, and the results are on disk after a remount
	cmp <(prand 300000 5) "$T/l1/lowerfile"
	cp "$T/mnt/lowerfile" "$T/before"
	umount_strata "$T/mnt"
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt"
	cmp "$T/before" "$T/mnt/lowerfile"
}

@test "fsx: four checkers at once on lower and upper files of one mount" {
	need_real_stratafs
	need_fsx
	mk_layers "$T" 1
	local i pids=() rc=0
	for i in 1 2; do prand 200000 "$i" >"$T/l1/low$i"; done
	for i in 3 4; do prand 50000 "$i" >"$T/upper/up$i"; done
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt"
	for i in 1 2; do "$FSX" -N 2500 -S "$i" -l 400000 -o 32768 -r "$T/l1/low$i" "$T/mnt/low$i" & pids+=($!); done
	for i in 3 4; do "$FSX" -N 2500 -S "$i" -l 400000 -o 32768 "$T/mnt/up$i" & pids+=($!); done
	for i in "${pids[@]}"; do wait "$i" || rc=1; done
	[ "$rc" = 0 ]
}

@test "fsx: the checker catches a wrong byte (self-test)" {
	need_fsx
	prand 10000 1 >"$T/ref"
	prand 10000 1 >"$T/f"
	printf 'X' | dd of="$T/f" bs=1 seek=5000 conv=notrunc 2>/dev/null
	run "$FSX" -N 10 -r "$T/ref" "$T/f"
	[ "$status" -eq 1 ]
	[[ "$output" == *"mismatch at offset 5000"* ]]
}
