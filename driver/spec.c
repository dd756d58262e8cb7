/* spec.c - parsing and validating a mount spec, in the native form or as a containerd Mount.
 * Pure: it reads the document and nothing else (tests/fuzz/ drives it with arbitrary bytes);
 * what needs the filesystem (existence, nesting, devices) is mount.c's. Every error names
 * the field at fault and exits 2. */
#include "strata.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

#define USAGE STRATA_EXIT_USAGE
#define MAX_MAPPINGS 340 /* the kernel's limit for uid_map/gid_map lines */

static const char *type_name(json_object *o)
{
	return json_type_to_name(json_object_get_type(o));
}

int strata_id_check(const char *id, struct strata_error *err)
{
	size_t len = strlen(id);
	if (len == 0)
		return strata_fail(err, USAGE, EINVAL, "id", "id must not be empty");
	if (len > STRATA_ID_MAX)
		return strata_fail(err, USAGE, ENAMETOOLONG, "id",
				   "id is %zu bytes long; at most %d are allowed", len,
				   STRATA_ID_MAX);
	if (strchr(id, '/'))
		return strata_fail(err, USAGE, EINVAL, "id", "id must not contain '/'");
	if (id[0] == '.')
		return strata_fail(err, USAGE, EINVAL, "id", "id must not start with '.'");
	for (const char *c = id; *c; c++) {
		bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			  (*c >= '0' && *c <= '9') || strchr("._-:@+=", *c);
		if (!ok)
			return strata_fail(err, USAGE, EINVAL, "id",
					   "id may only hold letters, digits and . _ - : @ + = "
					   "(found byte 0x%02x)",
					   (unsigned char)*c);
	}
	return 0;
}

/* A string member that must be an absolute path. */
static int get_path(json_object *o, const char *field, char **out, struct strata_error *err)
{
	if (!json_object_is_type(o, json_type_string))
		return strata_fail(err, USAGE, EINVAL, field,
				   "%s must be a string (an absolute path), not %s", field,
				   type_name(o));
	const char *s = json_object_get_string(o);
	size_t len = (size_t)json_object_get_string_len(o);
	if (strlen(s) != len)
		return strata_fail(err, USAGE, EINVAL, field, "%s holds a NUL character", field);
	if (len == 0)
		return strata_fail(err, USAGE, EINVAL, field, "%s must not be empty", field);
	if (s[0] != '/')
		return strata_fail(err, USAGE, EINVAL, field,
				   "%s must be an absolute path (got a relative one)", field);
	if (len >= PATH_MAX)
		return strata_fail(err, USAGE, ENAMETOOLONG, field,
				   "%s is %zu bytes long; paths must be shorter than %d", field,
				   len, PATH_MAX);
	free(*out);
	*out = strdup(s);
	if (!*out)
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, field, "out of memory");
	return 0;
}

static int get_bool(json_object *o, const char *field, bool *out, struct strata_error *err)
{
	if (!json_object_is_type(o, json_type_boolean))
		return strata_fail(err, USAGE, EINVAL, field, "%s must be true or false, not %s",
				   field, type_name(o));
	*out = json_object_get_boolean(o);
	return 0;
}

static int add_lower(struct strata_spec *s, const char *path, const char *field,
		     struct strata_error *err)
{
	if (s->nlower >= STRATA_MAX_LAYERS)
		return strata_fail(err, USAGE, E2BIG, field,
				   "too many lower layers: at most %d are supported",
				   STRATA_MAX_LAYERS);
	char **nl = realloc(s->lower, sizeof(*nl) * (s->nlower + 1));
	if (!nl)
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, field, "out of memory");
	s->lower = nl;
	char **nf = realloc(s->lower_field, sizeof(*nf) * (s->nlower + 1));
	if (!nf)
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, field, "out of memory");
	s->lower_field = nf;
	s->lower[s->nlower] = strdup(path);
	s->lower_field[s->nlower] = strdup(field);
	if (!s->lower[s->nlower] || !s->lower_field[s->nlower]) {
		free(s->lower[s->nlower]);
		free(s->lower_field[s->nlower]);
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, field, "out of memory");
	}
	s->nlower++;
	return 0;
}

