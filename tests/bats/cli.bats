#!/usr/bin/env bats
# cli.bats - the stratafs command line, fuse-overlayfs compatible:
#   stratafs [-f] [-d] [--version] [--help] -o OPTIONS [SOURCE] MOUNTPOINT
# option parsing, errors that leave nothing behind, readiness at exit 0,
# daemonizing, and the daemon exiting when its mount goes away.

load cli_helpers

setup_file()
{
	cli_require_binary
}

setup()
{
	cli_setup
}

teardown()
{
	# a test that changed the kernel's halt polling puts it back
	[ -z "${HALTPOLL_OLD:-}" ] || echo "$HALTPOLL_OLD" >/sys/module/haltpoll/parameters/guest_halt_poll_ns
	cli_teardown
}

# --- informational flags -------------------------------------------------------

@test "--version exits 0 and prints a version" {
	sfs --version
	show_run
	[ "$status" -eq 0 ]
	[[ "$out" =~ [0-9]+\.[0-9]+ ]] || fail "no version number on stdout"
	assert_no_daemon
}

@test "--help exits 0 and prints usage with the -o options" {
	sfs --help
	show_run
	[ "$status" -eq 0 ]
	[[ "${out,,}" == *usage* ]] || fail "--help stdout has no 'usage'"
	[[ "$out" == *lowerdir* ]] || fail "--help stdout does not mention lowerdir"
	assert_no_daemon
}

# --- errors: non-zero, one clear line, nothing mounted, nothing running ---------

@test "missing mountpoint: error, one line on stderr" {
	sfs -o "$(ovl_opts)"
	show_run
	[ "$status" -ne 0 ]
	assert_one_error_line
	assert_no_daemon
}

@test "missing lowerdir: error naming lowerdir, nothing mounted" {
	sfs -o "upperdir=$T/upper,workdir=$T/work" "$MNT"
	show_run
	[ "$status" -ne 0 ]
	assert_one_error_line
	[[ "$err" == *lowerdir* ]] || fail "error does not mention lowerdir"
	assert_not_mounted
	assert_no_daemon
}

@test "no -o at all: error, nothing mounted" {
	sfs "$MNT"
	show_run
	[ "$status" -ne 0 ]
	assert_one_error_line
	assert_not_mounted
	assert_no_daemon
}

@test "upperdir without workdir: error, nothing mounted" {
	sfs -o "lowerdir=$T/lower,upperdir=$T/upper" "$MNT"
	show_run
	[ "$status" -ne 0 ]
	assert_one_error_line
	[[ "$err" == *workdir* ]] || fail "error does not mention workdir"
	assert_not_mounted
	assert_no_daemon
}

@test "workdir without upperdir: error, nothing mounted" {
	sfs -o "lowerdir=$T/lower,workdir=$T/work" "$MNT"
	show_run
	[ "$status" -ne 0 ]
	assert_one_error_line
	assert_not_mounted
	assert_no_daemon
}

@test "lowerdir that does not exist: error naming it, nothing mounted, no process" {
	sfs -o "lowerdir=$T/nonexistent,upperdir=$T/upper,workdir=$T/work" "$MNT"
	show_run
	[ "$status" -ne 0 ]
	assert_one_error_line
	[[ "$err" == *"$T/nonexistent"* ]] || fail "error does not name the missing directory"
	assert_not_mounted
	assert_no_daemon
}

@test "second lowerdir that does not exist: error, nothing mounted, no process" {
	sfs -o "lowerdir=$T/lower:$T/nonexistent2" "$MNT"
	show_run
	[ "$status" -ne 0 ]
	assert_one_error_line
	assert_not_mounted
	assert_no_daemon
}

@test "plugins= is refused with a clear message" {
	sfs -o "$(ovl_opts),plugins=x" "$MNT"
	show_run
	[ "$status" -ne 0 ]
	assert_one_error_line
	[[ "$err" == *plugins* ]] || fail "error does not mention plugins"
	assert_not_mounted
	assert_no_daemon
}

# --- readiness and the mount itself --------------------------------------------

