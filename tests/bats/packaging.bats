#!/usr/bin/env bats
# packaging.bats - strata installs like any container-tools package: make install/uninstall
# into a DESTDIR, make deb (lintian-clean of errors) and make rpm, then the .deb installed
# with apt-get into a fresh Debian root (debootstrap --variant=minbase) where the installed
# programs mount overlays, the man pages and the hooks.d files are where man and podman
# look, and dpkg --purge takes it all away. The tests after "apt-get install" use the root
# that test made (they fail, not skip, when it is missing).

bats_load_library bats-support
bats_load_library bats-assert
load packaging_helpers

setup_file() {
	if [ "$(id -u)" = 0 ] && [ -d "$PKG_DIR" ]; then
		reap_root 3>/dev/null
		remove_root 3>/dev/null || true
	fi
}

teardown_file() {
	[ "$(id -u)" = 0 ] || return 0
	reap_root
	remove_root || true
}

@test "make install/uninstall: programs, man pages, hooks.d and docs where the variables say; hooks.d name the installed hook" {
	command -v jq >/dev/null || skip "jq is not installed (make deps)"
	d=$BATS_TEST_TMPDIR/dest
	vars=(DESTDIR="$d" PREFIX=/opt/st LIBEXECDIR=/opt/st/lx MANDIR=/opt/man)
	run make -s -C "$REPO" install "${vars[@]}"
	assert_success
	for f in /opt/st/bin/stratafs /opt/st/bin/strata /opt/st/lx/strata/strata-hook; do
		[ -x "$d$f" ] || fail "$f is missing or not executable"
	done
	for f in /opt/man/man1/stratafs.1 /opt/man/man8/strata.8 /opt/man/man1/strata-hook.1 \
		/opt/st/share/doc/strata/storage.conf /opt/st/share/doc/strata/containerd.md \
		/opt/st/share/doc/strata/spec.md; do
		[ -s "$d$f" ] || fail "$f is missing or empty"
	done
	for s in precreate poststop; do
		f=$d/opt/st/share/containers/oci/hooks.d/strata-$s.json
		run jq -e --arg s "$s" '.version == "1.0.0" and .stages == [$s]
			and .hook.path == "/opt/st/lx/strata/strata-hook"
			and .hook.args == ["strata-hook", "--strata", "/opt/st/bin/strata", $s]
			and .when.annotations == {"io\\.strata\\.spec": ".*"}' "$f"
		assert_success
	done
	grep -qx 'mount_program = "/opt/st/bin/stratafs"' "$d/opt/st/share/doc/strata/storage.conf"
	# the installed man page is the generated one, with the version in it
	grep -q "strata $VERSION" "$d/opt/man/man1/stratafs.1"

	run make -s -C "$REPO" uninstall "${vars[@]}"
	assert_success
	run find "$d" -type f
	assert_output ""
	[ ! -e "$d/opt/st/lx/strata" ] && [ ! -e "$d/opt/st/share/doc/strata" ]
}

@test "make deb: a .deb lintian finds no errors in, depending on fuse3 and the runtime libraries" {
	need_tool dpkg-buildpackage dpkg-dev
	need_tool dh debhelper
	need_tool lintian lintian
	start=$SECONDS
	run make -s -C "$REPO" deb
	log "make deb: $((SECONDS - start)) s"
	assert_success
	[ -f "$DEB" ] || fail "$DEB was not built"
	# lintian ran (with --fail-on error) and reported no error
	[ -f "$REPO/build/deb/lintian.log" ] || fail "lintian did not run"
	run grep '^E:' "$REPO/build/deb/lintian.log"
	assert_failure
	log "lintian: $(grep -c . "$REPO/build/deb/lintian.log") tag(s) (errors: 0)"

	depends=$(dpkg-deb -f "$DEB" Depends)
	for p in fuse3 libfuse3-3 libjson-c5 libcap2 libseccomp2 libc6; do
		[[ ", $depends," == *", $p"[\ ,]* ]] || fail "Depends lacks $p: $depends"
	done
	[ "$(dpkg-deb -f "$DEB" Version)" = "$VERSION" ]
	contents=$(dpkg-deb -c "$DEB" | awk '{ print $6 }' | sed 's|^\./|/|; s|\.gz$||')
	for f in "${PKG_FILES[@]}"; do
		grep -qx "$f" <<<"$contents" || fail "the .deb lacks $f"
	done
	# the hardening flags of dpkg-buildflags reached the build (bindnow: -z now)
	dpkg-deb -x "$DEB" "$BATS_TEST_TMPDIR/x"
	readelf -d "$BATS_TEST_TMPDIR/x/usr/bin/stratafs" | grep -q 'BIND_NOW\|FLAGS.*NOW' ||
		fail "stratafs was not linked with -z now (dpkg-buildflags not applied?)"
}

