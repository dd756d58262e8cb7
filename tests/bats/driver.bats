#!/usr/bin/env bats
# driver.bats - build/strata against real mounts: the status document, the sandbox as the
# kernel reports it, the overlay still working under it, state records, dead servers,
# every kind of bad input, 50 concurrent mounts, containment, and the spec fuzzer.

load driver_helpers

setup()
{
	driver_setup
}

teardown()
{
	driver_teardown
}

# CapEff of pid $1 as a number
capeff()
{
	printf '%d' "0x$(awk '/^CapEff:/ { print $2 }' "/proc/$1/status")"
}

@test "mount: a native spec mounts and the status document says what the kernel says" {
	mount_spec "$(native_spec web-1)"
	[ "$status" -eq 0 ] || { show; false; }
	assert_live "$M"
	[ "$(j .id)" = web-1 ]
	[ "$(j .state)" = mounted ]
	[ "$(j .target)" = "$M" ]
	[ "$(j .fsType)" = fuse.stratafs ]
	[ "$(j .readonly)" = false ]
	[ "$(j '.layers.lower | length')" = 2 ]
	[ "$(j '.layers.lower[0]')" = "$T/l1" ]
	[ "$(j .layers.upper)" = "$T/u" ]
	[[ "$(j .mountedAt)" =~ ^20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T.*Z$ ]]
	[ "$(j .elapsedMs)" -ge 0 ]
	[ "$(j .features.passthrough)" = false ]
	pid=$(j .pid)
	[ "$(cat /proc/"$pid"/comm)" = stratafs ]
	# the mount is the one in mountinfo, with the type the issue names
	awk -v m="$M" '$5 == m' /proc/self/mountinfo | grep -q ' - fuse.stratafs stratafs '
	# the sandbox fields are what /proc says
	[ "$(j .sandbox.noNewPrivs)" = true ]
	[ "$(j .sandbox.seccomp)" = filter ]
	[ "$(j .sandbox.mountNamespace)" = private ]
	grep -qx 'NoNewPrivs:	1' /proc/"$pid"/status
	grep -qx 'Seccomp:	2' /proc/"$pid"/status
	want=0
	for c in $(j '.sandbox.capabilities[]'); do
		n=$(grep -oE "#define $c[[:space:]]+[0-9]+" /usr/include/linux/capability.h | awk '{ print $3 }')
		want=$((want | (1 << n)))
	done
	[ "$(capeff "$pid")" -eq "$want" ]
	[ "$(readlink /proc/"$pid"/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ]
	# no output but the document; nothing on stderr
	[ -z "$err" ]
}

@test "sandbox: the server keeps only the documented capabilities, in every set" {
	mount_spec "$(native_spec)"
	[ "$status" -eq 0 ] || { show; false; }
	pid=$(j .pid)
	caps=$(j '.sandbox.capabilities | join(",")')
	# rw root mount on a filesystem with trusted xattrs: CAP_SYS_ADMIN stays, for the
	# kernel-compatible trusted.overlay.* markers (strata(8), SANDBOX)
	[ "$caps" = CAP_CHOWN,CAP_DAC_OVERRIDE,CAP_DAC_READ_SEARCH,CAP_FOWNER,CAP_FSETID,CAP_SYS_ADMIN,CAP_MKNOD,CAP_SETFCAP ]
	# ... and says why, from the server's own log line
	[[ "$(j .sandbox.sysAdminReason)" == *trusted.overlay* ]] || { show; false; }
	# what the server's probe of the upper chose
	[ "$(j .features.whiteout)" = chardev ] || { show; false; }
	[ "$(j .features.xattrPrefix)" = trusted.overlay. ] || { show; false; }
	[ "$(j '.sandbox.boundingSet | join(",")')" = "$caps" ]
	grep -qx 'CapInh:	0000000000000000' /proc/"$pid"/status
	grep -qx 'CapAmb:	0000000000000000' /proc/"$pid"/status
	awk '/^CapPrm:/ { p = $2 } /^CapEff:/ { e = $2 } END { exit p != e }' /proc/"$pid"/status
	grep -q 'CAP_SYS_ADMIN kept: the upper layer takes trusted.overlay' "$SD/t1.log"
	# the server's root is an empty read-only tmpfs holding /proc only
	[ "$(ls /proc/"$pid"/root/)" = proc ]
	[ ! -e /proc/"$pid"/root/etc ]
	# its parent is the monitor, in its own session, with no capabilities at all
	mon=$(awk '{ print $4 }' /proc/"$pid"/stat)
	[ "$(cat /proc/"$mon"/comm)" = strata-monitor ]
	grep -qx 'CapEff:	0000000000000000' /proc/"$mon"/status
	grep -qx 'CapBnd:	0000000000000000' /proc/"$mon"/status
	grep -qx 'NoNewPrivs:	1' /proc/"$mon"/status
	# neither holds the caller's stdout or any fd into the test tree but the layers
	for fd in /proc/"$mon"/fd/*; do
		case $(readlink "$fd") in /dev/null | "$SD") ;; *) fail "monitor holds $(readlink "$fd")" ;; esac
	done
}

@test "sandbox: read-only mounts and userxattr run without CAP_SYS_ADMIN" {
	rm -f "$T/l1/b" "$T/l1/d/.wh.y"
	setfattr -x trusted.overlay.opaque "$T/l1/o"
	mount_spec "{\"id\": \"ro\", \"target\": \"$M\", \"lower\": [\"$T/l1\", \"$T/l2\"]}"
	[ "$status" -eq 0 ] || { show; false; }
	[ "$(j .readonly)" = true ]
	[[ "$(j '.sandbox.capabilities | join(",")')" != *CAP_SYS_ADMIN* ]]
	grep -qx 'NoNewPrivs:	1' /proc/"$(j .pid)"/status
	run touch "$M/new"
	[ "$status" -ne 0 ]
	[ "$(cat "$M/a")" = "a from l1" ]
	st unmount ro
	[ "$status" -eq 0 ]

	mkdir -p "$T/m2"
	mount_spec "{\"id\": \"ux\", \"target\": \"$T/m2\", \"lower\": [\"$T/l1\", \"$T/l2\"], \"upper\": \"$T/u\", \"work\": \"$T/w\", \"options\": {\"userxattr\": true}}"
	[ "$status" -eq 0 ] || { show; false; }
	[[ "$(j '.sandbox.capabilities | join(",")')" != *CAP_SYS_ADMIN* ]]
	[ "$(j .features.userxattr)" = true ]
	# opaque dirs and whiteouts still work, written in the user.* namespace
	rm -rf "$T/m2/d"
	mkdir "$T/m2/d"
	[ -z "$(ls -A "$T/m2/d")" ]
	[ "$(getfattr --absolute-names --only-values -n user.overlay.opaque "$T/u/d")" = y ]
	run getfattr --absolute-names -n trusted.overlay.opaque "$T/u/d"
	[ "$status" -ne 0 ]
	rm "$T/m2/a"
	[ ! -e "$T/m2/a" ]
	[ -c "$T/u/a" ] || [ -e "$T/u/.wh.a" ]
}

@test "sandbox: userxattr refuses layers that carry trusted.overlay.* (they would be misread)" {
	mount_spec "{\"id\": \"ux\", \"target\": \"$M\", \"lower\": [\"$T/l1\", \"$T/l2\"], \"upper\": \"$T/u\", \"work\": \"$T/w\", \"options\": {\"userxattr\": true}}"
	[ "$status" -eq 1 ] || { show; false; }
	[[ "$(j .error.message)" == *"trusted.overlay"* ]]
	[ "$(j .state)" = error ]
	is_mounted "$M" && fail "mounted"
	wait_no_new_procs 5
	[ -z "$(records)" ]
}

# ---- FUSE passthrough (options.passthrough) ------------------------------------------------
# The driver runs $STRATAFS; these tests pick the binary themselves, so that one run covers a
# stratafs built against libfuse >= 3.16 (make passthrough: build/pt/stratafs) and one built
# against Debian 12's 3.14 (build/stratafs).

# libfuse_of BINARY: the libfuse version BINARY was built against
libfuse_of()
{
	"$1" --version 2>/dev/null | sed -n 's/.*(libfuse \([0-9.]*\)).*/\1/p'
}

has_pt() # BINARY: built against libfuse >= 3.16
{
	case $(libfuse_of "$1") in 3.1[6-9]* | 3.[2-9]* | [4-9].*) return 0 ;; esac
	return 1
}

