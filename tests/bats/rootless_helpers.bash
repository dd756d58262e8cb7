# rootless_helpers.bash - helpers for rootless.bats: an unprivileged test user with
# subordinate ids, /dev/fuse made usable for it (mode restored afterwards), a world-readable
# copy of the binaries, commands run as that user (in a user namespace of their own, or as
# rootless podman), and the semantic checks that run inside the user namespace.
#
# The file is plain bash: rootless.bats sources it, and so does the shell that runs as
# the test user inside `unshare --user --map-root-user --mount` (the ns_* functions).

RL_USER=${RL_USER:-strata-rootless}

# ---------------------------------------------------------------- root side

# rl_setup_file: creates the user (if missing) and the shared dir $RL_DIR with copies of
# the binaries and this file; makes /dev/fuse usable. Records what to undo in $RL_STATE.
rl_setup_file() {
	local repo=$1
	RL_STATE=$BATS_FILE_TMPDIR/rl.state
	: >"$RL_STATE"
	if ! id -u "$RL_USER" >/dev/null 2>&1; then
		useradd -m -s /bin/bash "$RL_USER" || return 1
	fi
	# subordinate ids for newuidmap (useradd adds them where login.defs says so)
	if ! grep -q "^$RL_USER:" /etc/subuid 2>/dev/null; then
		usermod --add-subuids 200000-265535 "$RL_USER" || return 1
	fi
	if ! grep -q "^$RL_USER:" /etc/subgid 2>/dev/null; then
		usermod --add-subgids 200000-265535 "$RL_USER" || return 1
	fi
	RL_UID=$(id -u "$RL_USER")
	RL_HOME=$(getent passwd "$RL_USER" | cut -d: -f6)
	echo "fusemode $(stat -c %a /dev/fuse)" >>"$RL_STATE"
	chmod 0666 /dev/fuse
	# a checkout may sit in a 0700 home: the user gets copies in a dir it can read
	RL_DIR=$(mktemp -d /tmp/strata-rootless.XXXXXX) || return 1
	chmod 0755 "$RL_DIR"
	echo "dir $RL_DIR" >>"$RL_STATE"
	cp "$repo/build/stratafs" "$repo/build/strata" "$RL_DIR/" || return 1
	cp "$repo/tests/bats/rootless_helpers.bash" "$RL_DIR/"
	chmod 0755 "$RL_DIR/stratafs" "$RL_DIR/strata"
	chmod 0644 "$RL_DIR/rootless_helpers.bash"
	# scratch space the user owns
	mkdir "$RL_DIR/work"
	chown "$RL_USER:" "$RL_DIR/work"
	export RL_DIR RL_UID RL_HOME RL_STATE
}

# rl_user_pids: live processes of the test user that run one of our binary copies, or
# podman/conmon/runc started for our store (matched by $RL_DIR in their argv or cwd).
rl_user_pids() {
	local p pid uid
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		uid=$(awk '/^Uid:/ { print $2 }' "$p/status" 2>/dev/null) || continue
		[ "$uid" = "$RL_UID" ] || [ "$(stat -c %u "$p" 2>/dev/null)" = "$RL_UID" ] || continue
		[ "$pid" = "$$" ] && continue
		if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qF -- "$RL_DIR" ||
			readlink "$p/exe" 2>/dev/null | grep -qF -- "$RL_DIR" ||
			readlink "$p/cwd" 2>/dev/null | grep -qF -- "$RL_DIR"; then
			echo "$pid"
		fi
	done
}

