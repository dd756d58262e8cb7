# cli_helpers.bash - fixtures for cli.bats: a private temp tree per test, running
# stratafs with a deadline, finding its daemon in /proc, and a teardown that
# unmounts and ends (by PID) everything the test started, even on failure.
#
# STRATAFS selects the binary (default: build/stratafs of this repo); pointing it
# at /usr/bin/fuse-overlayfs checks the tests themselves against the reference.

REPO=${REPO:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
STRATAFS=${STRATAFS:-$REPO/build/stratafs}
FUSE_SUPER_MAGIC=65735546

# a hung FUSE server must fail one test, not stall the suite (teardown still runs)
BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-60}

load /usr/lib/bats/bats-support/load
load /usr/lib/bats/bats-assert/load

cli_require_binary()
{
	if [ ! -x "$STRATAFS" ]; then
		echo "# $STRATAFS is missing: run 'make' first (or set STRATAFS)" >&3
		return 1
	fi
}

# A fresh tree per test: two lower layers, an upper, a workdir, a mountpoint.
cli_setup()
{
	T=$(mktemp -d /tmp/strata-cli.XXXXXX)
	MNT=$T/mnt
	BG_PIDS=()
	mkdir -p "$T/lower/dir" "$T/lower2" "$T/upper" "$T/work" "$MNT"
	echo lower-content >"$T/lower/file"
	echo inner >"$T/lower/dir/inner"
	echo lower2-content >"$T/lower2/file2"
}

ovl_opts()
{
	echo "lowerdir=$T/lower,upperdir=$T/upper,workdir=$T/work"
}

# sfs ARGS... - run stratafs with a deadline. Sets $status, $out (stdout),
# $err (stderr). Output goes to files, never to a pipe, so a daemon that keeps
# stdio open cannot hang the caller (that is tested separately, on purpose).
sfs()
{
	status=0
	timeout -k 5 20 "$STRATAFS" "$@" >"$T/out" 2>"$T/err" </dev/null 3>&- || status=$?
	out=$(cat "$T/out")
	err=$(cat "$T/err")
	# fuse-overlayfs 1.10 warns about "lazytime" on every run; drop that line so
	# a reference run against it shows only the real differences.
	if [ "$(basename "$STRATAFS")" = fuse-overlayfs ]; then
		err=$(printf '%s\n' "$err" | grep -v '^unknown argument ignored: lazytime$' || true)
	fi
}

show_run()
{
	echo "status: $status"
	echo "stdout: $out"
	echo "stderr: $err"
}

is_mounted()
{
	awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}

# The filesystem type the kernel reports for the mount at $1 (e.g. fuse.stratafs).
mount_fstype()
{
	awk -v m="$1" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1) } } END { print t }' \
		/proc/self/mountinfo
}

# The per-mount VFS flags of the mount at $1 (e.g. rw,nosuid,nodev,relatime).
mount_flags()
{
	awk -v m="$1" '$5 == m { f = $6 } END { print f }' /proc/self/mountinfo
}

# True while PID $1 exists and is not a zombie (PID 1 here reaps orphans late).
proc_alive()
{
	local st
	st=$(sed -e 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st%% *}" != Z ]
}

# pids_matching GREPFLAGS NEEDLE - live processes of the binary under test
# (by executable or argv[0]) whose NUL-separated argv matches NEEDLE.
# /proc/[0-9]* lists thread-group leaders only.
pids_matching()
{
	local flags=$1 needle=$2 want base f p exe argv0
	want=$(readlink -f "$STRATAFS")
	base=$(basename "$STRATAFS")
	for f in $(grep -l "$flags" -- "$needle" /proc/[0-9]*/cmdline 2>/dev/null); do
		p=${f#/proc/}
		p=${p%/cmdline}
		[ "$p" = "$$" ] || [ "$p" = "$BASHPID" ] && continue
		exe=$(readlink "/proc/$p/exe" 2>/dev/null) || exe=
		exe=${exe% (deleted)}
		argv0=$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | head -n1)
		[ "$exe" = "$want" ] || [ "$(basename -- "$argv0")" = "$base" ] || continue
		proc_alive "$p" && echo "$p"
	done
	return 0
}

# Live stratafs processes whose argv holds the exact word $1 (the mountpoint).
daemon_pids()
{
	pids_matching -zxF "$1"
}

# Live stratafs processes whose argv mentions $1 anywhere (used with $T).
daemon_pids_mentioning()
{
	pids_matching -zF "$1"
}