@test "exit 0 means the mount is live at once (statfs FUSE, own st_dev, content)" {
	sfs -o "lowerdir=$T/lower:$T/lower2,upperdir=$T/upper,workdir=$T/work" "$MNT"
	show_run
	[ "$status" -eq 0 ]
	# no sleep, no retry: the mount must be ready when the parent exits
	assert_live "$MNT"
	[ "$(mount_fstype "$MNT")" = "fuse.$(basename "$STRATAFS")" ] ||
		fail "fstype is $(mount_fstype "$MNT"), want fuse.$(basename "$STRATAFS")"
	[ "$(cat "$MNT/file")" = lower-content ]
	[ "$(cat "$MNT/file2")" = lower2-content ]
	[ "$(cat "$MNT/dir/inner")" = inner ]
	DPID=$(daemon_pids "$MNT")
	[ -n "$DPID" ] || fail "no daemon found"
	unmount_and_reap
}

@test "daemonizes and detaches stdio: '... 2>&1 | cat' returns" {
	run timeout -k 2 10 bash -c 'set -o pipefail; "$1" -o "$2" "$3" 2>&1 | cat' \
		_ "$STRATAFS" "$(ovl_opts)" "$MNT" 3>&-
	echo "status $status, output: $output"
	[ "$status" -ne 124 ] || fail "the pipe stayed open: the daemon did not detach its stdio"
	[ "$status" -eq 0 ]
	assert_live "$MNT"
	DPID=$(daemon_pids "$MNT")
	[ -n "$DPID" ] || fail "no daemon found"
	# the daemon must not hold the caller's stdout/stderr
	for fd in 0 1 2; do
		tgt=$(readlink "/proc/$DPID/fd/$fd" 2>/dev/null) || continue
		[[ "$tgt" != pipe:* ]] || fail "daemon fd $fd is still $tgt"
	done
	unmount_and_reap
}

@test "-f stays in the foreground and exits 0 after unmount" {
	"$STRATAFS" -f -o "$(ovl_opts)" "$MNT" </dev/null >"$T/fg.log" 2>&1 3>&- &
	pid=$!
	BG_PIDS+=("$pid")
	wait_mounted "$MNT" 10 || fail "-f: not mounted after 10 s ($(cat "$T/fg.log"))"
	assert_live "$MNT"
	proc_alive "$pid" || fail "-f: the process exited after mounting"
	[ "$(daemon_pids "$MNT")" = "$pid" ] ||
		fail "-f: the mount is not served by the started process ($pid) but by: $(daemon_pids "$MNT")"
	echo hello >"$MNT/fgfile"
	[ "$(cat "$T/upper/fgfile")" = hello ]
	timeout 10 fusermount3 -u "$MNT"
	wait_gone "$pid" 10 || fail "-f: still running 10 s after fusermount3 -u"
	rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ] || fail "-f: exit status $rc after a clean unmount, want 0 ($(cat "$T/fg.log"))"
	assert_not_mounted
}

@test "the daemon exits by itself after fusermount3 -u" {
	mount_ok -o "$(ovl_opts)" "$MNT"
	timeout 10 fusermount3 -u "$MNT"
	wait_gone "$DPID" 10 || fail "stratafs (pid $DPID) still running 10 s after fusermount3 -u"
	assert_not_mounted
}

@test "the daemon exits by itself after umount" {
	mount_ok -o "$(ovl_opts)" "$MNT"
	timeout 10 umount "$MNT"
	wait_gone "$DPID" 10 || fail "stratafs (pid $DPID) still running 10 s after umount"
	assert_not_mounted
}

@test "the daemon exits by itself after umount -l" {
	mount_ok -o "$(ovl_opts)" "$MNT"
	timeout 10 umount -l "$MNT"
	wait_gone "$DPID" 10 || fail "stratafs (pid $DPID) still running 10 s after umount -l"
	assert_not_mounted
}