/* VFS words accepted in mountOptions (native) and in a containerd Mount's options. */
static int vfs_word(struct strata_spec *s, const char *w)
{
	static const struct {
		const char *word;
		unsigned long set, clear;
	} words[] = {
		{ "ro", MS_RDONLY, 0 },
		{ "rw", 0, MS_RDONLY },
		{ "nodev", MS_NODEV, 0 },
		{ "dev", 0, MS_NODEV },
		{ "nosuid", MS_NOSUID, 0 },
		{ "suid", 0, MS_NOSUID },
		{ "noexec", MS_NOEXEC, 0 },
		{ "exec", 0, MS_NOEXEC },
		{ "noatime", MS_NOATIME, MS_RELATIME | MS_STRICTATIME },
		{ "atime", 0, MS_NOATIME },
		{ "relatime", MS_RELATIME, MS_NOATIME | MS_STRICTATIME },
		{ "strictatime", MS_STRICTATIME, MS_NOATIME | MS_RELATIME },
		{ "nodiratime", MS_NODIRATIME, 0 },
		{ "diratime", 0, MS_NODIRATIME },
		{ "sync", MS_SYNCHRONOUS, 0 },
		{ "async", 0, MS_SYNCHRONOUS },
		{ "dirsync", MS_DIRSYNC, 0 },
		{ "defaults", 0, 0 },
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strcmp(w, words[i].word))
			continue;
		s->mflags = (s->mflags & ~words[i].clear) | words[i].set;
		return 1;
	}
	return 0;
}

static int parse_mappings(json_object *arr, const char *field, struct strata_idmap **out, int *nout,
			  struct strata_error *err)
{
	if (!json_object_is_type(arr, json_type_array))
		return strata_fail(err, USAGE, EINVAL, field, "%s must be an array, not %s", field,
				   type_name(arr));
	size_t n = json_object_array_length(arr);
	if (n > MAX_MAPPINGS)
		return strata_fail(err, USAGE, E2BIG, field, "%s has %zu entries; at most %d",
				   field, n, MAX_MAPPINGS);
	struct strata_idmap *m = calloc(n ? n : 1, sizeof(*m));
	if (!m)
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, field, "out of memory");
	for (size_t i = 0; i < n; i++) {
		char f[300];
		json_object *e = json_object_array_get_idx(arr, i);
		snprintf(f, sizeof(f), "%s[%zu]", field, i);
		if (!json_object_is_type(e, json_type_object)) {
			free(m);
			return strata_fail(err, USAGE, EINVAL, f,
					   "%s must be an object {containerID, hostID, size}", f);
		}
		static const char *const keys[] = { "containerID", "hostID", "size" };
		uint32_t *vals[] = { &m[i].container, &m[i].host, &m[i].size };
		json_object_object_foreach(e, k, v)
		{
			(void)v;
			if (strcmp(k, keys[0]) && strcmp(k, keys[1]) && strcmp(k, keys[2])) {
				free(m);
				return strata_fail(err, USAGE, EINVAL, f,
						   "%s: unknown field '%.100s'", f, k);
			}
		}
		for (int k = 0; k < 3; k++) {
			char kf[360];
			snprintf(kf, sizeof(kf), "%s.%s", f, keys[k]);
			json_object *v;
			if (!json_object_object_get_ex(e, keys[k], &v)) {
				free(m);
				return strata_fail(err, USAGE, EINVAL, kf, "%s is missing", kf);
			}
			errno = 0;
			int64_t x = json_object_get_int64(v);
			if (!json_object_is_type(v, json_type_int) || errno || x < 0 ||
			    x > UINT32_MAX || (k == 2 && x == 0)) {
				free(m);
				return strata_fail(err, USAGE, EINVAL, kf,
						   "%s must be an integer from %d to 4294967295",
						   kf, k == 2 ? 1 : 0);
			}
			*vals[k] = (uint32_t)x;
		}
		if ((uint64_t)m[i].container + m[i].size > UINT32_MAX + 1ull ||
		    (uint64_t)m[i].host + m[i].size > UINT32_MAX + 1ull) {
			free(m);
			return strata_fail(err, USAGE, ERANGE, f, "%s: the range overflows 32 bits",
					   f);
		}
	}
	free(*out);
	*out = m;
	*nout = (int)n;
	return 0;
}

