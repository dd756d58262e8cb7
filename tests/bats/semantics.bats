#!/usr/bin/env bats
# Merged-view semantics: for the same layers and the same changes, stratafs
# must show exactly what the kernel's overlayfs shows, and each must read the
# upper the other one wrote (compare_with_kernel in helpers.bash).

load helpers

setup() {
	common_setup
	need_kernel_overlay
	need_python
}

teardown() {
	common_teardown
}

# A three-layer stack with a bit of everything, plus content in the upper.
build_rich() {
	local d=$1
	mk_layers "$d" 3
	local l1=$d/l1 l2=$d/l2 l3=$d/l3 u=$d/upper

	# bottom layer
	mkdir -p "$l3"/etc/conf.d "$l3"/usr/bin "$l3"/usr/lib/deep "$l3"/var/empty "$l3"/gone/sub "$l3"/opq/old
	echo "l3 passwd" >"$l3"/etc/passwd
	echo "l3 hosts" >"$l3"/etc/hosts
	echo "l3 conf" >"$l3"/etc/conf.d/a.conf
	echo "l3 old" >"$l3"/opq/old/file
	echo "l3 opq" >"$l3"/opq/keep
	echo "gone" >"$l3"/gone/sub/x
	printf '#!/bin/sh\necho hi\n' >"$l3"/usr/bin/tool
	chmod 0755 "$l3"/usr/bin/tool
	ln "$l3"/usr/bin/tool "$l3"/usr/bin/tool-link
	ln -s tool "$l3"/usr/bin/rel-link
	ln -s /etc/passwd "$l3"/usr/bin/abs-link
	ln -s ../nowhere "$l3"/usr/bin/dangling
	prand 1048576 >"$l3"/usr/lib/big.bin
	truncate -s 10M "$l3"/usr/lib/sparse.bin
	echo tail >>"$l3"/usr/lib/sparse.bin
	: >"$l3"/usr/lib/empty
	mknod "$l3"/usr/lib/null c 1 3
	mknod "$l3"/usr/lib/loop b 7 0
	mkfifo "$l3"/usr/lib/fifo
	local p=$l3/usr/lib/deep i
	for ((i = 0; i < 40; i++)); do p+=/d$i; done
	mkdir -p "$p"
	echo deep >"$p"/leaf
	chmod 4755 "$l3"/usr/bin/tool
	chmod 1777 "$l3"/var/empty
	chown 1234:5678 "$l3"/etc/hosts
	chmod 0600 "$l3"/etc/passwd
	setfattr -n user.comment -v "lower three" "$l3"/etc/hosts
	setfattr -n user.dir -v yes "$l3"/etc

	# middle layer: shadows, whiteouts, opaque dir, merged dirs
	mkdir -p "$l2"/etc "$l2"/usr/lib "$l2"/opq "$l2"/new-in-2
	echo "l2 passwd" >"$l2"/etc/passwd
	whiteout "$l2"/etc/conf.d
	whiteout "$l2"/usr/lib/empty
	echo "l2 only" >"$l2"/usr/lib/two
	opaque "$l2"/opq
	echo "l2 opq" >"$l2"/opq/new
	mkdir "$l2"/new-in-2/empty-dir
	touch "$l2"/'name with spaces' "$l2"/$'name\nwith\nnewlines' "$l2"/'back\slash' "$l2"/'ünïcödé'
	ln -s 'name with spaces' "$l2"/link-to-spaces
	chmod 0000 "$l2"/new-in-2/empty-dir

	# top lower: more shadows; a dir replacing a file and a file replacing a dir
	mkdir -p "$l1"/etc "$l1"/usr/lib/sparse.bin "$l1"/gone
	echo "l1 hosts" >"$l1"/etc/hosts
	whiteout "$l1"/gone/sub
	echo "file not dir" >"$l1"/usr/lib/deep-file
	rm -rf "$l1"/usr/lib/sparse.bin
	mkdir "$l1"/usr/lib/sparse.bin
	echo "dir now" >"$l1"/usr/lib/sparse.bin/inside
	whiteout "$l1"/usr/lib/two

	# upper: already has changes
	mkdir -p "$u"/etc "$u"/usr/bin
	echo "upper passwd" >"$u"/etc/passwd
	whiteout "$u"/usr/bin/abs-link
	opaque "$u"/var
	echo "upper var" >"$u"/var/only
}

@test "multi-layer stack: merged view equals the kernel's" {
	compare_with_kernel build_rich
}

@test "merged directory nlink equals the kernel's" {
	TREE_DIR_NLINK=1 compare_with_kernel build_rich ops_dirs
}

