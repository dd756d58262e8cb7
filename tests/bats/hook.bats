#!/usr/bin/env bats
# hook.bats - build/strata-hook: the shipped hooks.d files with real podman (--hooks-dir):
# a container annotated with io.strata.spec runs on the strata layers and they are gone
# after it; the poststop hook with runc directly; bad annotations fail the container with
# the hook's message and leak nothing; the hook never holds its stdout/stderr open.

load hook_helpers

setup_file()
{
	hook_setup_file
}

teardown_file()
{
	hook_teardown_file
}

setup()
{
	hook_setup
}

teardown()
{
	hook_teardown
}

# hook STAGE: strata-hook with this file's state and run dirs, under a deadline.
hook()
{
	timeout 30 "$HOOK" --state-dir "$SD" --run-dir "$RD" "$@" 3>&-
}

@test "the shipped hooks.d files: schema 1.0.0, both stages, matched on io.strata.spec, with timeouts" {
	for s in precreate poststop; do
		f=$REPO/oci-hooks/hooks.d/strata-$s.json
		run jq -e --arg s "$s" '.version == "1.0.0" and .stages == [$s]
			and (.hook.path | startswith("/")) and .hook.args[-1] == $s
			and (.hook.timeout | type == "number" and . > 0)
			and .when.annotations == {"io\\.strata\\.spec": ".*"}' "$f"
		assert_success
	done
}

@test "precreate without io.strata.spec prints the config unchanged, mounts nothing" {
	printf '{"ociVersion":"1.0.2","root":{"path":"/x"},"annotations":{"a":"b"}}\n' >"$L/cfg.json"
	hook precreate <"$L/cfg.json" >"$L/out.json"
	cmp "$L/cfg.json" "$L/out.json"
	printf '{"ociVersion":"1.0.2","root":{"path":"/x"}}' | hook precreate >"$L/out2.json"
	[ "$(cat "$L/out2.json")" = '{"ociVersion":"1.0.2","root":{"path":"/x"}}' ]
	assert_no_strata_leftovers
}

@test "precreate/poststop by hand: mount, root.path, mount id; returns at once on pipes; poststop idempotent" {
	spec=$(spec_json)
	jq -n --arg s "$spec" '{ociVersion: "1.0.2", root: {path: "/nonexistent"}, annotations: {"io.strata.spec": $s}}' >"$L/cfg.json"
	# stdout, stderr and another fd are one pipe: the hook (and whatever strata leaves
	# running) must let go of it, or `cat` would wait for its timeout
	start=$SECONDS
	{ hook precreate <"$L/cfg.json" 2>&1 5>&1; } | timeout 20 cat >"$L/out.json"
	[ $((SECONDS - start)) -lt 10 ] || fail "precreate held its pipes: $((SECONDS - start)) s"
	out=$(cat "$L/out.json")
	echo "$out"
	id=$(jq -r '.annotations["io.strata.mount-id"]' <<<"$out")
	root=$(jq -r '.root.path' <<<"$out")
	[[ $id == hook-* ]] || fail "mount id '$id'"
	[ "$root" = "$RD/$id/rootfs" ]
	[ "$(cat "$root/strata-marker")" = from-strata-layer ]
	run "$STRATA" --state-dir "$SD" status "$id"
	assert_success
	[ "$(jq -r .state <<<"$output")" = mounted ]
	# the rest of the config is kept
	[ "$(jq -r .ociVersion <<<"$out")" = 1.0.2 ]
	[ "$(jq -r '.annotations["io.strata.spec"]' <<<"$out")" = "$spec" ]

	state=$(jq -cn --arg id "$id" '{ociVersion: "1.0.2", id: "c", status: "stopped", annotations: {"io.strata.mount-id": $id}}')
	start=$SECONDS
	{ hook poststop <<<"$state" 2>&1 5>&1; } | timeout 20 cat
	[ $((SECONDS - start)) -lt 10 ]
	assert_no_strata_leftovers
	run hook poststop <<<"$state"
	assert_success
	run hook poststop <<<'{"ociVersion":"1.0.2","id":"c","status":"stopped","annotations":{"io.strata.mount-id":"never-mounted"}}'
	assert_success
	run hook poststop <<<'{"ociVersion":"1.0.2","id":"c","status":"stopped"}'
	assert_success
}

