#!/usr/bin/env bats
# On-disk markers: every whiteout and opaque form is read; .wh.* names and
# private xattrs are never shown; as root, stratafs writes exactly what the
# kernel writes (char 0/0 whiteouts, trusted.overlay.opaque=y) and nothing else.

load helpers

setup() {
	common_setup
	need_kernel_overlay
	need_python
}

teardown() {
	common_teardown
}

# base content shared by the form tests: l2 is the bottom layer
base_lower() {
	local l=$1
	mkdir -p "$l"/dir/sub "$l"/keep "$l"/odir/deeper "$l"/odir2
	echo file >"$l"/file
	echo in-dir >"$l"/dir/f
	echo in-sub >"$l"/dir/sub/g
	ln -s file "$l"/symlink
	mkfifo "$l"/fifo
	echo keep >"$l"/keep/k
	echo gone >"$l"/keep/gone
	echo old >"$l"/odir/old
	echo deep >"$l"/odir/deeper/x
	echo old2 >"$l"/odir2/old
	setfattr -n user.x -v 1 "$l"/odir
}

# .wh.NAME whiteouts in a middle lower and in the upper
build_dotwh() {
	local d=$1
	mk_layers "$d" 2
	base_lower "$d"/l2
	mkdir -p "$d"/l1/keep
	touch "$d"/l1/.wh.file "$d"/l1/.wh.dir "$d"/l1/keep/.wh.gone "$d"/l1/.wh.nothing-below
	echo new >"$d"/l1/keep/added
	mkdir -p "$d"/upper/keep
	touch "$d"/upper/.wh.symlink "$d"/upper/.wh.fifo "$d"/upper/keep/.wh.k
}

# the same stack with kernel whiteouts, as a cross-check of the conversion
build_charwh() {
	local d=$1
	mk_layers "$d" 2
	base_lower "$d"/l2
	mkdir -p "$d"/l1/keep
	whiteout "$d"/l1/file
	whiteout "$d"/l1/dir
	whiteout "$d"/l1/keep/gone
	whiteout "$d"/l1/nothing-below
	echo new >"$d"/l1/keep/added
	mkdir -p "$d"/upper/keep
	whiteout "$d"/upper/symlink
	whiteout "$d"/upper/fifo
	whiteout "$d"/upper/keep/k
}

# ops that touch whited-out names: re-create them, delete again
ops_whiteouts() {
	step ls -A
	step ls -A keep
	step cat file
	step sh -c 'echo recreated > file'
	step mkdir dir
	step ls -A dir
	step sh -c 'echo k-again > keep/k'
	step ln -s elsewhere symlink
	step rm file
	step rmdir dir
	step rm keep/added
	step sh -c 'echo gone-again > keep/gone'
	step ls -A keep
	step ls -A
}

@test "char 0/0 whiteouts in lower and upper hide entries like the kernel" {
	compare_with_kernel build_charwh ops_whiteouts
}

@test ".wh.NAME whiteouts hide entries; stack reads like the kernel's with char 0/0" {
	need_real_stratafs # the kernel does not read this form
	compare_with_kernel build_dotwh ops_whiteouts to_kernel_forms
}

@test ".wh.NAME re-created through the mount: no stale marker next to the new entry" {
	need_real_stratafs # the kernel does not read this form
	compare_with_kernel build_dotwh ops_whiteouts to_kernel_forms
	# compare_with_kernel converted s/ for the kernel; inspect a fresh run
	rm -rf "$T/w"
	mkdir -p "$T/w"
	build_dotwh "$T/w"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	(cd "$T/w/mnt" && ops_whiteouts >/dev/null)
	umount_strata "$T/w/mnt"
	run python3 - "$T/w/upper" <<'EOF'
import os, sys
bad = []
for top, dirs, files in os.walk(sys.argv[1]):
    names = set(dirs + files)
    for n in names:
        if n.startswith(".wh.") and n != ".wh..wh..opq" and n[4:] in names:
            bad.append(os.path.join(top, n))
print("\n".join(bad))
EOF
	assert_success
	assert_output ""
}

# opaque directories in each form; odir in l1 hides l2's odir content
build_opaque_form() {
	local d=$1 form=$2
	mk_layers "$d" 2
	base_lower "$d"/l2
	mkdir -p "$d"/l1/odir "$d"/upper/odir2
	echo new >"$d"/l1/odir/new
	echo upper-new >"$d"/upper/odir2/new
	case $form in
	trusted)
		setfattr -n trusted.overlay.opaque -v y "$d"/l1/odir "$d"/upper/odir2
		;;
	user-overlay)
		setfattr -n user.overlay.opaque -v y "$d"/l1/odir "$d"/upper/odir2
		;;
	user-fuseoverlayfs)
		setfattr -n user.fuseoverlayfs.opaque -v y "$d"/l1/odir "$d"/upper/odir2
		;;
	wh-opq)
		touch "$d"/l1/odir/.wh..wh..opq "$d"/upper/odir2/.wh..wh..opq
		;;
	esac
}
build_opq_trusted() { build_opaque_form "$1" trusted; }
build_opq_user_overlay() { build_opaque_form "$1" user-overlay; }
build_opq_user_fuseoverlayfs() { build_opaque_form "$1" user-fuseoverlayfs; }
build_opq_wh_opq() { build_opaque_form "$1" wh-opq; }

