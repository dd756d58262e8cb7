/* test_whiteout.c - unit tests for core/whiteout.c: the on-disk markers. */
#include "../../core/ovl.h"
#include "tap.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

int main(void)
{
	struct stat st = { .st_mode = S_IFCHR, .st_rdev = makedev(0, 0) };
	CHECK("char 0/0 is a whiteout", ovl_is_whiteout_stat(&st));
	st.st_rdev = makedev(1, 3);
	CHECK("char 1/3 is not", !ovl_is_whiteout_stat(&st));
	st.st_mode = S_IFBLK;
	st.st_rdev = 0;
	CHECK("block 0/0 is not", !ovl_is_whiteout_stat(&st));
	CHECK(".wh.x is a marker name", ovl_is_wh_name(".wh.x"));
	CHECK(".whx is not", !ovl_is_wh_name(".whx"));
	CHECK("trusted.overlay.opaque is private", ovl_is_private_xattr("trusted.overlay.opaque"));
	CHECK("user.overlay.x is private", ovl_is_private_xattr("user.overlay.x"));
	CHECK("user.fuseoverlayfs.x is private", ovl_is_private_xattr("user.fuseoverlayfs.x"));
	CHECK("user.foo is not", !ovl_is_private_xattr("user.foo"));
	CHECK("trusted.overlayx is not", !ovl_is_private_xattr("trusted.overlayx"));

	char dir[] = "/tmp/strata-unit-XXXXXX";
	if (!mkdtemp(dir)) {
		SKIP("opaque forms on disk", "mkdtemp failed");
		TAP_DONE();
	}
	int fd = open(dir, O_PATH | O_DIRECTORY);
	mkdirat(fd, "plain", 0755);
	mkdirat(fd, "opq", 0755);
	mkdirat(fd, "uopq", 0755);
	mkdirat(fd, "whopq", 0755);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/opq", dir);
	bool trusted = setxattr(path, "trusted.overlay.opaque", "y", 1, 0) == 0;
	snprintf(path, sizeof(path), "%s/uopq", dir);
	bool user = setxattr(path, "user.fuseoverlayfs.opaque", "y", 1, 0) == 0;
	snprintf(path, sizeof(path), "%s/whopq/.wh..wh..opq", dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	snprintf(path, sizeof(path), "%s/.wh.gone", dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));

	CHECK("a plain dir is not opaque", ovl_is_opaque(fd, "plain") == 0);
	if (trusted)
		CHECK("trusted.overlay.opaque=y is opaque", ovl_is_opaque(fd, "opq") == 1);
	else
		SKIP("trusted.overlay.opaque=y is opaque", "trusted xattrs refused here");
	if (user)
		CHECK("user.fuseoverlayfs.opaque=y is opaque", ovl_is_opaque(fd, "uopq") == 1);
	else
		SKIP("user.fuseoverlayfs.opaque=y is opaque", "user xattrs refused here");
	CHECK(".wh..wh..opq is opaque", ovl_is_opaque(fd, "whopq") == 1);
	CHECK(".wh.gone hides gone", ovl_has_wh_file(fd, "gone"));
	CHECK("nothing hides other", !ovl_has_wh_file(fd, "other"));
	close(fd);
	ovl_rm_rf_at(AT_FDCWD, dir);
	TAP_DONE();
}
