/* test_idmap.c - unit tests for core/idmap.c: the direction of uidmapping=/gidmapping=, the
 * overflow id, squash_*, and the override-stat xattr format (on a real file too). */
#include "../../core/ovl.h"
#include "tap.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

static void fresh(struct ovl_fs *fs)
{
	ovl_params_free(&fs->p);
	memset(fs, 0, sizeof(*fs));
	fs->p.squash_uid = fs->p.squash_gid = -1;
	ovl_idmap_init(fs);
}

static int opts(struct ovl_fs *fs, const char *o)
{
	char err[256];
	return ovl_parse_opts(&fs->p, o, err, sizeof(err));
}

int main(void)
{
	static struct ovl_fs fs;
	fresh(&fs);
	CHECK("overflow ids read from /proc", fs.overflow_uid > 0 && fs.overflow_gid > 0);
	uint32_t ovf = fs.overflow_uid;

	CHECK("no mapping: stored ids are shown as they are",
	      ovl_uid_shown(&fs, 0) == 0 && ovl_uid_shown(&fs, 1234) == 1234 &&
		      ovl_gid_shown(&fs, 77) == 77);
	uid_t u;
	CHECK("no mapping: written ids are stored as they are",
	      ovl_uid_disk(&fs, 4321, &u) == 0 && u == 4321);

	/* podman --uidmap 0:100000:1000 --uidmap 1000:5000:1: "C:H:S" ranges, stored C shown H */
	CHECK("two ranges parse",
	      opts(&fs, "uidmapping=0:100000:1000:1000:5000:1") == 0 && fs.p.nuidmap == 2);
	CHECK("gidmapping parses",
	      opts(&fs, "gidmapping=0:200000:65536") == 0 && fs.p.ngidmap == 1);
	CHECK("stored 0 is shown as 100000", ovl_uid_shown(&fs, 0) == 100000);
	CHECK("stored 999 is shown as 100999 (last of the range)",
	      ovl_uid_shown(&fs, 999) == 100999);
	CHECK("stored 1000 is shown as 5000 (second range)", ovl_uid_shown(&fs, 1000) == 5000);
	CHECK("stored 1001 is in no range: the overflow id", ovl_uid_shown(&fs, 1001) == ovf);
	CHECK("stored 100000 is in no range: the overflow id", ovl_uid_shown(&fs, 100000) == ovf);
	CHECK("gid: stored 0 shown as 200000", ovl_gid_shown(&fs, 0) == 200000);
	CHECK("gid: stored 65536 unmapped", ovl_gid_shown(&fs, 65536) == fs.overflow_gid);
	CHECK("write: caller 100000 is stored as 0", ovl_uid_disk(&fs, 100000, &u) == 0 && u == 0);
	CHECK("write: caller 5000 is stored as 1000",
	      ovl_uid_disk(&fs, 5000, &u) == 0 && u == 1000);
	CHECK("write: caller 0 is in no range (-EINVAL, overflow)",
	      ovl_uid_disk(&fs, 0, &u) == -EINVAL && u == ovf);
	gid_t g;
	CHECK("write gid: 265535 stored as 65535",
	      ovl_gid_disk(&fs, 265535, &g) == 0 && g == 65535);
	CHECK("write gid: 265536 unmapped", ovl_gid_disk(&fs, 265536, &g) == -EINVAL);
	for (uid_t x = 0; x < 1001; x += 37) {
		uid_t back;
		if (ovl_uid_disk(&fs, ovl_uid_shown(&fs, x), &back) < 0 || back != x) {
			CHECK("shown -> stored is the inverse of stored -> shown", false);
			break;
		}
	}
	/* a range ending at 2^32 - 1 must not wrap */
	struct ovl_idmap top = { 4294967290u, 10, 6 };
	uint32_t v;
	CHECK("range at the top of the id space",
	      ovl_idmap_lookup(&top, 1, 4294967295u, true, &v) == 0 && v == 15 &&
		      ovl_idmap_lookup(&top, 1, 5, true, &v) == -EINVAL);

	/* POSIX ACL values: version 2, then (tag, perm, id) entries */
	struct __attribute__((packed)) {
		uint32_t version;
		struct __attribute__((packed)) {
			uint16_t tag, perm;
			uint32_t id;
		} e[4];
	} acl = {
		2,
		{ { 0x01, 6, 0xffffffff }, { 0x02, 4, 1000 }, { 0x08, 4, 0 }, { 0x02, 4, 7000 } }
	};
	CHECK("ACL stored -> shown maps named entries, unmapped ones to overflow",
	      ovl_idmap_acl(&fs, &acl, sizeof(acl), true) == 0 && acl.e[0].id == 0xffffffff &&
		      acl.e[1].id == 5000 && acl.e[2].id == 200000 && acl.e[3].id == ovf);
	acl.e[3].id = 100001;
	CHECK("ACL shown -> stored", ovl_idmap_acl(&fs, &acl, sizeof(acl), false) == 0 &&
					     acl.e[1].id == 1000 && acl.e[2].id == 0 &&
					     acl.e[3].id == 1);
	acl.e[1].id = 42;
	CHECK("ACL entry for an id outside the mapping is refused",
	      ovl_idmap_acl(&fs, &acl, sizeof(acl), false) == -EINVAL);
	CHECK("malformed ACL refused", ovl_idmap_acl(&fs, &acl, 7, true) == -EINVAL);

	CHECK("squash_to_root shows 0",
	      opts(&fs, "squash_to_root") == 0 && ovl_uid_shown(&fs, 1000) == 0 &&
		      ovl_gid_shown(&fs, 1001) == 0 && ovl_idmap_squashed(&fs));
	CHECK("squash_to_uid wins over squash_to_root", opts(&fs, "squash_to_uid=42") == 0 &&
								ovl_uid_shown(&fs, 0) == 42 &&
								ovl_gid_shown(&fs, 5) == 0);
	CHECK("squash does not change what is stored",
	      ovl_uid_disk(&fs, 100000, &u) == 0 && u == 0);

	fresh(&fs);
	CHECK("bad: two fields", opts(&fs, "uidmapping=0:1000") < 0);
	CHECK("bad: zero length", opts(&fs, "uidmapping=0:1000:0") < 0);
	CHECK("bad: range past 2^32", opts(&fs, "uidmapping=4294967295:0:2") < 0);
	CHECK("bad: trailing junk", opts(&fs, "uidmapping=0:1:2x") < 0);
	CHECK("bad: negative", opts(&fs, "uidmapping=-1:1:2") < 0);
	CHECK("bad: empty", opts(&fs, "uidmapping=:") < 0);
	CHECK("bad: four fields", opts(&fs, "uidmapping=0:1:2:3") < 0);
	CHECK("range ending at 2^32-1 is fine", opts(&fs, "uidmapping=4294967295:0:1") == 0);
	CHECK("leading colon (containers-storage 1.43) is accepted",
	      opts(&fs, "uidmapping=:0:1:5000:5000:100000:10") == 0 && fs.p.nuidmap == 2 &&
		      fs.p.uidmap[0].inside == 0 && fs.p.uidmap[0].outside == 1 &&
		      fs.p.uidmap[1].len == 10);
	CHECK("bad: xattr_permissions=3", opts(&fs, "xattr_permissions=3") < 0);
	CHECK("userxattr is an option now", opts(&fs, "userxattr") == 0 && fs.p.userxattr);
	fresh(&fs);
	CHECK("sandbox=userxattr implies userxattr",
	      opts(&fs, "sandbox=userxattr") == 0 && fs.p.userxattr);

	/* the override format */
	struct ovl_override o;
	CHECK("parse uid:gid:mode", ovl_override_parse("1000:1001:0755", &o) == 0 &&
					    o.uid == 1000 && o.gid == 1001 && o.mode == 0755 &&
					    o.type == 0);
	CHECK("parse with type file", ovl_override_parse("0:0:04755:file", &o) == 0 &&
					      o.mode == 04755 && o.type == S_IFREG);
	CHECK("parse char device", ovl_override_parse("0:5:0620:char-136-3", &o) == 0 &&
					   o.type == S_IFCHR && major(o.rdev) == 136 &&
					   minor(o.rdev) == 3);
	CHECK("parse block device", ovl_override_parse("0:6:0660:block-8-1", &o) == 0 &&
					    o.type == S_IFBLK && o.rdev == makedev(8, 1));
	CHECK("parse dir/symlink/pipe/socket",
	      ovl_override_parse("1:1:0700:dir", &o) == 0 && o.type == S_IFDIR &&
		      ovl_override_parse("1:1:0777:symlink", &o) == 0 && o.type == S_IFLNK &&
		      ovl_override_parse("1:1:0600:pipe", &o) == 0 && o.type == S_IFIFO &&
		      ovl_override_parse("1:1:0600:socket", &o) == 0 && o.type == S_IFSOCK);
	CHECK("refuse unknown type", ovl_override_parse("1:1:0600:door", &o) < 0);
	CHECK("refuse mode > 07777", ovl_override_parse("1:1:017777", &o) < 0);
	CHECK("refuse garbage", ovl_override_parse("root:root:0755", &o) < 0 &&
					ovl_override_parse("1:1:0755:", &o) < 0 &&
					ovl_override_parse("", &o) < 0);
	char buf[128];
	ovl_override_format(buf, sizeof(buf), 1000, 1001, S_IFREG | 0644, 0);
	CHECK("format a file as containers-storage does", !strcmp(buf, "1000:1001:0644:file"));
	ovl_override_format(buf, sizeof(buf), 0, 0, S_IFDIR | 02755, 0);
	CHECK("format a setgid dir", !strcmp(buf, "0:0:02755:dir"));
	ovl_override_format(buf, sizeof(buf), 1006, 1017, S_IFCHR | 0600, makedev(1, 3));
	CHECK("format a char device", !strcmp(buf, "1006:1017:0600:char-1-3"));
	CHECK("format round-trips", ovl_override_parse(buf, &o) == 0 && o.uid == 1006 &&
					    o.gid == 1017 && o.type == S_IFCHR &&
					    o.rdev == makedev(1, 3) && o.mode == 0600);

	/* on a real file */
	fresh(&fs);
	char dir[] = "/tmp/strata-idmap-XXXXXX";
	if (!mkdtemp(dir)) {
		SKIP("override xattrs on disk", "mkdtemp failed");
		TAP_DONE();
	}
	int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	close(openat(dfd, "f", O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	char fpath[PATH_MAX];
	snprintf(fpath, sizeof(fpath), "%s/f", dir);
	if (setxattr(fpath, "user.strata-probe", "1", 1, 0) < 0) {
		SKIP("override xattrs on disk", "no user xattrs in /tmp");
	} else {
		removexattr(fpath, "user.strata-probe");
		struct stat st;
		fstatat(dfd, "f", &st, 0);
		struct stat before = st;
		ovl_override_apply(&fs, dfd, "f", &st);
		CHECK("xattr_permissions=0: overrides are not read",
		      st.st_uid == before.st_uid && st.st_mode == before.st_mode);
		CHECK("xattr_permissions=2 parses", opts(&fs, "xattr_permissions=2") == 0);
		CHECK("no override yet: the inode's metadata",
		      ovl_override_current(&fs, dfd, "f", &st) == 0 && st.st_uid == before.st_uid);
		CHECK("set owner 1000:1001 mode 04750 via the override",
		      ovl_set_owner(&fs, dfd, "f", 1000, 1001, S_IFREG | 04750, 0) == 0);
		char val[128] = "";
		ssize_t n = getxattr(fpath, "user.containers.override_stat", val, sizeof(val) - 1);
		CHECK("stored as user.containers.override_stat",
		      n > 0 && !strcmp(val, "1000:1001:04750:file"));
		CHECK("the inode's owner is unchanged", stat(fpath, &st) == 0 &&
								st.st_uid == before.st_uid &&
								(st.st_mode & 07777) == 0600);
		CHECK("read back as the real metadata",
		      ovl_override_current(&fs, dfd, "f", &st) == 0 && st.st_uid == 1000 &&
			      st.st_gid == 1001 && st.st_mode == (S_IFREG | 04750));
		CHECK("by fd too", ovl_override_current(&fs, openat(dfd, "f", O_PATH | O_CLOEXEC),
							"", &st) == 0 &&
					   st.st_uid == 1000);
		setxattr(fpath, "user.containers.override_stat", "0:5:0620:char-136-3", 19, 0);
		CHECK("an empty file with a char type reads as the device",
		      ovl_override_current(&fs, dfd, "f", &st) == 0 && S_ISCHR(st.st_mode) &&
			      st.st_rdev == makedev(136, 3) && (st.st_mode & 07777) == 0620);
		mkdirat(dfd, "d", 0700);
		snprintf(fpath, sizeof(fpath), "%s/d", dir);
		setxattr(fpath, "user.containers.override_stat", "7:8:0755:pipe", 13, 0);
		CHECK("a directory keeps its type whatever the override says",
		      ovl_override_current(&fs, dfd, "d", &st) == 0 && S_ISDIR(st.st_mode) &&
			      st.st_uid == 7 && (st.st_mode & 07777) == 0755);
		setxattr(fpath, "user.containers.override_stat", "junk", 4, 0);
		CHECK("a malformed override is ignored",
		      ovl_override_current(&fs, dfd, "d", &st) == 0 && st.st_uid == 0);
		CHECK("override names are hidden with xattr_permissions",
		      ovl_is_override_xattr(&fs, "user.containers.override_stat") &&
			      ovl_is_override_xattr(&fs, "user.fuseoverlayfs.override_stat") &&
			      !ovl_is_override_xattr(&fs, "user.other"));
		unlinkat(dfd, "d", AT_REMOVEDIR);
	}
	unlinkat(dfd, "f", 0);
	close(dfd);
	rmdir(dir);
	ovl_params_free(&fs.p);
	TAP_DONE();
}