# rl_teardown_file: ends the user's leftover processes of ours (by PID), restores
# /dev/fuse, removes $RL_DIR.
rl_teardown_file() {
	local st=${RL_STATE:-$BATS_FILE_TMPDIR/rl.state} pid mode dir i
	[ -f "$st" ] || return 0
	dir=$(awk '$1 == "dir" { print $2 }' "$st")
	if [ -n "$dir" ] && [ -n "${RL_UID:-}" ]; then
		RL_DIR=$dir
		for pid in $(rl_user_pids); do
			echo "# rootless teardown: ending leftover $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) ($pid)" >&3
			kill -KILL "$pid" 2>/dev/null || true
		done
		for i in $(seq 100); do
			[ -z "$(rl_user_pids)" ] && break
			sleep 0.05
		done
	fi
	mode=$(awk '$1 == "fusemode" { print $2 }' "$st")
	[ -n "$mode" ] && chmod "$mode" /dev/fuse
	if [ -n "$dir" ] && [ -d "$dir" ]; then
		# a mount left behind in the init namespace (strata mount outside a userns)
		awk -v d="$dir" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
			while read -r m; do umount -l "$m" 2>/dev/null || true; done
		rm -rf "$dir"
	fi
	: >"$st"
}

# as_user CMD...: runs a bash command as the test user, with a clean environment.
as_user() {
	runuser -u "$RL_USER" -- env -i HOME="$RL_HOME" USER="$RL_USER" LOGNAME="$RL_USER" \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin RL_DIR="$RL_DIR" \
		STRATAFS_DISABLE="${STRATAFS_DISABLE:-}" LANG=C.UTF-8 \
		${RL_ENV:-} bash -c "cd \"\$RL_DIR/work\" && $*"
}

# in_userns CMD...: runs CMD as root of a new user namespace of the test user (only its
# own uid mapped, as `unshare --map-root-user` does), in a mount namespace of its own,
# with this file sourced.
in_userns() {
	as_user "unshare --user --map-root-user --mount bash -c 'source \"\$RL_DIR/rootless_helpers.bash\"; set -eu; $*'"
}

# ---------------------------------------------------------------- user-namespace side

ns_fail() {
	echo "FAIL: $*" >&2
	return 1
}

# ns_expect WHAT GOT WANT
ns_expect() {
	if [ "$2" != "$3" ]; then
		printf 'FAIL: %s\n  got:  %s\n  want: %s\n' "$1" "$2" "$3" >&2
		return 1
	fi
	echo "ok: $1"
}

# ns_listing DIR: one line per entry: path, type, content or link target.
ns_listing() {
	(
		cd "$1" || exit 1
		find . -mindepth 1 | LC_ALL=C sort | while IFS= read -r p; do
			if [ -L "$p" ]; then
				echo "$p -> $(readlink "$p")"
			elif [ -d "$p" ]; then
				echo "$p/"
			elif [ -p "$p" ]; then
				echo "$p |"
			elif [ -f "$p" ]; then
				echo "$p = $(cat "$p")"
			else
				echo "$p ?"
			fi
		done
	)
}

# ns_server_pid MNT: the stratafs serving MNT (our copy, MNT in its argv).
ns_server_pid() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/exe" 2>/dev/null)" = "$RL_DIR/stratafs" ] || continue
		tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF -- "$1" && echo "${p#/proc/}"
	done
	return 0
}

# ns_mount LOWERS UPPER WORK MNT [OPTS]
ns_mount() {
	local o="lowerdir=$1,upperdir=$2,workdir=$3"
	[ -n "${5:-}" ] && o+=",$5"
	"$RL_DIR/stratafs" -o "$o" "$4" </dev/null || ns_fail "stratafs -o $o $4" || return 1
	[ "$(awk -v m="$4" '$2 == m { t = $3 } END { print t }' /proc/self/mounts)" = fuse.stratafs ] ||
		ns_fail "$4 is not a stratafs mount"
}

# ns_umount MNT: unmounts and waits until the server is gone.
ns_umount() {
	local pid i
	pid=$(ns_server_pid "$1")
	umount "$1" || return 1
	# polled; generous, for loaded machines
	for i in $(seq 600); do
		[ -z "$pid" ] || [ ! -d "/proc/$pid" ] && return 0
		grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && return 0
		sleep 0.05
	done
	ns_fail "stratafs $pid still runs after umount of $1"
}