# use_pt_stratafs: STRATAFS becomes a stratafs with passthrough support, or the test skips
use_pt_stratafs()
{
	local b
	for b in "$STRATAFS" "$REPO/build/pt/stratafs"; do
		if [ -x "$b" ] && has_pt "$b"; then
			export STRATAFS=$b
			return 0
		fi
	done
	skip "no stratafs built against libfuse >= 3.16 (make passthrough builds build/pt/stratafs)"
}

# use_nopt_stratafs: STRATAFS becomes a stratafs without passthrough support, or the test skips
use_nopt_stratafs()
{
	local b
	for b in "$STRATAFS" "$REPO/build/stratafs"; do
		if [ -x "$b" ] && ! has_pt "$b"; then
			export STRATAFS=$b
			return 0
		fi
	done
	skip "every stratafs here is built against libfuse >= 3.16: no build without passthrough"
}

# no_trusted_markers: the layers without trusted.overlay.* (CAP_SYS_ADMIN is kept for those)
no_trusted_markers()
{
	setfattr -x trusted.overlay.opaque "$T/l1/o"
}

# io_field PID FIELD: a counter of /proc/PID/io (syscr: requests the server read from
# /dev/fuse, one read each, when it runs with spin 0 -- a spinning receiver also counts its
# empty reads; rchar: the bytes it read, WRITE data included)
io_field()
{
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/io"
}

# io_delta FIELD PID CMD...: runs CMD and prints how much PID's io_field FIELD grew
io_delta()
{
	local field=$1 pid=$2 a b
	shift 2
	a=$(io_field "$pid" "$field")
	"$@" || return
	b=$(io_field "$pid" "$field")
	echo $((b - a))
}

# spec_opts OPTIONS_JSON: native_spec with upper and work, and "options": OPTIONS_JSON
spec_opts()
{
	printf '{"id": "pt", "target": "%s", "lower": ["%s", "%s"], "upper": "%s", "work": "%s", "options": %s}' \
		"$M" "$T/l1" "$T/l2" "$T/u" "$T/w" "$1"
}

has_sys_admin() # PID: CAP_SYS_ADMIN (21) in its effective set
{
	[ $(($(capeff "$1") >> 21 & 1)) = 1 ]
}

