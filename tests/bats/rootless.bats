#!/usr/bin/env bats
# rootless.bats - stratafs and strata without real root: ID mapping (uidmapping=,
# gidmapping=, squash_*), owners kept in xattrs (xattr_permissions=), the probed fallbacks
# for refused trusted.* xattrs and mknod, the semantic checks in a user namespace of an
# unprivileged user, strata mount as that user, and rootless podman with stratafs as its
# mount program.
#
# The first tests run as root; the others create the user strata-rootless (with
# subordinate ids) and make /dev/fuse usable for it while this file runs (its mode is
# restored in teardown_file).

load helpers
load rootless_helpers

setup_file() {
	[ "$(id -u)" = 0 ] || return 0
	for c in runuser unshare useradd setfattr getfattr; do
		command -v "$c" >/dev/null || return 0
	done
	rl_setup_file "$BATS_TEST_DIRNAME/../.."
}

teardown_file() {
	RL_UID=$(id -u "$RL_USER" 2>/dev/null || true) rl_teardown_file
}

setup() {
	common_setup
	need_real_stratafs
}

teardown() {
	common_teardown
	[ -z "${PUB:-}" ] || rm -rf "$PUB"
	[ -z "${RL_DIR:-}" ] || rl_podman_cleanup
}

# make_rl_rootfs: a busybox-static image tarball the test user can read.
make_rl_rootfs() {
	[ -x /bin/busybox ] || skip "busybox-static is not installed"
	[ -f "$RL_DIR/rootfs.tar" ] && return 0
	local d=$RL_DIR/rootfs t
	mkdir -p "$d/bin" "$d/etc" "$d/tmp" "$d/proc" "$d/sys" "$d/dev"
	cp /bin/busybox "$d/bin/"
	for t in sh ls cat echo mkdir rm stat id grep test; do
		ln -s busybox "$d/bin/$t"
	done
	echo original >"$d/etc/modme"
	echo doomed >"$d/etc/delme"
	chmod 1777 "$d/tmp"
	tar -C "$d" -cf "$RL_DIR/rootfs.tar" .
	chmod 0644 "$RL_DIR/rootfs.tar"
	rm -rf "$d"
}

# public_mnt: a mount point that callers of any uid can reach ($T is 0700 root).
public_mnt() {
	PUB=$(mktemp -d /tmp/strata-rl-mnt.XXXXXX)
	chmod 0755 "$PUB"
	mkdir "$PUB/mnt"
	echo "$PUB/mnt"
}

# need_user: skip unless setup_file could prepare the unprivileged user.
need_user() {
	[ -n "${RL_DIR:-}" ] && [ -d "$RL_DIR" ] || skip "no unprivileged test user (runuser, unshare or useradd missing)"
	command -v newuidmap >/dev/null || skip "newuidmap missing (package uidmap)"
	# unprivileged user namespaces may be off (sysctls, AppArmor on Ubuntu 24.04)
	local why
	why=$(as_user "unshare --user --map-root-user --mount true" 2>&1) ||
		skip "the test user cannot create a user namespace here: $why"
}

# lower layer with owners 0, 1000 and 4242 (outside the mappings below)
build_owned() {
	mk_layers "$T" 1
	mkdir -p "$T/l1/d"
	echo zero >"$T/l1/zero"
	echo thousand >"$T/l1/thousand"
	echo other >"$T/l1/other"
	chown 1000:1000 "$T/l1/thousand"
	chown 4242:4242 "$T/l1/other"
	chmod 0777 "$T/l1/d"
	echo secret >"$T/l1/d/secret"
	chmod 0600 "$T/l1/d/secret"
}

@test "idmap: stored owners 0 and 1000 show mapped, unmapped ones as the overflow id" {
	build_owned
	public_mnt >/dev/null
	M=$PUB/mnt
	mount_strata "$T/l1" "$T/upper" "$T/work" "$M" \
		"uidmapping=0:100000:1000:1000:5000:1,gidmapping=0:200000:1001"
	run stat -c %u:%g "$M/zero" "$M/thousand" "$M/other" "$M"
	assert_success
	assert_output "$(printf '100000:200000\n5000:201000\n65534:65534\n100000:200000')"
	# the kernel checks permissions (default_permissions) against what is shown
	run setpriv --reuid 100000 --regid 200000 --clear-groups cat "$M/d/secret"
	assert_success
	assert_output secret
	# host root without capabilities is "other" for the shown owner 100000
	run setpriv --reuid 0 --regid 0 --clear-groups --inh-caps=-all --bounding-set=-all \
		cat "$M/d/secret"
	assert_failure
	assert_output --partial "Permission denied"
}