ops_opaque() {
	step ls -A odir odir2
	step cat odir/old
	step sh -c 'echo again > odir/old'
	step rm odir/new
	step rm -rf odir2
	step mkdir odir2
	step ls -A odir odir2
	step mv odir odir-renamed
	step ls -A odir-renamed
}

@test "opaque dir: trusted.overlay.opaque=y" {
	compare_with_kernel build_opq_trusted ops_opaque
}

@test "opaque dir: user.overlay.opaque=y" {
	need_real_stratafs # the kernel does not read this form
	compare_with_kernel build_opq_user_overlay ops_opaque to_kernel_forms
}

@test "opaque dir: user.fuseoverlayfs.opaque=y" {
	need_real_stratafs # the kernel does not read this form
	compare_with_kernel build_opq_user_fuseoverlayfs ops_opaque to_kernel_forms
}

@test "opaque dir: .wh..wh..opq file" {
	need_real_stratafs # the kernel does not read this form
	compare_with_kernel build_opq_wh_opq ops_opaque to_kernel_forms
}

@test "opaque xattr with a value other than y does not make a dir opaque" {
	build_not_opaque() {
		build_opaque_form "$1" none
		setfattr -n trusted.overlay.opaque -v n "$1"/l1/odir
	}
	compare_with_kernel build_not_opaque ops_opaque
}

build_wh_names() {
	local d=$1
	mk_layers "$d" 2
	mkdir -p "$d"/l2/a "$d"/l1/a "$d"/l1/.wh.dir-named-like-whiteout "$d"/upper/a
	echo x >"$d"/l2/a/x
	touch "$d"/l2/.wh.in-bottom "$d"/l2/a/.wh.y "$d"/l1/a/.wh..wh..opq-not "$d"/upper/a/.wh.zz
	mkdir -p "$d"/l1/o
	touch "$d"/l1/o/.wh..wh..opq
}

@test ".wh.* names are never shown by readdir or lookup" {
	need_real_stratafs # the kernel does not read this form
	rm -rf "$T/w"
	mkdir -p "$T/w"
	build_wh_names "$T/w"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	run find "$T/w/mnt" -name '.wh.*'
	assert_success
	assert_output ""
	for n in .wh.in-bottom a/.wh.y a/.wh..wh..opq-not a/.wh.zz o/.wh..wh..opq .wh.dir-named-like-whiteout; do
		run stat "$T/w/mnt/$n"
		assert_failure
	done
	run ls -A "$T/w/mnt/a"
	assert_output x
}

@test "creating a .wh.NAME file through the mount does not hide NAME" {
	need_real_stratafs # the kernel does not read this form
	rm -rf "$T/w"
	mkdir -p "$T/w"
	mk_layers "$T/w" 1
	echo lower >"$T/w/l1/victim"
	mkdir "$T/w/l1/vdir"
	echo inside >"$T/w/l1/vdir/f"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	touch "$T/w/mnt/.wh.victim" "$T/w/mnt/vdir/.wh..wh..opq" 2>/dev/null || true
	mkdir "$T/w/mnt/.wh.vdir" 2>/dev/null || true
	run cat "$T/w/mnt/victim"
	assert_output lower
	run ls -A "$T/w/mnt/vdir"
	assert_output f
	umount_strata "$T/w/mnt"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	run cat "$T/w/mnt/victim"
	assert_output lower
	run ls -A "$T/w/mnt/vdir"
	assert_output f
	run ls -A "$T/w/mnt"
	assert_output $'vdir\nvictim'
}

build_private_xattrs() {
	local d=$1 p
	mk_layers "$d" 2
	mkdir -p "$d"/l2/dir "$d"/l1/dir "$d"/upper/up
	echo a >"$d"/l2/dir/a
	echo b >"$d"/l1/b
	echo u >"$d"/upper/up/u
	for p in "$d"/l2/dir/a "$d"/l1/b "$d"/l1/dir "$d"/upper/up/u "$d"/upper/up; do
		setfattr -n trusted.overlay.junk -v 1 "$p"
		setfattr -n trusted.overlay.impure -v y "$p"
		setfattr -n user.overlay.junk -v 1 "$p"
		setfattr -n user.overlay.impure -v y "$p"
		setfattr -n user.fuseoverlayfs.junk -v 1 "$p"
		setfattr -n user.visible -v yes "$p"
		setfattr -n trusted.visible -v yes "$p"
	done
	setfattr -n user.overlay.opaque -v n "$d"/l1/dir
	setfattr -n user.fuseoverlayfs.opaque -v n "$d"/l1/dir
	setfattr -n trusted.overlay.opaque -v n "$d"/l1/dir
}

private_re='^(trusted\.overlay\.|user\.overlay\.|user\.fuseoverlayfs\.)'

