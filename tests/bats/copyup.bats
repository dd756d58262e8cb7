#!/usr/bin/env bats
# Copy-up: attributes, xattrs and content kept; inode numbers stable; hard
# links kept linked (like the kernel with index=on), also after a remount;
# atomic under kill -9.

load helpers

setup() {
	common_setup
	need_python
}

teardown() {
	common_teardown
}

# layer with a variety of attributes to be copied up
build_attrs() {
	local d=$1 l
	mk_layers "$d" 2
	l=$d/l2
	mkdir -p "$l"/dir/sub "$l"/private "$l"/a/b/c/d/e
	echo content >"$l"/file
	prand 300000 >"$l"/random
	printf 'x%.0s' {1..5000} >"$l"/dir/sub/text
	chmod 0751 "$l"/file
	chmod 4755 "$l"/random
	chmod 2775 "$l"/dir
	chmod 0700 "$l"/private "$l"/a/b
	chown 1001:2002 "$l"/file "$l"/dir "$l"/a/b/c
	chown 3003:4004 "$l"/dir/sub/text
	setfattr -n user.one -v 1 "$l"/file
	setfattr -n user.two -v "$(printf 'v%.0s' {1..2000})" "$l"/file
	setfattr -n user.bin -v 0x00ff00ff "$l"/random
	setfattr -n user.dir -v d "$l"/dir "$l"/a/b
	setfattr -n trusted.keep -v t "$l"/file
	setfacl -m u:1234:rwx,g:99:r "$l"/dir/sub/text
	setfacl -d -m u:1234:rx "$l"/dir
	ln -s file "$l"/symlink
	mkfifo -m 0640 "$l"/fifo
	mknod -m 0600 "$l"/chr c 1 7
	truncate -s 64M "$l"/sparse
	echo end >>"$l"/sparse
	echo top >"$d"/l1/top
}

# open for writing without writing: copy-up alone
open_rw() {
	python3 -c 'import os,sys
for p in sys.argv[1:]:
    os.close(os.open(p, os.O_WRONLY))' "$@"
}

ops_copyup_only() {
	step open_rw file random dir/sub/text sparse
	step setfattr -n user.trigger -v 1 dir/sub
	step chown -h 0:0 symlink
	step chown 0:0 fifo
	step touch a/b/c/d/e/new
	step sh -c 'echo added >> dir/sub/text'
}

@test "copy-up keeps mode, owner, mtime, xattrs, ACLs and content (same as the kernel)" {
	need_kernel_overlay
	compare_with_kernel build_attrs ops_copyup_only
}

@test "copy-up writes the attributes to the upper file itself" {
	rm -rf "$T/w"
	mkdir -p "$T/w"
	build_attrs "$T/w"
	set_layer_times "$T/w"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	(cd "$T/w/mnt" && open_rw file random && setfattr -n user.trigger -v 1 dir/sub)
	umount_strata "$T/w/mnt"
	local p re='^(user\.(one|two|bin|dir)|trusted\.keep|system\.posix_acl)'
	for p in file random dir dir/sub; do
		assert [ -e "$T/w/upper/$p" ]
		# the entry itself (line "."): everything but the trigger xattr as in the lower
		diff_listings "lower $p" <(TREE_XATTR_RE=$re tree_listing "$T/w/l2/$p" | awk 'NR == 1') \
			"upper $p" <(TREE_XATTR_RE=$re tree_listing "$T/w/upper/$p" | awk 'NR == 1')
	done
	# file data and times exactly
	cmp "$T/w/l2/random" "$T/w/upper/random"
	assert_equal "$(stat -c %y "$T/w/upper/file")" "$(stat -c %y "$T/w/l2/file")"
	assert_equal "$(stat -c %y "$T/w/upper/random")" "$(stat -c %y "$T/w/l2/random")"
}