# ns_build_layers B: two lower layers with every marker form, written as a rootless tool
# would (no trusted.* xattrs here: they are refused in a user namespace).
ns_build_layers() {
	local b=$1
	mkdir -p "$b"/l1 "$b"/l2 "$b"/u "$b"/w "$b"/m
	# bottom layer
	mkdir -p "$b"/l2/etc "$b"/l2/dir/sub "$b"/l2/opq "$b"/l2/opq2 "$b"/l2/opq3
	echo "l2 hosts" >"$b"/l2/etc/hosts
	echo gone >"$b"/l2/etc/gone
	echo whfile >"$b"/l2/etc/whfile
	echo a >"$b"/l2/dir/a
	echo deep >"$b"/l2/dir/sub/deep
	echo old >"$b"/l2/opq/old
	echo old >"$b"/l2/opq2/old
	echo old >"$b"/l2/opq3/old
	echo hl >"$b"/l2/hl1
	ln "$b"/l2/hl1 "$b"/l2/hl2
	ln -s etc/hosts "$b"/l2/sym
	# top lower: a char 0/0 whiteout, a .wh. file, three opaque forms
	mkdir -p "$b"/l1/etc "$b"/l1/opq "$b"/l1/opq2 "$b"/l1/opq3
	echo "l1 passwd" >"$b"/l1/etc/passwd
	mknod "$b"/l1/etc/gone c 0 0
	: >"$b"/l1/etc/.wh.whfile
	echo new >"$b"/l1/opq/new
	echo new >"$b"/l1/opq2/new
	echo new >"$b"/l1/opq3/new
	setfattr -n user.overlay.opaque -v y "$b"/l1/opq
	: >"$b"/l1/opq2/.wh..wh..opq
	setfattr -n user.fuseoverlayfs.opaque -v y "$b"/l1/opq3
}

NS_START_LISTING='./dir/
./dir/a = a
./dir/sub/
./dir/sub/deep = deep
./etc/
./etc/hosts = l2 hosts
./etc/passwd = l1 passwd
./hl1 = hl
./hl2 = hl
./opq/
./opq/new = new
./opq2/
./opq2/new = new
./opq3/
./opq3/new = new
./sym -> etc/hosts'

NS_END_LISTING='./dir/
./dir/n = n
./etc/
./etc/hostlink = changed
./etc/hosts = changed
./hl1 = hl
more
./hl2 = hl
more
./newopq/
./newopq/new = new
./newsym -> etc/hosts
./opq2/
./opq2/new = new
./opq3/
./opq3/new = new
./p |
./sym -> etc/hosts
./y = from x'

