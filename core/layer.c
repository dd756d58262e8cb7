/* layer.c - opening layers as directory fds, the work and index dirs, and feature probing. */
#include "ovl.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

static int open_dir(const char *path, char *err, size_t errlen, const char *what)
{
	/* the kernel resolves the path (l/ID/../diff: ".." after the symlink) */
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s '%s': %s", what, path, strerror(errno));
		return -1;
	}
	return fd;
}

int ovl_tmpname(struct ovl_fs *fs, char *buf, size_t len)
{
	unsigned long n = atomic_fetch_add(&fs->tmpseq, 1);
	return snprintf(buf, len, "#strata.%d.%lu", (int)getpid(), n);
}

/* Empties leftovers of an earlier run from the work dir (incomplete copy-ups). */
static void clean_work(struct ovl_fs *fs)
{
	ovl_empty_dir_at(fs->workfd, ".");
}

int ovl_layers_open(struct ovl_fs *fs, char *err, size_t errlen)
{
	struct ovl_params *p = &fs->p;
	fs->has_upper = p->upperdir != NULL;
	fs->nlayers = p->nlower + (fs->has_upper ? 1 : 0);
	fs->layers = calloc(fs->nlayers, sizeof(*fs->layers));
	if (!fs->layers) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	fs->upper = fs->has_upper ? 0 : -1;
	fs->workfd = -1;
	fs->indexfd = -1;
	fs->kindexfd = -1;
	for (int i = 0; i < fs->nlayers; i++)
		fs->layers[i].fd = -1;
	int li = 0;
	if (fs->has_upper) {
		fs->layers[0].fd = open_dir(p->upperdir, err, errlen, "upperdir");
		if (fs->layers[0].fd < 0)
			return -1;
		fs->layers[0].upper = true;
		fs->layers[0].path = p->upperdir;
		li = 1;
	}
	for (int i = 0; i < p->nlower; i++, li++) {
		fs->layers[li].fd = open_dir(p->lowerdirs[i], err, errlen, "lowerdir");
		if (fs->layers[li].fd < 0)
			return -1;
		fs->layers[li].path = p->lowerdirs[i];
	}
	for (int i = 0; i < fs->nlayers; i++) {
		struct stat st;
		if (fstat(fs->layers[i].fd, &st) < 0) {
			snprintf(err, errlen, "%s: %s", fs->layers[i].path, strerror(errno));
			return -1;
		}
		fs->layers[i].dev = st.st_dev;
	}
	if (fs->has_upper) {
		int wd = open_dir(p->workdir, err, errlen, "workdir");
		if (wd < 0)
			return -1;
		struct stat ws;
		fstat(wd, &ws);
		if (ws.st_dev != fs->layers[0].dev) {
			snprintf(err, errlen,
				 "workdir '%s' and upperdir '%s' must be on the same filesystem",
				 p->workdir, p->upperdir);
			close(wd);
			return -1;
		}
		if (mkdirat(wd, "work", 0700) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "workdir '%s': cannot create work/: %s", p->workdir,
				 strerror(errno));
			close(wd);
			return -1;
		}
		fs->workfd = openat(wd, "work", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fs->workfd < 0) {
			snprintf(err, errlen, "workdir '%s/work': %s", p->workdir, strerror(errno));
			close(wd);
			return -1;
		}
		ovl_kindex_load(fs, wd);
		if (mkdirat(wd, "strata-index", 0700) == 0 || errno == EEXIST)
			fs->indexfd = openat(wd, "strata-index",
					     O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(wd);
		/* the work dir must be writable */
		if (faccessat(fs->workfd, ".", W_OK, AT_EACCESS) < 0) {
			snprintf(err, errlen, "workdir '%s': %s", p->workdir, strerror(errno));
			return -1;
		}
		clean_work(fs);
		ovl_probe_upper(fs);
	}
	ovl_idmap_init(fs);
	if (p->sandbox != OVL_SANDBOX_OFF || p->debug) {
		/* one line for the log: the strata driver reports it as the mount's features */
		char feat[512];
		ovl_features_string(fs, feat, sizeof(feat));
		fprintf(stderr, "stratafs: features: %s\n", feat);
	}
	return 0;
}

void ovl_layers_close(struct ovl_fs *fs)
{
	for (int i = 0; i < fs->nlayers; i++)
		if (fs->layers[i].fd >= 0)
			close(fs->layers[i].fd);
	if (fs->workfd >= 0)
		close(fs->workfd);
	if (fs->indexfd >= 0)
		close(fs->indexfd);
	if (fs->kindexfd >= 0)
		close(fs->kindexfd);
	free(fs->kidx);
	free(fs->layers);
	fs->layers = NULL;
}
