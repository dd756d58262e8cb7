#!/usr/bin/env bats
# FUSE passthrough (core/file.c): with a stratafs built against libfuse >= 3.16 (make
# passthrough) and CAP_SYS_ADMIN, the kernel reads and writes upper files itself; the data
# must be the same as without it, every mix of opens must work, and without the privilege
# stratafs must fall back to serving reads and writes. Skips with the system libfuse 3.14.

load helpers
bats_require_minimum_version 1.5.0

setup() {
	common_setup
	need_real_stratafs
	local v
	v=$("$STRATAFS" --version 2>/dev/null | sed -n 's/.*(libfuse \([0-9.]*\)).*/\1/p')
	case $v in
	3.1[6-9]* | 3.[2-9]* | [4-9].*) ;;
	*) skip "stratafs is built against libfuse ${v:-?} (< 3.16): no passthrough (make passthrough)" ;;
	esac
	mk_layers "$T" 1
	mkdir -p "$T/m"
	echo lower >"$T/l1/lf"
	prand 3000000 >"$T/l1/big"
}

teardown() {
	common_teardown
	# a server left in a user namespace by a failed test (its argv names this test's tree)
	local p
	for p in $(strata_pids_under "$T/"); do
		kill -KILL "$p" 2>/dev/null || true
	done
}

# mount_debug OPTS [PREFIX...]: stratafs -d in the background (log in $T/log), waits for
# the mount. PREFIX runs it under a wrapper (setpriv ...).
mount_debug() {
	local opts=$1
	shift
	"$@" "$STRATAFS" -d -o "lowerdir=$T/l1,upperdir=$T/upper,workdir=$T/work${opts:+,$opts}" "$T/m" \
		>"$T/log" 2>&1 </dev/null &
	_register_mount strata "$T/m"
	wait_for 10 is_mounted "$T/m" || fail "stratafs did not mount: $(cat "$T/log")"
}

opcount() { grep -c "opcode: $1 " "$T/log" || true; }

@test "passthrough: writes and reads of upper files bypass the server, data intact" {
	mount_debug ""
	prand 5000000 >"$T/m/new"
	cmp "$T/m/new" <(prand 5000000)
	echo appended >>"$T/m/new"
	[ "$(tail -c 9 "$T/m/new")" = appended ]
	# copy-up of a lower file, then an append to it, passed through
	echo more >>"$T/m/lf"
	[ "$(cat "$T/m/lf")" = "$(printf 'lower\nmore')" ]
	truncate -s 3 "$T/m/lf"
	[ "$(cat "$T/m/lf")" = low ]
	umount_strata "$T/m"
	[ "$(opcount WRITE)" = 0 ] || fail "$(opcount WRITE) WRITE requests reached the server"
	cmp "$T/upper/new" <(prand 5000000; echo appended)
	[ "$(cat "$T/upper/lf")" = low ]
}

@test "passthrough=0: reads and writes go through the server" {
	mount_debug passthrough=0
	prand 100000 >"$T/m/new"
	cmp "$T/m/new" <(prand 100000)
	umount_strata "$T/m"
	[ "$(opcount WRITE)" -gt 0 ]
}

@test "passthrough: a lower file read before and after a copy-up, several opens at once" {
	mount_debug ""
	exec 5<"$T/m/big" # lower, read through the server
	echo x >>"$T/m/big" # copy-up while open: page-cache mode for this node
	exec 6<"$T/m/big"
	head -c 3000000 <&6 | cmp - "$T/l1/big"
	exec 5<&- 6<&-
	# all closed: the next opens are passed through, shared by the node
	exec 5<"$T/m/big" 6>>"$T/m/big"
	echo y >&6
	[ "$(tail -c 4 "$T/m/big")" = "$(printf 'x\ny\n')" ]
	[ "$(tail -c 4 <&5)" = "$(printf 'x\ny\n')" ]
	exec 5<&- 6>&-
	umount_strata "$T/m"
}

