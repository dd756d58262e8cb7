/* ovl.h - the one internal header of stratafs, organised by the file that owns each part. */
#ifndef STRATA_OVL_H
#define STRATA_OVL_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define STRATA_VERSION "0.1.0"
#define OVL_MAX_LAYERS 500

#include "cleanup.h"

struct ovl_fs;

/* ---- params.c ---- */
/* One range of uidmapping=/gidmapping= "INSIDE:OUTSIDE:LEN" (containers-storage writes
 * "ContainerID:HostID:Size"): ids INSIDE.. as stored in the layers are shown as OUTSIDE..
 * (see idmap.c for the direction). */
struct ovl_idmap {
	uint32_t inside, outside, len;
};

struct ovl_params {
	char **lowerdirs; /* topmost first */
	int nlower;
	char *upperdir;
	char *workdir;
	char *mountpoint;
	char *context;
	bool volatile_; /* volatile or fsync=0: skip fsync */
	double timeout;
	bool timeout_set;
	bool threaded;
	int spin_us; /* request loop: poll /dev/fuse this long before sleeping (-1: default) */
	bool noacl;
	bool writeback;
	int passthrough; /* FUSE passthrough: 0 off, 1 files on their final layer, 2 also lower reads */
	bool passthrough_asked; /* passthrough=1|all given: sandbox=1 keeps CAP_SYS_ADMIN for it */
	bool noxattrs;
	bool ino32;
	bool static_nlink;
	bool foreground;
	bool debug;
	bool readonly;
	/* owners: idmap.c */
	struct ovl_idmap *uidmap, *gidmap;
	int nuidmap, ngidmap;
	bool squash_to_root;
	long squash_uid, squash_gid; /* -1: not set */
	int xattr_permissions; /* 0, 1 (security.*) or 2 (user.containers.override_stat) */
	bool userxattr; /* overlay markers in user.overlay.* only (as the kernel's -o userxattr) */
	int sandbox; /* sandbox=1|userxattr (OVL_SANDBOX_*), set by the strata driver */
	/* mount flags passed to the kernel */
	char *vfs_opts; /* "nodev,nosuid,..." */
};

/* loop.c: serve requests until the session ends; 0 or -errno */
#define OVL_LOOP_MAX_THREADS 64
#define OVL_LOOP_SPIN_US 50
int ovl_loop_run(struct fuse_session *se, unsigned max_threads, unsigned spin_us);

/* Parse a comma-separated option string into p (may be called repeatedly).
 * Returns 0, or -1 with a one-line message in err. Unknown options warn on stderr. */
int ovl_parse_opts(struct ovl_params *p, const char *opts, char *err, size_t errlen);
/* Split a lowerdir value ("A:B\:C") honouring \: and \\ escapes. Returns count or -1. */
int ovl_split_lowerdir(const char *val, char ***out);
/* Checks the combination of options. Returns 0 or -1 with err. */
int ovl_params_validate(struct ovl_params *p, char *err, size_t errlen);
void ovl_params_free(struct ovl_params *p);

/* ---- idmap.c ---- */
/* Reads the kernel's overflow ids (65534 unless changed). */
void ovl_idmap_init(struct ovl_fs *fs);
/* Maps id through the n ranges of m: to_shown maps stored -> shown, else shown -> stored.
 * No ranges: the identity. Returns 0, or -EINVAL when no range holds id. */
int ovl_idmap_lookup(const struct ovl_idmap *m, int n, uint32_t id, bool to_shown, uint32_t *out);
/* The owner shown for a stored one: squash_*, else the mapping, else the overflow id. */
uid_t ovl_uid_shown(const struct ovl_fs *fs, uid_t disk);
gid_t ovl_gid_shown(const struct ovl_fs *fs, gid_t disk);
/* The owner to store for a shown one (a caller's, a chown's): 0, or -EINVAL when the id is
 * in no range (*disk is then the overflow id). */
int ovl_uid_disk(const struct ovl_fs *fs, uid_t shown, uid_t *disk);
int ovl_gid_disk(const struct ovl_fs *fs, gid_t shown, gid_t *disk);
bool ovl_idmap_squashed(const struct ovl_fs *fs);
bool ovl_is_acl_xattr(const char *name);
/* Maps the named user/group entries of a POSIX ACL xattr value in place (stored -> shown
 * with to_shown, else shown -> stored). No mapping: untouched. 0, or -EINVAL for a malformed
 * value or (to stored) an id outside the mapping. */