@test "read-only mount (no upper) equals the kernel's and refuses writes like it" {
	need_kernel_overlay
	mkdir -p "$T/src"
	build_rich "$T/src"
	set_layer_times "$T/src"
	mkdir -p "$T/km" "$T/sm"
	mount_kernel "$(lowers_of "$T/src")" "" "" "$T/km"
	mount_strata "$(lowers_of "$T/src")" "" "" "$T/sm"
	tree_listing "$T/km" >"$T/k.list"
	tree_listing "$T/sm" >"$T/s.list"
	diff_listings kernel "$T/k.list" stratafs "$T/s.list"
	K=$T/km S=$T/sm
	same_in_both 'touch newfile; echo x >> etc/hosts; mkdir nd; rm etc/hosts; mv etc e2; setfattr -n user.a -v 1 etc; chmod 0 etc; true'
	tree_listing "$T/sm" >"$T/s.list2"
	diff_listings before "$T/s.list" after "$T/s.list2"
}

ops_files() {
	step sh -c 'echo created > newfile'
	step sh -c 'echo more >> etc/hosts'
	step sh -c 'printf overwrite > etc/passwd'
	step truncate -s 3 usr/lib/big.bin
	step truncate -s 0 usr/bin/tool
	step truncate -s 20M usr/lib/null-not-there
	step chmod 0640 etc/hosts
	step chmod 0700 usr/lib/deep-file
	step chmod u-s usr/bin/tool-link
	step chown 42:43 'name with spaces'
	step chown -h 7:8 usr/bin/rel-link
	step chown 99 usr/lib/fifo
	step touch -d '2011-11-11 11:11:11.123456789' etc
	step touch -d '2012-12-12 12:12:12' usr/lib/big.bin
	step touch -h -d '2013-01-01' usr/bin/rel-link
	step setfattr -n user.new -v value usr/lib/two-gone-not
	step setfattr -n user.new -v value etc/passwd
	step setfattr -n user.comment -v changed etc/hosts
	step setfattr -x user.dir etc
	step rm etc/passwd
	step rm usr/lib/fifo usr/lib/null usr/lib/loop
	step rm -f 'name with spaces'
	step sh -c 'echo recreated > etc/passwd'
	step mkfifo usr/newfifo
	step mknod usr/newchr c 1 5
	step mknod usr/newblk b 7 1
	step ln -s ../etc/hosts usr/newsym
	step ln usr/bin/rel-link usr/hardlink-to-symlink
	step sh -c 'dd if=/dev/zero of=usr/lib/big.bin bs=1k seek=2048 count=1 conv=notrunc 2>/dev/null'
	step rm usr/bin/dangling
	step touch usr/bin/dangling
}

@test "file changes: create, write, append, truncate, chmod, chown, touch, xattrs, rm" {
	compare_with_kernel build_rich ops_files
}

ops_dirs() {
	step mkdir newdir
	step mkdir -p newdir/a/b/c
	step mkdir etc
	step rmdir var/empty
	step rmdir new-in-2/empty-dir
	step rmdir etc
	step rm -rf usr/lib/deep
	step rm -rf gone
	step mkdir gone
	step sh -c 'echo fresh > gone/new'
	step rm -rf opq
	step mkdir opq
	step rmdir usr/lib/sparse.bin
	step rm -rf usr/lib/sparse.bin
	step mkdir etc/conf.d
	step rm -rf etc
	step mkdir etc
	step sh -c 'ls -A etc | wc -l'
	step chmod 0751 usr
	step chown 5:6 usr/lib
	step rmdir nonexistent
	step rmdir usr
	step sh -c 'ls -A | sort'
}

@test "directory changes: mkdir, rmdir, rm -rf of merged dirs, recreate (opaque)" {
	compare_with_kernel build_rich ops_dirs
}

# rename(2) directly: mv would silently fall back to copy+delete on EXDEV
py_rename() {
	python3 -c 'import os,sys
try:
    os.rename(sys.argv[1], sys.argv[2]); print("ok")
except OSError as e:
    print("errno", e.errno, os.strerror(e.errno))' "$1" "$2"
}

ops_mv_files() {
	step py_rename etc/hosts etc/hosts2
	step py_rename usr/bin/tool usr/tool-moved
	step py_rename etc/passwd usr/lib/passwd
	step py_rename usr/lib/big.bin etc/hosts2
	step py_rename usr/bin/rel-link usr/bin/tool-link
	step py_rename 'name with spaces' $'new\nname'
	step py_rename usr/lib/fifo fifo-moved
	step py_rename usr/lib/null null-moved
	step py_rename usr/lib/deep-file usr/lib/two
	step py_rename link-to-spaces etc/link
	step py_rename usr/lib/nonexistent x
	step py_rename etc/hosts2 usr
	step py_rename usr/tool-moved usr/bin/tool
	step sh -c 'echo new > newfile && mv newfile etc/newfile'
	step sh -c 'wc -c < etc/hosts2; sha256sum < etc/hosts2'
	step cat usr/bin/tool
}