static int parse_native_options(struct strata_spec *s, json_object *o, struct strata_error *err)
{
	if (!json_object_is_type(o, json_type_object))
		return strata_fail(err, USAGE, EINVAL, "options",
				   "options must be an object, not %s", type_name(o));
	json_object_object_foreach(o, k, v)
	{
		char f[200];
		snprintf(f, sizeof(f), "options.%.100s", k);
		static const struct {
			const char *name;
			size_t off;
		} bools[] = {
			{ "volatile", offsetof(struct strata_spec, volatile_) },
			{ "writeback", offsetof(struct strata_spec, writeback) },
			{ "noacl", offsetof(struct strata_spec, noacl) },
			{ "noxattrs", offsetof(struct strata_spec, noxattrs) },
			{ "ino32", offsetof(struct strata_spec, ino32) },
			{ "staticNlink", offsetof(struct strata_spec, static_nlink) },
			{ "threaded", offsetof(struct strata_spec, threaded) },
			{ "userxattr", offsetof(struct strata_spec, userxattr) },
			{ "squashToRoot", offsetof(struct strata_spec, squash_to_root) },
		};
		bool done = false;
		for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]) && !done; i++) {
			if (strcmp(k, bools[i].name))
				continue;
			if (get_bool(v, f, (bool *)((char *)s + bools[i].off), err) < 0)
				return -1;
			done = true;
		}
		if (done)
			continue;
		if (!strcmp(k, "passthrough")) {
			/* true: upper files (and all files of a read-only mount); "all": lower
			 * files read too (stratafs's passthrough=all) */
			if (json_object_is_type(v, json_type_string) &&
			    !strcmp(json_object_get_string(v), "all")) {
				s->passthrough = 2;
			} else if (json_object_is_type(v, json_type_boolean)) {
				s->passthrough = json_object_get_boolean(v);
			} else {
				return strata_fail(err, USAGE, EINVAL, f,
						   "%s must be true, false or \"all\", not %s", f,
						   type_name(v));
			}
		} else if (!strcmp(k, "timeout")) {
			if (!json_object_is_type(v, json_type_int) &&
			    !json_object_is_type(v, json_type_double))
				return strata_fail(err, USAGE, EINVAL, f,
						   "%s must be a number of seconds, not %s", f,
						   type_name(v));
			double t = json_object_get_double(v);
			if (!(t >= 0 && t <= 31536000))
				return strata_fail(err, USAGE, ERANGE, f,
						   "%s must be from 0 to 31536000 seconds", f);
			s->timeout = t;
			s->timeout_set = true;
		} else if (!strcmp(k, "spin")) {
			errno = 0;
			int64_t x = json_object_get_int64(v);
			if (!json_object_is_type(v, json_type_int) || errno || x < 0 || x > 100000)
				return strata_fail(
					err, USAGE, EINVAL, f,
					"%s must be microseconds, an integer from 0 to 100000", f);
			s->spin_us = (int)x;
		} else if (!strcmp(k, "xattrPermissions") || !strcmp(k, "squashToUid") ||
			   !strcmp(k, "squashToGid")) {
			bool xp = k[0] == 'x';
			errno = 0;
			int64_t x = json_object_get_int64(v);
			if (!json_object_is_type(v, json_type_int) || errno || x < 0 ||
			    x > (xp ? 2 : UINT32_MAX - 1))
				return strata_fail(
					err, USAGE, EINVAL, f,
					xp ? "%s must be 0, 1 or 2" :
					     "%s must be an integer from 0 to 4294967294",
					f);
			if (xp)
				s->xattr_permissions = (int)x;
			else if (k[7] == 'U')
				s->squash_uid = x;
			else
				s->squash_gid = x;
		} else if (!strcmp(k, "context")) {
			if (!json_object_is_type(v, json_type_string))
				return strata_fail(err, USAGE, EINVAL, f, "%s must be a string", f);
			const char *c = json_object_get_string(v);
			if (strlen(c) != (size_t)json_object_get_string_len(v) || strchr(c, '"') ||
			    strlen(c) > 1024)
				return strata_fail(
					err, USAGE, EINVAL, f,
					"%s must be an SELinux context without NUL or '\"'", f);
			free(s->context);
			s->context = strdup(c);
		} else if (!strcmp(k, "mountOptions")) {
			if (!json_object_is_type(v, json_type_array))
				return strata_fail(err, USAGE, EINVAL, f,
						   "%s must be an array of strings, not %s", f,
						   type_name(v));
			size_t n = json_object_array_length(v);
			for (size_t i = 0; i < n; i++) {
				char ef[240];
				snprintf(ef, sizeof(ef), "%s[%zu]", f, i);
				json_object *w = json_object_array_get_idx(v, i);
				if (!json_object_is_type(w, json_type_string) ||
				    !vfs_word(s, json_object_get_string(w)))
					return strata_fail(
						err, USAGE, EINVAL, ef,
						"%s: expected one of ro rw nodev dev nosuid suid noexec "
						"exec noatime atime relatime strictatime nodiratime "
						"diratime sync async dirsync defaults",
						ef);
			}
		} else {
			return strata_fail(err, USAGE, EINVAL, f, "unknown option '%.100s'", k);
		}
	}
	if (s->passthrough && s->writeback)
		return strata_fail(err, USAGE, EINVAL, "options.passthrough",
				   "options.passthrough and options.writeback exclude each other "
				   "(the kernel allows only one of the two)");
	return 0;
}