# wait_gone PID SECONDS - poll until PID has exited.
wait_gone()
{
	local pid=$1 end=$((SECONDS + $2))
	while proc_alive "$pid"; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.05
	done
}

# wait_mounted MNT SECONDS
wait_mounted()
{
	local end=$((SECONDS + $2))
	until is_mounted "$1"; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.05
	done
}

# The mount at $1 is served by FUSE right now: in mountinfo, statfs says FUSE,
# and st_dev differs from the parent directory's.
assert_live()
{
	local m=${1:-$MNT} t d1 d2
	is_mounted "$m" || fail "$m is not in /proc/self/mountinfo"
	t=$(timeout 5 stat -f -c %t "$m") || fail "statfs($m) failed or hung"
	[ "$t" = "$FUSE_SUPER_MAGIC" ] || fail "statfs($m).f_type is $t, want $FUSE_SUPER_MAGIC (FUSE)"
	d1=$(timeout 5 stat -c %d "$m") || fail "stat($m) failed or hung"
	d2=$(stat -c %d "$(dirname "$m")")
	[ "$d1" != "$d2" ] || fail "st_dev of $m ($d1) equals its parent's: not a separate mount"
}

assert_not_mounted()
{
	local m=${1:-$MNT}
	if is_mounted "$m"; then
		fail "$m is mounted ($(mount_fstype "$m")) but should not be"
	fi
}

# No stratafs process of this test is left (allow 3 s for a forked child to exit).
assert_no_daemon()
{
	local end=$((SECONDS + 3)) left
	while :; do
		left=$(daemon_pids_mentioning "$T")
		[ -n "$left" ] || return 0
		[ "$SECONDS" -lt "$end" ] || break
		sleep 0.05
	done
	fail "stratafs process(es) left behind: $(for p in $left; do tr '\0' ' ' <"/proc/$p/cmdline"; echo " [pid $p]"; done)"
}

# stderr is exactly one non-empty line.
assert_one_error_line()
{
	local n
	[ -n "$err" ] || fail "expected one error line on stderr, got nothing"
	n=$(printf '%s\n' "$err" | wc -l)
	[ "$n" -eq 1 ] || fail "expected one error line on stderr, got $n:
$err"
}

# Mount with $(ovl_opts)+$1 extra options and return the daemon's PID in $DPID.
mount_ok()
{
	sfs "$@"
	[ "$status" -eq 0 ] || fail "stratafs $* exited $status: $err"
	assert_live "$MNT"
	DPID=$(daemon_pids "$MNT")
	[ -n "$DPID" ] || fail "no stratafs process found with $MNT in its argv"
	[ "$(echo "$DPID" | wc -w)" -eq 1 ] || fail "more than one stratafs process for $MNT: $DPID"
}

# Unmount MNT with fusermount3 -u and wait for the daemon DPID to exit.
unmount_and_reap()
{
	local m=${1:-$MNT} pid=${2:-$DPID}
	timeout 10 fusermount3 -u "$m" || fail "fusermount3 -u $m failed"
	if [ -n "$pid" ]; then
		wait_gone "$pid" 10 || fail "stratafs (pid $pid) still running 10 s after fusermount3 -u $m"
	fi
	assert_not_mounted "$m"
}

# Teardown: unmount everything under $T (deepest first), end the stratafs
# processes this test started (by PID), then remove the tree without crossing
# into any mount that could not be removed.
cli_teardown()
{
	[ -n "${T:-}" ] && [ -d "$T" ] || return 0
	local m p pids left
	for m in $(awk -v t="$T/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
		timeout 10 fusermount3 -u "$m" 2>/dev/null ||
			timeout 10 umount "$m" 2>/dev/null ||
			timeout 10 umount -l "$m" 2>/dev/null ||
			echo "# teardown: could not unmount $m" >&3
	done
	pids="${BG_PIDS[*]} $(daemon_pids_mentioning "$T")"
	for p in $pids; do
		proc_alive "$p" && kill -CONT "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
	done
	for p in $pids; do
		if ! wait_gone "$p" 3; then
			echo "# teardown: pid $p ignored SIGTERM, sending SIGKILL" >&3
			kill -KILL "$p" 2>/dev/null
			wait_gone "$p" 3 || echo "# teardown: pid $p survived SIGKILL" >&3
		fi
	done
	for p in "${BG_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	left=$(awk -v t="$T/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo)
	if [ -n "$left" ]; then
		echo "# teardown: still mounted, not removing $T: $left" >&3
		return 1
	fi
	rm -rf --one-file-system "$T"
}