@test "no upperdir: read-only mount, writes fail with EROFS" {
	mount_ok -o "lowerdir=$T/lower:$T/lower2" "$MNT"
	[ "$(cat "$MNT/file")" = lower-content ]
	run touch "$MNT/newfile"
	assert_failure
	assert_output --partial "Read-only file system"
	run sh -c "echo x >>'$MNT/file'"
	assert_failure
	assert_output --partial "Read-only file system"
	run mkdir "$MNT/newdir"
	assert_failure
	assert_output --partial "Read-only file system"
	run rm "$MNT/file2"
	assert_failure
	assert_output --partial "Read-only file system"
	[ ! -e "$T/lower/newfile" ]
	[ "$(cat "$T/lower/file")" = lower-content ]
	[ -e "$T/lower2/file2" ]
	unmount_and_reap
}

# --- lowerdir syntax ------------------------------------------------------------

@test 'lowerdir: \: escapes a colon in a directory name' {
	mkdir "$T/lo:wer"
	echo colon >"$T/lo:wer/colonfile"
	mount_ok -o 'lowerdir='"$T"'/lo\:wer:'"$T"'/lower2,upperdir='"$T"'/upper,workdir='"$T"'/work' "$MNT"
	[ "$(cat "$MNT/colonfile")" = colon ]
	[ "$(cat "$MNT/file2")" = lower2-content ]
	unmount_and_reap
}

@test 'lowerdir: a doubled backslash escapes a backslash in a directory name' {
	mkdir "$T/back\\slash"
	echo bs >"$T/back\\slash/bsfile"
	mount_ok -o 'lowerdir='"$T"'/back\\slash' "$MNT"
	[ "$(cat "$MNT/bsfile")" = bs ]
	unmount_and_reap
}

@test "lowerdir: l/ID/../diff1 is resolved by the kernel (.. after the symlink)" {
	# containers-storage style: l/ID is a symlink; "l/ID/.." is the symlink
	# target's parent, not "l" as string cleaning would say.
	mkdir -p "$T/s/x/y/target" "$T/s/x/y/diff1" "$T/s/l/diff1"
	ln -s ../x/y/target "$T/s/l/ID"
	echo right >"$T/s/x/y/diff1/right"
	echo wrong >"$T/s/l/diff1/wrong"
	[ -e "$T/s/l/ID/../diff1/right" ] # the kernel's own reading, as a sanity check
	mount_ok -o "lowerdir=$T/s/l/ID/../diff1:$T/lower,upperdir=$T/upper,workdir=$T/work" "$MNT"
	[ -e "$MNT/right" ] || fail "right layer not used: $(ls "$MNT")"
	[ ! -e "$MNT/wrong" ] || fail "l/ID/.. was string-cleaned to l/ (saw 'wrong')"
	[ "$(cat "$MNT/right")" = right ]
	[ "$(cat "$MNT/file")" = lower-content ]
	unmount_and_reap
}

# --- accepted option forms ------------------------------------------------------

@test "empty options (,,) and volatile are accepted" {
	mount_ok -o "lowerdir=$T/lower,,upperdir=$T/upper,workdir=$T/work,,volatile" "$MNT"
	echo written >"$MNT/new"
	[ "$(cat "$T/upper/new")" = written ]
	unmount_and_reap
}

@test "podman's exact form (lowerdir,upperdir,workdir,,volatile) is accepted" {
	mount_ok -o "lowerdir=$T/lower:$T/lower2,upperdir=$T/upper,workdir=$T/work,,volatile" "$MNT"
	[ -z "$err" ] || fail "unexpected stderr: $err"
	unmount_and_reap
}

@test "unknown option: warning on stderr naming it, but mounts" {
	mount_ok -o "$(ovl_opts),frobnicate=7" "$MNT"
	[[ "$err" == *frobnicate* ]] || fail "no warning naming the unknown option on stderr (got: '$err')"
	[ "$(cat "$MNT/file")" = lower-content ]
	unmount_and_reap
}

@test 'context="...:c1,c2" with a quoted comma is accepted' {
	mount_ok -o "$(ovl_opts),context=\"system_u:object_r:container_file_t:s0:c1,c2\"" "$MNT"
	[[ "$err" != *c2* ]] || fail "the quoted comma was split: $err"
	[ -z "$err" ] || fail "unexpected stderr: $err"
	[ "$(cat "$MNT/file")" = lower-content ]
	unmount_and_reap
}