@test "make rpm: an RPM from packaging/rpm/strata.spec with the same files" {
	need_tool rpmbuild rpm
	start=$SECONDS
	run make -s -C "$REPO" rpm
	log "make rpm: $((SECONDS - start)) s"
	assert_success
	rpms=("$REPO"/build/rpm/RPMS/*/strata-"$VERSION"-*.rpm)
	[ -f "${rpms[0]}" ] || fail "no RPM in build/rpm/RPMS"
	contents=$(rpm -qlp "${rpms[0]}" | sed 's|\.gz$||')
	for f in "${PKG_FILES[@]}"; do
		grep -qx "$f" <<<"$contents" || fail "the RPM lacks $f"
	done
	run rpm -qp --requires "${rpms[0]}"
	assert_line fuse3
	assert_line --regexp '^libfuse3\.so\.3'
	assert_line --regexp '^libjson-c\.so\.5'
}

@test "the .deb installs with apt-get into a fresh debootstrap minbase root, pulling in its Depends" {
	need_root
	need_tool debootstrap debootstrap
	need_tool unshare util-linux
	need_tool nsenter util-linux
	[ -f "$DEB" ] || fail "no $DEB (make deb failed above)"
	suite=$(pkg_suite)
	[ -n "$suite" ] && [ -e "/usr/share/debootstrap/scripts/$suite" ] ||
		skip "debootstrap does not know this system's release ('$suite')"
	need_mirror
	mirror=$(pkg_mirror)
	# debootstrap makes the root's device nodes (and this test its /dev/fuse) with mknod
	mkdir -p "$PKG_DIR"
	rm -f "$PKG_DIR/.mknod-probe"
	mknod "$PKG_DIR/.mknod-probe" c 1 3 2>/dev/null ||
		skip "mknod is not permitted here (debootstrap needs it)"
	rm -f "$PKG_DIR/.mknod-probe"

	mkdir -p "$CACHE"
	start=$SECONDS
	run debootstrap --variant=minbase --cache-dir="$CACHE" "$suite" "$ROOT" "$mirror"
	if [ "$status" -ne 0 ]; then
		tail -n 20 "$ROOT/debootstrap/debootstrap.log" 2>/dev/null
		fail "debootstrap $suite $mirror failed"
	fi
	log "debootstrap --variant=minbase $suite: $((SECONDS - start)) s"
	# nothing but the base system yet
	[ ! -e "$ROOT/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x)/libfuse3.so.3" ]
	[ ! -e "$ROOT/usr/bin/fusermount3" ]

	# the private namespace: a self bind (chroot's root must be a mount point for the
	# sandbox's pivot_root), /proc, and a /dev/fuse node made inside the root
	start_holder
	for i in 1 2 3 4 5 6 7 8 9 10; do holder_pid >/dev/null && break; sleep 0.1; done
	h=$(holder_pid) || fail "unshare --mount did not start"
	nsenter -t "$h" -m -- mount --bind "$ROOT" "$ROOT"
	nsenter -t "$h" -m -- mount -t proc proc "$ROOT/proc"
	[ -e "$ROOT/dev/fuse" ] || mknod -m 0666 "$ROOT/dev/fuse" c 10 229

	cp "$DEB" "$ROOT/tmp/"
	start=$SECONDS
	run inroot env DEBIAN_FRONTEND=noninteractive apt-get -o Dpkg::Use-Pty=0 install -y -q \
		--no-install-recommends "/tmp/${DEB##*/}"
	echo "$output" | tail -n 15
	assert_success
	log "apt-get install ./${DEB##*/} in the root: $((SECONDS - start)) s"
	run inroot dpkg-query -W -f '${Package} ${Status} ${Version}\n' strata fuse3 libfuse3-3 libjson-c5
	assert_success
	assert_line "strata install ok installed $VERSION"
	[ "$(grep -c ' install ok installed ' <<<"$output")" -eq 4 ]
	for f in "${PKG_FILES[@]}"; do
		[ -e "$ROOT$f" ] || [ -e "$ROOT$f.gz" ] || fail "$f is not installed"
	done
}