@test "idmap: chown and create through the mount store the unmapped ids" {
	build_owned
	public_mnt >/dev/null
	M=$PUB/mnt
	mount_strata "$T/l1" "$T/upper" "$T/work" "$M" \
		"uidmapping=0:100000:65536,gidmapping=0:100000:65536"
	chown 100005:100007 "$M/zero"
	run stat -c %u:%g "$M/zero" "$T/upper/zero"
	assert_output "$(printf '100005:100007\n5:7')"
	# created by a caller inside the mapping
	setpriv --reuid 100042 --regid 100043 --clear-groups touch "$M/d/new"
	run stat -c %u:%g "$M/d/new" "$T/upper/d/new"
	assert_output "$(printf '100042:100043\n42:43')"
	setpriv --reuid 100042 --regid 100043 --clear-groups mkdir "$M/d/nd"
	run stat -c %u:%g "$T/upper/d/nd"
	assert_output 42:43
	# an owner the mapping cannot store is refused
	run chown 5 "$M/zero"
	assert_failure
	assert_output --partial "Invalid argument"
	run stat -c %u "$T/upper/zero"
	assert_output 5
	# ACL entries name shown ids through the mount, stored ids on disk
	setfacl -m u:100005:r,g:100006:r "$M/d/new"
	run getfacl -cn "$M/d/new"
	assert_line "user:100005:r--"
	assert_line "group:100006:r--"
	run getfacl -cn "$T/upper/d/new"
	assert_line "user:5:r--"
	assert_line "group:6:r--"
	run setfacl -m u:7:r "$M/d/new"
	assert_failure
	# a caller outside the mapping (host root) creates files owned by the overflow id
	touch "$M/byroot"
	run stat -c %u:%g "$T/upper/byroot"
	assert_output 65534:65534
}

@test "idmap: squash_to_root, squash_to_uid/gid show fixed owners and accept chown" {
	build_owned
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt" "squash_to_root"
	run stat -c %u:%g "$T/mnt/thousand" "$T/mnt/other"
	assert_output "$(printf '0:0\n0:0')"
	chown 1234:1234 "$T/mnt/other"
	run stat -c %u:%g "$T/mnt/other" "$T/upper/other"
	assert_output "$(printf '0:0\n1234:1234')"
	umount_strata "$T/mnt"
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt" "squash_to_root,squash_to_uid=42,squash_to_gid=43"
	run stat -c %u:%g "$T/mnt/zero" "$T/mnt/thousand"
	assert_output "$(printf '42:43\n42:43')"
}

@test "xattr_permissions=2: readdir reports emulated devices and fifos with their type" {
	# find -type trusts d_type without a stat; past the first reply of a big directory the
	# kernel asks for plain READDIR entries, whose type must come from the override too
	mk_layers "$T" 1
	mkdir "$T/l1/dev"
	local i
	for i in $(seq 1 1500); do : >"$T/l1/dev/file$i"; done
	for i in $(seq 1 40); do
		: >"$T/l1/dev/tty$i"
		setfattr -n user.containers.override_stat -v "0:5:0620:char-136-$i" "$T/l1/dev/tty$i"
		: >"$T/l1/dev/fifo$i"
		setfattr -n user.containers.override_stat -v "0:0:0600:pipe" "$T/l1/dev/fifo$i"
	done
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt" "xattr_permissions=2"
	assert_equal "$(find "$T/mnt/dev" -type c | wc -l)" 40
	assert_equal "$(find "$T/mnt/dev" -type p | wc -l)" 40
	assert_equal "$(find "$T/mnt/dev" -type f | wc -l)" 1500
	umount_strata "$T/mnt"
}