static int parse_native(struct strata_spec *s, json_object *doc, struct strata_error *err)
{
	json_object *v;
	json_object_object_foreach(doc, k, val)
	{
		(void)val;
		static const char *const known[] = { "id",	"target",      "lower",
						     "upper",	"work",	       "readonly",
						     "options", "uidMappings", "gidMappings",
						     NULL };
		bool ok = false;
		for (int i = 0; known[i]; i++)
			ok |= !strcmp(k, known[i]);
		if (!ok)
			return strata_fail(err, USAGE, EINVAL, k, "unknown field '%.100s'", k);
	}
	if (!json_object_object_get_ex(doc, "lower", &v))
		return strata_fail(err, USAGE, EINVAL, "lower",
				   "lower is missing (an array of absolute paths, topmost first)");
	if (!json_object_is_type(v, json_type_array))
		return strata_fail(err, USAGE, EINVAL, "lower",
				   "lower must be an array of absolute paths, not %s",
				   type_name(v));
	size_t n = json_object_array_length(v);
	if (n == 0)
		return strata_fail(err, USAGE, EINVAL, "lower", "lower needs at least one layer");
	if (n > STRATA_MAX_LAYERS)
		return strata_fail(err, USAGE, E2BIG, "lower",
				   "lower has %zu layers; at most %d are supported", n,
				   STRATA_MAX_LAYERS);
	for (size_t i = 0; i < n; i++) {
		char f[32];
		autofree char *p = NULL;
		snprintf(f, sizeof(f), "lower[%zu]", i);
		if (get_path(json_object_array_get_idx(v, i), f, &p, err) < 0 ||
		    add_lower(s, p, f, err) < 0)
			return -1;
	}
	if (json_object_object_get_ex(doc, "upper", &v) &&
	    !json_object_is_type(v, json_type_null) && get_path(v, "upper", &s->upper, err) < 0)
		return -1;
	if (json_object_object_get_ex(doc, "work", &v) && !json_object_is_type(v, json_type_null) &&
	    get_path(v, "work", &s->work, err) < 0)
		return -1;
	if (json_object_object_get_ex(doc, "readonly", &v) &&
	    get_bool(v, "readonly", &s->readonly, err) < 0)
		return -1;
	if (json_object_object_get_ex(doc, "options", &v) && parse_native_options(s, v, err) < 0)
		return -1;
	if (json_object_object_get_ex(doc, "uidMappings", &v) &&
	    parse_mappings(v, "uidMappings", &s->uidmap, &s->nuidmap, err) < 0)
		return -1;
	if (json_object_object_get_ex(doc, "gidMappings", &v) &&
	    parse_mappings(v, "gidMappings", &s->gidmap, &s->ngidmap, err) < 0)
		return -1;
	return 0;
}