@test "in the root: stratafs --version, strata --version and strata-hook --help run, every library found" {
	need_root
	need_installed_root
	run inroot stratafs --version
	assert_success
	assert_output --regexp "^stratafs $VERSION \(libfuse 3\.[0-9.]+\)$"
	run inroot strata --version
	assert_success
	assert_output "strata $VERSION"
	run inroot /usr/libexec/strata/strata-hook --help
	assert_success
	assert_output --partial "usage: strata-hook"
	for b in /usr/bin/stratafs /usr/bin/strata /usr/libexec/strata/strata-hook; do
		run inroot ldd "$b"
		assert_success
		refute_output --partial "not found"
	done
}

@test "in the root: the installed stratafs mounts a two-layer overlay (whiteout, copy-up) and exits on umount" {
	need_root
	need_installed_root
	[ -c /dev/fuse ] || skip "no /dev/fuse on this host"
	inroot sh -c 'mkdir -p /t1/l1 /t1/l2 /t1/u /t1/w /t1/m && echo one >/t1/l2/a &&
		echo two >/t1/l1/b && echo three >/t1/l2/c'
	run inroot stratafs -o lowerdir=/t1/l1:/t1/l2,upperdir=/t1/u,workdir=/t1/w /t1/m
	assert_success
	run inroot sh -c 'grep " /t1/m " /proc/mounts'
	assert_output --regexp '^stratafs /t1/m fuse\.stratafs '
	run inroot sh -c 'ls /t1/m; rm /t1/m/c; echo more >>/t1/m/a; cat /t1/m/a; ls /t1/m'
	assert_success
	assert_output "$(printf 'a\nb\nc\none\nmore\na\nb')"
	run inroot stat -c '%F %t:%T' /t1/u/c
	assert_output "character special file 0:0"
	[ "$(cat "$ROOT/t1/l2/a")" = one ]
	[ "$(cat "$ROOT/t1/u/a")" = "$(printf 'one\nmore')" ]
	[ -n "$(ns_stratafs_pids)" ] || fail "no stratafs process serves the mount"
	run inroot umount /t1/m
	assert_success
	ns_stratafs_gone || fail "stratafs still runs after umount"
}

@test "in the root: containerd's way, mount.fuse3 -t stratafs and mount -t fuse.stratafs" {
	need_root
	need_installed_root
	[ -c /dev/fuse ] || skip "no /dev/fuse on this host"
	inroot sh -c 'mkdir -p /t2/l /t2/u /t2/w /t2/m && echo x >/t2/l/f'
	# what containerd runs for a fuse3.stratafs Mount
	run inroot mount.fuse3 overlay /t2/m -o lowerdir=/t2/l,upperdir=/t2/u,workdir=/t2/w,dev,suid -t stratafs
	assert_success
	run inroot cat /t2/m/f
	assert_output x
	run inroot sh -c 'grep " /t2/m " /proc/mounts'
	assert_output --regexp '^overlay /t2/m fuse\.stratafs |^stratafs /t2/m fuse\.stratafs '
	inroot umount /t2/m
	run inroot mount -t fuse.stratafs overlay /t2/m -o lowerdir=/t2/l
	assert_success
	run inroot cat /t2/m/f
	assert_output x
	inroot umount /t2/m
	run inroot sh -c 'grep " /t2/m " /proc/mounts'
	assert_output ""
}

@test "in the root: strata mount/status/unmount serve a spec with the packaged, sandboxed stratafs" {
	need_root
	need_installed_root
	[ -c /dev/fuse ] || skip "no /dev/fuse on this host"
	inroot sh -c 'mkdir -p /t3/l /t3/u /t3/w /t3/m && echo hello >/t3/l/f'
	run inroot sh -c 'echo "{\"id\": \"pkg-1\", \"lower\": [\"/t3/l\"], \"upper\": \"/t3/u\",
		\"work\": \"/t3/w\", \"target\": \"/t3/m\"}" | strata mount'
	assert_success
	assert_output --partial '"state": "mounted"'
	assert_output --partial '"noNewPrivs": true'
	run inroot cat /t3/m/f
	assert_output hello
	run inroot strata status pkg-1
	assert_success
	assert_output --partial '"state": "mounted"'
	run inroot strata unmount pkg-1
	assert_success
	assert_output --partial '"state": "unmounted"'
	run inroot sh -c 'grep " /t3/m " /proc/mounts; ls /run/strata'
	assert_output ""
	ns_stratafs_gone || fail "stratafs still runs after strata unmount"
}