@test "mv of files: lower, upper, over existing, across directories" {
	compare_with_kernel build_rich ops_mv_files
}

ops_mv_dirs() {
	step py_rename usr/lib usr/lib2
	step ls usr/lib2
	step cat usr/lib2/deep/d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/d13/d14/d15/d16/d17/d18/d19/d20/d21/d22/d23/d24/d25/d26/d27/d28/d29/d30/d31/d32/d33/d34/d35/d36/d37/d38/d39/leaf
	step mkdir usr/lib
	step sh -c 'echo again > usr/lib/again'
	step py_rename etc etc-moved
	step py_rename etc-moved etc-moved-again
	step py_rename usr/lib2/deep deep-top
	step py_rename deep-top/d0 usr/lib/d0-moved
	step py_rename opq new-in-2/opq
	step py_rename new-in-2 usr/lib/new-in-2
	step py_rename var/empty empty-moved
	step mkdir target-empty
	step py_rename usr/lib2 target-empty
	step py_rename usr target-empty
	step rm -rf etc-moved-again/conf.d
	step sh -c 'echo x > etc-moved-again/added'
	step rm etc-moved-again/passwd
	step mkdir etc
	step sh -c 'ls -A etc | wc -l'
	step py_rename usr/lib/d0-moved usr/lib/d0-moved/d1
}

@test "mv of directories with lower content works (no EXDEV) like the kernel's redirect_dir" {
	compare_with_kernel build_rich ops_mv_dirs
}

@test "rename(2) of a directory with lower content succeeds" {
	both_mounts build_rich
	run py_rename "$S/usr/lib" "$S/usr/lib-renamed"
	assert_output ok
	run py_rename "$K/usr/lib" "$K/usr/lib-renamed"
	assert_output ok
	assert_file_exists "$S/usr/lib-renamed/big.bin"
	assert_file_not_exists "$S/usr/lib/big.bin"
	cmp "$S/usr/lib-renamed/big.bin" "$K/usr/lib-renamed/big.bin"
}

ops_links() {
	step ln etc/hosts hosts-hardlink
	step ln usr/bin/tool usr/tool-third-link
	step sh -c 'echo appended >> hosts-hardlink'
	step cat etc/hosts
	step ln -s /absolute/target abs
	step ln -s 'name with spaces' spaces-link
	step ln -s "$(printf 'x%.0s' {1..1000})" long-target
	step ln usr/lib/fifo fifo-link
	step ln usr/lib/null null-link
	step ln usr/lib/empty empty-link
	step ln etc etc-link
	step mkfifo etc/fifo
	step mknod etc/char c 4 64
	step mknod etc/block b 8 0
	step sh -c 'readlink usr/bin/rel-link abs spaces-link'
	step ln -s tool usr/bin/rel-link
	step ln -sf other usr/bin/rel-link
}

@test "links, symlinks, fifos and device nodes" {
	compare_with_kernel build_rich ops_links
}

ops_names() {
	step touch 'a b c' $'tab\there' $'nl\nnl' 'quote"s' "apos'" '*star*' '-dash' '.hidden' '...' '#hash' 'back\slash2'
	step mkdir 'dir with spaces' $'dir\nnl'
	step sh -c "echo content > 'dir with spaces/file with spaces'"
	step mv $'name\nwith\nnewlines' $'dir\nnl/moved'
	step rm 'back\slash'
	step touch "$(printf 'n%.0s' {1..255})"
	step touch "$(printf 'n%.0s' {1..256})"
	step sh -c 'ls -A | LC_ALL=C sort | od -c | head -n 50'
}

@test "names with spaces, newlines and odd bytes" {
	compare_with_kernel build_rich ops_names
}

