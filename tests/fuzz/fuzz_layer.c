/* fuzz_layer.c - libFuzzer harness for on-disk input: each input describes a set of layers
 * (an upper and three lowers) holding directories, files, symlinks, whiteouts in both forms,
 * opaque markers in every form, redirect and origin xattrs with arbitrary values, override
 * xattrs, FIFOs and hard links with arbitrary names. The tree is built in a scratch dir,
 * opened with the stratafs core in-process (no FUSE mount: the same ovl_* calls the request
 * handlers make) and walked: lookup, getattr, readlink, listxattr, readdir of every
 * directory, then copy-ups, unlinks and renames. Nothing may crash, leak or read outside
 * the layers (a marker file next to them must never be found), and no private name or
 * xattr may show. Needs root for trusted.* xattrs and 0/0 whiteouts (less is tried
 * otherwise). Built and run by `make fuzz` (clang, ASan, UBSan). */
#include "ovl.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char base[64];
static int basefd = -1;

static void cleanup(void)
{
	ovl_empty_dir_at(basefd, ".");
	rmdir(base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(base, sizeof(base), "%s/strata-fuzz-layer.%d", dir, (int)getpid());
	if (mkdir(base, 0700) < 0 && errno != EEXIST)
		abort();
	basefd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (basefd < 0)
		abort();
	atexit(cleanup);
	return 0;
}

struct in {
	const unsigned char *p;
	size_t n;
};

static unsigned byte(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static const char *const names[] = { "a",   "b",   "c",	  "d",	  ".wh.a", ".wh.b", ".wh..wh..opq",
				     "dir", "x y", "...", ".wh.", "ü",	   "\xff",  "\n" };

/* A name: one of the table, or 1..24 raw bytes (no '/', NUL, ".", "..", "marker"). */
static void get_name(struct in *in, char *out)
{
	unsigned b = byte(in);
	if (b < 200) {
		strcpy(out, names[b % (sizeof(names) / sizeof(names[0]))]);
		return;
	}
	size_t len = 1 + byte(in) % 24, k = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)byte(in);
		if (c && c != '/')
			out[k++] = (char)c;
	}
	out[k] = '\0';
	if (!k || !strcmp(out, ".") || !strcmp(out, "..") || !strcmp(out, "marker"))
		strcpy(out, "z");
}

static void get_value(struct in *in, char *out, size_t *len)
{
	static const char *const vals[] = { "y",
					    "n",
					    "x",
					    "/",
					    "/a",
					    "a/b",
					    "../outside",
					    "/../../outside",
					    "",
					    "0:0:0755",
					    "1000:1000:0100644",
					    "99i2:1",
					    "1i" };
	unsigned b = byte(in);
	if (b < 160) {
		strcpy(out, vals[b % (sizeof(vals) / sizeof(vals[0]))]);
		*len = strlen(out);
		return;
	}
	*len = byte(in) % 64;
	for (size_t i = 0; i < *len; i++)
		out[i] = (char)byte(in);
	out[*len] = '\0';
}

#define MAXDIRS 24
struct layer_dirs {
	char path[MAXDIRS][256];
	int n;
};

static void build(struct in *in, struct layer_dirs *ld)
{
	static const char *const lnames[] = { "u", "l1", "l2", "l3" };
	static const char *const xnames[] = {
		"trusted.overlay.opaque",
		"user.overlay.opaque",
		"user.fuseoverlayfs.opaque",
		"trusted.overlay.redirect",
		"user.overlay.redirect",
		"trusted.overlay.strata.origin",
		"user.overlay.strata.origin",
		"user.containers.override_stat",
		"user.fuseoverlayfs.override_stat",
		"trusted.overlay.origin",
		"trusted.overlay.metacopy",
		"user.plain",
	};
	for (int rec = 0; rec < 64 && in->n; rec++) {
		int l = (int)(byte(in) % 4);
		unsigned kind = byte(in) % 12;
		struct layer_dirs *d = &ld[l];
		const char *parent = d->path[byte(in) % d->n];
		char name[64], path[512], val[80];
		size_t vlen;
		get_name(in, name);
		snprintf(path, sizeof(path), "%s/%s/%s", lnames[l], parent, name);
		switch (kind) {
		case 0:
			if (mkdirat(basefd, path, 0755) == 0 && d->n < MAXDIRS &&
			    strlen(parent) + strlen(name) + 2 < sizeof(d->path[0]))
				snprintf(d->path[d->n++], sizeof(d->path[0]), "%s/%s", parent,
					 name);
			break;
		case 1: {
			int fd = openat(basefd, path,
					O_CREAT | O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW,
					0644);
			if (fd >= 0) {
				get_value(in, val, &vlen);
				if (write(fd, val, vlen) < 0) {
					/* content is best effort */
				}
				close(fd);
			}
			break;
		}
		case 2:
			get_value(in, val, &vlen);
			symlinkat(vlen ? val : "../../outside/marker", basefd, path);
			break;
		case 3:
			mknodat(basefd, path, S_IFCHR | 0600, makedev(0, 0));
			break;
		case 4: {
			char wh[600];
			snprintf(wh, sizeof(wh), "%s/%s/.wh.%s", lnames[l], parent, name);
			close(openat(basefd, wh,
				     O_CREAT | O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW,
				     0644));
			break;
		}
		case 5:
		case 6:
		case 7: {
			/* an xattr on the parent dir or on the named entry */
			char xp[700];
			get_value(in, val, &vlen);
			snprintf(xp, sizeof(xp), "%s/%s", base, kind == 5 ? path : lnames[l]);
			if (kind == 6)
				snprintf(xp, sizeof(xp), "%s/%s/%s", base, lnames[l], parent);
			lsetxattr(xp, xnames[byte(in) % (sizeof(xnames) / sizeof(xnames[0]))], val,
				  vlen, 0);
			break;
		}
		case 8: {
			char opq[600];
			snprintf(opq, sizeof(opq), "%s/%s/.wh..wh..opq", lnames[l], parent);
			close(openat(basefd, opq,
				     O_CREAT | O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW,
				     0644));
			break;
		}
		case 9:
			mknodat(basefd, path, S_IFIFO | 0644, 0);
			break;
		case 10: {
			char other[600];
			snprintf(other, sizeof(other), "%s/%s/%s", lnames[l],
				 d->path[byte(in) % d->n], names[byte(in) % 4]);
			linkat(basefd, other, basefd, path, 0);
			break;
		}
		default:
			mknodat(basefd, path, S_IFCHR | 0600, makedev(1, 3));
			break;
		}
	}
}