# ns_semantics: the semantic checks (whiteouts, opaque dirs, copy-up, rename, links) on a
# stratafs mounted in this user namespace. $1: what the upper must hold for a whiteout
# ("chardev" or "file") and $2 the opaque marker ("user.overlay.opaque" or ".wh..wh..opq").
ns_semantics() {
	local wh=$1 opq=$2 b m
	b=$(mktemp -d "$RL_DIR/work/sem.XXXXXX")
	m=$b/m
	ns_build_layers "$b"
	ns_mount "$b/l1:$b/l2" "$b/u" "$b/w" "$m"
	# the mount is unmounted whatever happens: the server lives in this namespace
	trap "umount '$m' 2>/dev/null || true" EXIT
	ns_expect "merged view of every lower marker form" "$(ns_listing "$m")" "$NS_START_LISTING"
	ns_expect "root is owned by the namespace's root" "$(stat -c %u:%g "$m")" "0:0"

	# copy-up
	echo changed >"$m"/etc/hosts
	ns_expect "copy-up: upper holds the new content" "$(cat "$b"/u/etc/hosts)" changed
	ns_expect "copy-up: lower untouched" "$(cat "$b"/l2/etc/hosts)" "l2 hosts"
	# whiteout
	rm "$m"/etc/passwd
	[ ! -e "$m"/etc/passwd ] || ns_fail "etc/passwd still there after rm"
	if [ "$wh" = chardev ]; then
		ns_expect "whiteout is a char 0/0 in the upper" "$(stat -c '%F %t:%T' "$b"/u/etc/passwd)" \
			"character special file 0:0"
	else
		ns_expect "whiteout is a .wh. file in the upper" "$(stat -c %F "$b"/u/etc/.wh.passwd)" \
			"regular empty file"
		[ ! -e "$b"/u/etc/passwd ] || ns_fail "a .wh. whiteout left etc/passwd in the upper"
	fi
	# opaque
	rm -rf "$m"/dir
	mkdir "$m"/dir
	echo n >"$m"/dir/n
	ns_expect "recreated dir shows only its new entry" "$(ls -A "$m"/dir)" n
	if [ "$opq" = .wh..wh..opq ]; then
		[ -e "$b"/u/dir/.wh..wh..opq ] || ns_fail "no .wh..wh..opq in the recreated upper dir"
	else
		ns_expect "recreated dir is marked $opq" \
			"$(getfattr --only-values -n "$opq" "$b"/u/dir 2>/dev/null)" y
	fi
	ns_expect "no trusted.* xattrs written" \
		"$(getfattr -R -d -m '^trusted\.' "$b"/u 2>/dev/null | grep -c trusted || true)" 0
	ns_expect "private xattrs are not visible through the mount" \
		"$(getfattr -d -m - "$m"/dir 2>/dev/null | grep -c overlay || true)" 0
	# directory rename with lower content
	mv "$m"/opq "$m"/newopq
	ns_expect "renamed dir keeps its (opaque) content" "$(ls -A "$m"/newopq)" new
	[ ! -e "$m"/opq ] || ns_fail "opq still there after mv"
	# rename over an existing file
	echo "from x" >"$m"/x
	echo "from y" >"$m"/y
	mv "$m"/x "$m"/y
	# links
	ln "$m"/etc/hosts "$m"/etc/hostlink
	# (without any xattr on the upper a copy cannot keep its lower inode number, so the
	# new name's lookup sees the upper's)
	[ "$opq" = .wh..wh..opq ] ||
		ns_expect "hard link: one inode" "$(stat -c %i "$m"/etc/hostlink)" "$(stat -c %i "$m"/etc/hosts)"
	ns_expect "hard link: two names" "$(stat -c %h "$m"/etc/hosts)" 2
	echo more >>"$m"/hl1
	ns_expect "lower hard links stay linked after copy-up" "$(cat "$m"/hl2)" "$(printf 'hl\nmore')"
	ln -s etc/hosts "$m"/newsym
	mkfifo "$m"/p
	setfattr -n user.note -v kept "$m"/etc/hosts
	ns_expect "user xattr through the mount" \
		"$(getfattr --only-values -n user.note "$m"/etc/hosts)" kept
	ns_expect "merged view after the changes" "$(ns_listing "$m")" "$NS_END_LISTING"

	# the upper, read back by a new server
	ns_umount "$m"
	trap - EXIT
	ns_mount "$b/l1:$b/l2" "$b/u" "$b/w" "$m"
	trap "umount '$m' 2>/dev/null || true" EXIT
	ns_expect "merged view after remount" "$(ns_listing "$m")" "$NS_END_LISTING"
	ns_umount "$m"
	trap - EXIT
	rm -rf "$b"
}