@test "copy-up of a sparse file keeps it sparse (like the kernel)" {
	rm -rf "$T/w"
	mkdir -p "$T/w"
	mk_layers "$T/w" 1
	truncate -s 1G "$T/w/l1/sparse"
	echo end >>"$T/w/l1/sparse"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	chmod 0600 "$T/w/mnt/sparse"
	assert [ -f "$T/w/upper/sparse" ]
	assert_equal "$(stat -c %s "$T/w/upper/sparse")" "$(stat -c %s "$T/w/l1/sparse")"
	# allocated: the kernel's copy-up skips holes; allow 1 MiB
	local blocks
	blocks=$(stat -c %b "$T/w/upper/sparse")
	[ "$blocks" -le 2048 ] || fail "upper copy allocates $blocks 512-byte blocks (lower: $(stat -c %b "$T/w/l1/sparse"))"
	run tail -c 4 "$T/w/mnt/sparse"
	assert_output end
}

@test "inode number is unchanged across copy-up (files, dirs, symlinks, fifos)" {
	rm -rf "$T/w"
	mkdir -p "$T/w"
	build_attrs "$T/w"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	local m=$T/w/mnt p before after
	declare -A ino
	for p in file random dir dir/sub symlink fifo chr a/b/c; do
		ino[$p]=$(stat -c %i "$m/$p")
	done
	open_rw "$m/file"
	echo more >>"$m/random"
	touch "$m/dir/sub/new"
	chown -h 5:5 "$m/symlink"
	chmod 0600 "$m/fifo" "$m/chr"
	touch "$m/a/b/c/new"
	for p in file random dir dir/sub symlink fifo chr a/b/c; do
		assert [ -e "$T/w/upper/$p" ] || [ -L "$T/w/upper/$p" ]
		assert_equal "$p:$(stat -c %i "$m/$p")" "$p:${ino[$p]}"
	done
	# and the kernel forgetting its inodes does not change them either
	sync
	echo 2 >/proc/sys/vm/drop_caches
	for p in file random dir dir/sub symlink fifo chr a/b/c; do
		assert_equal "$p:$(stat -c %i "$m/$p")" "$p:${ino[$p]}"
	done
}

@test "a file's inode number is the same before and after copy-up when looked up afresh" {
	rm -rf "$T/w"
	mkdir -p "$T/w"
	build_attrs "$T/w"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	local m=$T/w/mnt before
	before=$(stat -c %i "$m/dir/sub/text")
	sync
	echo 2 >/proc/sys/vm/drop_caches
	echo more >>"$m/dir/sub/text"
	sync
	echo 2 >/proc/sys/vm/drop_caches
	assert_equal "$(stat -c %i "$m/dir/sub/text")" "$before"
}

@test "a read-only fd opened before copy-up sees data written after it (like the kernel)" {
	rm -rf "$T/w"
	mkdir -p "$T/w"
	mk_layers "$T/w" 1
	echo orig >"$T/w/l1/f"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	run python3 -c '
import os, sys
p = sys.argv[1]
fd = os.open(p, os.O_RDONLY)
with open(p, "a") as f:
    f.write("new\n")
print(repr(os.pread(fd, 100, 0)), os.fstat(fd).st_size, os.fstat(fd).st_ino == os.stat(p).st_ino)
' "$T/w/mnt/f"
	assert_success
	assert_output "b'orig\\nnew\\n' 9 True"
}

build_links() {
	local d=$1
	mk_layers "$d" 1
	mkdir -p "$d"/l1/a "$d"/l1/b
	echo shared >"$d"/l1/a/one
	ln "$d"/l1/a/one "$d"/l1/b/two
	ln "$d"/l1/a/one "$d"/l1/three
}

check_linked() {
	local m=$1 want=$2 i1 p
	i1=$(stat -c %i "$m/a/one")
	for p in a/one b/two three; do
		assert_equal "$p ino $(stat -c %i "$m/$p")" "$p ino $i1"
		assert_equal "$p nlink $(stat -c %h "$m/$p")" "$p nlink 3"
		assert_equal "$p: $(cat "$m/$p")" "$p: $want"
	done
}