@test "in the root: hooks.d files are in podman's hooks dir, and the hook they name mounts and unmounts a spec" {
	need_root
	need_installed_root
	command -v jq >/dev/null || skip "jq is not installed (make deps)"
	[ -c /dev/fuse ] || skip "no /dev/fuse on this host"
	hd=/usr/share/containers/oci/hooks.d # podman's default (containers.conf hooks_dir)
	for s in precreate poststop; do
		f=$ROOT$hd/strata-$s.json
		[ -f "$f" ] || fail "$hd/strata-$s.json is not installed"
		path=$(jq -r .hook.path "$f")
		[ -x "$ROOT$path" ] || fail "hook.path $path is not an executable in the root"
		run jq -r '.hook.args | index("--strata") as $i | .[$i + 1]' "$f"
		[ -x "$ROOT$output" ] || fail "--strata $output is not an executable in the root"
		jq -e --arg s "$s" '.stages == [$s] and .hook.args[-1] == $s' "$f"
	done
	# run each stage as podman would: hook.path with hook.args[1:]
	readarray -t pre < <(jq -r '.hook.path, .hook.args[1:][]' "$ROOT$hd/strata-precreate.json")
	readarray -t post < <(jq -r '.hook.path, .hook.args[1:][]' "$ROOT$hd/strata-poststop.json")
	inroot sh -c 'mkdir -p /t4/l /t4/u /t4/w && echo from-hook >/t4/l/marker'
	cfg='{"ociVersion": "1.0.2", "root": {"path": "/nonexistent"},
		"annotations": {"io.strata.spec": "{\"id\": \"hk-1\", \"lower\": [\"/t4/l\"], \"upper\": \"/t4/u\", \"work\": \"/t4/w\"}"}}'
	run inroot "${pre[@]}" <<<"$cfg"
	assert_success
	target=$(jq -r .root.path <<<"$output")
	[ "$(jq -r '.annotations["io.strata.mount-id"]' <<<"$output")" = hk-1 ]
	run inroot cat "$target/marker"
	assert_output from-hook
	state='{"ociVersion": "1.0.2", "id": "c1", "status": "stopped", "bundle": "/nonexistent",
		"annotations": {"io.strata.mount-id": "hk-1"}}'
	run inroot "${post[@]}" <<<"$state"
	assert_success
	run inroot sh -c "grep ' $target ' /proc/mounts"
	assert_output ""
	ns_stratafs_gone || fail "stratafs still runs after the poststop hook"
}

@test "in the root: man pages stratafs(1), strata(8), strata-hook(1) are where man looks and render cleanly" {
	need_root
	need_installed_root
	command -v groff >/dev/null || skip "groff is not installed (groff-base)"
	for p in man1/stratafs.1 man8/strata.8 man1/strata-hook.1; do
		f=$ROOT/usr/share/man/$p.gz
		[ -f "$f" ] || fail "/usr/share/man/$p.gz is not installed"
		name=${p#*/}
		name=${name%.*}
		zcat "$f" | grep -q "^\.TH \"$name\" \"${p##*.}\"" || fail "$p: no .TH $name header"
		# -ww: every warning; a clean page prints nothing
		run bash -c "zcat '$f' | LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z 2>&1"
		assert_output ""
		run bash -c "zcat '$f' | LC_ALL=C.UTF-8 MANWIDTH=80 groff -man -Tutf8 -P-cbu 2>/dev/null"
		assert_output --partial "NAME"
		assert_output --partial "$name"
	done
}

@test "in the root: dpkg --purge strata removes every file it installed" {
	need_root
	need_installed_root
	run inroot dpkg-query -L strata
	assert_success
	files=$(grep -v '^/\.$' <<<"$output")
	run inroot dpkg --purge strata
	assert_success
	left=""
	while read -r f; do
		[ -n "$f" ] || continue
		# only directories other packages share may stay
		if [ -e "$ROOT$f" ] && [ ! -d "$ROOT$f" ]; then left="$left $f"; fi
	done <<<"$files"
	[ -z "$left" ] || fail "left after purge:$left"
	[ ! -e "$ROOT/usr/libexec/strata" ] && [ ! -e "$ROOT/usr/share/doc/strata" ]
}
