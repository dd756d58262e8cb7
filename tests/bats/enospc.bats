#!/usr/bin/env bats
# Full disks: the upper and work dirs live on a small tmpfs. Writes, copy-ups,
# creates and whiteouts fail with ENOSPC (or EDQUOT), the server keeps serving,
# a failed copy-up leaves the lower view and no temp object, and once space is
# freed everything works again with nothing written earlier damaged.

load helpers

setup() {
	common_setup
	need_real_stratafs
}

teardown() {
	common_teardown
}

# small_upper OPTS: a tmpfs with OPTS at $T/small holding upper/ and work/
# (the caller skips when the kernel refuses OPTS). The lower layer is on $T.
small_upper() {
	mkdir -p "$T/small" "$T/lower" "$T/mnt"
	mount -t tmpfs -o "$1" strata-enospc "$T/small" || return 1
	_register_mount kernel "$T/small"
	# never go on with a tmpfs that is not there: upper/work would be on $T
	[ "$(mount_type "$T/small")" = tmpfs ] || return 1
	mkdir "$T/small/upper" "$T/small/work"
}

# sha FILE: the sha256 of FILE's content
sha() { sha256sum <"$1" | cut -c1-64; }

# expect_errno ERRNO_NAME CMD...: CMD must fail, and its message name the error.
expect_errno() {
	local want=$1
	shift
	run "$@"
	if [ "$status" -eq 0 ]; then
		echo "expected $want from: $*" >&2
		return 1
	fi
	case $want in
	ENOSPC) [[ "$output" == *"No space left on device"* ]] ;;
	EDQUOT) [[ "$output" == *"quota exceeded"* || "$output" == *"Disk quota exceeded"* ]] ;;
	esac || { echo "expected $want from $*, got: $output" >&2; return 1; }
}

# serving: the mount still answers lookups, listings, reads and statfs.
serving() {
	stat "$T/mnt/lowfile" >/dev/null && ls "$T/mnt" >/dev/null && cat "$T/mnt/lowfile" >/dev/null &&
		stat -f "$T/mnt" >/dev/null
}

@test "enospc: writes, copy-ups, creates and whiteouts fail cleanly on a full upper; all works once space is freed" {
	small_upper size=8m,nr_inodes=400 || skip "cannot mount a small tmpfs"
	prand $((6 << 20)) 7 >"$T/lower/big"
	prand 200000 8 >"$T/lower/mid"
	echo low >"$T/lower/lowfile"
	for i in 1 2 3 4 5; do echo "gone $i" >"$T/lower/gone$i"; done
	mkdir "$T/lower/dir"
	local bigsum midsum keepsum
	bigsum=$(sha "$T/lower/big")
	midsum=$(sha "$T/lower/mid")
	mount_strata "$T/lower" "$T/small/upper" "$T/small/work" "$T/mnt"

	# written while there is room: must survive everything below
	prand 300000 9 >"$T/mnt/keep"
	keepsum=$(sha "$T/mnt/keep")
	echo "copied up" >>"$T/mnt/mid"

	# data: fill the upper
	expect_errno ENOSPC dd if=/dev/zero of="$T/mnt/fill" bs=64k
	serving
	expect_errno ENOSPC dd if=/dev/zero of="$T/mnt/keep" bs=64k count=64 oflag=append conv=notrunc
	# what fitted of the append is there, after the intact first 300000 bytes
	[ "$(head -c 300000 "$T/mnt/keep" | sha256sum | cut -c1-64)" = "$keepsum" ]
	[ -z "$(tail -c +300001 "$T/mnt/keep" | tr -d '\0')" ]
	keepsum=$(sha "$T/mnt/keep")
	# a copy-up that does not fit: the lower view stays, no temp object is left
	expect_errno ENOSPC sh -c "echo x >>'$T/mnt/big'"
	[ "$(sha "$T/mnt/big")" = "$bigsum" ]
	[ -z "$(ls -A "$T/small/work/work")" ]
	[ ! -e "$T/small/upper/big" ]
	serving

	# inodes: fill them with empty files, then creates, mkdir, symlinks and
	# whiteouts fail; a file whose whiteout cannot be made is still there
	run bash -c "for i in \$(seq 1 1000); do : >'$T/mnt/e'\$i || exit 0; done; exit 1"
	[ "$status" -eq 0 ] || { echo "1000 creates fitted in nr_inodes=400" >&2; false; }
	expect_errno ENOSPC touch "$T/mnt/one-more"
	expect_errno ENOSPC mkdir "$T/mnt/newdir"
	expect_errno ENOSPC ln -s target "$T/mnt/newlink"
	run rm "$T/mnt/gone1"
	echo "# rm of a lower file with no inode left for its whiteout: status $status" >&3
	if [ "$status" -ne 0 ]; then
		[ "$(cat "$T/mnt/gone1")" = "gone 1" ]
	else
		[ ! -e "$T/mnt/gone1" ]
	fi
	run rmdir "$T/mnt/dir"
	[ "$status" -ne 0 ] && [ -d "$T/mnt/dir" ] || [ ! -e "$T/mnt/dir" ]
	[ ! -e "$T/mnt/one-more" ] && [ ! -e "$T/mnt/newdir" ] && [ ! -L "$T/mnt/newlink" ]
	[ -z "$(ls -A "$T/small/work/work")" ]
	serving

	# free the space: everything works, nothing written earlier is damaged
	rm -f "$T/mnt/fill" "$T"/mnt/e*
	[ "$(sha "$T/mnt/keep")" = "$keepsum" ]
	[ "$(tail -c 10 "$T/mnt/mid")" = "copied up" ]
	echo x >>"$T/mnt/big"
	[ "$(head -c $((6 << 20)) "$T/mnt/big" | sha256sum | cut -c1-64)" = "$bigsum" ]
	[ "$(tail -c 2 "$T/mnt/big")" = x ]
	touch "$T/mnt/one-more"
	mkdir "$T/mnt/newdir"
	ln -s target "$T/mnt/newlink"
	rm "$T"/mnt/gone*
	rmdir "$T/mnt/dir"
	[ -z "$(ls "$T/mnt" | grep gone)" ]

	# and all of it is on disk: the same after a remount
	umount_strata "$T/mnt"
	mount_strata "$T/lower" "$T/small/upper" "$T/small/work" "$T/mnt"
	[ "$(sha "$T/mnt/keep")" = "$keepsum" ]
	[ "$(head -c 200000 "$T/mnt/mid" | sha256sum | cut -c1-64)" = "$midsum" ]
	[ "$(tail -c 2 "$T/mnt/big")" = x ]
	[ -e "$T/mnt/one-more" ] && [ -d "$T/mnt/newdir" ] && [ -L "$T/mnt/newlink" ]
	[ ! -e "$T/mnt/gone1" ] && [ ! -e "$T/mnt/dir" ]
}