int ovl_idmap_acl(const struct ovl_fs *fs, void *value, size_t size, bool to_shown);
/* Replaces st's stored owner by the shown one; once, right before a stat goes to the kernel. */
void ovl_idmap_stat(const struct ovl_fs *fs, struct stat *st);
/* Owner, mode and type kept in an xattr ("uid:gid:0mode[:type]", containers-storage's
 * format; type: file dir symlink pipe socket char-MAJ-MIN block-MAJ-MIN). */
struct ovl_override {
	uid_t uid;
	gid_t gid;
	mode_t mode; /* permission bits */
	mode_t type; /* S_IFMT bits, 0 when not given */
	dev_t rdev;
};
int ovl_override_parse(const char *val, struct ovl_override *o); /* 0 or -EINVAL */
/* Returns the length written (snprintf's). mode carries the S_IFMT bits. */
int ovl_override_format(char *buf, size_t len, uid_t uid, gid_t gid, mode_t mode, dev_t rdev);
/* With xattr_permissions, the override xattrs of the mount's own and the other known names */
bool ovl_is_override_xattr(const struct ovl_fs *fs, const char *name);
/* With xattr_permissions, replaces st's stored owner/mode (and the type of an empty regular
 * file standing for a device, fifo or socket) by the override of (dirfd, name); "" names
 * dirfd itself. Without an override, st stays as it is. */
void ovl_override_apply(const struct ovl_fs *fs, int dirfd, const char *name, struct stat *st);
/* Writes the override of (dirfd, name). 0 or -errno. */
int ovl_override_set(const struct ovl_fs *fs, int dirfd, const char *name, uid_t uid, gid_t gid,
		     mode_t mode, dev_t rdev);
/* fstatat + ovl_override_apply: the stored metadata as the mount sees it. 0 or -errno. */
int ovl_override_current(const struct ovl_fs *fs, int dirfd, const char *name, struct stat *st);
/* Stores the owner (stored ids) of (dirfd, name): in the override xattr with
 * xattr_permissions (mode with S_IFMT, rdev: what to record), else with fchownat, whose
 * failure a squashed mount ignores. 0 or -errno. */
int ovl_set_owner(struct ovl_fs *fs, int dirfd, const char *name, uid_t uid, gid_t gid, mode_t mode,
		  dev_t rdev);

/* ---- layer.c ---- */
struct ovl_layer {
	int fd; /* O_PATH|O_DIRECTORY root of the layer */
	dev_t dev;
	bool upper;
	char *path;
};

struct ovl_features {
	bool wh_mknod; /* char 0/0 whiteouts can be created in upper */
	bool rename_whiteout; /* renameat2(RENAME_WHITEOUT) works */
	const char *opaque_xattr; /* xattr used to mark opaque dirs, or NULL for .wh..wh..opq */
	const char *private_prefix; /* prefix for our own xattrs in upper */
};

int ovl_layers_open(struct ovl_fs *fs, char *err, size_t errlen);
void ovl_layers_close(struct ovl_fs *fs);

/* ---- inode.c ---- */
struct ovl_node {
	uint32_t gen;
	uint32_t idx;
	uint32_t parent; /* arena index of the parent, 0 for root/none */
	char *name;
	uint64_t nlookup;
	uint32_t children; /* hashed children holding a reference */
	uint32_t hnext; /* name-hash chain */
	bool inuse, hashed, unlinked;
	mode_t type; /* S_IFMT bits */
	uint64_t ino; /* reported st_ino, stable for the node's life */
	/* where the node lives, guarded by lock */
	pthread_mutex_t lock;
	uint32_t epoch; /* fs->epoch when top/stack were resolved */
	int top; /* layer index of the visible object */
	uint16_t *stack; /* directories: layers holding this dir, top first */
	int nstack;
	bool indexed; /* regular file sharing an inode with the hard-link index */
	bool lower_links; /* a lower regular file with several names: watch the index */
	int nlink_adj; /* index links that are not names (ours, or the kernel's overlay.nlink) */
	nlink_t lower_nlink; /* ours: names the lower inode had when its index entry was made */
	nlink_t linked; /* ours: how many of those names are linked into the upper */
	atomic_int nopen; /* open file handles */
	int ufd; /* O_PATH fd kept when an open node loses its name, else -1 */
	char *lpath; /* redirected dir: its path in the lower layers (guarded by tlock) */
	/* FUSE passthrough (file.c), guarded by lock: every open file of a kernel inode must
	 * use the same backing file, so one backing id is shared by the node's open files */
	int pt_backing; /* backing id, 0 for none */
	int pt_count; /* open files passed through to it */
	bool pt_lower; /* the backing file is in a lower layer (passthrough=2) */
	bool pt_used; /* was passed through once: the page cache may be stale, no keep_cache */
	/* directories (readdir.c): the listing being read, kept from a read at offset 0 until
	 * one reaches its end, guarded by lock */
	struct ovl_listing *listing;
	/* xattr.c: names of a few xattrs known to be absent, (fs->xgen << 8) | bits, atomic */
	uint64_t xneg;
};