@test "precreate uses the spec's id, and a spec file given by absolute path" {
	spec_json fixed-id-1 >"$L/spec.json"
	jq -n --arg s "$L/spec.json" '{root: {path: "/x"}, annotations: {"io.strata.spec": $s}}' >"$L/cfg.json"
	out=$(hook precreate <"$L/cfg.json")
	[ "$(jq -r '.annotations["io.strata.mount-id"]' <<<"$out")" = fixed-id-1 ]
	[ -f "$RD/fixed-id-1/rootfs/strata-marker" ]
	jq -n '{annotations: {"io.strata.mount-id": "fixed-id-1"}}' | hook poststop
	assert_no_strata_leftovers
}

@test "podman: the container's root is the strata spec, writes land in its upper, podman rm leaves nothing" {
	run pm_run --name hk-ok --annotation "$(ann_arg io.strata.spec "$(spec_json)")" "$IMAGE" \
		sh -c 'cat /strata-marker; echo from-container >/written; awk "\$2 == \"/\" { print \$3 }" /proc/mounts'
	echo "$output"
	assert_success
	assert_line --index 0 from-strata-layer
	assert_line --index 1 fuse.stratafs
	[ "$(cat "$L/up/written")" = from-container ]
	# the image's own files are not there: the root is the spec's, not podman's
	[ ! -e "$L/up/strata-marker" ]
	run pm rm hk-ok
	assert_success
	assert_no_strata_leftovers
}

@test "podman run --rm with a spec file: cleanup at exit" {
	spec_json podman-spec-file >"$L/spec.json"
	run pm_run --rm --annotation "io.strata.spec=$L/spec.json" "$IMAGE" cat /strata-marker
	echo "$output"
	assert_success
	assert_output from-strata-layer
	assert_no_strata_leftovers
}

@test "runc directly: a bundle mounted by strata mount beforehand is cleaned up at runc delete" {
	command -v runc >/dev/null || skip "runc is not installed"
	mkdir -p "$L/bundle/rootfs" "$L/runc"
	jq -n --arg t "$L/bundle/rootfs" --arg l "$L/low" --arg u "$L/up" --arg w "$L/wk" \
		'{id: "runc-hook-1", target: $t, lower: [$l], upper: $u, work: $w}' >"$L/spec.json"
	run timeout 30 "$STRATA" --state-dir "$SD" mount -f "$L/spec.json" 3>&-
	assert_success
	(cd "$L/bundle" && runc spec)
	jq --arg h "$HOOK" --arg sd "$SD" --arg rd "$RD" '
		.root = {path: "rootfs", readonly: false}
		| .process.terminal = false
		| .process.args = ["sh", "-c", "cat /strata-marker; echo from-runc >/written-by-runc"]
		| .annotations = {"io.strata.mount-id": "runc-hook-1"}
		| .hooks = {poststop: [{path: $h, args: ["strata-hook", "--state-dir", $sd, "--run-dir", $rd, "poststop"], timeout: 30}]}' \
		"$L/bundle/config.json" >"$L/bundle/c.json"
	mv "$L/bundle/c.json" "$L/bundle/config.json"
	R=(runc --root "$L/runc")
	# files, not `run`: the container's stdio must not be a pipe a test waits on
	timeout 30 "${R[@]}" create --bundle "$L/bundle" hk-runc-1 </dev/null >"$L/runc.out" 2>"$L/runc.err" 3>&- ||
		fail "runc create: $(cat "$L/runc.err")"
	timeout 30 "${R[@]}" start hk-runc-1 </dev/null >/dev/null 2>&1 3>&-
	end=$((SECONDS + 20))
	while [ "$(timeout 10 "${R[@]}" state hk-runc-1 2>/dev/null 3>&- | jq -r .status)" != stopped ]; do
		[ "$SECONDS" -lt "$end" ] || fail "container did not stop"
		sleep 0.1
	done
	[ "$(cat "$L/runc.out")" = from-strata-layer ]
	[ "$(cat "$L/up/written-by-runc")" = from-runc ]
	# still mounted until delete
	[ -n "$(strata_mounts_under_pt)" ] || fail "unmounted before runc delete"
	timeout 60 "${R[@]}" delete hk-runc-1 </dev/null >"$L/del.out" 2>&1 3>&- || fail "runc delete: $(cat "$L/del.out")"
	assert_no_strata_leftovers
}