@test "xattr_permissions=2: owner, mode and type live in user.containers.override_stat" {
	mk_layers "$T" 1
	echo data >"$T/l1/f"
	setfattr -n user.containers.override_stat -v "1000:1001:04750:file" "$T/l1/f"
	: >"$T/l1/tty"
	setfattr -n user.containers.override_stat -v "0:5:0620:char-136-3" "$T/l1/tty"
	mkdir "$T/l1/d"
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt" "xattr_permissions=2"
	run stat -c '%u:%g %a %F' "$T/mnt/f" "$T/mnt/tty"
	assert_output "$(printf '1000:1001 4750 regular file\n0:5 620 character special file')"
	run stat -c '%t:%T' "$T/mnt/tty"
	assert_output 88:3
	# the override itself is not visible, and cannot be forged through the mount
	run getfattr --absolute-names -d -m - "$T/mnt/f"
	refute_output --partial override_stat
	run setfattr -n user.containers.override_stat -v "0:0:04755:file" "$T/mnt/f"
	assert_failure
	# chmod/chown write the override of the copy, not the inode
	chmod 0640 "$T/mnt/f"
	chown 7:8 "$T/mnt/f"
	run stat -c '%u:%g %a' "$T/mnt/f"
	assert_output "7:8 640"
	run getfattr --absolute-names --only-values -n user.containers.override_stat "$T/upper/f"
	assert_output "7:8:0640:file"
	run stat -c '%u:%g' "$T/upper/f"
	assert_output 0:0
	run cat "$T/mnt/f"
	assert_output data
	# new objects record their owner and mode too
	mkdir -m 0750 "$T/mnt/d/nd"
	run getfattr --absolute-names --only-values -n user.containers.override_stat "$T/upper/d/nd"
	assert_output "0:0:0750:dir"
	umount_strata "$T/mnt"
	# with a mapping, the override's ids are mapped like the inode's would be
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt" "xattr_permissions=2,uidmapping=0:100000:65536,gidmapping=0:100000:65536"
	run stat -c '%u:%g %a' "$T/mnt/f" "$T/mnt/tty"
	assert_output "$(printf '100007:100008 640\n100000:100005 620')"
}

@test "fallbacks: without mknod and xattrs, whiteouts are .wh. files and opaque dirs .wh..wh..opq" {
	mk_layers "$T" 1
	mkdir -p "$T/l1/d" && echo x >"$T/l1/d/x" && echo f >"$T/l1/f"
	STRATAFS_DISABLE=whiteout-mknod,xattr-trusted,xattr-user \
		mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt"
	rm "$T/mnt/f"
	rm -rf "$T/mnt/d"
	mkdir "$T/mnt/d"
	run ls -A "$T/mnt" "$T/mnt/d"
	assert_output "$(printf '%s:\nd\n\n%s:' "$T/mnt" "$T/mnt/d")"
	[ -f "$T/upper/.wh.f" ]
	[ ! -e "$T/upper/f" ]
	[ -f "$T/upper/d/.wh..wh..opq" ]
	run getfattr --absolute-names -R -d -m - "$T/upper"
	refute_output --partial overlay
	umount_strata "$T/mnt"
	# the kernel-style probe result reads the same upper
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt"
	run ls -A "$T/mnt" "$T/mnt/d"
	assert_output "$(printf '%s:\nd\n\n%s:' "$T/mnt" "$T/mnt/d")"
}

@test "fallbacks: userxattr (or refused trusted.*) marks opaque dirs with user.overlay.opaque" {
	mk_layers "$T" 1
	mkdir -p "$T/l1/d" && echo x >"$T/l1/d/x"
	mount_strata "$T/l1" "$T/upper" "$T/work" "$T/mnt" "userxattr"
	rm -rf "$T/mnt/d"
	mkdir "$T/mnt/d"
	run getfattr --absolute-names --only-values -n user.overlay.opaque "$T/upper/d"
	assert_output y
	run getfattr --absolute-names -n trusted.overlay.opaque "$T/upper/d"
	assert_failure
	umount_strata "$T/mnt"
	mkdir "$T/upper2" "$T/work2"
	STRATAFS_DISABLE=xattr-trusted mount_strata "$T/l1" "$T/upper2" "$T/work2" "$T/mnt"
	rm -rf "$T/mnt/d"
	mkdir "$T/mnt/d"
	run getfattr --absolute-names --only-values -n user.overlay.opaque "$T/upper2/d"
	assert_output y
}

@test "userns: the semantic checks pass on stratafs mounted by an unprivileged user (unshare --user)" {
	need_user
	run in_userns 'ns_semantics chardev user.overlay.opaque'
	echo "$output"
	assert_success
	refute_output --partial FAIL
}