/* Splits a lowerdir= value at ':' with stratafs's \: and \\ escapes. */
static int containerd_lowerdir(struct strata_spec *s, const char *val, const char *field,
			       struct strata_error *err)
{
	size_t len = strlen(val);
	autofree char *cur = malloc(len + 1);
	if (!cur)
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, field, "out of memory");
	size_t cl = 0;
	int idx = 0;
	for (size_t i = 0;; i++) {
		char c = val[i];
		if (c == '\\' && (val[i + 1] == ':' || val[i + 1] == '\\')) {
			cur[cl++] = val[++i];
			continue;
		}
		if (c != ':' && c != '\0') {
			cur[cl++] = c;
			continue;
		}
		cur[cl] = '\0';
		char f[300];
		snprintf(f, sizeof(f), "%s.lowerdir[%d]", field, idx++);
		if (cl == 0)
			return strata_fail(err, USAGE, EINVAL, f, "%s is empty", f);
		if (cur[0] != '/')
			return strata_fail(err, USAGE, EINVAL, f,
					   "%s must be an absolute path (got a relative one)", f);
		if (cl >= PATH_MAX)
			return strata_fail(err, USAGE, ENAMETOOLONG, f, "%s is too long", f);
		if (add_lower(s, cur, f, err) < 0)
			return -1;
		cl = 0;
		if (c == '\0')
			break;
	}
	return 0;
}

static int parse_containerd(struct strata_spec *s, json_object *doc, struct strata_error *err)
{
	json_object *v;
	json_object_object_foreach(doc, k, val)
	{
		(void)val;
		if (strcmp(k, "type") && strcmp(k, "source") && strcmp(k, "target") &&
		    strcmp(k, "options") && strcmp(k, "id"))
			return strata_fail(err, USAGE, EINVAL, k,
					   "unknown field '%.100s' in a containerd Mount", k);
	}
	if (!json_object_object_get_ex(doc, "type", &v))
		return strata_fail(err, USAGE, EINVAL, "type", "type is missing");
	const char *type = json_object_get_string(v);
	if (!json_object_is_type(v, json_type_string) ||
	    (strcmp(type, "fuse3.stratafs") && strcmp(type, "fuse.stratafs") &&
	     strcmp(type, "overlay")))
		return strata_fail(
			err, USAGE, EINVAL, "type",
			"type must be \"fuse3.stratafs\" (or \"fuse.stratafs\", \"overlay\")");
	if (json_object_object_get_ex(doc, "source", &v) &&
	    !json_object_is_type(v, json_type_string))
		return strata_fail(err, USAGE, EINVAL, "source", "source must be a string, not %s",
				   type_name(v));
	if (!json_object_object_get_ex(doc, "options", &v))
		return strata_fail(err, USAGE, EINVAL, "options",
				   "options is missing (lowerdir=..., upperdir=..., workdir=...)");
	if (!json_object_is_type(v, json_type_array))
		return strata_fail(err, USAGE, EINVAL, "options",
				   "options must be an array of strings, not %s", type_name(v));
	size_t n = json_object_array_length(v);
	for (size_t i = 0; i < n; i++) {
		char f[64];
		snprintf(f, sizeof(f), "options[%zu]", i);
		json_object *o = json_object_array_get_idx(v, i);
		if (!json_object_is_type(o, json_type_string))
			return strata_fail(err, USAGE, EINVAL, f, "%s must be a string, not %s", f,
					   type_name(o));
		const char *opt = json_object_get_string(o);
		if (strlen(opt) != (size_t)json_object_get_string_len(o))
			return strata_fail(err, USAGE, EINVAL, f, "%s holds a NUL character", f);
		const char *eq = strchr(opt, '=');
		size_t klen = eq ? (size_t)(eq - opt) : strlen(opt);
		const char *val = eq ? eq + 1 : NULL;
#define KEY(name) (klen == strlen(name) && !strncmp(opt, name, klen))
		if (KEY("lowerdir") && val) {
			if (s->nlower)
				return strata_fail(err, USAGE, EINVAL, f, "lowerdir= given twice");
			if (containerd_lowerdir(s, val, f, err) < 0)
				return -1;
		} else if ((KEY("upperdir") || KEY("workdir")) && val) {
			bool up = opt[0] == 'u';
			json_object *js = json_object_new_string(val);
			int r = get_path(js, f, up ? &s->upper : &s->work, err);
			json_object_put(js);
			if (r < 0)
				return -1;
			snprintf(up ? s->upper_field : s->work_field, sizeof(s->upper_field), "%s",
				 f);
		} else if (!val && KEY("volatile")) {
			s->volatile_ = true;
		} else if (!val && KEY("userxattr")) {
			s->userxattr = true;
		} else if (KEY("passthrough")) {
			/* stratafs's passthrough=0|1|all; the bare word means 1 */
			if (!val || !strcmp(val, "1"))
				s->passthrough = 1;
			else if (!strcmp(val, "all"))
				s->passthrough = 2;
			else if (!strcmp(val, "0"))
				s->passthrough = 0;
			else
				return strata_fail(
					err, USAGE, EINVAL, f,
					"%s: passthrough takes 0, 1 or all, not '%.100s'", f, val);
		} else if (val && KEY("spin")) {
			char *end;
			errno = 0;
			unsigned long x = strtoul(val, &end, 10);
			if (!*val || *end || errno || *val == '-' || x > 100000)
				return strata_fail(
					err, USAGE, EINVAL, f,
					"%s: spin takes microseconds from 0 to 100000, not '%.100s'",
					f, val);
			s->spin_us = (int)x;
		} else if (!val && KEY("squash_to_root")) {
			s->squash_to_root = true;
		} else if (val && (KEY("xattr_permissions") || KEY("squash_to_uid") ||
				   KEY("squash_to_gid"))) {
			bool xp = opt[0] == 'x';
			char *end;
			errno = 0;
			unsigned long long x = strtoull(val, &end, 10);
			if (!*val || *end || errno || *val == '-' || x > (xp ? 2 : UINT32_MAX - 1))
				return strata_fail(err, USAGE, EINVAL, f, "%s: bad value '%.100s'",
						   f, val);
			if (xp)
				s->xattr_permissions = (int)x;
			else if (opt[10] == 'u')
				s->squash_uid = (int64_t)x;
			else
				s->squash_gid = (int64_t)x;
		} else if (KEY("context")) {
			free(s->context);
			s->context = strdup(val ? val : "");
			if (strchr(s->context, '"'))
				return strata_fail(err, USAGE, EINVAL, f, "%s: '\"' in a context",
						   f);
		} else if (KEY("index") || KEY("xino") || KEY("redirect_dir") || KEY("metacopy") ||
			   KEY("nfs_export") || KEY("uuid") || KEY("fast_ino") ||
			   KEY("default_permissions") || KEY("allow_other")) {
			/* kernel overlay tunables with no meaning here (as stratafs) */
		} else if (!val && vfs_word(s, opt)) {
		} else {
			return strata_fail(err, USAGE, EINVAL, f, "unknown option '%.100s'", opt);
		}
#undef KEY
	}
	if (s->nlower == 0)
		return strata_fail(err, USAGE, EINVAL, "options", "no lowerdir= option");
	if (s->mflags & MS_RDONLY)
		s->readonly = true;
	return 0;
}