@test "enospc: a file being written when the disk fills keeps its written prefix; the server survives a copy-up storm on a full disk" {
	small_upper size=2m || skip "cannot mount a small tmpfs"
	for i in $(seq 1 20); do prand 300000 "$i" >"$T/lower/f$i"; done
	echo low >"$T/lower/lowfile"
	mount_strata "$T/lower" "$T/small/upper" "$T/small/work" "$T/mnt"
	# concurrent copy-ups: some fit, the rest fail; none is partial
	local pids=() i ok=0
	for i in $(seq 1 20); do
		(echo appended >>"$T/mnt/f$i") 2>/dev/null &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || true; done
	serving
	for i in $(seq 1 20); do
		if [ -e "$T/small/upper/f$i" ]; then
			ok=$((ok + 1))
			[ "$(head -c 300000 "$T/mnt/f$i" | sha256sum)" = "$(sha256sum <"$T/lower/f$i")" ]
			[ "$(tail -c 9 "$T/mnt/f$i")" = appended ]
		else
			cmp "$T/mnt/f$i" "$T/lower/f$i"
		fi
	done
	[ -z "$(ls -A "$T/small/work/work")" ]
	echo "# $ok of 20 copy-ups fitted" >&3
	[ "$ok" -lt 20 ]
	# a streaming write into the rest: it fails, the bytes before stay
	run dd if="$T/lower/f1" of="$T/mnt/stream" bs=4k
	[ "$status" -ne 0 ]
	local n
	n=$(stat -c %s "$T/mnt/stream")
	[ "$n" -gt 0 ]
	cmp -n "$n" "$T/mnt/stream" "$T/lower/f1"
	serving
}

@test "enospc: EDQUOT from a user quota on the upper is returned, and the server keeps serving" {
	mkdir -p "$T/small"
	mount -t tmpfs -o size=64m,usrquota,usrquota_block_hardlimit=1m strata-quota "$T/small" 2>/dev/null ||
		skip "this kernel has no tmpfs user quotas (CONFIG_TMPFS_QUOTA), and ext4 quotas need CONFIG_QUOTA"
	_register_mount kernel "$T/small"
	[ "$(mount_type "$T/small")" = tmpfs ]
	mkdir -p "$T/small/upper" "$T/small/work" "$T/lower" "$T/mnt"
	echo low >"$T/lower/lowfile"
	# root with CAP_SYS_RESOURCE ignores quota limits: serve without it
	STRATAFS_SAVE=$STRATAFS
	printf '#!/bin/sh\nexec setpriv --bounding-set -sys_resource "%s" "$@"\n' "$STRATAFS_SAVE" >"$T/nores"
	chmod +x "$T/nores"
	timeout 60 "$T/nores" -o "lowerdir=$T/lower,upperdir=$T/small/upper,workdir=$T/small/work" "$T/mnt"
	_register_mount strata "$T/mnt"
	chmod 1777 "$T/mnt"
	expect_errno EDQUOT setpriv --reuid 1000 --regid 1000 --clear-groups dd if=/dev/zero of="$T/mnt/fill" bs=64k count=64
	serving
	rm "$T/mnt/fill"
	setpriv --reuid 1000 --regid 1000 --clear-groups dd if=/dev/zero of="$T/mnt/fill" bs=64k count=4
}