@test "hard links stay linked after one name is copied up, and after a remount" {
	rm -rf "$T/w"
	mkdir -p "$T/w"
	build_links "$T/w"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	local m=$T/w/mnt
	check_linked "$m" shared
	echo via-two >>"$m/b/two"
	check_linked "$m" $'shared\nvia-two'
	echo via-three >>"$m/three"
	check_linked "$m" $'shared\nvia-two\nvia-three'
	chmod 0600 "$m/a/one"
	assert_equal "$(stat -c %a "$m/three")" 600
	umount_strata "$m"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	check_linked "$m" $'shared\nvia-two\nvia-three'
	assert_equal "$(stat -c %a "$m/b/two")" 600
	echo after-remount >>"$m/a/one"
	check_linked "$m" $'shared\nvia-two\nvia-three\nafter-remount'
	# removing a name keeps the others linked
	rm "$m/three"
	assert_equal "$(stat -c %h "$m/a/one")" 2
	assert_equal "$(stat -c %i "$m/a/one")" "$(stat -c %i "$m/b/two")"
	umount_strata "$m"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	assert_equal "$(stat -c %h "$m/b/two")" 2
	assert_equal "$(stat -c %i "$m/a/one")" "$(stat -c %i "$m/b/two")"
	run cat "$m/b/two"
	assert_output $'shared\nvia-two\nvia-three\nafter-remount'
	assert_file_not_exists "$m/three"
}

@test "hard links after copy-up read the same as under the kernel (index=on), both ways" {
	need_kernel_overlay
	ops() {
		step sh -c 'echo via-two >> b/two'
		step cat a/one three
		step chmod 0600 three
		step stat -c '%h %a %s' a/one b/two three
	}
	compare_with_kernel build_links ops
}

@test "a size or mode changed through one hard-link name is seen at once through the others" {
	# each name is its own kernel inode: attributes a truncate or chmod returned for one
	# name must not be cached, or a later append through another name is cut off
	mk_layers "$T" 1
	seq 1 2000 >"$T/l1/f"
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt"
	local m=$T/mnt
	ln "$m/f" "$m/g"
	cat "$m/g" >/dev/null
	truncate -s 100 "$m/g"
	chmod 0600 "$m/g"
	seq 1 500 >>"$m/f"
	chmod 0640 "$m/f"
	assert_equal "$(stat -c '%s %a' "$m/g")" "$(stat -c '%s %a' "$m/f")"
	assert_equal "$(wc -c <"$m/g")" "$((100 + $(seq 1 500 | wc -c)))"
	cmp "$m/f" "$m/g"
}

@test "an xattr found absent and then set (through any name) is seen at once" {
	# stratafs remembers which of security.selinux/capability and the ACL names a node
	# lacks (ls -l and every write ask for them); a change must end that at once
	mk_layers "$T" 1
	echo x >"$T/l1/f"
	mkdir "$T/l1/d"
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt"
	local m=$T/mnt n
	ln "$m/f" "$m/g"
	for n in security.capability security.selinux; do
		run getfattr --absolute-names -n "$n" "$m/f"
		assert_failure
		run getfattr --absolute-names -n "$n" "$m/g"
		assert_failure
	done
	setcap cap_net_raw+ep "$m/g"
	run getcap "$m/f"
	assert_output --partial cap_net_raw
	setcap -r "$m/f"
	run getcap "$m/g"
	assert_output ''
	run getfacl --absolute-names --omit-header -a "$m/d"
	refute_output --partial 'user:lp:'
	setfacl -m u:lp:rx "$m/d"
	run getfacl --absolute-names --omit-header -a "$m/d"
	assert_output --partial 'user:lp:r-x'
	setfattr -n security.selinux -v x "$m/f" 2>/dev/null || skip "security.selinux cannot be set here"
	run getfattr --absolute-names --only-values -n security.selinux "$m/g"
	assert_output x
}

@test "concurrent writers racing to copy up the same file (same as the kernel)" {
	need_kernel_overlay
	build_race() {
		local i
		mk_layers "$1" 1
		for i in $(seq 1 20); do seq 1 1000 >"$1/l1/f$i"; done
	}
	ops() {
		local i j
		for i in $(seq 1 20); do
			for j in 1 2 3 4; do
				python3 -c 'import os,sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.write(fd, ("w%s\n" % sys.argv[2]).encode())' "f$i" "$j" &
			done
		done
		wait
		for i in $(seq 1 20); do
			step sh -c "grep -c . f$i; grep -c '^w' f$i; head -n 1 f$i"
			# append order is racy: make the final content deterministic
			LC_ALL=C sort -o "f$i" "f$i"
		done
	}
	compare_with_kernel build_race ops
}