# ns_strata: strata mount/status/unmount as root of this user namespace; state must land in
# $XDG_RUNTIME_DIR/strata, and the status must report the probed (user.*) markers.
ns_strata() {
	local b m out id=rl-$$
	mkdir -p "$XDG_RUNTIME_DIR"
	chmod 0700 "$XDG_RUNTIME_DIR"
	b=$(mktemp -d "$RL_DIR/work/drv.XXXXXX")
	m=$b/m
	ns_build_layers "$b"
	export STRATAFS=$RL_DIR/stratafs
	out=$(printf '{"id": "%s", "target": "%s", "lower": ["%s", "%s"], "upper": "%s", "work": "%s"}' \
		"$id" "$m" "$b/l1" "$b/l2" "$b/u" "$b/w" | "$RL_DIR/strata" mount) ||
		ns_fail "strata mount: $out" || return 1
	trap "'$RL_DIR/strata' unmount '$id' >/dev/null 2>&1 || umount '$m' 2>/dev/null || true" EXIT
	ns_expect "strata mount: state" "$(jq -r .state <<<"$out")" mounted
	ns_expect "state record under \$XDG_RUNTIME_DIR/strata" \
		"$(ls "$XDG_RUNTIME_DIR/strata/$id.json" 2>&1)" "$XDG_RUNTIME_DIR/strata/$id.json"
	ns_expect "log under \$XDG_RUNTIME_DIR/strata" "$(jq -r .log <<<"$out")" \
		"$XDG_RUNTIME_DIR/strata/$id.log"
	ns_expect "features: opaque marker probed" "$(jq -r .features.opaque <<<"$out")" \
		user.overlay.opaque
	ns_expect "features: private xattr namespace" "$(jq -r .features.xattrPrefix <<<"$out")" \
		user.overlay.
	ns_expect "features: whiteout form" "$(jq -r .features.whiteout <<<"$out")" chardev
	ns_expect "sandboxed server" "$(jq -r .sandbox.noNewPrivs <<<"$out")" true
	ns_expect "merged view through strata" "$(ns_listing "$m")" "$NS_START_LISTING"
	rm -rf "$m"/dir
	mkdir "$m"/dir
	ns_expect "opaque marker written in user.*" \
		"$(getfattr --absolute-names --only-values -n user.overlay.opaque "$b"/u/dir)" y
	out=$("$RL_DIR/strata" status "$id") || ns_fail "strata status: $out" || return 1
	ns_expect "strata status: mounted" "$(jq -r .state <<<"$out")" mounted
	local pid
	pid=$(jq -r .pid <<<"$out")
	out=$("$RL_DIR/strata" unmount "$id") || ns_fail "strata unmount: $out" || return 1
	trap - EXIT
	ns_expect "strata unmount" "$(jq -r .state <<<"$out")" unmounted
	[ ! -d "/proc/$pid" ] || grep -q '^State:.*Z' "/proc/$pid/status" ||
		ns_fail "server $pid still runs after strata unmount" || return 1
	awk -v m="$m" '$2 == m { exit 1 }' /proc/self/mounts || ns_fail "$m still mounted"
	ns_expect "record removed" "$(ls "$XDG_RUNTIME_DIR/strata" | grep -c "^$id\.json$" || true)" 0
	rm -rf "$b"
}

# ---------------------------------------------------------------- rootless podman

# rl_podman ARGS...: rootless podman of the test user, on a private store under $RL_DIR with
# our stratafs as mount program (runc, cgroupfs, no network, limits these machines allow).
RL_PODMAN='podman --root "$RL_DIR/work/store/storage" --runroot "$RL_DIR/work/store/run"'
RL_PODMAN+=' --tmpdir "$RL_DIR/work/store/tmp" --storage-driver overlay --runtime runc'
RL_PODMAN+=' --storage-opt overlay.mount_program="$RL_DIR/stratafs"'
RL_PODMAN+=' --cgroup-manager cgroupfs --events-backend file'
RL_RUN='run --network none --ulimit nofile=1024:1024 --ulimit nproc=1000:1000'

rl_podman_env() {
	echo "HOME=$RL_DIR/work/home XDG_RUNTIME_DIR=$RL_DIR/work/xdg" \
		"XDG_CONFIG_HOME=$RL_DIR/work/home/.config XDG_DATA_HOME=$RL_DIR/work/home/.local/share"
}

# rl_podman_cleanup: podman rm -af and rmi -af as the user, then the pause process
# podman keeps for its user namespace (by the PID it recorded).
rl_podman_cleanup() {
	local pp
	[ -d "$RL_DIR/work/store" ] || return 0
	RL_ENV=$(rl_podman_env) as_user "timeout 60 $RL_PODMAN rm -af -t 0 >/dev/null 2>&1; timeout 60 $RL_PODMAN rmi -af >/dev/null 2>&1" || true
	pp=$(cat "$RL_DIR/work/store/tmp/pause.pid" 2>/dev/null) || pp=
	if [ -n "$pp" ] && [ "$(stat -c %u "/proc/$pp" 2>/dev/null)" = "$RL_UID" ]; then
		kill -TERM "$pp" 2>/dev/null || true
	fi
}