/* A short stable id for a spec that gives none: FNV-1a of the target. */
static char *derive_id(const char *target)
{
	uint64_t h = 1469598103934665603ull;
	for (const unsigned char *p = (const unsigned char *)target; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	char *id;
	if (asprintf(&id, "mnt-%016llx", (unsigned long long)h) < 0)
		return NULL;
	return id;
}

int strata_spec_parse(const char *buf, size_t len, struct strata_spec *s, struct strata_error *err)
{
	memset(s, 0, sizeof(*s));
	s->threaded = true;
	s->squash_uid = s->squash_gid = -1;
	s->spin_us = -1;
	s->mflags = MS_NODEV; /* as libfuse; "dev" lifts it */
	strcpy(s->upper_field, "upper");
	strcpy(s->work_field, "work");
	if (len > STRATA_SPEC_MAX)
		return strata_fail(err, USAGE, E2BIG, "spec",
				   "the spec is %zu bytes; at most %u are accepted", len,
				   STRATA_SPEC_MAX);
	struct json_tokener *tok = json_tokener_new_ex(16);
	if (!tok)
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, "spec", "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	autojson json_object *doc = json_tokener_parse_ex(tok, buf, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!doc || jerr != json_tokener_success) {
		if (jerr == json_tokener_continue)
			return strata_fail(err, USAGE, EINVAL, "spec",
					   "the spec is not valid JSON: it ends early%s",
					   len ? "" : " (it is empty)");
		return strata_fail(err, USAGE,
				   jerr == json_tokener_error_parse_utf8_string ? EILSEQ : EINVAL,
				   "spec", "the spec is not valid JSON: %s at byte %zu",
				   json_tokener_error_desc(jerr), end);
	}
	for (size_t i = end; i < len; i++)
		if (!strchr(" \t\r\n", buf[i]))
			return strata_fail(err, USAGE, EINVAL, "spec",
					   "the spec is not valid JSON: trailing data at byte %zu",
					   i);
	if (json_object_is_type(doc, json_type_array)) {
		/* a snapshotter's output is a list of mounts: take it when it holds one */
		if (json_object_array_length(doc) != 1)
			return strata_fail(
				err, USAGE, EINVAL, "spec",
				"the spec is an array of %zu mounts; exactly one is needed",
				json_object_array_length(doc));
		json_object *one = json_object_get(json_object_array_get_idx(doc, 0));
		json_object_put(doc);
		doc = one;
	}
	if (!json_object_is_type(doc, json_type_object))
		return strata_fail(err, USAGE, EINVAL, "spec",
				   "the spec must be a JSON object, not %s", type_name(doc));
	json_object *v;
	bool containerd = json_object_object_get_ex(doc, "type", NULL) ||
			  json_object_object_get_ex(doc, "source", NULL);
	s->form = containerd ? "containerd" : "native";
	if (containerd) {
		strcpy(s->upper_field, "options");
		strcpy(s->work_field, "options");
	}
	if (!json_object_object_get_ex(doc, "target", &v))
		return strata_fail(err, USAGE, EINVAL, "target",
				   "target is missing (the absolute path to mount on)");
	if (get_path(v, "target", &s->target, err) < 0)
		return -1;
	if (json_object_object_get_ex(doc, "id", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return strata_fail(err, USAGE, EINVAL, "id", "id must be a string, not %s",
					   type_name(v));
		if ((size_t)json_object_get_string_len(v) != strlen(json_object_get_string(v)))
			return strata_fail(err, USAGE, EINVAL, "id", "id holds a NUL character");
		if (strata_id_check(json_object_get_string(v), err) < 0)
			return -1;
		s->id = strdup(json_object_get_string(v));
		s->id_given = true;
	} else {
		s->id = derive_id(s->target);
	}
	if (!s->id)
		return strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, "id", "out of memory");
	if ((containerd ? parse_containerd(s, doc, err) : parse_native(s, doc, err)) < 0)
		return -1;
	if (!!s->upper != !!s->work)
		return strata_fail(err, USAGE, EINVAL, s->upper ? s->work_field : s->upper_field,
				   "upper and work must be given together (or neither, for a "
				   "read-only mount)");
	if (!s->upper)
		s->readonly = true;
	if (s->readonly)
		s->mflags |= MS_RDONLY;
	return 0;
}