# poll_copyup_kill PID TOTAL DIRS...: poll until some regular file of size in
# (0, TOTAL) appears under DIRS or among PID's open files (O_TMPFILE copies
# have no name), then SIGKILL PID. Prints what it saw; fails if the copy
# finished first.
poll_copyup_kill() {
	python3 - "$@" <<'EOF'
import os, sys, time, signal
pid, total, dirs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
deadline = time.time() + 60
while time.time() < deadline:
    seen = None
    for d in dirs:
        for top, _, files in os.walk(d):
            for f in files:
                p = os.path.join(top, f)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if 0 < st.st_size < total and os.path.isfile(p):
                    seen = "%s (%d bytes)" % (p, st.st_size)
    if not seen:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    st = os.stat("/proc/%d/fd/%s" % (pid, fd))
                    tgt = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if any(tgt.startswith(d) for d in dirs) and 0 < st.st_size < total and (st.st_mode & 0o170000) == 0o100000:
                    seen = "fd %s -> %s (%d bytes)" % (fd, tgt, st.st_size)
        except OSError:
            pass
    if seen:
        os.kill(pid, signal.SIGKILL)
        print("killed during copy-up:", seen)
        sys.exit(0)
    time.sleep(0.001)
print("copy-up was never seen in progress")
sys.exit(1)
EOF
}

@test "kill -9 during the copy-up of a large file leaves no partial file at the target" {
	need_real_stratafs
	rm -rf "$T/w"
	mkdir -p "$T/w"
	mk_layers "$T/w" 1
	mkdir "$T/w/l1/dir"
	local size=$((400 * 1024 * 1024)) lsum m=$T/w/mnt writer attempt caught=
	# non-sparse, non-zero content so no copy path can shortcut it
	python3 -c 'import sys
b = bytes(range(256)) * 4096
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2]) // len(b)):
        f.write(b)' "$T/w/l1/dir/big" "$size"
	lsum=$(sha256sum <"$T/w/l1/dir/big" | cut -d' ' -f1)
	for attempt in 1 2 3; do
		mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$m"
		local pid=$STRATA_PID
		# copy-up triggered by an append; it dies with the server
		(echo appended >>"$m/dir/big") 2>/dev/null &
		writer=$!
		if run poll_copyup_kill "$pid" "$size" "$T/w/work" "$T/w/upper"; [ "$status" = 0 ]; then
			caught=$output
		fi
		wait "$writer" || true
		if [ -n "$caught" ]; then
			kill_strata "$m"
			break
		fi
		# the copy won the race: start again from a clean upper
		umount_strata "$m"
		rm -rf "$T/w/upper" "$T/w/work"
		mkdir "$T/w/upper" "$T/w/work"
	done
	[ -n "$caught" ] || skip "copy-up of $size bytes always finished before it could be observed"
	echo "$caught"
	assert_not_mounted() { ! is_mounted "$m"; }
	assert_not_mounted
	# the upper: either no file at the target, or a complete one
	if [ -e "$T/w/upper/dir/big" ]; then
		local usum
		usum=$(sha256sum <"$T/w/upper/dir/big" | cut -d' ' -f1)
		local want_appended
		want_appended=$( (cat "$T/w/l1/dir/big"; echo appended) | sha256sum | cut -d' ' -f1)
		[ "$usum" = "$lsum" ] || [ "$usum" = "$want_appended" ] ||
			fail "partial copy-up at the target: $(stat -c %s "$T/w/upper/dir/big") of $size bytes"
	fi
	# remount: the file reads as the lower or the complete copy
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$m"
	local msum
	msum=$(sha256sum <"$m/dir/big" | cut -d' ' -f1)
	assert_equal "$(stat -c %s "$m/dir/big")" "$size"
	assert_equal "$msum" "$lsum"
	# and the file can still be copied up and written
	echo appended >>"$m/dir/big"
	assert_equal "$(stat -c %s "$m/dir/big")" "$((size + 9))"
	run tail -c 9 "$m/dir/big"
	assert_output appended
	umount_strata "$m"
	# the kernel agrees on what that upper holds
	need_kernel_overlay
	rm -rf "$T/w/kwork"
	mkdir "$T/w/kwork"
	mount_kernel "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/kwork" "$m"
	assert_equal "$(stat -c %s "$m/dir/big")" "$((size + 9))"
}
