#!/usr/bin/env bats
# Hostile layers: content an attacker controls (an image, or an upper dir someone
# else can write while it is mounted) must not make the server reach anything
# outside the layers, hang or crash. Symlink chains and loops, symlinks where
# the server expects directories, `..` in redirect xattrs, magic links, device
# nodes and FIFOs, setuid files, names with newlines and invalid UTF-8, paths
# longer than PATH_MAX, a 100k-entry directory.
#
# Every test keeps an "outside" directory next to the layers with a marker file
# that must never show up in (or be changed through) the mount.
#
# Safety: no test here writes through a symlink that could point at a host path
# (a chmod/echo through a mount that failed to come up would hit the host), and
# device nodes are only ever created inside $T.

load helpers

setup() {
	common_setup
	need_python
	OUT=$T/outside
	mkdir -p "$OUT/b"
	echo secret >"$OUT/marker"
	echo secret >"$OUT/b/marker"
}

teardown() {
	common_teardown
}

# outside_intact: nothing was created, removed or changed in $OUT.
outside_intact() {
	[ "$(cd "$OUT" && find . | sort | tr '\n' ' ')" = ". ./b ./b/marker ./marker " ] ||
		{ echo "outside changed: $(cd "$OUT" && find . | sort | tr '\n' ' ')" >&2; return 1; }
	[ "$(cat "$OUT/marker" "$OUT/b/marker")" = "secret
secret" ]
}

# no_marker DIR: the marker is not visible anywhere under the mount (no walk out).
no_marker() {
	local hits
	hits=$(timeout 120 find "$1" -xdev -name marker 2>/dev/null | head -n 3)
	[ -z "$hits" ] || { echo "outside content visible in the mount: $hits" >&2; return 1; }
}

# alive MNT: the server answers
alive() {
	timeout 20 stat "$1" >/dev/null && timeout 20 ls "$1" >/dev/null
}

@test "hostile: symlinks where directories are expected are not followed by the server" {
	need_real_stratafs
	mk_layers "$T" 2
	# l1/d is a directory; below it l2/d is a symlink to the outside: not merged
	mkdir -p "$T/l1/d" "$T/l2"
	echo top >"$T/l1/d/top"
	ln -s "$OUT" "$T/l2/d"
	# a symlink chain that ends outside, a loop, a 45-link chain
	ln -s "$OUT" "$T/l2/chain0"
	for i in $(seq 1 45); do ln -s "chain$((i - 1))" "$T/l2/chain$i"; done
	ln -s loop2 "$T/l2/loop1"
	ln -s loop1 "$T/l2/loop2"
	# a directory whose name the upper later replaces with a symlink to the outside
	mkdir -p "$T/l2/a/b"
	echo low >"$T/l2/a/b/f"
	mount_strata "$(lowers_of "$T")" "$T/upper" "$T/work" "$T/mnt"
	[ "$(ls "$T/mnt/d")" = top ]
	no_marker "$T/mnt"
	[ "$(readlink "$T/mnt/chain45")" = chain44 ]
	[ "$(readlink "$T/mnt/chain0")" = "$OUT" ]
	run cat "$T/mnt/loop1"
	[ "$status" -ne 0 ]
	# copy-ups of links copy the link, never the target
	touch -h "$T/mnt/chain0" "$T/mnt/loop1"
	[ "$(readlink "$T/upper/chain0")" = "$OUT" ]
	# the layer changes under the server: upper/a becomes a symlink to the outside
	# after the server has looked a/b up; creating in a/b must not land outside
	ls "$T/mnt/a/b" >/dev/null
	ln -s "$OUT" "$T/upper/a"
	run touch "$T/mnt/a/b/new"
	run sh -c "echo x >>'$T/mnt/a/b/f'"
	run mkdir "$T/mnt/a/b/newdir"
	run mv "$T/mnt/a/b/f" "$T/mnt/a/b/g"
	alive "$T/mnt"
	outside_intact
}

@test "hostile: redirect xattrs with .. or absolute escapes stay inside the layers" {
	need_real_stratafs
	mk_layers "$T" 2
	mkdir -p "$T/l2/real" "$T/upper"
	echo low >"$T/l2/real/f"
	local v
	for v in "../outside" "/../outside" "../../outside" "/real/../../outside" "$OUT" "//..//.." \
		"real/./../.." "$(printf 'x/%.0s' {1..1000})"; do
		local n=r$((${#v} % 97))$RANDOM
		mkdir "$T/upper/$n"
		setfattr -n trusted.overlay.redirect -v "$v" "$T/upper/$n"
		# a directory in the lower below it too, so that the redirect is followed
		mkdir -p "$T/l1/$n"
	done
	mount_strata "$(lowers_of "$T")" "$T/upper" "$T/work" "$T/mnt"
	no_marker "$T/mnt"
	run ls -R "$T/mnt"
	alive "$T/mnt"
	# renames and rm -rf of such directories stay inside as well
	for n in "$T"/mnt/r*; do mv "$n" "$n.moved" 2>/dev/null || true; done
	rm -rf "$T"/mnt/r* 2>/dev/null || true
	alive "$T/mnt"
	outside_intact
}

@test "hostile: magic links, device nodes, FIFOs and sockets are served without being opened" {
	need_real_stratafs
	mk_layers "$T" 1
	ln -s /proc/self/root "$T/l1/root-link"
	ln -s /proc/self/fd/0 "$T/l1/fd-link"
	ln -s /proc/1/cwd "$T/l1/cwd-link"
	mkfifo "$T/l1/fifo"
	mknod "$T/l1/null" c 1 3
	mknod "$T/l1/blk" b 7 200
	mknod "$T/l1/zero" c 1 5
	python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$T/l1/sock"
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt"
	# metadata changes copy these up with mknod/symlink (a blocking open of the FIFO
	# would hang every request after it: each step is bounded)
	local f
	for f in fifo null blk zero sock; do
		timeout 20 chmod 0600 "$T/mnt/$f"
		timeout 20 touch -h -d @1000000000 "$T/mnt/$f"
		timeout 20 setfattr -n trusted.x -v 1 "$T/mnt/$f"
		timeout 20 chown 1234:1234 "$T/mnt/$f"
	done
	for f in root-link fd-link cwd-link; do timeout 20 chown -h 1234 "$T/mnt/$f"; done
	[ "$(stat -c %F:%t:%T "$T/upper/null")" = "character special file:1:3" ]
	[ "$(stat -c %F "$T/upper/fifo")" = fifo ]
	[ "$(readlink "$T/upper/root-link")" = /proc/self/root ]
	[ "$(readlink "$T/mnt/cwd-link")" = /proc/1/cwd ]
	# the mount is nodev for device nodes: opening one is refused, not served
	run timeout 10 cat "$T/mnt/zero"
	[ "$status" -ne 0 ] && [ "$status" -ne 124 ]
	alive "$T/mnt"
	# the host's nodes were never touched
	[ "$(stat -c %a:%F /dev/null)" = "666:character special file" ]
	outside_intact
}

@test "hostile: setuid files keep the kernel's rules (write by another user clears setuid)" {
	build_suid() {
		mk_layers "$1" 1
		printf '#!/bin/sh\n' >"$1/l1/suid"
		chmod 4777 "$1/l1/suid"
		printf '#!/bin/sh\n' >"$1/l1/sgid"
		chmod 2777 "$1/l1/sgid"
		chmod 0777 "$1/l1"
	}
	both_mounts build_suid
	same_in_both 'stat -c %a suid sgid'
	same_in_both 'setpriv --reuid 1000 --regid 1000 --clear-groups sh -c "echo x >>suid; echo x >>sgid"; stat -c %a suid sgid'
	same_in_both 'chmod 4755 suid && setpriv --reuid 1000 --regid 1000 --clear-groups truncate -s 0 suid; stat -c %a suid'
}

build_names() {
	local l
	mk_layers "$1" 2
	l=$1/l2
	python3 - "$l" <<'EOF'
import os, sys
l = os.fsencode(sys.argv[1])
names = [b"new\nline", b"\nlead", b"trail\n", b"\xff\xfe\xfd", b"latin1-\xe9", b"half-\xc3",
         b"tab\there", b"esc\x1b[31mred", b"back\\slash", b" space ", b"-dash", b"*star?",
         b"x" * 255, b"\xf0\x9f\x92\xa9", b".wh-not-a-whiteout", b"..dots", b"...",
         b"\x7f\x01ctl"]
for i, n in enumerate(names):
    with open(os.path.join(l, n), "wb") as f:
        f.write(b"%d\n" % i)
d = os.path.join(l, b"dir\n\xff")
os.mkdir(d)
for n in names[:6]:
    with open(os.path.join(d, n), "wb") as f:
        f.write(n)
# a path longer than PATH_MAX, made fd-relative
fd = os.open(l, os.O_RDONLY)
for i in range(40):
    n = (b"deep%02d-" % i) + b"y" * 120
    os.mkdir(n, dir_fd=fd)
    nfd = os.open(n, os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = nfd
with open(os.open(b"leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
    f.write(b"deep leaf\n")
os.close(fd)
EOF
	echo top >"$1/l1/top"
}

ops_names() {
	python3 - <<'EOF'
import os
def step(d, f):
    try:
        f()
        print(d, "ok")
    except OSError as e:
        print(d, e.strerror)
step("append", lambda: open(b"new\nline", "ab").write(b"more\n"))
step("rename", lambda: os.rename(b"\xff\xfe\xfd", b"renamed-\xff"))
step("unlink", lambda: os.unlink(b"trail\n"))
step("unlink 255", lambda: os.unlink(b"x" * 255))
step("create 256", lambda: open(b"y" * 256, "wb"))
step("mkdir", lambda: os.mkdir(b"dir\n\xff/sub\n"))
step("rename dir", lambda: os.rename(b"dir\n\xff", b"dir-renamed\xfe"))
# the deep leaf: copy-up of a file below a path longer than PATH_MAX, fd-relative
fd = os.open(".", os.O_RDONLY)
for i in range(40):
    nfd = os.open((b"deep%02d-" % i) + b"y" * 120, os.O_RDONLY)
    os.fchdir(nfd)
    os.close(fd)
    fd = nfd
step("deep append", lambda: open(b"leaf", "ab").write(b"appended\n"))
step("deep create", lambda: open(b"new-leaf", "wb").write(b"new\n"))
step("deep long path", lambda: os.stat(os.getcwd()))
os.close(fd)
EOF
}

@test "hostile: names with newlines, control bytes and invalid UTF-8, and paths beyond PATH_MAX, as on the kernel" {
	compare_with_kernel build_names ops_names
}

@test "hostile: a 100k-entry directory lists completely, with whiteouts and upper entries mixed in" {
	need_real_stratafs
	mk_layers "$T" 1
	local n=${HOSTILE_BIGDIR:-100000}
	python3 -c '
import os, sys
d = sys.argv[1]; n = int(sys.argv[2])
os.mkdir(d)
fd = os.open(d, os.O_RDONLY)
for i in range(n):
    os.close(os.open("e%06d" % i, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
' "$T/l1/big" "$n"
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt"
	[ "$(ls -f "$T/mnt/big" | grep -c '^e')" -eq "$n" ]
	rm "$T/mnt/big/e000000" "$T/mnt/big/e050000"
	touch "$T/mnt/big/new1" "$T/mnt/big/new2"
	echo x >"$T/mnt/big/e099999"
	local t0=$SECONDS
	[ "$(ls -f "$T/mnt/big" | grep -c '^e')" -eq $((n - 2)) ]
	[ "$(ls -f "$T/mnt/big" | grep -c '^new')" -eq 2 ]
	[ "$(ls -f "$T/mnt/big" | sort | uniq -d | wc -l)" -eq 0 ]
	echo "# listing $n entries took $((SECONDS - t0)) s" >&3
	# rm -rf of the lot: one whiteout for the directory at the end
	rm -rf "$T/mnt/big"
	[ ! -e "$T/mnt/big" ]
	alive "$T/mnt"
}