@test "private xattrs are never listed or readable through the mount" {
	need_real_stratafs # the kernel does not read this form
	rm -rf "$T/w"
	mkdir -p "$T/w"
	build_private_xattrs "$T/w"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	local m=$T/w/mnt
	run getfattr -R -d -m - --absolute-names "$m"
	assert_success
	refute_output --regexp "$(sed 's/\^//' <<<"$private_re")"
	assert_output --partial 'user.visible="yes"'
	assert_output --partial 'trusted.visible="yes"'
	local p x
	for p in dir/a b dir up/u up .; do
		for x in trusted.overlay.junk user.overlay.junk user.fuseoverlayfs.junk user.overlay.opaque; do
			run getfattr -n "$x" --absolute-names "$m/$p"
			assert_failure
		done
	done
	# after copy-up (chmod) the markers must not have leaked into the view either
	chmod 0600 "$m/dir/a" "$m/b"
	touch "$m/dir/newfile"
	run getfattr -R -d -m - --absolute-names "$m"
	refute_output --regexp "$(sed 's/\^//' <<<"$private_re")"
	assert_output --partial 'user.visible="yes"'
}

@test "setting an overlay marker xattr through the mount never changes overlay semantics" {
	rm -rf "$T/w"
	mkdir -p "$T/w"
	mk_layers "$T/w" 1
	mkdir -p "$T/w/l1/d" "$T/w/l1/e" "$T/w/l1/g"
	echo f >"$T/w/l1/d/f"
	echo f >"$T/w/l1/e/f"
	echo f >"$T/w/l1/g/f"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	local m=$T/w/mnt
	# each may be refused or stored escaped (kernel >= 6.7 escapes trusted.overlay.*)
	setfattr -n trusted.overlay.opaque -v y "$m/d" 2>/dev/null || true
	setfattr -n user.overlay.opaque -v y "$m/e" 2>/dev/null || true
	setfattr -n user.fuseoverlayfs.opaque -v y "$m/g" 2>/dev/null || true
	setfattr -n trusted.overlay.redirect -v /g "$m/e" 2>/dev/null || true
	for x in d e g; do
		run cat "$m/$x/f"
		assert_output f
	done
	umount_strata "$m"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	for x in d e g; do
		run cat "$m/$x/f"
		assert_output f
	done
	umount_strata "$m"
	# and the kernel, reading that upper, agrees
	mount_kernel "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	for x in d e g; do
		run cat "$m/$x/f"
		assert_output f
	done
}

# change sequence that makes both implementations write markers
ops_markers() {
	step rm file
	step rm -rf dir
	step rm keep/gone
	step rm -rf odir
	step mkdir odir
	step sh -c 'echo replaced > odir/new'
	step rm symlink fifo
	step mkdir fifo
	step rmdir odir2/../keep
	step sh -c 'rm -rf keep/* && rmdir keep && mkdir keep'
	step mv odir2/old moved-old
	step rm -rf odir2
	step sh -c 'echo file-where-dir-was > odir2'
}

# marker_listing UPPER: path, type, rdev and the opaque marker; the other
# trusted.overlay.* xattrs (origin, impure, nlink, uuid) are kernel bookkeeping.
marker_listing() {
	TREE_MTIME=0 TREE_XATTR_RE='^trusted\.overlay\.opaque$' tree_listing "$1" |
		sed -E 's/ (mode|uid|gid|nlink|size|sha256)=[^ ]*//g; s/ hl=.*//'
}

@test "as root, stratafs writes char 0/0 whiteouts and trusted.overlay.opaque=y, like the kernel" {
	need_real_stratafs
	build_plain() {
		mk_layers "$1" 1
		base_lower "$1"/l1
	}
	compare_with_kernel build_plain ops_markers
	# fresh pair of uppers (compare_with_kernel's were remounted by the other side)
	rm -rf "$T/w"
	mkdir -p "$T/w"
	build_plain "$T/w"
	cp -a "$T/w" "$T/wk"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	(cd "$T/w/mnt" && ops_markers >/dev/null)
	umount_strata "$T/w/mnt"
	mount_kernel "$(lowers_of "$T/wk")" "$T/wk/upper" "$T/wk/work" "$T/wk/mnt"
	(cd "$T/wk/mnt" && ops_markers >/dev/null)
	umount_kernel "$T/wk/mnt"

	# no other marker kinds in the stratafs upper
	run find "$T/w/upper" -name '.wh.*'
	assert_output ""
	run getfattr -R -h -d -m '^(user\.overlay\.|user\.fuseoverlayfs\.)' --absolute-names "$T/w/upper"
	assert_output ""
	# whiteouts are char 0/0 and nothing else is a char device here
	run find "$T/w/upper" -type c -printf '%p %Hr:%Lr\n'
	assert_success
	refute_output --regexp ' [^0][0-9]*:|:[1-9]'
	# same entries, whiteouts and opaque markers as the kernel's upper
	marker_listing "$T/wk/upper" >"$T/k.markers"
	marker_listing "$T/w/upper" >"$T/s.markers"
	diff_listings kernel-upper "$T/k.markers" stratafs-upper "$T/s.markers"
}