@test "VFS words rw,nodev,nosuid,noexec,noatime,dev,suid,exec,defaults are accepted" {
	mount_ok -o "$(ovl_opts),rw,nodev,nosuid,noexec,noatime,dev,suid,exec,defaults" "$MNT"
	[ -z "$err" ] || fail "known VFS words produced warnings: $err"
	echo w >"$MNT/w"
	[ "$(cat "$T/upper/w")" = w ]
	unmount_and_reap
}

@test "containerd form: stratafs overlay /target -o lowerdir=...,dev,suid" {
	sfs overlay "$MNT" -o "lowerdir=$T/lower:$T/lower2,upperdir=$T/upper,workdir=$T/work,dev,suid"
	show_run
	[ "$status" -eq 0 ]
	assert_live "$MNT"
	[ "$(cat "$MNT/file2")" = lower2-content ]
	DPID=$(daemon_pids "$MNT")
	unmount_and_reap
}

@test "VFS words take effect: nosuid,nodev,noexec and ro appear in the mount flags" {
	local flags
	mount_ok -o "$(ovl_opts),nosuid,nodev,noexec" "$MNT"
	flags=$(mount_flags "$MNT")
	for w in nosuid nodev noexec; do
		[[ ",$flags," == *",$w,"* ]] || fail "asked for $w, mount flags are $flags"
	done
	unmount_and_reap
	mount_ok -o "$(ovl_opts),ro" "$MNT"
	flags=$(mount_flags "$MNT")
	[[ "$flags" == ro,* ]] || fail "asked for ro, mount flags are $flags"
	run touch "$MNT/x"
	assert_failure
	assert_output --partial "Read-only file system"
	unmount_and_reap
}

@test "dev,suid (containerd) give a mount without nodev/nosuid" {
	mount_ok -o "$(ovl_opts),dev,suid" "$MNT"
	flags=$(mount_flags "$MNT")
	[[ ",$flags," != *,nosuid,* ]] || fail "asked for suid, mount flags are $flags"
	[[ ",$flags," != *,nodev,* ]] || fail "asked for dev, mount flags are $flags"
	unmount_and_reap
}

@test "as root with podman's options the mount is not nosuid (setuid binaries work, as with fuse-overlayfs)" {
	# podman passes no suid/nosuid word; fuse-overlayfs and the kernel overlay
	# both give a suid mount, and containers rely on setuid binaries (su, ping).
	mount_ok -o "$(ovl_opts),,volatile" "$MNT"
	flags=$(mount_flags "$MNT")
	[[ ",$flags," != *,nosuid,* ]] || fail "mount flags are $flags: setuid binaries in a container would not work"
	unmount_and_reap
}

# try_option OPT - mount with OPT, read, write, unmount; prints what went wrong.
try_option()
{
	local o=$1 f pid
	sfs -o "$(ovl_opts),$o" "$MNT"
	if [ "$status" -ne 0 ]; then
		echo "'$o': exit $status: $err"
		return 1
	fi
	pid=$(daemon_pids "$MNT")
	local bad=
	if [ -n "$err" ]; then bad="unexpected stderr: $err"
	elif [ "$(timeout 5 stat -f -c %t "$MNT")" != "$FUSE_SUPER_MAGIC" ]; then bad="not live"
	elif [ -z "$pid" ]; then bad="no daemon"
	elif [ "$(timeout 5 cat "$MNT/file")" != lower-content ]; then bad="cannot read a lower file"
	elif ! timeout 5 ls -l "$MNT" >/dev/null; then bad="readdir failed"
	else
		f="new-${o//[=:]/_}"
		if ! (echo "$o" >"$MNT/$f"); then bad="cannot create a file"
		elif [ "$(cat "$T/upper/$f")" != "$o" ]; then bad="written file not in upperdir"
		fi
	fi
	timeout 10 fusermount3 -u "$MNT" || bad="$bad; fusermount3 -u failed"
	if [ -n "$pid" ] && ! wait_gone "$pid" 10; then bad="$bad; daemon still running after unmount"; fi
	[ -z "$bad" ] && return 0
	echo "'$o': $bad"
	return 1
}

