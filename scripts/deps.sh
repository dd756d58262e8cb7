#!/bin/bash
# deps.sh - make sure the Debian packages strata needs to build and test are installed.
#
# Quiet when everything is there. As root, installs what is missing with apt-get;
# otherwise prints the command to run and exits 1. Loads the overlay and fuse
# kernel modules when it can (best effort: they may be built in, or modprobe
# may not be allowed in a container).
set -euo pipefail

BUILD_PKGS=(gcc make pkg-config libfuse3-dev libjson-c-dev libcap-dev libseccomp-dev clang-format
	scdoc) # man pages (docs/*.scd)
TEST_PKGS=(fuse3 attr acl bats bats-assert bats-support bats-file fuse-overlayfs podman runc
	uidmap busybox-static util-linux kmod
	jq               # driver.bats and the demo read strata's JSON
	meson ninja-build # scripts/libfuse.sh: the private libfuse 3.17 of the passthrough build
	clang libclang-rt-dev # libFuzzer for the spec parser (make fuzz, run briefly by driver.bats)
	dpkg-dev debhelper fakeroot lintian rpm debootstrap) # make deb/rpm, packaging.bats

missing=()
for pkg in "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	if [ "$status" != "installed" ]; then
		missing+=("$pkg")
	fi
done

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing Debian packages: ${missing[*]}" >&2
		echo "deps: run as root:" >&2
		echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null || apt-get update
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! clang-format --version >/dev/null 2>&1; then
	echo "deps: clang-format is installed but 'clang-format --version' fails" >&2
	exit 1
fi

# Best effort: the tests compare against the kernel's overlayfs, and FUSE needs /dev/fuse.
if [ "$(id -u)" -eq 0 ] && command -v modprobe >/dev/null 2>&1; then
	grep -qw overlay /proc/filesystems 2>/dev/null || modprobe overlay 2>/dev/null || true
	grep -qw fuse /proc/filesystems 2>/dev/null || modprobe fuse 2>/dev/null || true
fi
if [ ! -c /dev/fuse ]; then
	echo "deps: warning: /dev/fuse is missing; FUSE mounts will fail" >&2
fi
exit 0
