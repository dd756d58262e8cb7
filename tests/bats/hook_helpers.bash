# hook_helpers.bash - fixtures for hook.bats: the podman fixtures of podman_helpers.bash
# (private store, runc, busybox image) plus --hooks-dir pointing at copies of the shipped
# oci-hooks/hooks.d files whose path is build/strata-hook and whose args give the hook this
# file's state dir ($PT/state) and run dir ($PT/hookrun); a strata layer set per test (a
# busybox-static lower holding a marker file the image does not have, an upper, a work dir).

load podman_helpers

STRATA=${STRATA:-$REPO/build/strata}
HOOK=${HOOK:-$REPO/build/strata-hook}
export STRATAFS=${STRATAFS:-$REPO/build/stratafs}

# podman_helpers' podman command line, with the hooks dir.
pm_argv()
{
	PM_ARGV=(podman --root "$PT/storage" --runroot "$PT/run" --tmpdir "$PT/tmp"
		--storage-driver overlay --storage-opt "overlay.mount_program=$MOUNT_PROGRAM"
		--runtime runc --cgroup-manager cgroupfs --events-backend file
		--hooks-dir "$PT/hooks")
}

hook_setup_file()
{
	podman_setup_file || return 1
	[ -x "$HOOK" ] && [ -x "$STRATA" ] || {
		echo "# $HOOK or $STRATA is missing: run 'make'" >&3
		return 1
	}
	SD=$PT/state
	RD=$PT/hookrun
	export SD RD
	mkdir -p "$PT/hooks" "$SD" "$RD"
	local s
	for s in precreate poststop; do
		jq --arg p "$HOOK" --arg sd "$SD" --arg rd "$RD" \
			'.hook.path = $p | .hook.args = (.hook.args[:1] + ["--state-dir", $sd, "--run-dir", $rd] + .hook.args[1:])' \
			"$REPO/oci-hooks/hooks.d/strata-$s.json" >"$PT/hooks/strata-$s.json" || return 1
	done
}

hook_setup()
{
	[ "$(id -u)" = 0 ] || skip "strata mounts with mount(2): run as root"
	command -v jq >/dev/null || skip "jq is not installed (make deps)"
	podman_setup
	L=$PT/t$BATS_TEST_NUMBER
	mkdir -p "$L/low" "$L/up" "$L/wk"
	make_layer "$L/low"
	STRATA_BEFORE=$(stratafs_pids_all)
}

# make_layer DIR: a root filesystem for the container (busybox) with /strata-marker.
make_layer()
{
	local d=$1 t
	mkdir -p "$d/bin" "$d/etc" "$d/tmp" "$d/proc" "$d/sys" "$d/dev"
	cp /bin/busybox "$d/bin/"
	for t in sh ls cat echo mkdir rm stat sleep touch grep head wc test id; do
		ln -s busybox "$d/bin/$t"
	done
	chmod 1777 "$d/tmp"
	echo from-strata-layer >"$d/strata-marker"
}

# spec_json [ID]: the native spec of this test's layers (no target: the hook makes one).
spec_json()
{
	jq -cn --arg l "$L/low" --arg u "$L/up" --arg w "$L/wk" --arg id "${1:-}" \
		'{lower: [$l], upper: $u, work: $w} + (if $id == "" then {} else {id: $id} end)'
}

# podman --annotation takes a CSV field: quote it (a JSON spec holds " and ,).
ann_arg()
{
	local a="$1=$2"
	printf '"%s"' "${a//\"/\"\"}"
}

# Every live stratafs pid on the machine.
stratafs_pids_all()
{
	local d comm
	for d in /proc/[0-9]*; do
		{ read -r comm <"$d/comm"; } 2>/dev/null || continue
		[ "$comm" = stratafs ] || continue
		proc_alive "${d#/proc/}" && echo "${d#/proc/}"
	done | sort
}

# stratafs mounts whose mount point is under $PT (the hook's targets, runc's).
strata_mounts_under_pt()
{
	awk -v t="$PT/" 'index($5, t) == 1 {
		for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "fuse.stratafs") print $5 } }' /proc/self/mountinfo
}

# Nothing of strata is left: no stratafs mount under $PT, no stratafs process started by
# this test, no state record, no target dir in the run dir. Allows 10 s (asynchronous exits).
assert_no_strata_leftovers()
{
	local end=$((SECONDS + 10)) m p r t
	while :; do
		m=$(strata_mounts_under_pt)
		p=$(comm -13 <(echo "$STRATA_BEFORE") <(stratafs_pids_all) | grep . || true)
		r=$(find "$SD" -maxdepth 1 -name '*.json' 2>/dev/null)
		t=$(find "$RD" -mindepth 1 ! -name strata-hook.log 2>/dev/null)
		[ -z "$m$p$r$t" ] && return 0
		[ "$SECONDS" -lt "$end" ] || break
		sleep 0.1
	done
	fail "left behind: mounts [$m] stratafs [$(describe_pids $p)] records [$r] run dir [$t]"
}

# Per test: remove containers, then unmount through strata whatever is still recorded,
# then by force what is still mounted under $PT, then empty the run dir.
hook_teardown()
{
	[ -n "${PT:-}" ] || return 0
	podman_teardown
	local f id c
	if [ -d "${L:-}/runc" ]; then
		for c in $(timeout 10 runc --root "$L/runc" list -q 2>/dev/null 3>&-); do
			timeout 30 runc --root "$L/runc" delete -f "$c" </dev/null >/dev/null 2>&1 3>&-
		done
	fi
	for f in "$SD"/*.json; do
		[ -f "$f" ] || continue
		id=$(basename "$f" .json)
		timeout 30 "$STRATA" --state-dir "$SD" unmount "$id" >/dev/null 2>&1 3>&- ||
			echo "# strata unmount $id failed" >&3
	done
	local m
	for m in $(strata_mounts_under_pt | sort -r); do
		timeout 10 umount "$m" 2>/dev/null || timeout 10 umount -l "$m" 2>/dev/null
	done
	rm -rf --one-file-system "${RD:?}"/* 2>/dev/null
	return 0
}

hook_teardown_file()
{
	podman_teardown_file
}
