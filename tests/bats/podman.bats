#!/usr/bin/env bats
# podman.bats - real podman with overlay.mount_program=$MOUNT_PROGRAM (default
# build/stratafs) on a private store: containers run on it, podman diff and
# commit see the right changes, exec works, and stop/rm leave nothing behind.

load podman_helpers

setup_file()
{
	podman_setup_file
}

teardown_file()
{
	podman_teardown_file
}

setup()
{
	podman_setup
}

teardown()
{
	podman_teardown
}

# The changes every diff/commit test makes inside a container.
CHANGES='echo new >/newfile && mkdir /newdir && echo n2 >/newdir/f &&
	echo changed >/etc/modme && rm /etc/delme && rm -r /data/sub && echo done'

@test "a container runs on a $EXPECT_FSTYPE root" {
	run pm_run --rm "$IMAGE" sh -c 'echo hello-from-container; cat /proc/mounts'
	echo "$output"
	assert_success
	assert_line --index 0 hello-from-container
	root=$(awk '$2 == "/" { print $3; exit }' <<<"$output")
	[ "$root" = "$EXPECT_FSTYPE" ] || fail "root mount type is '$root', want $EXPECT_FSTYPE"
	assert_no_leftovers
}

@test "the container root is not nosuid (setuid binaries work, as with fuse-overlayfs)" {
	run pm_run --rm "$IMAGE" cat /proc/mounts
	assert_success
	opts=$(awk '$2 == "/" { print $4; exit }' <<<"$output")
	echo "root mount options: $opts"
	[[ ",$opts," != *,nosuid,* ]] || fail "root mount is nosuid ($opts): setuid binaries in the container do not work"
}

@test "image content is readable and the container's writes stay private" {
	run pm_run --rm "$IMAGE" sh -c 'cat /etc/modme /data/keep /data/sub/deep; ls /bin | wc -l;
		echo scratch >/tmp/x && cat /tmp/x'
	echo "$output"
	assert_success
	assert_line --index 0 original
	assert_line --index 1 keep
	assert_line --index 2 deep
	assert_line --index 4 scratch
	run pm_run --rm "$IMAGE" sh -c 'ls /tmp; cat /etc/modme'
	assert_success
	assert_output original
	assert_no_leftovers
}

@test "podman diff lists added (A), changed (C) and deleted (D) paths" {
	run pm_run --name difftest "$IMAGE" sh -c "$CHANGES"
	echo "$output"
	assert_success
	assert_output "done"
	run pm diff difftest
	echo "$output"
	assert_success
	assert_line "A /newfile"
	assert_line "A /newdir"
	assert_line "A /newdir/f"
	assert_line "C /etc/modme"
	assert_line "D /etc/delme"
	assert_line "D /data/sub"
	refute_line "A /etc/modme"
	refute_line --partial ".wh."
	refute_line --partial "/data/keep"
	refute_line --partial "/data/sub/deep"
	refute_line --partial "/bin"
	# nothing else than the expected entries and their parent directories
	while read -r kind path; do
		case "$kind $path" in
		"A /newfile" | "A /newdir" | "A /newdir/f" | "C /etc/modme" | "D /etc/delme" | \
			"D /data/sub" | "C /etc" | "C /data" | "C /") ;;
		*) fail "unexpected diff entry: $kind $path" ;;
		esac
	done <<<"$output"
}