# Deterministic pseudo-random change sequence over a small name space, so
# that operations hit each other's results (lower, upper, whiteouts, opaque).
ops_random() {
	local seed=${SEMANTICS_SEED:-4242} i op a b
	local names=(etc etc/hosts etc/passwd usr usr/lib usr/lib/big.bin usr/bin/tool usr/bin/tool-link opq opq/keep opq/new gone x y x/z y/w)
	RANDOM=$seed
	for ((i = 0; i < 300; i++)); do
		a=${names[RANDOM % ${#names[@]}]}
		b=${names[RANDOM % ${#names[@]}]}
		op=$((RANDOM % 12))
		case $op in
		0) step mkdir "$a" ;;
		1) step rmdir "$a" ;;
		2) step rm -f "$a" ;;
		3) step sh -c "echo $i >> '$a'" ;;
		4) step py_rename "$a" "$b" ;;
		5) step chmod 0$((RANDOM % 8))$((RANDOM % 8))5 "$a" ;;
		6) step rm -rf "$a" ;;
		7) step ln "$a" "$b" ;;
		8) step ln -s "$a" "$b" ;;
		9) step truncate -s $((RANDOM % 100)) "$a" ;;
		10) step setfattr -n user.r -v "$i" "$a" ;;
		11) step sh -c "ls -A '$a' 2>&1 | LC_ALL=C sort | head -n 5" ;;
		esac
	done
}

@test "pseudo-random change sequence matches the kernel (SEMANTICS_SEED)" {
	compare_with_kernel build_rich ops_random
}

build_hardlinks() {
	local d=$1
	mk_layers "$d" 2
	mkdir -p "$d"/l2/a "$d"/l2/b
	echo shared >"$d"/l2/a/one
	ln "$d"/l2/a/one "$d"/l2/b/two
	ln "$d"/l2/a/one "$d"/l2/three
	echo other >"$d"/l1/solo
	ln "$d"/l1/solo "$d"/l1/solo2
}

ops_hardlinks() {
	step sh -c 'echo changed >> a/one'
	step cat b/two three
	step chmod 0600 solo
	step stat -c '%h %a' solo solo2 a/one b/two three
	step rm three
	step stat -c '%h' a/one b/two
	step ln b/two a/four
	step stat -c '%h' a/one b/two a/four
}

@test "hard links in lower layers: copy-up of one name keeps the group linked (kernel index=on)" {
	compare_with_kernel build_hardlinks ops_hardlinks
}

build_upper_only() {
	local d=$1
	mk_layers "$d" 1
	mkdir -p "$d"/l1/keep "$d"/upper/keep
	echo lower >"$d"/l1/keep/f
	echo upper >"$d"/upper/keep/g
	whiteout "$d"/upper/keep/f
	opaque "$d"/upper/fresh
	echo x >"$d"/upper/fresh/x
}

ops_mixed() {
	ops_files
	ops_dirs
}

@test "upper written by either one reads the same through the other after many changes" {
	compare_with_kernel build_rich ops_mixed
}

@test "an upper prepared with whiteouts and opaque dirs reads like the kernel's" {
	compare_with_kernel build_upper_only ops_dirs
}

@test "directories are listed without OPENDIR round trips, and listings follow changes" {
	# readdir.c keeps listings on the node: the first OPENDIR is answered ENOSYS and the
	# kernel sends no more OPENDIR or RELEASEDIR, yet caches nothing stale
	need_real_stratafs
	mk_layers "$T" 1
	mkdir "$T/l1/d"
	local i
	for i in $(seq 1 600); do : >"$T/l1/d/f$i"; done
	"$STRATAFS" -d -o "lowerdir=$T/l1,upperdir=$T/upper,workdir=$T/work" "$T/mnt" \
		>"$T/log" 2>&1 </dev/null &
	_register_mount strata "$T/mnt"
	wait_for 10 is_mounted "$T/mnt" || fail "stratafs did not mount: $(cat "$T/log")"
	for i in 1 2 3; do
		assert_equal "$(ls -a "$T/mnt/d" | wc -l)" 602
	done
	touch "$T/mnt/d/new"
	rm "$T/mnt/d/f1" "$T/mnt/d/f600"
	mkdir "$T/mnt/d/sub"
	mv "$T/mnt/d/f2" "$T/mnt/d/sub/moved"
	assert_equal "$(ls "$T/mnt/d" | wc -l)" 599
	ls "$T/mnt/d" | grep -qx new
	ls "$T/mnt/d" | grep -qx sub
	run ls "$T/mnt/d/sub"
	assert_output moved
	! ls "$T/mnt/d" | grep -qxE 'f1|f2|f600'
	umount_strata "$T/mnt"
	local opendir releasedir
	opendir=$(grep -c 'opcode: OPENDIR ' "$T/log" || true)
	releasedir=$(grep -c 'opcode: RELEASEDIR ' "$T/log" || true)
	[ "$opendir" -le 1 ] || fail "$opendir OPENDIR requests"
	[ "$releasedir" = 0 ] || fail "$releasedir RELEASEDIR requests"
}