# ns_kernel_forms LAYER: rewrites the forms the kernel's overlayfs does not read (.wh.NAME
# files, .wh..wh..opq, user.fuseoverlayfs.opaque) into what it reads with -o userxattr
# (char 0/0, user.overlay.opaque).
ns_kernel_forms() {
	local f d n
	find "$1" -depth -name '.wh.*' | while IFS= read -r f; do
		d=$(dirname "$f")
		n=$(basename "$f")
		rm -f "$f"
		if [ "$n" = .wh..wh..opq ]; then
			setfattr -n user.overlay.opaque -v y "$d"
		else
			mknod "$d/${n#.wh.}" c 0 0
		fi
	done
	find "$1" -type d | while IFS= read -r d; do
		if getfattr --absolute-names -n user.fuseoverlayfs.opaque "$d" >/dev/null 2>&1; then
			setfattr -x user.fuseoverlayfs.opaque "$d"
			setfattr -n user.overlay.opaque -v y "$d"
		fi
	done
}

# ns_meta_listing DIR: ns_listing plus type, mode, link count and user xattrs.
ns_meta_listing() {
	(
		cd "$1" || exit 1
		find . -mindepth 1 | LC_ALL=C sort | while IFS= read -r p; do
			printf '%s %s' "$p" "$(stat -c '%F %a' "$p")"
			[ -d "$p" ] || printf ' nlink=%s' "$(stat -c %h "$p")"
			[ -f "$p" ] && [ ! -L "$p" ] && printf ' size=%s md5=%s' "$(stat -c %s "$p")" "$(md5sum <"$p" | cut -c1-12)"
			[ -L "$p" ] && printf ' -> %s' "$(readlink "$p")"
			getfattr -h --absolute-names -d -m '^user\.' "$p" 2>/dev/null | grep -v '^#' | tr '\n' ' '
			echo
		done
	)
}

# ns_ops: one change sequence (run in a merged dir). Directory renames with lower content
# and copy-up of lower hard links stay out: in a user namespace the kernel refuses
# redirect_dir=on (EXDEV) and has no index (the links part); ns_semantics checks those.
ns_ops() {
	echo changed >etc/hosts
	chmod 0600 etc/hosts
	rm etc/passwd
	rm -rf dir
	mkdir dir
	echo n >dir/n
	echo x >x
	echo y >y
	mv x y
	ln etc/hosts etc/hostlink
	ln -s etc/hosts newsym
	mkfifo p
	setfattr -n user.note -v kept etc/hosts
	setfattr -n user.dir -v d opq3
	mkdir -p new/a/b
	echo c >new/a/b/c
	mv new new2
	rm opq2/new
	rmdir opq2
	mkdir opq2
	mv sym opq3/sym2
	truncate -s 3 dir/n
	touch -d @1500000000 etc/hosts
}