@test "fuse-overlayfs options are accepted (each mounts, reads and writes)" {
	local o failed=()
	for o in timeout=1 threaded=0 threaded=1 spin=0 spin=20 noacl fast_ino writeback=1 writeback=0 noxattrs=1 \
		ino32_t static_nlink xino=auto xino=off redirect_dir=off fsync=0 \
		uidmapping=0:1000:1 gidmapping=0:1000:1 squash_to_root squash_to_uid=0 squash_to_gid=0 \
		xattr_permissions=2; do
		msg=$(try_option "$o") || failed+=("$msg")
		assert_not_mounted
	done
	[ "${#failed[@]}" -eq 0 ] || fail "$(printf '%s\n' "${failed[@]}")"
}

# --- the request loop -------------------------------------------------------------

# thread_states PID - the one-letter state of each thread of PID, e.g. "SSR"
thread_states()
{
	local t s=
	for t in /proc/"$1"/task/*/stat; do
		s+=$(sed -e 's/.*) //' -e 's/ .*//' "$t" 2>/dev/null)
	done
	echo "$s"
}

# saw_running PID MS - a thread of PID is running or runnable at some moment of the next MS ms
saw_running()
{
	local end=$(($(date +%s%N) + $2 * 1000000))
	while [ "$(date +%s%N)" -lt "$end" ]; do
		[[ "$(thread_states "$1")" == *R* ]] && return 0
	done
	return 1
}

@test "spin=: after a request the receiving thread polls /dev/fuse for that long, then sleeps" {
	echo x >"$T/upper/f"
	mount_ok -o "$(ovl_opts),spin=100000" "$MNT"
	# getfattr always reaches the server (the kernel caches no xattrs)
	getfattr -n user.none "$MNT/f" >/dev/null 2>&1 || true
	saw_running "$DPID" 60 || fail "no server thread running within 60 ms of a request with spin=100000 ms: $(thread_states "$DPID")"
	# then it gives up and sleeps (no request in between)
	local end=$((SECONDS + 5))
	until [[ "$(thread_states "$DPID")" != *R* ]]; do
		[ "$SECONDS" -lt "$end" ] || fail "a server thread still running 5 s after the last request: $(thread_states "$DPID")"
		sleep 0.01
	done
	unmount_and_reap

	# spin=0: the thread that answered sleeps at once
	mount_ok -o "$(ovl_opts),spin=0" "$MNT"
	getfattr -n user.none "$MNT/f" >/dev/null 2>&1 || true
	! saw_running "$DPID" 60 || fail "a server thread kept running after a request with spin=0: $(thread_states "$DPID")"
	unmount_and_reap
}

# loop_line [OPTS] - the request loop's settings, as stratafs -d prints them at the start
loop_line()
{
	"$STRATAFS" -d -o "$(ovl_opts)$1" "$MNT" </dev/null >"$T/d.log" 2>&1 3>&- &
	local pid=$!
	BG_PIDS+=("$pid")
	wait_mounted "$MNT" 10 || fail "-d: not mounted after 10 s ($(head -c 2000 "$T/d.log"))"
	timeout 10 fusermount3 -u "$MNT"
	wait_gone "$pid" 10 || fail "-d: still running 10 s after fusermount3 -u"
	grep -o 'request loop: .*' "$T/d.log" || fail "-d printed no request loop line"
}

@test "spin's default: 50 us where idle CPUs halt, 0 where they poll (haltpoll); spin= overrides it" {
	local hp=/sys/module/haltpoll/parameters/guest_halt_poll_ns
	[ "$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null)" = haltpoll ] && [ -w "$hp" ] ||
		skip "needs the haltpoll cpuidle driver (a KVM guest) and a writable $hp"
	[ "$(nproc)" -ge 2 ] || skip "one usable CPU: the default is 0 there anyway"
	! grep -qw idle=poll /proc/cmdline || skip "booted with idle=poll: idle CPUs always poll"
	HALTPOLL_OLD=$(cat "$hp")
	echo 0 >"$hp"
	run loop_line ""
	[[ "$output" == *"spin 50 us (default)"* ]] || fail "halt polling off: $output"
	echo 200000 >"$hp"
	run loop_line ""
	[[ "$output" == *"spin 0 us (idle CPUs poll: haltpoll guest_halt_poll_ns=200000)"* ]] ||
		fail "halt polling at 200 us: $output"
	run loop_line ",spin=20"
	[[ "$output" == *"spin 20 us (spin=)"* ]] || fail "spin=20 with halt polling: $output"
}