/* ---- the filesystem ---- */
struct ovl_fdcache;

struct ovl_fs {
	struct ovl_params p;
	struct ovl_layer *layers; /* layers[0] is the upper if has_upper */
	int nlayers;
	bool has_upper;
	int upper; /* index of the upper layer or -1 */
	int workfd; /* W/work */
	int indexfd; /* W/strata-index, or -1 */
	int kindexfd; /* W/index written by the kernel (index=on), or -1 */
	struct ovl_kidx *kidx; /* its entries, by lower file handle */
	size_t nkidx;
	struct ovl_features feat;
	uint32_t overflow_uid, overflow_gid;
	double timeout;
	atomic_uint epoch;
	atomic_ulong tmpseq;

	pthread_mutex_t tlock; /* node table: arena, names, lookup counts */
	struct ovl_node **chunks;
	uint32_t nchunks;
	uint32_t freelist; /* singly linked through hnext */
	uint32_t *buckets;
	uint32_t nbuckets, nhashed;

	struct ovl_fdcache *cache;
	struct fuse_session *se;
	atomic_bool pt_on; /* passthrough negotiated and not refused by the kernel (file.c) */
	bool no_opendir; /* the kernel skips OPENDIR/RELEASEDIR once we answer ENOSYS */
	atomic_ulong xgen; /* bumped after every xattr change made through the mount (xattr.c) */
	atomic_bool pt_probe; /* the first request after INIT asks the kernel (file.c) */
};

/* Lock order: node->lock -> fs->tlock -> cache lock. A thread holds at most one node lock,
 * except ovl_node_refresh, which may take a parent's lock while holding its child's
 * (child -> parent, never the reverse). */

#define OVL_ROOT_IDX 1

/* Node table. All return 0 or -errno unless stated. */
int ovl_nodes_init(struct ovl_fs *fs);
void ovl_nodes_destroy(struct ovl_fs *fs);
/* Validates a fuse_ino_t; returns the node or NULL. */
struct ovl_node *ovl_node_get(struct ovl_fs *fs, fuse_ino_t id);
static inline fuse_ino_t ovl_node_id(const struct ovl_node *n)
{
	return ((uint64_t)n->gen << 32) | n->idx;
}
/* Finds or creates the child (parent, name); takes one lookup reference.
 * On creation, *fresh is set and res fields are installed. */
struct ovl_lookup_res;
struct ovl_node *ovl_node_lookup_ref(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
				     const struct ovl_lookup_res *res);
void ovl_node_ref(struct ovl_fs *fs, struct ovl_node *n);
/* Keeps an open node reachable (for fstat) before its name goes away. */
void ovl_node_pin(struct ovl_fs *fs, struct ovl_node *n);
void ovl_node_forget(struct ovl_fs *fs, struct ovl_node *n, uint64_t nlookup);
/* Removes the node from the name table (after unlink/rmdir). */
void ovl_node_unhash(struct ovl_fs *fs, struct ovl_node *n);
/* Moves a hashed node to a new parent/name; an existing node there is unhashed. */
int ovl_node_move(struct ovl_fs *fs, struct ovl_node *n, struct ovl_node *newparent,
		  const char *newname);