# ns_kernel_compare: the same layers and the same changes on stratafs and on the kernel's
# overlayfs (-o userxattr,index=on, mounted in this user namespace) read the same.
ns_kernel_compare() {
	local b s k
	b=$(mktemp -d "$RL_DIR/work/cmp.XXXXXX")
	s=$b/s
	k=$b/k
	ns_build_layers "$s"
	ns_build_layers "$k"
	ns_kernel_forms "$k/l1"
	if ! mount -t overlay -o "lowerdir=$k/l1:$k/l2,upperdir=$k/u,workdir=$k/w,userxattr,index=on" \
		overlay "$k/m" 2>/dev/null; then
		echo "SKIP: the kernel's overlayfs does not mount in this user namespace"
		rm -rf "$b"
		return 0
	fi
	ns_mount "$s/l1:$s/l2" "$s/u" "$s/w" "$s/m"
	trap "umount '$s/m' 2>/dev/null; umount '$k/m' 2>/dev/null; true" EXIT
	ns_expect "before changes: stratafs reads like the kernel" \
		"$(ns_meta_listing "$s/m")" "$(ns_meta_listing "$k/m")"
	(cd "$k/m" && ns_ops) || ns_fail "changes on the kernel's overlayfs" || return 1
	(cd "$s/m" && ns_ops) || ns_fail "changes on stratafs" || return 1
	ns_expect "after changes: stratafs reads like the kernel" \
		"$(ns_meta_listing "$s/m")" "$(ns_meta_listing "$k/m")"
	ns_umount "$s/m"
	umount "$k/m"
	trap - EXIT
	# each reads the upper the other wrote (the lower in forms the kernel reads)
	ns_kernel_forms "$s/l1"
	mount -t overlay -o "lowerdir=$s/l1:$s/l2,upperdir=$s/u,workdir=$s/w,userxattr,index=off" \
		overlay "$s/m" || ns_fail "kernel mount of stratafs's upper" || return 1
	ns_mount "$k/l1:$k/l2" "$k/u" "$k/w" "$k/m"
	trap "umount '$s/m' 2>/dev/null; umount '$k/m' 2>/dev/null; true" EXIT
	ns_expect "stratafs's upper read by the kernel = the kernel's read by stratafs" \
		"$(ns_meta_listing "$s/m")" "$(ns_meta_listing "$k/m")"
	umount "$s/m"
	ns_umount "$k/m"
	trap - EXIT
	rm -rf "$b"
}

# ns_foreign LOWER: a lower layer owned by ids this namespace does not map (host root)
# shows them as the overflow id; root of the namespace may not write there (the kernel
# checks the shown owner), unless squash_to_root shows them as its own: through stratafs
# directly and through strata's options.squashToRoot.
ns_foreign() {
	local lower=$1 b out id=rlf-$$
	b=$(mktemp -d "$RL_DIR/work/foreign.XXXXXX")
	mkdir -p "$b"/u "$b"/w "$b"/m "$b"/u2 "$b"/w2
	ns_mount "$lower" "$b/u" "$b/w" "$b/m"
	trap "umount '$b/m' 2>/dev/null || true" EXIT
	ns_expect "foreign owner shows as the overflow id" "$(stat -c %u:%g "$b"/m/d/f)" \
		"$(cat /proc/sys/kernel/overflowuid):$(cat /proc/sys/kernel/overflowgid)"
	if (echo more >>"$b"/m/d/f) 2>/dev/null; then
		ns_fail "root of the namespace wrote to a file of an unmapped owner"
		return 1
	fi
	echo "ok: writing a file of an unmapped owner is refused"
	ns_umount "$b/m"
	trap - EXIT
	mkdir -p "$XDG_RUNTIME_DIR"
	chmod 0700 "$XDG_RUNTIME_DIR"
	out=$(printf '{"id": "%s", "target": "%s", "lower": ["%s"], "upper": "%s", "work": "%s",
		"options": {"squashToRoot": true}}' "$id" "$b/m" "$lower" "$b/u2" "$b/w2" |
		STRATAFS=$RL_DIR/stratafs "$RL_DIR/strata" mount) ||
		ns_fail "strata mount: $out" || return 1
	trap "'$RL_DIR/strata' unmount '$id' >/dev/null 2>&1 || umount '$b/m' 2>/dev/null || true" EXIT
	ns_expect "features.squashToRoot" "$(jq -r .features.squashToRoot <<<"$out")" true
	ns_expect "squash_to_root shows the namespace's root" "$(stat -c %u:%g "$b"/m/d/f)" 0:0
	echo more >>"$b"/m/d/f || ns_fail "write with squash_to_root" || return 1
	ns_expect "copy-up of a foreign file" "$(cat "$b"/u2/d/f)" "$(printf 'root-owned\nmore')"
	out=$("$RL_DIR/strata" unmount "$id") || ns_fail "strata unmount: $out" || return 1
	trap - EXIT
	rm -rf "$b"
}