@test "spin= takes microseconds from 0 to 100000; anything else is refused" {
	local v
	for v in -1 100001 abc 5x ''; do
		sfs -o "$(ovl_opts),spin=$v" "$MNT"
		[ "$status" -ne 0 ] || fail "spin=$v was accepted"
		assert_one_error_line
		[[ "$err" == *spin=* ]] || fail "spin=$v: error does not name the option: $err"
		assert_not_mounted
	done
	assert_no_daemon
}

@test "SIGTERM ends the server even while requests never stop arriving" {
	echo x >"$T/upper/f"
	# with spin=100000 the receiving thread never sleeps while a request comes every few ms
	mount_ok -o "$(ovl_opts),spin=100000" "$MNT"
	(while :; do getfattr -n user.none "$MNT/f" >/dev/null 2>&1 || exit 0; done) &
	BG_PIDS+=("$!")
	saw_running "$DPID" 1000 || fail "the server is not busy"
	kill -TERM "$DPID"
	wait_gone "$DPID" 10 || fail "stratafs (pid $DPID) still running 10 s after SIGTERM under a steady stream of requests"
	assert_not_mounted
}

# stuck_lower_check OPTS FILE CONTENT: with the lower layer stopped, a read of FILE (not yet
# looked up, so not cached by the inner mount either) blocks one worker; a create next to it
# must still be served
stuck_lower_check()
{
	mount_ok -o "lowerdir=$T/inner,upperdir=$T/upper,workdir=$T/work$1" "$MNT"
	mkdir "$MNT/new"
	kill -STOP "$ipid"
	timeout 30 cat "$MNT/$2" >"$T/stuck.out" 2>&1 &
	local stuck=$!
	BG_PIDS+=("$stuck")
	# wait until the reader is blocked inside the outer server's request
	local end=$((SECONDS + 10))
	until [ "$(cat /proc/$stuck/wchan 2>/dev/null)" = request_wait_answer ]; do
		[ "$SECONDS" -lt "$end" ] || break
		sleep 0.01
	done
	timeout 10 sh -c "echo served >'$MNT/new/file' && cat '$MNT/new/file'" >"$T/served.out" 2>&1 ||
		{ kill -CONT "$ipid"; fail "$1: a new file next to the stuck request was not served within 10 s"; }
	[ "$(cat "$T/served.out")" = served ]
	proc_alive "$stuck" || fail "$1: the reader of the stopped layer was not blocked: $(cat "$T/stuck.out")"
	kill -CONT "$ipid"
	wait "$stuck" || fail "$1: the reader failed after SIGCONT: $(cat "$T/stuck.out")"
	[ "$(cat "$T/stuck.out")" = "$3" ]
	unmount_and_reap
	rm -rf "$T/upper" "$T/work" && mkdir "$T/upper" "$T/work"
}

@test "a request stuck in a lower layer holds up no other request (both loop modes)" {
	# the lower layer is itself a FUSE mount (a second stratafs), stopped with SIGSTOP:
	# whatever reaches into it blocks until SIGCONT
	mkdir -p "$T/inner" "$T/iup" "$T/iwork"
	"$STRATAFS" -o "lowerdir=$T/lower,upperdir=$T/iup,workdir=$T/iwork" "$T/inner" </dev/null 3>&- ||
		fail "inner mount failed"
	ipid=$(daemon_pids "$T/inner")
	[ -n "$ipid" ] || fail "no inner server"
	BG_PIDS+=("$ipid")
	stuck_lower_check "" dir/inner inner            # starts hot: workers take turns receiving
	stuck_lower_check ",spin=0" file lower-content  # cold: every idle worker blocks in read()
	unmount_and_reap "$T/inner" "$ipid"
}