/* Swaps the places of two hashed nodes (RENAME_EXCHANGE). */
void ovl_node_exchange(struct ovl_fs *fs, struct ovl_node *a, struct ovl_node *b);
/* The path of n in the lower layers ("" for the root), following redirects. Caller frees. */
char *ovl_node_lower_path(struct ovl_fs *fs, struct ovl_node *n);
/* Opens a relative path below dirfd component by component (O_PATH, no symlinks, no ".."). */
int ovl_open_path(int dirfd, const char *path);
/* Returns a new O_PATH fd of n in layer l (caller closes) or -errno. */
int ovl_node_layer_fd(struct ovl_fs *fs, struct ovl_node *n, int l);
/* The parent of a hashed node (kept alive by n's reference), or NULL once unlinked. */
struct ovl_node *ovl_node_parent(struct ovl_fs *fs, struct ovl_node *n);
/* Returns a new O_PATH fd of n's parent dir in layer l, and n's name copy. */
int ovl_node_parent_fd(struct ovl_fs *fs, struct ovl_node *n, int l, char **name);
/* Ensures top/stack are current (re-resolving after directory renames). Caller holds n->lock. */
int ovl_node_refresh(struct ovl_fs *fs, struct ovl_node *n);
/* Snapshot of a node's placement, taken under its lock. */
struct ovl_place {
	int top;
	int nstack;
	uint16_t stack[64];
	uint16_t *bigstack; /* when nstack > 64 */
};
int ovl_node_place(struct ovl_fs *fs, struct ovl_node *n, struct ovl_place *pl);
void ovl_place_free(struct ovl_place *pl);
static inline const uint16_t *ovl_place_stack(const struct ovl_place *pl)
{
	return pl->bigstack ? pl->bigstack : pl->stack;
}
int ovl_getattr_node(struct ovl_fs *fs, struct ovl_node *n, struct stat *st);
int ovl_setattr(struct ovl_fs *fs, struct ovl_node *n, struct stat *attr, int to_set,
		struct fuse_file_info *fi, struct stat *out);
/* Fixes up a stat from layer l for presentation (ino, nlink, dev). */
void ovl_fixup_stat(struct ovl_fs *fs, struct ovl_node *n, struct stat *st);

/* fd cache */
int ovl_fdcache_init(struct ovl_fs *fs, int max);
void ovl_fdcache_destroy(struct ovl_fs *fs);
int ovl_fdcache_get(struct ovl_fs *fs, fuse_ino_t id, int l); /* dup'd fd or -1 */
void ovl_fdcache_put(struct ovl_fs *fs, fuse_ino_t id, int l, int fd);
void ovl_fdcache_drop(struct ovl_fs *fs, fuse_ino_t id);

/* ---- namei.c ---- */
struct ovl_lookup_res {
	int top;
	struct stat st;
	uint16_t *stack; /* malloc'd, dirs only */
	int nstack;
	uint64_t ino;
	bool indexed;
	bool lower_links;
	int nlink_adj;
	nlink_t lower_nlink;
	nlink_t linked;
	char *lpath; /* lower path of a redirected directory */
};
/* Looks name up in dir (whose placement is pl). 0, -ENOENT, or -errno. */
int ovl_lookup_name(struct ovl_fs *fs, struct ovl_node *dir, const struct ovl_place *pl,
		    const char *name, struct ovl_lookup_res *res);
void ovl_lookup_res_free(struct ovl_lookup_res *res);
int ovl_lookup(struct ovl_fs *fs, fuse_ino_t parent, const char *name, struct fuse_entry_param *e);
/* Fills a fuse entry for node n (taking a lookup reference already held). */
void ovl_fill_entry(struct ovl_fs *fs, struct ovl_node *n, const struct stat *st,
		    struct fuse_entry_param *e);
/* True if any lower layer under dir's upper has name (not whited out). */
int ovl_lower_has(struct ovl_fs *fs, struct ovl_node *dir, const char *name);
int ovl_check_name(const char *name);
/* Re-reads the link-count correction of an indexed node (the index entry may be gone). */
void ovl_reread_nlink_adj(struct ovl_fs *fs, struct ovl_node *n, int dirfd, const char *name);
/* If another name of n's lower inode was copied up, links n to that copy too. */
int ovl_index_sync(struct ovl_fs *fs, struct ovl_node *n);

/* ---- readdir.c ---- */
struct ovl_dirent {
	char *name;
	uint64_t ino;
	unsigned char type;
};
struct ovl_dirh {
	struct ovl_dirent *ents;
	size_t n, cap;
};
/* Builds the merged listing of dir (with "." and ".." if dots), sorted by offset cookie. */
int ovl_dir_load(struct ovl_fs *fs, struct ovl_node *dir, struct ovl_dirh *h, bool dots);
void ovl_dirh_free(struct ovl_dirh *h);
/* 0 if the merged dir is empty, -ENOTEMPTY, or -errno. */
int ovl_dir_empty(struct ovl_fs *fs, struct ovl_node *dir);
/* Fills buf with entries from off; returns the bytes used or -errno. Needs no directory
 * handle: the listing hangs on the node (the kernel may skip OPENDIR altogether). */