@test "podman commit: a container of the new image sees the changes" {
	run pm_run --name committest "$IMAGE" sh -c "$CHANGES"
	assert_success
	run pm commit -q committest localhost/strata-committed:latest
	echo "$output"
	assert_success
	run pm_run --rm localhost/strata-committed:latest sh -c '
		cat /newfile; cat /newdir/f; cat /etc/modme;
		test -e /etc/delme && echo delme-present || echo delme-absent;
		test -e /data/sub && echo sub-present || echo sub-absent;
		cat /data/keep; ls -a /etc /data | grep -c "^\.wh\." || true
		awk "\$2 == \"/\" { print \$3; exit }" /proc/mounts'
	echo "$output"
	assert_success
	assert_line --index 0 new
	assert_line --index 1 n2
	assert_line --index 2 changed
	assert_line --index 3 delme-absent
	assert_line --index 4 sub-absent
	assert_line --index 5 keep
	assert_line --index 6 0
	assert_output --partial "$EXPECT_FSTYPE"
	# a second generation on top of the committed image: change again, re-add a
	# deleted name, delete a file of the upper image layer
	run pm_run --rm localhost/strata-committed:latest sh -c '
		echo again >/etc/delme && rm /newfile && echo changed2 >/etc/modme &&
		cat /etc/delme /etc/modme && (test -e /newfile && echo newfile-present || echo newfile-absent)'
	echo "$output"
	assert_success
	assert_output "again
changed2
newfile-absent"
	pm rmi localhost/strata-committed:latest >/dev/null 2>&1 || true
}

@test "run -d, podman exec, stop, rm: no mount and no mount program process left" {
	run pm_run -d --name lifecycle "$IMAGE" sleep 1000
	echo "$output"
	assert_success
	[ -n "$output" ] || fail "podman run -d printed no container id"
	# while it runs: one live mount of the right type, served by the mount program
	[ -n "$(fuse_mounts_under "$PT")" ] || fail "no $EXPECT_FSTYPE mount under $PT while the container runs"
	[ -n "$(mount_program_pids)" ] || fail "no $(basename "$MOUNT_PROGRAM") process while the container runs"
	run pm exec lifecycle sh -c 'echo via-exec >/tmp/e && cat /tmp/e && cat /etc/modme'
	echo "$output"
	assert_success
	assert_output "via-exec
original"
	run pm stop -t 0 lifecycle
	echo "$output"
	assert_success
	run pm rm lifecycle
	echo "$output"
	assert_success
	[ -z "$(pm ps -aq)" ] || fail "containers left: $(pm ps -a)"
	assert_no_leftovers
}

@test "podman exec sees the container's writes and can write itself" {
	run pm_run -d --name exectest "$IMAGE" sh -c 'echo from-init >/tmp/init && echo ready >/tmp/ready; sleep 1000'
	assert_success
	ok=
	for _ in $(seq 100); do
		if pm exec exectest test -e /tmp/ready >/dev/null 2>&1; then ok=1 && break; fi
		sleep 0.1
	done
	[ -n "$ok" ] || fail "the container never wrote /tmp/ready"
	run pm exec exectest cat /tmp/init
	assert_success
	assert_output from-init
	run pm exec exectest sh -c 'echo x >/etc/modme && mkdir -p /a/b && echo y >/a/b/c && rm /etc/delme && cat /etc/modme /a/b/c'
	echo "$output"
	assert_success
	assert_output "x
y"
	run pm exec exectest sh -c 'test -e /etc/delme && echo present || echo absent'
	assert_output absent
	run pm rm -f -t 0 exectest
	assert_success
	assert_no_leftovers
}

@test "a stopped container starts again with its changes (remount of the same upper)" {
	cmd='echo kept >>/kept; rm -f /etc/delme; wc -l </kept'
	run pm_run --name restart "$IMAGE" sh -c "$cmd"
	echo "$output"
	assert_success
	assert_output 1
	assert_no_leftovers # the exited container is unmounted
	run pm start -a restart
	echo "$output"
	assert_success
	assert_output 2
	assert_no_leftovers
	run pm commit -q restart localhost/strata-restart:latest
	assert_success
	run pm_run --rm localhost/strata-restart:latest sh -c 'cat /kept; test -e /etc/delme && echo present || echo absent'
	echo "$output"
	assert_success
	assert_output "kept
kept
absent"
	pm rm -f restart >/dev/null
	pm rmi localhost/strata-restart:latest >/dev/null 2>&1 || true
	assert_no_leftovers
}