struct walk {
	struct ovl_fs *fs;
	struct in *ops;
	int budget;
};

static void walk(struct walk *w, struct ovl_node *dir, int depth)
{
	struct ovl_dirh h;
	memset(&h, 0, sizeof(h));
	if (ovl_dir_load(w->fs, dir, &h, false) == 0) {
		fuse_ino_t did = ovl_node_id(dir);
		for (size_t i = 0; i < h.n && w->budget > 0; i++, w->budget--) {
			const char *name = h.ents[i].name;
			if (!strncmp(name, ".wh.", 4) || !strcmp(name, "marker"))
				__builtin_trap(); /* a private name, or the outside, in view */
			struct fuse_entry_param e;
			memset(&e, 0, sizeof(e));
			if (ovl_lookup(w->fs, did, name, &e) < 0 || !e.ino)
				continue;
			struct ovl_node *n = ovl_node_get(w->fs, e.ino);
			if (!n)
				__builtin_trap();
			struct stat st;
			ovl_getattr_node(w->fs, n, &st);
			char buf[4096];
			if (S_ISLNK(e.attr.st_mode))
				ovl_readlink(w->fs, e.ino, buf, sizeof(buf));
			ssize_t xl = ovl_listxattr(w->fs, e.ino, buf, sizeof(buf));
			for (ssize_t o = 0; xl > 0 && o < xl; o += strlen(buf + o) + 1)
				if (ovl_is_private_xattr(buf + o))
					__builtin_trap(); /* private xattrs never show */
			if (S_ISDIR(e.attr.st_mode) && depth < 6) {
				ovl_dir_empty(w->fs, n);
				walk(w, n, depth + 1);
			}
			switch (byte(w->ops) % 6) {
			case 0:
				ovl_setxattr(w->fs, e.ino, "user.fuzz", "1", 1, 0); /* copy-up */
				break;
			case 1:
				ovl_unlink(w->fs, did, name, S_ISDIR(e.attr.st_mode));
				break;
			case 2:
				ovl_rename(w->fs, did, name, FUSE_ROOT_ID, "renamed", 0);
				break;
			case 3:
				if (S_ISDIR(e.attr.st_mode))
					ovl_copy_up_tree(w->fs, n);
				break;
			default:
				break;
			}
			ovl_node_forget(w->fs, n, 1);
		}
	}
	ovl_dirh_free(&h);
}

static int count_outside(void)
{
	int n = 0;
	int fd = openat(basefd, "outside", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	while (d && (de = readdir(d)))
		n++;
	if (d)
		closedir(d);
	return n;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct in in = { data, size };
	ovl_empty_dir_at(basefd, ".");
	static const char *const dirs[] = { "u", "w", "l1", "l2", "l3", "outside" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		mkdirat(basefd, dirs[i], 0755);
	close(openat(basefd, "outside/marker",
		     O_CREAT | O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW, 0644));
	struct layer_dirs ld[4];
	for (int l = 0; l < 4; l++) {
		strcpy(ld[l].path[0], ".");
		ld[l].n = 1;
	}
	build(&in, ld);

	static struct ovl_fs fs;
	memset(&fs, 0, sizeof(fs));
	fs.p.threaded = true;
	fs.p.squash_uid = fs.p.squash_gid = -1;
	char opts[512], err[1024];
	snprintf(opts, sizeof(opts), "lowerdir=%s/l1:%s/l2:%s/l3,upperdir=%s/u,workdir=%s/w", base,
		 base, base, base, base);
	if (ovl_parse_opts(&fs.p, opts, err, sizeof(err)) < 0)
		__builtin_trap();
	fs.p.mountpoint = strdup("/nonexistent");
	if (ovl_layers_open(&fs, err, sizeof(err)) == 0) {
		fs.timeout = 1;
		if (ovl_nodes_init(&fs) == 0 && ovl_fdcache_init(&fs, 64) == 0) {
			struct walk w = { &fs, &in, 400 };
			walk(&w, ovl_node_get(&fs, FUSE_ROOT_ID), 0);
			/* and the result again, after the changes */
			w.budget = 400;
			walk(&w, ovl_node_get(&fs, FUSE_ROOT_ID), 0);
		}
		ovl_fdcache_destroy(&fs);
		ovl_nodes_destroy(&fs);
	}
	ovl_layers_close(&fs);
	ovl_params_free(&fs.p);
	if (count_outside() != 3)
		__builtin_trap(); /* ".", ".." and marker: nothing was made or removed outside */
	return 0;
}