ssize_t ovl_readdir_fill(struct ovl_fs *fs, fuse_req_t req, fuse_ino_t ino, char *buf, size_t size,
			 off_t off, bool plus);
/* Drops the node's listing (node being freed). */
void ovl_listing_drop(struct ovl_node *n);
/* The entries of dir changed: drops its listing, so that no later pass starts from it. */
void ovl_dir_changed(struct ovl_node *dir);

/* ---- whiteout.c ---- */
bool ovl_is_whiteout_stat(const struct stat *st);
bool ovl_is_wh_name(const char *name); /* ".wh." prefix */
bool ovl_is_private_xattr(const char *name);
/* Is the dir `name` in dirfd opaque (any form)? 1, 0 or -errno. */
int ovl_is_opaque(int dirfd, const char *name);
/* Does dirfd hold a ".wh.NAME" whiteout for name? */
bool ovl_has_wh_file(int dirfd, const char *name);
/* Creates a whiteout for name in the upper dir udirfd (atomically replacing what is there). */
int ovl_create_whiteout(struct ovl_fs *fs, int udirfd, const char *name);
int ovl_set_opaque(struct ovl_fs *fs, int dirfd, const char *name);
/* Finds out which marker forms the upper takes (fs->feat). */
int ovl_probe_upper(struct ovl_fs *fs);
/* "whiteout=chardev|file rename_whiteout=yes|no opaque=XATTR|.wh..wh..opq xattr_prefix=P|none
 * override_stat=NAME|off idmap=yes|no" (or "upper=none"): what the probe chose, for the log
 * line the strata driver reports. Returns snprintf's count. */
int ovl_features_string(const struct ovl_fs *fs, char *buf, size_t len);
int ovl_remove_wh_file(int udirfd, const char *name);
/* Removes every whiteout marker under the upper dir (dirfd, name), recursively. */
int ovl_clear_whiteouts_at(int dirfd, const char *name);
/* /proc/self/fd/N/NAME for the l*xattr calls */
void ovl_fdpath(char *buf, size_t len, int dirfd, const char *name);

/* ---- copy_up.c ---- */
/* Ensures node n (and its parents) exist in the upper layer. 0 or -errno.
 * data=false creates the copy without content (for O_TRUNC). */
int ovl_copy_up(struct ovl_fs *fs, struct ovl_node *n, bool data);
/* Copies every entry under the directory n into the upper (for directory renames). */
int ovl_copy_up_tree(struct ovl_fs *fs, struct ovl_node *n);
int ovl_tmpname(struct ovl_fs *fs, char *buf, size_t len);
void ovl_index_name(char *buf, size_t len, const struct stat *st);
/* Loads the kernel's index dir (W/index) if there is one. */
void ovl_kindex_load(struct ovl_fs *fs, int workdir_fd);
/* The kernel index entry for the lower object (dirfd, name), or NULL. */
const char *ovl_kindex_find(struct ovl_fs *fs, int dirfd, const char *name);
int ovl_rm_rf_at(int dirfd, const char *name);
/* Removes everything inside the directory (dirfd, name); 0 or the last -errno. */
int ovl_empty_dir_at(int dirfd, const char *name);
/* Calls fn(fd of the directory, entry, ctx) for each entry of (dirfd, name) but "." and
 * "..", stopping at the first non-zero return, which it returns (or -errno of opening). */
int ovl_dir_each(int dirfd, const char *name, int (*fn)(int fd, const char *entry, void *ctx),
		 void *ctx);
int ovl_copy_xattrs_at(struct ovl_fs *fs, int sdir, const char *sname, int ddir, const char *dname);

/* ---- dir.c ---- */
int ovl_mknod(struct ovl_fs *fs, fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	      dev_t rdev, const char *link, struct fuse_entry_param *e);
int ovl_create(struct ovl_fs *fs, fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi, struct fuse_entry_param *e);
int ovl_unlink(struct ovl_fs *fs, fuse_ino_t parent, const char *name, bool dir);
int ovl_rename(struct ovl_fs *fs, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags);
int ovl_link(struct ovl_fs *fs, fuse_ino_t ino, fuse_ino_t newparent, const char *newname,
	     struct fuse_entry_param *e);

