/* params.c - the option table (fuse-overlayfs compatible), lowerdir splitting and validation. */
#include "ovl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

int ovl_split_lowerdir(const char *val, char ***out)
{
	size_t len = strlen(val);
	char **v = NULL;
	int n = 0;
	char *cur = malloc(len + 1);
	size_t cl = 0;
	if (!cur)
		return -1;
	for (size_t i = 0;; i++) {
		char c = val[i];
		if (c == '\\' && (val[i + 1] == ':' || val[i + 1] == '\\')) {
			cur[cl++] = val[++i];
			continue;
		}
		if (c == ':' || c == '\0') {
			if (cl > 0) {
				char **nv = realloc(v, sizeof(*v) * (n + 1));
				if (!nv)
					goto fail;
				v = nv;
				v[n] = strndup(cur, cl);
				if (!v[n])
					goto fail;
				n++;
			}
			cl = 0;
			if (c == '\0')
				break;
			continue;
		}
		cur[cl++] = c;
	}
	free(cur);
	*out = v;
	return n;
fail:
	free(cur);
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return -1;
}

/* "A:B:N[:A:B:N...]". Empty fields are skipped, as fuse-overlayfs's strtok does:
 * containers-storage 1.43 (podman 4.3) writes a leading colon ("uidmapping=:0:1:5000"). */
static int parse_idmap(const char *val, struct ovl_idmap **out, int *nout)
{
	struct ovl_idmap *m = NULL;
	int n = 0, k = 0;
	unsigned long f[3];
	for (const char *s = val; *s;) {
		if (*s == ':') {
			s++;
			continue;
		}
		char *end;
		errno = 0;
		if (*s < '0' || *s > '9')
			goto bad;
		f[k] = strtoul(s, &end, 10);
		if (errno || f[k] > UINT32_MAX || (*end && *end != ':'))
			goto bad;
		s = end;
		if (++k < 3)
			continue;
		k = 0;
		/* a range must fit in 32 bits on both sides */
		if (f[2] == 0 || f[2] - 1 > UINT32_MAX - f[0] || f[2] - 1 > UINT32_MAX - f[1])
			goto bad;
		struct ovl_idmap *nm = realloc(m, sizeof(*m) * (n + 1));
		if (!nm)
			goto bad;
		m = nm;
		m[n++] = (struct ovl_idmap){ (uint32_t)f[0], (uint32_t)f[1], (uint32_t)f[2] };
	}
	if (k != 0 || n == 0)
		goto bad;
	free(*out);
	*out = m;
	*nout = n;
	return 0;
bad:
	free(m);
	return -1;
}

static bool parse_bool(const char *v)
{
	return !v || !(strcmp(v, "0") == 0 || strcmp(v, "false") == 0 || strcmp(v, "no") == 0 ||
		       strcmp(v, "off") == 0);
}

static void add_vfs(struct ovl_params *p, const char *word)
{
	size_t old = p->vfs_opts ? strlen(p->vfs_opts) : 0;
	char *n = realloc(p->vfs_opts, old + strlen(word) + 2);
	if (!n)
		return;
	if (old)
		n[old++] = ',';
	strcpy(n + old, word);
	p->vfs_opts = n;
}

static int set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v ? v : "");
	return *dst ? 0 : -1;
}