@test "userns: stratafs reads and changes like the kernel's overlayfs (userxattr) in the same namespace" {
	need_user
	run in_userns 'ns_kernel_compare'
	echo "$output"
	assert_success
	refute_output --partial FAIL
	[[ "$output" != *SKIP:* ]] || skip "${output#*SKIP: }"
}

@test "userns: the same with mknod refused (.wh. whiteouts) and no user xattrs (.wh..wh..opq)" {
	need_user
	STRATAFS_DISABLE=whiteout-mknod,xattr-user run in_userns 'ns_semantics file .wh..wh..opq'
	echo "$output"
	assert_success
	refute_output --partial FAIL
}

@test "strata: mount, status and unmount as an unprivileged user in its user namespace" {
	need_user
	command -v jq >/dev/null || skip "jq is not installed"
	RL_ENV="XDG_RUNTIME_DIR=$RL_DIR/work/xdg-strata" run in_userns 'ns_strata'
	echo "$output"
	assert_success
	refute_output --partial FAIL
	# nothing of it is left on the host either
	[ -z "$(rl_user_pids | xargs -r ps -o comm= -p | grep -E 'stratafs|strata-monitor')" ]
}

@test "userns: files of unmapped owners show as 65534 and are read-only; squash_to_root (strata squashToRoot) makes them writable" {
	need_user
	command -v jq >/dev/null || skip "jq is not installed"
	local lower=$RL_DIR/foreign
	mkdir -p "$lower/d"
	echo root-owned >"$lower/d/f"
	chmod 0755 "$lower" "$lower/d"
	chmod 0644 "$lower/d/f"
	RL_ENV="XDG_RUNTIME_DIR=$RL_DIR/work/xdg-strata" run in_userns "ns_foreign '$lower'"
	echo "$output"
	assert_success
	refute_output --partial FAIL
}

@test "strata: uidMappings/gidMappings in the spec map owners like uidmapping=" {
	command -v jq >/dev/null || skip "jq is not installed"
	build_owned
	local out spec
	spec=$(printf '{"id": "map1", "target": "%s", "lower": ["%s"], "upper": "%s", "work": "%s",
		"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 4000}],
		"gidMappings": [{"containerID": 0, "hostID": 200000, "size": 4000}]}' \
		"$T/mnt" "$T/l1" "$T/upper" "$T/work")
	out=$("$STRATA_REPO/build/strata" --state-dir "$T/state" mount <<<"$spec")
	_register_mount strata "$T/mnt"
	[ "$(jq -r .features.idmap <<<"$out")" = true ] || { echo "$out"; false; }
	run stat -c %u:%g "$T/mnt/zero" "$T/mnt/thousand" "$T/mnt/other"
	assert_output "$(printf '100000:200000\n101000:201000\n65534:65534')"
	chown 100001:200002 "$T/mnt/zero"
	run stat -c %u:%g "$T/upper/zero"
	assert_output 1:2
	run "$STRATA_REPO/build/strata" --state-dir "$T/state" unmount map1
	assert_success
	_unregister_mount "$T/mnt"
}

@test "strata: options.xattrPermissions keeps chown/chmod in user.containers.override_stat" {
	command -v jq >/dev/null || skip "jq is not installed"
	build_owned
	local out spec
	spec=$(printf '{"id": "xp1", "target": "%s", "lower": ["%s"], "upper": "%s", "work": "%s",
		"options": {"xattrPermissions": 2}}' "$T/mnt" "$T/l1" "$T/upper" "$T/work")
	out=$("$STRATA_REPO/build/strata" --state-dir "$T/state" mount <<<"$spec")
	_register_mount strata "$T/mnt"
	[ "$(jq -r .features.overrideStat <<<"$out")" = user.containers.override_stat ] || { echo "$out"; false; }
	[ "$(jq -r .features.xattrPermissions <<<"$out")" = 2 ]
	chown 42:43 "$T/mnt/thousand"
	chmod 0604 "$T/mnt/thousand"
	run stat -c '%u:%g %a' "$T/mnt/thousand" "$T/upper/thousand"
	assert_output "$(printf '42:43 604\n1000:1000 644')"
	run getfattr --absolute-names --only-values -n user.containers.override_stat "$T/upper/thousand"
	assert_output "42:43:0604:file"
	run "$STRATA_REPO/build/strata" --state-dir "$T/state" unmount xp1
	assert_success
	_unregister_mount "$T/mnt"
}