@test "passthrough: true with a libfuse >= 3.16 stratafs: CAP_SYS_ADMIN kept for it, the kernel does the I/O" {
	use_pt_stratafs
	no_trusted_markers
	head -c 16000000 /dev/urandom >"$T/data"
	cp "$T/data" "$T/u/up" # an upper file no one has read through the mount yet
	mount_spec "$(spec_opts '{"passthrough": true, "userxattr": true, "spin": 0}')"
	[ "$status" -eq 0 ] || { show; false; }
	assert_live "$M"
	pid=$(j .pid)
	[ "$(j .features.passthrough)" = true ] || { show; false; }
	[ "$(j '.features.passthroughReason // "none"')" = none ]
	# the only reason for CAP_SYS_ADMIN here is passthrough, and /proc agrees
	has_sys_admin "$pid" || fail "CapEff $(capeff "$pid") lacks CAP_SYS_ADMIN"
	[[ "$(j '.sandbox.capabilities | join(",")')" == *CAP_SYS_ADMIN* ]]
	[ "$(j .sandbox.sysAdminReason)" = "FUSE passthrough was asked for" ] || { show; false; }
	tr '\0' '\n' <"/proc/$pid/cmdline" | grep -q 'passthrough=1'
	# reads of an upper file: a handful of requests (open, getattr, release), no READs
	n=$(io_delta syscr "$pid" cmp "$M/up" "$T/data")
	[ "$n" -lt 40 ] || fail "$n requests reached the server for a 16 MB read"
	# writes: the data never passes through the server
	n=$(io_delta rchar "$pid" dd if="$T/data" of="$M/new" bs=1M status=none)
	[ "$n" -lt 1000000 ] || fail "the server read $n bytes for a 16 MB write"
	cmp "$M/new" "$T/data"
	cmp "$T/u/new" "$T/data"
	# copy-up and the lower layers still read right
	[ "$(cat "$M/a")" = "a from l1" ]
	echo more >>"$M/d/x"
	[ "$(cat "$M/d/x")" = "$(printf 'x\nmore')" ]
	# status says the same later
	st status pt
	[ "$(j .features.passthrough)" = true ] || { show; false; }
	st unmount pt
	[ "$status" -eq 0 ]
	cmp "$T/u/new" "$T/data"

	# "all": lower files read are passed through as well
	rm -rf "$T/u"/* "$T/w"/*
	cp "$T/data" "$T/l2/low"
	mount_spec "$(spec_opts '{"passthrough": "all", "userxattr": true, "spin": 0}')"
	[ "$status" -eq 0 ] || { show; false; }
	pid=$(j .pid)
	[ "$(j .features.passthrough)" = true ] || { show; false; }
	tr '\0' '\n' <"/proc/$pid/cmdline" | grep -q 'passthrough=all'
	n=$(io_delta syscr "$pid" cmp "$M/low" "$T/data")
	[ "$n" -lt 40 ] || fail "$n requests reached the server for a 16 MB lower read"
}

@test "passthrough: true with a libfuse 3.14 stratafs: mounted, served by the server, status says why not" {
	use_nopt_stratafs
	no_trusted_markers
	head -c 4000000 /dev/urandom >"$T/data"
	cp "$T/data" "$T/u/up"
	mount_spec "$(spec_opts '{"passthrough": true, "userxattr": true}')"
	[ "$status" -eq 0 ] || { show; false; }
	assert_live "$M"
	pid=$(j .pid)
	[ "$(j .features.passthrough)" = false ] || { show; false; }
	[[ "$(j .features.passthroughReason)" == *"libfuse $(libfuse_of "$STRATAFS")"* ]] || { show; false; }
	# nothing to keep CAP_SYS_ADMIN for
	has_sys_admin "$pid" && fail "CAP_SYS_ADMIN kept: $(j .sandbox.sysAdminReason)"
	# reads and writes go through the server, and are right
	n=$(io_delta syscr "$pid" cmp "$M/up" "$T/data")
	[ "$n" -ge 20 ] || fail "only $n requests for a 4 MB read: who served it?"
	n=$(io_delta rchar "$pid" dd if="$T/data" of="$M/new" bs=1M status=none)
	[ "$n" -ge 4000000 ] || fail "the server read $n bytes for a 4 MB write"
	cmp "$T/u/new" "$T/data"
	st status pt
	[ "$(j .features.passthrough)" = false ]
	[[ "$(j .features.passthroughReason)" == *"libfuse >= 3.16"* ]] || { show; false; }
}

@test "passthrough: false is passthrough=0: no CAP_SYS_ADMIN for it, and none used with trusted markers either" {
	use_pt_stratafs
	head -c 4000000 /dev/urandom >"$T/data"
	# trusted.overlay markers keep CAP_SYS_ADMIN (as before); passthrough must still be off
	mount_spec "$(spec_opts '{"passthrough": false}')"
	[ "$status" -eq 0 ] || { show; false; }
	pid=$(j .pid)
	[[ "$(j .sandbox.sysAdminReason)" == *trusted.overlay* ]] || { show; false; }
	[ "$(j .features.passthrough)" = false ]
	[ "$(j '.features.passthroughReason // "none"')" = none ]
	tr '\0' '\n' <"/proc/$pid/cmdline" | grep -q 'passthrough=0'
	n=$(io_delta rchar "$pid" dd if="$T/data" of="$M/new" bs=1M status=none)
	[ "$n" -ge 4000000 ] || fail "the server read $n bytes for a 4 MB write: passed through?"
	cmp "$T/u/new" "$T/data"
	grep -q 'stratafs: passthrough: off: passthrough=0' "$SD/pt.log"
	st unmount pt
	[ "$status" -eq 0 ]
	# without markers, and without the option at all: no CAP_SYS_ADMIN
	no_trusted_markers
	rm -rf "$T/u"/* "$T/w"/*
	for opts in '{"passthrough": false, "userxattr": true}' '{"userxattr": true}'; do
		mount_spec "$(spec_opts "$opts")"
		[ "$status" -eq 0 ] || { show; false; }
		has_sys_admin "$(j .pid)" && fail "$opts: CAP_SYS_ADMIN kept: $(j .sandbox.sysAdminReason)"
		[ "$(j .features.passthrough)" = false ]
		st unmount pt
		[ "$status" -eq 0 ]
	done
}

@test "passthrough: refused by the kernel at a later open (layers on a stacked filesystem), status follows" {
	use_pt_stratafs
	grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
	grep -qw overlay /proc/filesystems || skip "no kernel overlayfs"
	# a read-only mount passes lower files through; on an overlayfs stacked on another they
	# are too deep (the server allows one level), so the kernel refuses the first backing
	# file (ELOOP), which only an open can find out
	mkdir -p "$T/ka" "$T/kb" "$T/kc" "$T/ko" "$T/ko2"
	echo data >"$T/ka/f"
	head -c 300000 /dev/urandom >"$T/ka/big" # small read-only files are never passed through
	mount -t overlay overlay -o "lowerdir=$T/ka:$T/kb" "$T/ko"
	mount -t overlay overlay -o "lowerdir=$T/ko:$T/kc" "$T/ko2"
	mount_spec "{\"id\": \"pt\", \"target\": \"$M\", \"lower\": [\"$T/ko2\"], \"options\": {\"passthrough\": true}}"
	[ "$status" -eq 0 ] || { show; false; }
	[ "$(j .features.passthrough)" = true ] || { show; false; }
	[ "$(cat "$M/f")" = data ]
	cmp "$M/big" "$T/ka/big"
	st status pt
	[ "$(j .features.passthrough)" = false ] || { show; false; }
	[[ "$(j .features.passthroughReason)" == "refused by the kernel (Too many levels of symbolic links)"* ]] || { show; false; }
	[ "$(cat "$M/f")" = data ]
	st unmount pt
	[ "$status" -eq 0 ]
	umount "$T/ko2"
	umount "$T/ko"
}

@test "options.spin reaches the server (spin=), the status shows it, and the sandbox lets the loop run" {
	mkdir -p "$T/l1" "$T/l2" "$T/u" "$T/w" "$M"
	echo x >"$T/l1/f"
	mount_spec "$(spec_opts '{"spin": 0}')"
	[ "$status" -eq 0 ] || { show; false; }
	pid=$(j .pid)
	tr '\0' '\n' <"/proc/$pid/cmdline" | grep -q 'spin=0' || fail "no spin=0 in $(tr '\0' ' ' <"/proc/$pid/cmdline")"
	[ "$(j .features.spin)" = 0 ] || { show; false; }
	[ "$(cat "$M/f")" = x ]
	st unmount pt
	[ "$status" -eq 0 ] || { show; false; }
	# the default: no spin= on the command line, stratafs picks it
	mount_spec "$(spec_opts '{}')"
	[ "$status" -eq 0 ] || { show; false; }
	pid=$(j .pid)
	! tr '\0' '\n' <"/proc/$pid/cmdline" | grep -q 'spin=' || fail "spin= given without options.spin"
	[ "$(j '.features.spin // "unset"')" = unset ] || { show; false; }
	st unmount pt
	[ "$status" -eq 0 ] || { show; false; }
	# under seccomp, with a steady stream of requests that never lets the receiving thread
	# sleep: SIGTERM still ends the server (its look for a pending signal is allowed)
	mount_spec "$(spec_opts '{"spin": 100000}')"
	[ "$status" -eq 0 ] || { show; false; }
	pid=$(j .pid)
	(while :; do getfattr -n user.none "$M/f" >/dev/null 2>&1 || exit 0; done) &
	local load=$!
	[ "$(cat "$M/f")" = x ]
	kill -TERM "$pid"
	local end=$((SECONDS + 10))
	while [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
		[ "$SECONDS" -lt "$end" ] || { kill "$load"; fail "the sandboxed server ignored SIGTERM under load"; }
		sleep 0.05
	done
	kill "$load" 2>/dev/null || true
	wait "$load" 2>/dev/null || true
	st unmount pt
	[ "$status" -eq 0 ] || { show; false; }
}

@test "overlay under the sandbox: whiteouts, opaque dirs, copy-up, deletes" {
	mount_spec "$(native_spec)"
	[ "$status" -eq 0 ] || { show; false; }
	[ "$(ls "$M" | tr '\n' ' ')" = "a d o " ]
	[ "$(cat "$M/a")" = "a from l1" ]
	[ ! -e "$M/b" ]
	[ "$(ls "$M/d")" = x ]
	[ "$(ls "$M/o")" = new ]
	# copy-up keeps mode, owner and xattrs; the lower stays as it was
	chmod 0640 "$T/l2/d/x"
	chown 123:456 "$T/l2/d/x"
	setfattr -n user.k -v v "$T/l2/d/x"
	echo more >>"$M/d/x"
	[ "$(cat "$T/u/d/x")" = "$(printf 'x\nmore')" ]
	[ "$(cat "$T/l2/d/x")" = x ]
	[ "$(stat -c '%a %u %g' "$T/u/d/x")" = "640 123 456" ]
	[ "$(getfattr --absolute-names --only-values -n user.k "$T/u/d/x")" = v ]
	# delete a lower file: a char 0/0 whiteout in the upper
	rm "$M/d/x"
	[ ! -e "$M/d/x" ]
	[ "$(stat -c '%F %t/%T' "$T/u/d/x")" = "character special file 0/0" ]
	# rmdir + mkdir of a merged dir: opaque, like the kernel writes it as root
	rm -rf "$M/d"
	mkdir "$M/d"
	[ -z "$(ls -A "$M/d")" ]
	[ "$(getfattr --absolute-names --only-values -n trusted.overlay.opaque "$T/u/d")" = y ]
	# devices, fifos, symlinks, hard links, chown: the file capabilities the server kept
	mknod "$M/dev" c 1 3
	mkfifo "$M/fifo"
	ln -s a "$M/sym"
	ln "$M/a" "$M/hard"
	chown 7:8 "$M/a"
	[ "$(stat -c '%u %g %h' "$M/a")" = "7 8 2" ]
	[ "$(stat -c %F "$T/u/dev")" = "character special file" ]
	# the kernel's overlayfs reads the upper the same way
	grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
	if grep -qw overlay /proc/filesystems; then
		st unmount t1
		mkdir -p "$T/k" "$T/kw"
		rm -rf "$T/w"/*
		mount -t overlay overlay -o "lowerdir=$T/l1:$T/l2,upperdir=$T/u,workdir=$T/w" "$T/k"
		run ls -A "$T/k/d"
		umount "$T/k"
		[ -z "$output" ]
	fi
}

@test "containerd Mount form (and a snapshotter's one-element array), id derived from target" {
	mount_spec "{\"type\": \"fuse3.stratafs\", \"source\": \"overlay\", \"target\": \"$M\", \"options\": [\"lowerdir=$T/l1:$T/l2\", \"upperdir=$T/u\", \"workdir=$T/w\", \"index=off\"]}"
	[ "$status" -eq 0 ] || { show; false; }
	[ "$(j .specForm)" = containerd ]
	id=$(j .id)
	[[ "$id" == mnt-* ]]
	[ "$(cat "$M/a")" = "a from l1" ]
	st status "$id"
	[ "$status" -eq 0 ]
	[ "$(j .state)" = mounted ]
	st unmount "$id"
	[ "$status" -eq 0 ]
	mount_spec "[{\"type\": \"overlay\", \"source\": \"overlay\", \"id\": \"snap\", \"target\": \"$M\", \"options\": [\"lowerdir=$T/l1:$T/l2\"]}]"
	[ "$status" -eq 0 ] || { show; false; }
	[ "$(j .id)" = snap ]
	[ "$(j .readonly)" = true ]
}

@test "status, list, unmount: records follow the mounts; a second unmount is fine" {
	mkdir -p "$T/m2"
	mount_spec "$(native_spec one)"
	[ "$status" -eq 0 ]
	pid1=$(j .pid)
	mount_spec "{\"id\": \"two\", \"target\": \"$T/m2\", \"lower\": [\"$T/l2\"]}"
	[ "$status" -eq 0 ]
	[ -f "$SD/one.json" ] && [ -f "$SD/two.json" ]
	st list
	[ "$status" -eq 0 ]
	[ "$(j 'map(.id) | join(",")')" = one,two ]
	[ "$(j 'map(.state) | join(",")')" = mounted,mounted ]
	st status one
	[ "$(j .pid)" = "$pid1" ]
	mon=$(awk '{ print $4 }' /proc/"$pid1"/stat)
	st unmount one
	[ "$status" -eq 0 ] || { show; false; }
	[ "$(j .state)" = unmounted ]
	! is_mounted "$M"
	[ ! -e /proc/"$pid1" ] || [ "$(awk '{ print $3 }' /proc/"$pid1"/stat)" = Z ]
	[ ! -e /proc/"$mon" ] || [ "$(awk '{ print $3 }' /proc/"$mon"/stat)" = Z ]
	[ ! -e "$SD/one.json" ] && [ ! -e "$SD/one.log" ] && [ ! -e "$SD/one.exit" ]
	st unmount one
	[ "$status" -eq 0 ]
	[ "$(j .state)" = unmounted ]
	st status one
	[ "$status" -eq 1 ]
	[ "$(j .error.code)" = ENOENT ]
	st list
	[ "$(j 'map(.id) | join(",")')" = two ]
}

@test "a dead server: status says dead with the signal; unmount cleans the ENOTCONN mount" {
	mount_spec "$(native_spec)"
	[ "$status" -eq 0 ]
	pid=$(j .pid)
	kill -KILL "$pid"
	for _ in $(seq 100); do
		st status t1
		[ "$(j .state)" = dead ] && [ "$(j .exit.signalName)" = SIGKILL ] && break
		sleep 0.05
	done
	[ "$(j .state)" = dead ] || { show; false; }
	[ "$(j .exit.signal)" = 9 ]
	[ "$(j .exit.signalName)" = SIGKILL ]
	[ "$(j .lastPid)" = "$pid" ]
	run stat "$M/a"
	[[ "$output" == *"not connected"* ]]
	st unmount t1
	[ "$status" -eq 0 ] || { show; false; }
	! is_mounted "$M"
	[ -z "$(records)" ]
	wait_no_new_procs 5
}

@test "a server that exits: status gives its exit code; gc clears dead records only" {
	mkdir -p "$T/m2"
	mount_spec "$(native_spec dies)"
	[ "$status" -eq 0 ]
	mount_spec "{\"id\": \"lives\", \"target\": \"$T/m2\", \"lower\": [\"$T/l2\"]}"
	[ "$status" -eq 0 ]
	# unmounted behind strata's back: the server exits 0 by itself
	umount "$M"
	for _ in $(seq 100); do
		st status dies
		[ "$(j .state)" = dead ] && [ "$(j .exit.exitCode)" != null ] && break
		sleep 0.05
	done
	[ "$(j .state)" = dead ] || { show; false; }
	[ "$(j .exit.exitCode)" = 0 ] || { show; false; }
	st gc
	[ "$status" -eq 0 ]
	[ "$(j '.removed | join(",")')" = dies ]
	[ "$(j .kept)" = 1 ]
	st list
	[ "$(j 'map(.id) | join(",")')" = lives ]
	assert_live "$T/m2"
}

@test "a record left by a strata that died while mounting is dead, and gc clears it" {
	mkdir -p "$SD"
	printf '{"id":"half","state":"mounting","target":"%s","driverPid":999999}' "$M" >"$SD/half.json"
	st status half
	[ "$(j .state)" = dead ]
	[[ "$(j .reason)" == *mounting* ]]
	st gc
	[ "$(j '.removed | join(",")')" = half ]
	[ -z "$(records)" ]
}

@test "bad input: JSON and types, each a specific error naming the field, exit 2, nothing left" {
	mount_spec '{"target": '
	assert_refused 2 spec EINVAL
	mount_spec 'not json'
	assert_refused 2 spec EINVAL
	mount_spec ''
	assert_refused 2 spec EINVAL
	mount_spec "$(printf '{"target": "/tmp/\xc3\x28", "lower": ["/"]}')"
	assert_refused 2 spec EILSEQ
	mount_spec '["a"]'
	assert_refused 2 spec EINVAL
	mount_spec "{\"target\": 5, \"lower\": [\"$T/l1\"]}"
	assert_refused 2 target EINVAL
	mount_spec "{\"target\": \"$M\", \"lower\": \"$T/l1\"}"
	assert_refused 2 lower EINVAL
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\", 3]}"
	assert_refused 2 'lower[1]' EINVAL
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\"], \"readonly\": 1}"
	assert_refused 2 readonly EINVAL
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\"], \"options\": {\"volatile\": \"yes\"}}"
	assert_refused 2 options.volatile EINVAL
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\"], \"uidMappings\": [{\"containerID\": 0, \"hostID\": \"x\", \"size\": 1}]}"
	assert_refused 2 'uidMappings[0].hostID' EINVAL
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\"], \"colour\": \"blue\"}"
	assert_refused 2 colour EINVAL
}

@test "bad input: missing fields, relative and missing paths, wrong kinds, exit 2, nothing left" {
	mount_spec "{\"lower\": [\"$T/l1\"]}"
	assert_refused 2 target EINVAL
	mount_spec "{\"target\": \"$M\"}"
	assert_refused 2 lower EINVAL
	mount_spec "{\"target\": \"$M\", \"lower\": []}"
	assert_refused 2 lower EINVAL
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\"], \"upper\": \"$T/u\"}"
	assert_refused 2 work EINVAL
	mount_spec "{\"target\": \"m\", \"lower\": [\"$T/l1\"]}"
	assert_refused 2 target EINVAL
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\", \"l2\"]}"
	assert_refused 2 'lower[1]' EINVAL
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\"], \"upper\": \"u\", \"work\": \"$T/w\"}"
	assert_refused 2 upper EINVAL
	mount_spec "{\"target\": \"$T/nope\", \"lower\": [\"$T/l1\"]}"
	assert_refused 2 target ENOENT
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\", \"$T/nope\"]}"
	assert_refused 2 'lower[1]' ENOENT
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\"], \"upper\": \"$T/nope\", \"work\": \"$T/w\"}"
	assert_refused 2 upper ENOENT
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\"], \"upper\": \"$T/u\", \"work\": \"$T/nope\"}"
	assert_refused 2 work ENOENT
	mount_spec "{\"target\": \"$T/l1/a\", \"lower\": [\"$T/l2\"]}"
	assert_refused 2 target ENOTDIR
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1/a\"]}"
	assert_refused 2 'lower[0]' ENOTDIR
	# containerd form: the option at fault
	mount_spec "{\"type\": \"fuse3.stratafs\", \"source\": \"overlay\", \"target\": \"$M\", \"options\": [\"lowerdir=$T/l1:$T/nope\"]}"
	assert_refused 2 'options[0].lowerdir[1]' ENOENT
	# the command line
	st mount -f "$T/does-not-exist.json"
	assert_refused 2 spec ENOENT
	st frobnicate
	[ "$status" -eq 2 ]
	st status
	[ "$status" -eq 2 ]
	st status 'a/b'
	[ "$status" -eq 2 ]
	[ "$(j .error.field)" = id ]
}

@test "bad input: ids, nesting, devices, mounted targets, duplicates, sizes" {
	mount_spec "{\"id\": \"a/b\", \"target\": \"$M\", \"lower\": [\"$T/l1\"]}"
	assert_refused 2 id EINVAL
	mount_spec "{\"id\": \"$(printf 'x%.0s' $(seq 129))\", \"target\": \"$M\", \"lower\": [\"$T/l1\"]}"
	assert_refused 2 id ENAMETOOLONG
	# upper equal to, or inside, a lower; a lower inside the upper; work inside upper
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\", \"$T/l2\"], \"upper\": \"$T/l2\", \"work\": \"$T/w\"}"
	assert_refused 2 upper EINVAL
	mkdir -p "$T/l1/sub"
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\", \"$T/l2\"], \"upper\": \"$T/l1/sub\", \"work\": \"$T/w\"}"
	assert_refused 2 upper EINVAL
	mkdir -p "$T/u/inner"
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/u/inner\"], \"upper\": \"$T/u\", \"work\": \"$T/w\"}"
	assert_refused 2 'lower[0]' EINVAL
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\"], \"upper\": \"$T/u\", \"work\": \"$T/u/inner\"}"
	assert_refused 2 work EINVAL
	# target inside a layer: the server would walk into its own mount
	mount_spec "{\"target\": \"$T/l1/sub\", \"lower\": [\"$T/l1\"]}"
	assert_refused 2 target EINVAL
	# work on another filesystem than upper
	mkdir -p "$T/other"
	mount -t tmpfs tmpfs "$T/other"
	mount_spec "{\"target\": \"$M\", \"lower\": [\"$T/l1\"], \"upper\": \"$T/u\", \"work\": \"$T/other\"}"
	umount "$T/other"
	assert_refused 2 work EXDEV
	# 600 layers
	for i in $(seq 600); do mkdir -p "$T/many/$i"; done
	lowers=$(seq 600 | sed "s|.*|\"$T/many/&\"|" | paste -sd,)
	mount_spec "{\"target\": \"$M\", \"lower\": [$lowers]}"
	assert_refused 2 lower E2BIG
	# a 10 MB spec
	head -c $((10 * 1024 * 1024)) /dev/zero | tr '\0' ' ' >"$T/big.json"
	st mount -f "$T/big.json"
	assert_refused 2 spec E2BIG
	# an already mounted target (by another mount), and a duplicate id
	mount_spec "$(native_spec first)"
	[ "$status" -eq 0 ] || { show; false; }
	PROCS_BEFORE=$(driver_procs)
	mkdir -p "$T/m3"
	mount_spec "{\"id\": \"second\", \"target\": \"$M\", \"lower\": [\"$T/l2\"]}"
	[ "$status" -eq 2 ] && [ "$(j .error.field)" = target ] && [ "$(j .error.code)" = EBUSY ] || { show; false; }
	mount_spec "{\"id\": \"first\", \"target\": \"$T/m3\", \"lower\": [\"$T/l2\"]}"
	[ "$status" -eq 2 ] && [ "$(j .error.field)" = id ] && [ "$(j .error.code)" = EEXIST ] || { show; false; }
	! is_mounted "$T/m3"
	[ "$(records | wc -l)" -eq 1 ]
	[ -z "$(new_procs)" ]
	# a target mounted by something else
	mount -t tmpfs tmpfs "$T/m3"
	mount_spec "{\"id\": \"third\", \"target\": \"$T/m3\", \"lower\": [\"$T/l2\"]}"
	umount "$T/m3"
	[ "$status" -eq 2 ] && [ "$(j .error.field)" = target ] || { show; false; }
}

@test "runtime failures exit 1 and leave nothing: no stratafs, a server that dies, one that hangs" {
	STRATAFS=$T/nope mount_spec "$(native_spec)"
	assert_refused 1 "" ENOENT
	printf '#!/bin/sh\necho "fake: refusing to serve" >&2\nexit 3\n' >"$T/fake-exit"
	chmod +x "$T/fake-exit"
	STRATAFS=$T/fake-exit mount_spec "$(native_spec)"
	assert_refused 1 "" ECHILD
	[[ "$(j .error.message)" == *"fake: refusing to serve"* ]]
	printf '#!/bin/sh\nexec sleep 60\n' >"$T/fake-hang"
	chmod +x "$T/fake-hang"
	printf '%s' "$(native_spec)" >"$T/spec.json"
	status=0
	STRATAFS=$T/fake-hang timeout 30 "$STRATA" --state-dir "$SD" --timeout 500 mount -f "$T/spec.json" >"$T/out" 2>"$T/err" || status=$?
	out=$(cat "$T/out")
	err=$(cat "$T/err")
	assert_refused 1 "" ETIMEDOUT
}

@test "50 concurrent mounts all succeed, list shows 50 consistent records, 50 unmounts leave none" {
	n=50
	for i in $(seq $n); do
		mkdir -p "$T/t/$i"
		printf '{"id": "c%d", "target": "%s", "lower": ["%s", "%s"]}' "$i" "$T/t/$i" "$T/l1" "$T/l2" >"$T/s$i.json"
	done
	pids=()
	for i in $(seq $n); do
		timeout 120 "$STRATA" --state-dir "$SD" mount -f "$T/s$i.json" >"$T/o$i" 2>"$T/e$i" &
		pids+=($!)
	done
	fails=0
	for i in $(seq $n); do
		wait "${pids[$((i - 1))]}" || { fails=$((fails + 1)); echo "mount $i: $(cat "$T/o$i" "$T/e$i")"; }
	done
	[ "$fails" -eq 0 ]
	st list
	[ "$status" -eq 0 ]
	[ "$(j 'length')" -eq $n ]
	[ "$(j '[.[] | select(.state == "mounted")] | length')" -eq $n ]
	[ "$(j '[.[].pid] | unique | length')" -eq $n ]
	[ "$(j '[.[].target] | unique | length')" -eq $n ]
	for i in $(seq $n); do
		[ "$(jq -r .target "$T/o$i")" = "$T/t/$i" ]
		[ "$(cat "$T/t/$i/a")" = "a from l1" ]
	done
	pids=()
	for i in $(seq $n); do
		timeout 120 "$STRATA" --state-dir "$SD" unmount "c$i" >"$T/u$i" 2>&1 &
		pids+=($!)
	done
	for i in $(seq $n); do
		wait "${pids[$((i - 1))]}" || { fails=$((fails + 1)); echo "unmount $i: $(cat "$T/u$i")"; }
	done
	[ "$fails" -eq 0 ]
	st list
	[ "$(j length)" = 0 ] || { show; false; }
	[ -z "$(records)" ]
	[ -z "$(awk -v t="$T/t/" 'index($5, t) == 1' /proc/self/mountinfo)" ]
	wait_no_new_procs 20 || fail "left: $(new_procs)"
}

@test "containment: symlinks to /etc/shadow and ../../.. chains in a layer expose nothing outside" {
	ln -s /etc/shadow "$T/l1/shadow"
	ln -s ../../../../../../../../.. "$T/l1/up"
	mkdir -p "$T/l1/c/d"
	ln -s ../../up/etc "$T/l1/c/d/e"
	ln -s /proc/self/root/etc "$T/l1/magic"
	mount_spec "$(native_spec)"
	[ "$status" -eq 0 ] || { show; false; }
	# the server shows links as links and never follows them itself
	[ "$(readlink "$M/shadow")" = /etc/shadow ]
	[ "$(readlink "$M/up")" = ../../../../../../../../.. ]
	[ "$(readlink "$M/c/d/e")" = ../../up/etc ]
	[ "$(readlink "$M/magic")" = /proc/self/root/etc ]
	[ "$(find -P "$M" | sed "s|^$M||" | sort | tr '\n' ' ')" = " /a /c /c/d /c/d/e /d /d/x /magic /o /o/new /shadow /up " ]
	# metadata ops on the links act on the links (copy-up of a symlink, not its target)
	chown -h 5:5 "$M/shadow"
	[ "$(stat -c %u /etc/shadow)" = 0 ]
	[ -L "$T/u/shadow" ]
	# a layer directory swapped for a symlink to /etc while mounted is not followed
	mkdir -p "$T/l2/swap"
	echo inside >"$T/l2/swap/f"
	ls "$M" >/dev/null
	mv "$T/l2/swap" "$T/l2/swap.old"
	ln -s /etc "$T/l2/swap"
	# the server never follows it: the name shows the directory it resolved before
	# (through its cached fd) or, looked up afresh, the symlink itself, which the
	# caller's own VFS resolves like any symlink in an image (as with the kernel's
	# overlayfs); it never shows /etc's content as if it were the layer's
	if [ -L "$M/swap" ]; then
		[ "$(readlink "$M/swap")" = /etc ]
	else
		run cat "$M/swap/passwd"
		[ "$status" -ne 0 ]
		run ls "$M/swap/"
		[[ "$output" != *passwd* ]]
	fi
	# the server's own view of the filesystem has no /etc to give away
	[ ! -e "/proc/$(j .pid)/root/etc/shadow" ]
}

@test "containment: spec paths racing with symlink swaps are used exactly as validated" {
	mkdir -p "$T/l1/sub" "$T/good"
	echo l2-file >"$T/l2/f"
	# the upper's path flips between a valid dir and one inside a lower layer
	(
		while :; do
			ln -sfn "$T/good" "$T/uplink.tmp" && mv -T "$T/uplink.tmp" "$T/uplink"
			ln -sfn "$T/l1/sub" "$T/uplink.tmp" && mv -T "$T/uplink.tmp" "$T/uplink"
		done
	) &
	flipper=$!
	refused=0 mounted=0
	for i in $(seq 20); do
		mount_spec "{\"id\": \"r$i\", \"target\": \"$M\", \"lower\": [\"$T/l1\", \"$T/l2\"], \"upper\": \"$T/uplink\", \"work\": \"$T/w\"}"
		if [ "$status" -eq 0 ]; then
			mounted=$((mounted + 1))
			echo "w$i" >"$M/written$i"
			st unmount "r$i"
			[ "$status" -eq 0 ]
		else
			[ "$status" -eq 2 ] && [ "$(j .error.field)" = upper ] || { kill "$flipper"; show; false; }
			refused=$((refused + 1))
		fi
	done
	kill "$flipper"
	wait "$flipper" 2>/dev/null || true
	echo "# $mounted mounted, $refused refused" >&3
	# whatever was mounted wrote into the valid upper, never into the lower layer
	[ -z "$(ls -A "$T/l1/sub")" ]
	[ "$(ls "$T/good" | grep -c '^written')" -eq "$mounted" ]
}

@test "spec parser: a bounded libFuzzer run finds nothing (make fuzz)" {
	command -v clang >/dev/null || skip "clang is not installed (make deps)"
	echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$T/f.c"
	clang -fsanitize=fuzzer "$T/f.c" -o "$T/f" 2>/dev/null || skip "clang has no libFuzzer (libclang-rt-dev)"
	run make -C "$REPO" --no-print-directory fuzz FUZZ_TIME="${STRATA_FUZZ_TIME:-20}" BUILD="$T/build"
	echo "$output" | tail -n 5
	[ "$status" -eq 0 ]
	[[ "$output" == *"Done "* ]]
}