/* Handles one "key[=value]" option. */
static int parse_one(struct ovl_params *p, char *opt, char *err, size_t errlen)
{
	char *val = strchr(opt, '=');
	if (val)
		*val++ = '\0';

	static const char *const vfs_words[] = { "rw",	     "ro",	"dev",	    "nodev",
						 "suid",     "nosuid",	"exec",	    "noexec",
						 "atime",    "noatime", "relatime", "strictatime",
						 "sync",     "async",	"dirsync",  "nodiratime",
						 "diratime", NULL };
	static const char *const ignored[] = { "fast_ino",    "xino",	    "redirect_dir",
					       "index",	      "metacopy",   "nfs_export",
					       "allow_other", "allow_root", "default_permissions",
					       "suid_dir",    "debug",	    "lazytime",
					       "nolazytime",  "uuid",	    "fsname",
					       "subtype",     NULL };

	if (!strcmp(opt, "lowerdir")) {
		if (!val || !*val) {
			seterr(err, errlen, "lowerdir= needs at least one directory");
			return -1;
		}
		char **dirs;
		int n = ovl_split_lowerdir(val, &dirs);
		if (n <= 0) {
			seterr(err, errlen, "lowerdir=%s: no directory given", val);
			return -1;
		}
		for (int i = 0; i < p->nlower; i++)
			free(p->lowerdirs[i]);
		free(p->lowerdirs);
		p->lowerdirs = dirs;
		p->nlower = n;
		return 0;
	}
	if (!strcmp(opt, "upperdir"))
		return set_str(&p->upperdir, val);
	if (!strcmp(opt, "workdir"))
		return set_str(&p->workdir, val);
	if (!strcmp(opt, "volatile")) {
		p->volatile_ = true;
		return 0;
	}
	if (!strcmp(opt, "fsync")) {
		p->volatile_ = !parse_bool(val);
		return 0;
	}
	if (!strcmp(opt, "context") || !strcmp(opt, "fscontext") || !strcmp(opt, "defcontext") ||
	    !strcmp(opt, "rootcontext"))
		return set_str(&p->context, val);
	if (!strcmp(opt, "timeout")) {
		char *end;
		double t = val ? strtod(val, &end) : -1;
		if (!val || *end || t < 0) {
			seterr(err, errlen, "timeout=%s: not a number of seconds", val ? val : "");
			return -1;
		}
		p->timeout = t;
		p->timeout_set = true;
		return 0;
	}
	if (!strcmp(opt, "spin")) {
		char *end;
		long us = val ? strtol(val, &end, 10) : -1;
		if (!val || !*val || *end || us < 0 || us > 100000) {
			seterr(err, errlen, "spin=%s: expected microseconds, 0 to 100000",
			       val ? val : "");
			return -1;
		}
		p->spin_us = (int)us;
		return 0;
	}
	if (!strcmp(opt, "threaded")) {
		p->threaded = parse_bool(val);
		return 0;
	}
	if (!strcmp(opt, "noacl")) {
		p->noacl = true;
		return 0;
	}
	if (!strcmp(opt, "writeback")) {
		p->writeback = parse_bool(val);
		return 0;
	}
	if (!strcmp(opt, "passthrough")) {
		p->passthrough = val && !strcmp(val, "all") ? 2 : parse_bool(val);
		p->passthrough_asked = p->passthrough != 0;
		return 0;
	}
	if (!strcmp(opt, "noxattrs")) {
		p->noxattrs = parse_bool(val);
		return 0;
	}
	if (!strcmp(opt, "ino32_t")) {
		p->ino32 = parse_bool(val);
		return 0;
	}
	if (!strcmp(opt, "static_nlink")) {
		p->static_nlink = parse_bool(val);
		return 0;
	}
	if (!strcmp(opt, "plugins")) {
		seterr(err, errlen, "plugins=%s: layer plugins are not supported by stratafs",
		       val ? val : "");
		return -1;
	}
	if (!strcmp(opt, "uidmapping") || !strcmp(opt, "gidmapping")) {
		bool uid = opt[0] == 'u';
		if (!val || parse_idmap(val, uid ? &p->uidmap : &p->gidmap,
					uid ? &p->nuidmap : &p->ngidmap) < 0) {
			seterr(err, errlen, "%s=%s: expected CONTAINER:HOST:SIZE[:...]", opt,
			       val ? val : "");
			return -1;
		}
		return 0;
	}
	if (!strcmp(opt, "userxattr")) {
		p->userxattr = true;
		return 0;
	}
	if (!strcmp(opt, "squash_to_root")) {
		p->squash_to_root = true;
		return 0;
	}
	if (!strcmp(opt, "squash_to_uid") || !strcmp(opt, "squash_to_gid")) {
		char *end;
		long long v = val ? strtoll(val, &end, 10) : -1;
		/* an empty value would read as 0: root */
		if (!val || !*val || *end || v < 0 || v > 4294967294LL) {
			seterr(err, errlen, "%s=%s: expected a numeric id", opt, val ? val : "");
			return -1;
		}
		if (opt[10] == 'u')
			p->squash_uid = v;
		else
			p->squash_gid = v;
		return 0;
	}
	if (!strcmp(opt, "xattr_permissions")) {
		if (!val || (strcmp(val, "0") && strcmp(val, "1") && strcmp(val, "2"))) {
			seterr(err, errlen, "xattr_permissions=%s: expected 0, 1 or 2",
			       val ? val : "");
			return -1;
		}
		p->xattr_permissions = atoi(val);
		return 0;
	}
	if (!strcmp(opt, "sandbox")) {
		/* the strata driver asks for the confined server (core/sandbox.c) */
		if (!val || !strcmp(val, "1"))
			p->sandbox = OVL_SANDBOX_AUTO;
		else if (!strcmp(val, "userxattr"))
			p->sandbox = OVL_SANDBOX_USERXATTR, p->userxattr = true;
		else if (!strcmp(val, "0"))
			p->sandbox = OVL_SANDBOX_OFF;
		else {
			seterr(err, errlen, "sandbox=%s: expected 0, 1 or userxattr", val);
			return -1;
		}
		return 0;
	}
	if (!strcmp(opt, "defaults"))
		return 0;
	for (int i = 0; vfs_words[i]; i++) {
		if (!strcmp(opt, vfs_words[i]) && !val) {
			if (!strcmp(opt, "ro"))
				p->readonly = true;
			else if (!strcmp(opt, "rw"))
				p->readonly = false;
			add_vfs(p, opt);
			return 0;
		}
	}
	for (int i = 0; ignored[i]; i++)
		if (!strcmp(opt, ignored[i]))
			return 0;
	fprintf(stderr, "stratafs: warning: unknown option '%s%s%s' ignored\n", opt, val ? "=" : "",
		val ? val : "");
	return 0;
}