@test "rootless podman with stratafs as mount_program: run, write, diff, commit, --uidmap, rm, nothing left" {
	need_user
	command -v podman >/dev/null || skip "podman is not installed"
	command -v runc >/dev/null || skip "runc is not installed"
	make_rl_rootfs
	local P="$RL_PODMAN" E why
	E=$(rl_podman_env)
	why=$(RL_ENV=$E as_user "mkdir -p \"\$HOME\" && $P unshare true" 2>&1) ||
		skip "rootless podman cannot set up its user namespace here: $why"
	RL_ENV=$E run as_user "$P import \"\$RL_DIR/rootfs.tar\" localhost/rl-bb:latest >/dev/null &&
		$P $RL_RUN --name rl1 localhost/rl-bb:latest sh -c 'id -u; echo changed >/etc/modme; rm /etc/delme; mkdir /newdir; echo n >/newdir/f; grep \" / \" /proc/mounts'"
	echo "$output"
	assert_success
	assert_line 0
	assert_line --partial " / fuse.stratafs "
	RL_ENV=$E run as_user "$P diff rl1"
	echo "$output"
	assert_success
	assert_line "C /etc/modme"
	assert_line "D /etc/delme"
	assert_line "A /newdir/f"
	RL_ENV=$E run as_user "$P commit -q rl1 localhost/rl-bb2:latest >/dev/null &&
		$P $RL_RUN --rm localhost/rl-bb2:latest sh -c 'cat /etc/modme /newdir/f; test ! -e /etc/delme && echo deleted'"
	echo "$output"
	assert_success
	assert_output "$(printf 'changed\nn\ndeleted')"
	RL_ENV=$E run as_user "$P rm rl1"
	assert_success
	# --uidmap: containers-storage passes uidmapping=:0:1:5000 to the mount program; the
	# image's files (stored 0) must read as the container's root, and what the container's
	# root writes must be stored as 0 again (the user's own uid on the host)
	RL_ENV=$E run as_user "$P $RL_RUN --name rl2 --uidmap 0:1:5000 --gidmap 0:1:5000 localhost/rl-bb:latest sh -c 'stat -c %u:%g /etc/modme; echo n >/etc/new; stat -c %u:%g /etc/new' &&
		$P inspect --format '{{.GraphDriver.Data.UpperDir}}' rl2"
	echo "$output"
	assert_success
	assert_line -n 0 0:0
	assert_line -n 1 0:0
	local upper=${lines[2]}
	run stat -c %u:%g "$upper/etc/new"
	assert_output "$RL_UID:$(id -g "$RL_USER")"
	RL_ENV=$E run as_user "$P rm rl2"
	assert_success
	# no mount program process or mount of this store is left
	local i left
	for i in $(seq 300); do
		left=$(rl_user_pids | xargs -r ps -o pid=,comm= -p | grep -E 'stratafs|conmon' || true)
		[ -z "$left" ] && break
		sleep 0.1
	done
	[ -z "$left" ] || fail "left behind after podman rm: $left"
}

@test "strata: an unprivileged user outside a user namespace is told to use one" {
	need_user
	command -v jq >/dev/null || skip "jq is not installed"
	RL_ENV="XDG_RUNTIME_DIR=$RL_DIR/work/xdg-plain" run as_user '
		mkdir -p "$XDG_RUNTIME_DIR" && chmod 0700 "$XDG_RUNTIME_DIR"
		b=$(mktemp -d "$RL_DIR/work/plain.XXXXXX") && mkdir "$b/l" "$b/u" "$b/w" "$b/m"
		printf "{\"id\": \"p1\", \"target\": \"%s\", \"lower\": [\"%s\"], \"upper\": \"%s\", \"work\": \"%s\"}" \
			"$b/m" "$b/l" "$b/u" "$b/w" | STRATAFS="$RL_DIR/stratafs" "$RL_DIR/strata" mount 2>/dev/null'
	echo "$output"
	assert_failure 1
	[ "$(jq -r .error.code <<<"$output")" = EPERM ]
	[[ "$(jq -r .error.message <<<"$output")" == *"unshare --user --map-root-user --mount"* ]]
	# and it left no record behind
	[ -z "$(ls "$RL_DIR/work/xdg-plain/strata/" 2>/dev/null | grep json)" ]
}