json_object *strata_spec_options_json(const struct strata_spec *s)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "volatile", json_object_new_boolean(s->volatile_));
	json_object_object_add(o, "threaded", json_object_new_boolean(s->threaded));
	json_object_object_add(o, "writeback", json_object_new_boolean(s->writeback));
	json_object_object_add(o, "acl", json_object_new_boolean(!s->noacl && !s->noxattrs));
	json_object_object_add(o, "xattrs", json_object_new_boolean(!s->noxattrs));
	json_object_object_add(o, "userxattr", json_object_new_boolean(s->userxattr));
	/* what the server really does: strata_set_passthrough */
	json_object_object_add(o, "passthrough", json_object_new_boolean(false));
	json_object_object_add(o, "idmapped", json_object_new_boolean(s->nuidmap || s->ngidmap));
	json_object_object_add(o, "xattrPermissions", json_object_new_int(s->xattr_permissions));
	json_object_object_add(o, "squashToRoot", json_object_new_boolean(s->squash_to_root));
	if (s->squash_uid >= 0)
		json_object_object_add(o, "squashToUid", json_object_new_int64(s->squash_uid));
	if (s->squash_gid >= 0)
		json_object_object_add(o, "squashToGid", json_object_new_int64(s->squash_gid));
	if (s->timeout_set)
		json_object_object_add(o, "timeout", json_object_new_double(s->timeout));
	if (s->spin_us >= 0)
		json_object_object_add(o, "spin", json_object_new_int(s->spin_us));
	return o;
}

void strata_spec_free(struct strata_spec *s)
{
	free(s->id);
	free(s->target);
	for (int i = 0; i < s->nlower; i++) {
		free(s->lower[i]);
		free(s->lower_field[i]);
	}
	free(s->lower);
	free(s->lower_field);
	free(s->upper);
	free(s->work);
	free(s->context);
	free(s->uidmap);
	free(s->gidmap);
	memset(s, 0, sizeof(*s));
}