int ovl_parse_opts(struct ovl_params *p, const char *opts, char *err, size_t errlen)
{
	autofree char *buf = strdup(opts);
	if (!buf) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	char *s = buf;
	while (*s) {
		/* split at the next comma outside double quotes (context="a,b") */
		char *e = s;
		bool q = false;
		for (; *e && (q || *e != ','); e++)
			if (*e == '"')
				q = !q;
		bool last = !*e;
		*e = '\0';
		if (*s) {
			/* strip quotes around the value */
			char *eq = strchr(s, '=');
			if (eq && eq[1] == '"' && strlen(eq + 1) >= 2 && e[-1] == '"') {
				memmove(eq + 1, eq + 2, strlen(eq + 2) + 1);
				eq[strlen(eq) - 1] = '\0';
			}
			if (parse_one(p, s, err, errlen) < 0)
				return -1;
		}
		if (last)
			break;
		s = e + 1;
	}
	return 0;
}

int ovl_params_validate(struct ovl_params *p, char *err, size_t errlen)
{
	if (p->nlower < 1) {
		seterr(err, errlen, "no lowerdir= given (at least one lower layer is needed)");
		return -1;
	}
	if (p->nlower > OVL_MAX_LAYERS) {
		seterr(err, errlen, "too many lower layers (%d, at most %d)", p->nlower,
		       OVL_MAX_LAYERS);
		return -1;
	}
	if (!!p->upperdir != !!p->workdir) {
		seterr(err, errlen, "upperdir= and workdir= must be given together");
		return -1;
	}
	if (p->upperdir && (!*p->upperdir || !*p->workdir)) {
		seterr(err, errlen, "upperdir= and workdir= must not be empty");
		return -1;
	}
	if (!p->mountpoint) {
		seterr(err, errlen, "no mountpoint given");
		return -1;
	}
	return 0;
}

void ovl_params_free(struct ovl_params *p)
{
	for (int i = 0; i < p->nlower; i++)
		free(p->lowerdirs[i]);
	free(p->lowerdirs);
	free(p->upperdir);
	free(p->workdir);
	free(p->mountpoint);
	free(p->context);
	free(p->uidmap);
	free(p->gidmap);
	free(p->vfs_opts);
	memset(p, 0, sizeof(*p));
}