# bad_annotation VALUE EXPECTED: podman run fails at the precreate hook and leaves nothing;
# the hook's message (EXPECTED) is in podman's own output (podman 4.3 drops a precreate
# hook's stderr, so the hook also writes to podman's stderr) and in RUN_DIR/strata-hook.log.
bad_annotation()
{
	: >"$RD/strata-hook.log"
	run pm_run --name "hk-bad-$BATS_TEST_NUMBER" --annotation "$(ann_arg io.strata.spec "$1")" "$IMAGE" \
		cat /strata-marker
	echo "$output"
	assert_failure
	refute_output --partial from-strata-layer
	assert_output --partial "precreate"
	assert_output --partial "exit status 1"
	assert_output --partial "strata-hook: precreate: "
	assert_output --partial "$2"
	cat "$RD/strata-hook.log"
	grep -qF -- "$2" "$RD/strata-hook.log" || fail "the hook's message ($2) is not in $RD/strata-hook.log"
	pm rm -f "hk-bad-$BATS_TEST_NUMBER" >/dev/null 2>&1 || true
	assert_no_strata_leftovers
}

@test "podman: unparsable JSON in io.strata.spec fails the container, showing the message" {
	bad_annotation '{"lower": [' "not valid JSON"
}

@test "podman: a missing layer fails the container, naming the field" {
	bad_annotation "$(jq -cn --arg l "$L/nonexistent" --arg u "$L/up" --arg w "$L/wk" \
		'{lower: [$l], upper: $u, work: $w}')" "lower[0]"
}

@test "podman: a relative spec path, or a relative layer path, fails the container" {
	bad_annotation "relative/spec.json" "absolute path"
	bad_annotation '{"lower": ["relative/low"]}' "lower[0]"
}

@test "a failed precreate by hand: exit non-zero, message on stderr, nothing on stdout, nothing mounted" {
	jq -n --arg s '{"lower": ["/nonexistent-strata-layer"]}' '{root: {path: "/x"}, annotations: {"io.strata.spec": $s}}' |
		hook precreate >"$L/out" 2>"$L/err" && fail "precreate succeeded"
	cat "$L/err"
	[ ! -s "$L/out" ]
	grep -q '^strata-hook: .*lower\[0\]' "$L/err"
	assert_no_strata_leftovers
}

@test "without --strata or STRATA the hook finds strata next to it, in ../../bin (installed layout), or on PATH" {
	local p=$L/prefix cfg=$L/cfg.json
	mkdir -p "$p/libexec/strata" "$p/bin" "$p/elsewhere"
	cp "$HOOK" "$p/libexec/strata/strata-hook"
	jq -n --arg s '{"lower": ["/nonexistent-strata-layer"]}' \
		'{root: {path: "/x"}, annotations: {"io.strata.spec": $s}}' >"$cfg"
	# hook_nostrata: the copied hook, with strata only where the caller put it.
	hook_nostrata() { env -u STRATA PATH="$1" timeout 30 "$p/libexec/strata/strata-hook" \
		--state-dir "$SD" --run-dir "$RD" precreate <"$cfg" 2>&1 3>&-; }
	run hook_nostrata /usr/bin:/bin
	assert_failure
	assert_output --partial "cannot run strata"
	cp "$STRATA" "$p/bin/strata"
	run hook_nostrata /usr/bin:/bin
	assert_failure
	assert_output --partial "lower[0]"
	rm "$p/bin/strata"
	cp "$STRATA" "$p/elsewhere/strata"
	run hook_nostrata "/usr/bin:$p/elsewhere:/bin"
	assert_failure
	assert_output --partial "lower[0]"
	assert_no_strata_leftovers
}