/* ---- file.c ---- */
/* At INIT: asks for FUSE passthrough when it is wanted and the kernel offers it, else logs
 * why it is off ("stratafs: passthrough: off: REASON", read by strata status). */
void ovl_passthrough_init(struct ovl_fs *fs, struct fuse_conn_info *conn);
/* Called on every request; the first one after INIT asks the kernel whether it accepts
 * backing files from this server and logs "stratafs: passthrough: on" or why not. */
void ovl_passthrough_settle(struct ovl_fs *fs);
int ovl_open(struct ovl_fs *fs, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* After ovl_create: passes the new upper file through when possible. Never fails. */
void ovl_file_created(struct ovl_fs *fs, fuse_req_t req, struct ovl_node *n,
		      struct fuse_file_info *fi);
/* Undoes the open bookkeeping of fi (release, or an open whose reply failed) and closes it. */
void ovl_file_close(struct ovl_fs *fs, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
int ovl_readlink(struct ovl_fs *fs, fuse_ino_t ino, char *buf, size_t len);
int ovl_statfs(struct ovl_fs *fs, struct statvfs *st);
/* Opens node n in its top layer for I/O with flags (never FIFOs/devices). */
int ovl_open_node(struct ovl_fs *fs, struct ovl_node *n, int flags);
/* Switches a read-only fd on a lower file to the upper copy once one exists. */
void ovl_file_refresh(struct ovl_fs *fs, fuse_ino_t ino, int fd);
void ovl_file_released(int fd);
/* FS_IOC_[GS]ETFLAGS and FS_IOC_FS[GS]ETXATTR on the node's real file (out holds at
 * least 64 bytes); other ioctls are -ENOTTY. */
int ovl_ioctl_flags(struct ovl_fs *fs, fuse_ino_t ino, unsigned int cmd, const void *in,
		    size_t insz, void *out, size_t *outsz);

/* ---- xattr.c ---- */
ssize_t ovl_getxattr(struct ovl_fs *fs, fuse_ino_t ino, const char *name, char *buf, size_t size);
ssize_t ovl_listxattr(struct ovl_fs *fs, fuse_ino_t ino, char *buf, size_t size);
int ovl_setxattr(struct ovl_fs *fs, fuse_ino_t ino, const char *name, const char *value,
		 size_t size, int flags);
int ovl_removexattr(struct ovl_fs *fs, fuse_ino_t ino, const char *name);

/* ---- sandbox.c ---- */
enum { OVL_SANDBOX_OFF = 0, OVL_SANDBOX_AUTO = 1, OVL_SANDBOX_USERXATTR = 2 };
struct ovl_sandbox_cap {
	int cap; /* CAP_*, -1 ends the table */
	const char *why;
};
/* The capabilities the sandboxed server keeps (CAP_SYS_ADMIN is decided per mount). */
extern const struct ovl_sandbox_cap ovl_sandbox_caps[];
/* Confines the server as fs->p.sandbox says (a no-op for OVL_SANDBOX_OFF). Call once the
 * layers are open and the mount exists, before the request loop, while single-threaded.
 * Returns 0, or -1 with a one-line message in err (the server must then not serve). */
int ovl_sandbox_apply(struct ovl_fs *fs, char *err, size_t errlen);
/* The parts, for tests and the driver. Each returns 0 or -1 with err. */
int ovl_sandbox_private_root(char *err, size_t errlen);
int ovl_sandbox_drop_caps(bool keep_sys_admin, char *err, size_t errlen);
int ovl_sandbox_seccomp_build(void **filter, char *err, size_t errlen);
int ovl_sandbox_seccomp_load(void *filter, char *err, size_t errlen); /* frees filter */
/* 1 if a directory under the layer (fd, any kind) carries trusted.overlay.* xattrs (or more
 * than max_dirs directories were seen), 0 if none, -errno. Needs CAP_SYS_ADMIN to see them. */
int ovl_sandbox_layer_uses_trusted(int layerfd, long max_dirs);

/* ---- ops.c ---- */
extern const struct fuse_lowlevel_ops ovl_ops;

/* logging (rate-limited) */
void ovl_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
