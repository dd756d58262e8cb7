/* status.c - the status document: a state record joined with what the kernel says now (is the
 * server alive, is its mount there, and its confinement from /proc/PID/status and
 * /proc/PID/ns/mnt), never what the driver hoped to set up. */
#include "strata.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/file.h>
#include <time.h>

void strata_now_rfc3339(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char base[32];
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03ldZ", base, ts.tv_nsec / 1000000);
}

json_object *strata_sandbox_json(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	unsigned long long capeff = 0, capbnd = 0;
	int nnp = -1, seccomp = -1, filters = -1;
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "CapEff: %llx", &capeff);
		sscanf(line, "CapBnd: %llx", &capbnd);
		sscanf(line, "NoNewPrivs: %d", &nnp);
		sscanf(line, "Seccomp: %d", &seccomp);
		sscanf(line, "Seccomp_filters: %d", &filters);
	}
	fclose(f);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "noNewPrivs", json_object_new_boolean(nnp == 1));
	static const char *const modes[] = { "disabled", "strict", "filter" };
	json_object_object_add(
		o, "seccomp",
		json_object_new_string(seccomp >= 0 && seccomp <= 2 ? modes[seccomp] : "unknown"));
	if (filters >= 0)
		json_object_object_add(o, "seccompFilters", json_object_new_int(filters));
	for (int set = 0; set < 2; set++) {
		unsigned long long mask = set ? capbnd : capeff;
		json_object *caps = json_object_new_array();
		for (int c = 0; c < 64; c++) {
			if (!(mask & (1ull << c)))
				continue;
			char *name = cap_to_name(c);
			char up[64];
			size_t i = 0;
			for (; name && name[i] && i < sizeof(up) - 1; i++)
				up[i] = (char)toupper((unsigned char)name[i]);
			up[i] = '\0';
			json_object_array_add(caps, json_object_new_string(up));
			cap_free(name);
		}
		json_object_object_add(o, set ? "boundingSet" : "capabilities", caps);
	}
	char a[64] = "", b[64] = "";
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	ssize_t na = readlink(path, a, sizeof(a) - 1);
	ssize_t nb = readlink("/proc/self/ns/mnt", b, sizeof(b) - 1);
	const char *ns = "unknown";
	if (na > 0 && nb > 0)
		ns = strcmp(a, b) ? "private" : "shared";
	json_object_object_add(o, "mountNamespace", json_object_new_string(ns));
	return o;
}