@test "passthrough: shared mmap of an upper file" {
	need_python
	mount_debug ""
	printf 'hello world' >"$T/m/mm"
	python3 - "$T/m/mm" <<'EOF'
import mmap, sys
with open(sys.argv[1], "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    assert m[:5] == b"hello", m[:5]
    m[0:5] = b"HELLO"
    m.flush()
    m.close()
with open(sys.argv[1], "rb") as f:
    assert f.read() == b"HELLO world"
EOF
	umount_strata "$T/m"
	[ "$(cat "$T/upper/mm")" = "HELLO world" ]
}

@test "passthrough=all: lower reads bypass the server; a write-open while read fails ETXTBSY" {
	mount_debug passthrough=all
	cmp "$T/m/big" "$T/l1/big"
	exec 5<"$T/m/big"
	run -1 bash -c "echo z >>'$T/m/big'"
	assert_output --partial "busy"
	# a copy-up without a write-open (chmod) while the lower file is bound: later opens
	# for reading share the lower backing file
	chmod 600 "$T/m/big"
	cmp "$T/m/big" "$T/l1/big"
	exec 5<&-
	echo z >>"$T/m/big"
	[ "$(tail -c 2 "$T/m/big")" = "$(printf 'z\n')" ]
	umount_strata "$T/m"
	[ "$(opcount READ)" = 0 ] || fail "$(opcount READ) READ requests reached the server"
}

@test "passthrough=all: small files opened to read use the page cache, big ones the backing file" {
	# a backing file costs more than it saves below 256 KiB: those reads come to the
	# server once, later opens are served from the kernel's page cache (keep_cache)
	prand 20000 >"$T/l1/small"
	mount_debug passthrough=all
	cmp "$T/m/small" "$T/l1/small"
	cmp "$T/m/big" "$T/l1/big"
	local after_first
	after_first=$(opcount READ)
	cmp "$T/m/small" "$T/l1/small"
	umount_strata "$T/m"
	[ "$after_first" -ge 1 ] || fail "the small file was passed through (no READ)"
	[ "$after_first" -le 2 ] || fail "$after_first READ requests: the big file was not passed through"
	[ "$(opcount READ)" = "$after_first" ] || fail "the second read of the small file was not cached"
}

@test "passthrough: without CAP_SYS_ADMIN it falls back to serving reads and writes" {
	# the sandbox drops CAP_SYS_ADMIN with userxattr; its seccomp filter lets the backing
	# ioctl through, so the kernel's own EPERM is what stratafs sees
	mount_debug sandbox=userxattr
	prand 200000 >"$T/m/new"
	cmp "$T/m/new" <(prand 200000)
	echo more >>"$T/m/lf"
	[ "$(cat "$T/m/lf")" = "$(printf 'lower\nmore')" ]
	umount_strata "$T/m"
	[ "$(opcount WRITE)" -gt 0 ]
	grep -q "passthrough: off: refused by the kernel (Operation not permitted" "$T/log"
}

has_sys_admin() { [ $((0x$(awk '/^CapEff:/ { print $2 }' "/proc/$1/status") >> 21 & 1)) = 1 ]; }

@test "sandbox: passthrough asked for keeps CAP_SYS_ADMIN for it and bypasses the server" {
	# userxattr: no trusted.overlay markers, so passthrough is the only reason to keep it
	mount_debug sandbox=userxattr,passthrough=1
	pid=$(strata_pids "$T/m")
	[ -n "$pid" ]
	has_sys_admin "$pid" || fail "CAP_SYS_ADMIN dropped"
	grep -q "CAP_SYS_ADMIN kept: FUSE passthrough was asked for" "$T/log"
	prand 200000 >"$T/m/new"
	cmp "$T/m/new" <(prand 200000)
	grep -q "stratafs: passthrough: on" "$T/log"
	umount_strata "$T/m"
	[ "$(opcount WRITE)" = 0 ] || fail "$(opcount WRITE) WRITE requests reached the server"
}

@test "sandbox: in a user namespace CAP_SYS_ADMIN is not kept for passthrough, which falls back" {
	command -v unshare >/dev/null || skip "unshare is not installed (util-linux)"
	chmod 755 "$T"
	chown -R 0:0 "$T/l1" "$T/upper" "$T/work"
	# the server's whole life inside one user and mount namespace (root mapped to root);
	# the script waits for the mount, writes, checks, and unmounts
	run timeout -k 5 60 unshare --user --map-root-user --mount bash -c '
		"$1" -f -o "lowerdir=$2/l1,upperdir=$2/upper,workdir=$2/work,sandbox=1,passthrough=1" "$2/m" 2>"$2/log" &
		srv=$!
		for i in $(seq 100); do grep -q " $2/m " /proc/self/mounts && break; sleep 0.1; done
		grep -q " $2/m " /proc/self/mounts || { echo "no mount"; kill $srv; exit 1; }
		head -c 100000 /dev/urandom >"$2/data"
		cp "$2/data" "$2/m/new" && cmp "$2/m/new" "$2/data" && cat "$2/m/lf" || echo "io failed"
		awk "/^CapEff:/ { print \"CapEff\", \$2 }" /proc/$srv/status
		umount "$2/m"
		wait $srv
		echo "exit $?"' _ "$STRATAFS" "$T"
	echo "$output"
	cat "$T/log"
	[ "$status" -eq 0 ]
	assert_line lower
	assert_line "exit 0"
	refute_output --partial "io failed"
	# CAP_SYS_ADMIN (bit 21) is not in CapEff
	capeff=$(sed -n 's/^CapEff //p' <<<"$output")
	[ $((0x$capeff >> 21 & 1)) = 0 ] || fail "CapEff $capeff holds CAP_SYS_ADMIN"
	grep -q "CAP_SYS_ADMIN not kept for FUSE passthrough: in a user namespace" "$T/log"
	grep -q "stratafs: passthrough: off: refused by the kernel (Operation not permitted" "$T/log"
}