static const char *str(json_object *rec, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(rec, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int64_t num(json_object *rec, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(rec, key, &v))
		return 0;
	return json_object_get_int64(v);
}

/* Is someone (a strata process) holding the record's lock right now? */
static bool lock_held(int dirfd, const char *id)
{
	char name[STRATA_ID_MAX + 8];
	snprintf(name, sizeof(name), "%s.lock", id);
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	bool held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

/* The rest of the line of the server's log (ID.log, its first 4 KiB) that holds KEY, in buf;
 * NULL when there is none. */
static char *server_log_line(int dirfd, const char *id, const char *key, char *buf, size_t size)
{
	char name[STRATA_ID_MAX + 8];
	snprintf(name, sizeof(name), "%s.log", id);
	if (read_small_file(dirfd, name, buf, size) < 0)
		return NULL;
	char *p = strstr(buf, key);
	if (!p)
		return NULL;
	p += strlen(key);
	char *e = strchr(p, '\n');
	if (e)
		*e = '\0';
	return p;
}

/* Why the server kept CAP_SYS_ADMIN, as it wrote in its log (core/sandbox.c). */
static void add_sys_admin_reason(int dirfd, const char *id, json_object *sb)
{
	char buf[4096];
	char *p = server_log_line(dirfd, id, "CAP_SYS_ADMIN kept: ", buf, sizeof(buf));
	if (p)
		json_object_object_add(sb, "sysAdminReason", json_object_new_string(p));
}

void strata_add_probed_features(int dirfd, const char *id, json_object *features)
{
	char buf[4096];
	char *p = server_log_line(dirfd, id, "stratafs: features: ", buf, sizeof(buf));
	if (!p)
		return;
	/* "a_b=v c=yes": camelCase keys, yes/no as booleans */
	char *save;
	for (char *w = strtok_r(p, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(w, '=');
		if (!eq || eq == w)
			continue;
		*eq = '\0';
		char k[64];
		size_t kl = 0;
		for (char *c = w; *c && kl + 1 < sizeof(k); c++) {
			if (*c == '_' && c[1]) {
				c++;
				k[kl++] = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
			} else {
				k[kl++] = *c;
			}
		}
		k[kl] = '\0';
		const char *v = eq + 1;
		json_object *jv = !strcmp(v, "yes") ? json_object_new_boolean(true) :
				  !strcmp(v, "no")  ? json_object_new_boolean(false) :
						      json_object_new_string(v);
		json_object_object_add(features, k, jv);
	}
}

void strata_set_passthrough(int dirfd, const char *id, bool asked, json_object *features)
{
	/* the first 64 KiB: the server settles passthrough before it serves its first
	 * request, and a later refusal comes with the first open it concerns */
	static char buf[65536];
	static const char key[] = "stratafs: passthrough: ";
	char name[STRATA_ID_MAX + 8];
	snprintf(name, sizeof(name), "%s.log", id);
	const char *last = NULL;
	if (read_small_file(dirfd, name, buf, sizeof(buf)) > 0) {
		for (char *p = strstr(buf, key); p; p = strstr(p + 1, key))
			if (p == buf || p[-1] == '\n')
				last = p + strlen(key);
	}
	char line[512] = "";
	if (last)
		snprintf(line, sizeof(line), "%.*s", (int)strcspn(last, "\n"), last);
	bool on = !strcmp(line, "on");
	const char *why = !last ? "the server did not say whether it uses it (an older stratafs?)" :
			  !strncmp(line, "off: ", 5) ? line + 5 :
			  on			     ? NULL :
						       line;
	json_object_object_add(features, "passthrough", json_object_new_boolean(on));
	json_object_object_del(features, "passthroughReason");
	if (asked && !on)
		json_object_object_add(features, "passthroughReason", json_object_new_string(why));
}

json_object *strata_status(int dirfd, json_object *rec, bool *live)
{
	static const char *const copied[] = { "id",	  "target",   "pid",	   "fsType",
					      "readonly", "layers",   "mountedAt", "elapsedMs",
					      "features", "specForm", "device",	   "log",
					      NULL };
	json_object *o = json_object_new_object();
	*live = false;
	const char *id = str(rec, "id");
	const char *state = str(rec, "state");
	const char *target = str(rec, "target");
	const char *dev = str(rec, "device");
	pid_t pid = (pid_t)num(rec, "pid");
	unsigned long long start = (unsigned long long)num(rec, "pidStart");
	const char *now = "dead";
	if (state && !strcmp(state, "mounting")) {
		now = id && lock_held(dirfd, id) ? "mounting" : "dead";
	} else {
		bool alive = strata_pid_alive(pid, start);
		char cur[64] = "", fst[64] = "";
		bool mounted =
			target &&
			strata_mountinfo_find(target, cur, sizeof(cur), fst, sizeof(fst)) == 1 &&
			!strcmp(fst, "fuse.stratafs") && (!dev || !strcmp(cur, dev));
		if (alive && mounted) {
			now = "mounted";
			*live = true;
		} else if (alive) {
			now = "detached"; /* unmounted behind our back; the server is on its way out */
		}
	}
	for (int i = 0; copied[i]; i++) {
		json_object *v;
		if (!strcmp(copied[i], "pid") && !*live && strcmp(now, "mounting"))
			continue;
		if (json_object_object_get_ex(rec, copied[i], &v))
			json_object_object_add(o, copied[i], json_object_get(v));
		if (!strcmp(copied[i], "id"))
			json_object_object_add(o, "state", json_object_new_string(now));
	}
	json_object *feat, *pt, *copy = NULL;
	if (*live && id && json_object_object_get_ex(o, "features", &feat) &&
	    json_object_object_get_ex(feat, "passthrough", &pt) && json_object_get_boolean(pt) &&
	    json_object_deep_copy(feat, &copy, NULL) == 0) {
		/* passthrough may have been refused since the mount (core/file.c) */
		strata_set_passthrough(dirfd, id, true, copy);
		json_object_object_add(o, "features", copy);
	}
	if (*live) {
		json_object *sb = strata_sandbox_json(pid);
		if (sb && id)
			add_sys_admin_reason(dirfd, id, sb);
		if (sb)
			json_object_object_add(o, "sandbox", sb);
	} else if (!strcmp(now, "dead")) {
		json_object *ex = id ? strata_exit_read(dirfd, id) : NULL;
		if (pid)
			json_object_object_add(o, "lastPid", json_object_new_int(pid));
		if (ex)
			json_object_object_add(o, "exit", ex);
		else if (state && !strcmp(state, "mounting"))
			json_object_object_add(
				o, "reason",
				json_object_new_string(
					"the strata process that was mounting it is gone"));
	}
	return o;
}
