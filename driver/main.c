/* main.c - strata: one request in (the command line, and a JSON spec for mount), one JSON
 * document out on stdout. Exit 0: done; 1: the operation failed (the document says why);
 * 2: the spec or the command line is invalid. */
#include "strata.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>

struct cmdline {
	const char *state_dir;
	const char *file; /* mount -f FILE */
	int timeout_ms; /* readiness and unmount deadlines */
	const char *cmd;
	const char *arg;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: strata [--state-dir DIR] [--timeout MS] COMMAND\n"
		   "\n"
		   "commands:\n"
		   "  mount [-f FILE]   mount the JSON spec in FILE (default: stdin)\n"
		   "  status ID         the status of one mount\n"
		   "  list              the status of every mount (a JSON array)\n"
		   "  unmount ID        unmount, wait for the server to exit, forget the mount\n"
		   "  gc                forget mounts whose server or mount is gone\n"
		   "\n"
		   "State lives in /run/strata (root) or $XDG_RUNTIME_DIR/strata. Exit status: 0 "
		   "done, 1 failed, 2 invalid spec or command line. See strata(8).\n");
}

static void print_json(json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								  JSON_C_TO_STRING_SPACED |
								  JSON_C_TO_STRING_NOSLASHESCAPE);
	fputs(s, stdout);
	fputc('\n', stdout);
	fflush(stdout);
}

static int fail_doc(const char *id, const struct strata_error *err)
{
	json_object *d = strata_error_doc(id, err);
	print_json(d);
	json_object_put(d);
	fprintf(stderr, "strata: %s%s%s\n", err->field[0] ? err->field : "",
		err->field[0] ? ": " : "", err->message);
	return err->exit_code ? err->exit_code : STRATA_EXIT_FAIL;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Reads the spec, refusing more than STRATA_SPEC_MAX bytes without reading all of them. */
static char *read_spec(const char *file, size_t *len, struct strata_error *err)
{
	int fd = 0;
	if (file && strcmp(file, "-")) {
		fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			strata_fail(err, STRATA_EXIT_USAGE, errno, "spec", "cannot read '%s': %s",
				    file, strerror(errno));
			return NULL;
		}
	}
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n == cap) {
			if (cap > STRATA_SPEC_MAX) {
				strata_fail(err, STRATA_EXIT_USAGE, E2BIG, "spec",
					    "the spec is larger than %u bytes", STRATA_SPEC_MAX);
				free(buf);
				buf = NULL;
				break;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			strata_fail(err, STRATA_EXIT_USAGE, errno, "spec", "reading the spec: %s",
				    strerror(errno));
			free(buf);
			buf = NULL;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (fd > 0)
		close(fd);
	if (!buf)
		strata_fail(err, STRATA_EXIT_FAIL, ENOMEM, "spec", "out of memory");
	*len = n;
	return buf;
}

/* The last line the server wrote to its log, to explain a failure. */
static void log_tail(int dirfd, const char *id, char *out, size_t outlen)
{
	char name[STRATA_ID_MAX + 8], buf[4096];
	snprintf(name, sizeof(name), "%s.log", id);
	out[0] = '\0';
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	char *last = strrchr(buf, '\n');
	const char *src = last ? last + 1 : buf;
	size_t l = strlen(src) < outlen - 1 ? strlen(src) : outlen - 1;
	memcpy(out, src, l);
	out[l] = '\0';
}

static json_object *str_array(char **v, int n)
{
	json_object *a = json_object_new_array();
	for (int i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_string(v[i]));
	return a;
}

/* Another record (mounting or mounted, and alive) for the same target? */
static const char *target_taken(int dirfd, const char *target)
{
	static char other[STRATA_ID_MAX + 1];
	char **ids = NULL;
	if (strata_record_ids(dirfd, &ids) < 0)
		return NULL;
	const char *hit = NULL;
	for (char **p = ids; *p && !hit; p++) {
		autojson json_object *rec = strata_record_read(dirfd, *p);
		json_object *t;
		if (!rec || !json_object_object_get_ex(rec, "target", &t) ||
		    strcmp(json_object_get_string(t), target))
			continue;
		bool live;
		autojson json_object *st = strata_status(dirfd, rec, &live);
		json_object *s;
		json_object_object_get_ex(st, "state", &s);
		if (live || !strcmp(json_object_get_string(s), "mounting")) {
			snprintf(other, sizeof(other), "%s", *p);
			hit = other;
		}
	}
	strata_free_strv(ids);
	return hit;
}

static void forget(int dirfd, const char *id)
{
	autoclose int g = strata_lock(dirfd, ".lock", LOCK_EX);
	strata_record_remove(dirfd, id);
}

static int cmd_mount(const struct cmdline *cl)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct strata_error err = { 0 };
	struct strata_spec spec;
	size_t len = 0;
	autofree char *buf = read_spec(cl->file, &len, &err);
	if (!buf)
		return fail_doc(NULL, &err);
	if (strata_spec_parse(buf, len, &spec, &err) < 0) {
		int r = fail_doc(spec.id_given ? spec.id : NULL, &err);
		strata_spec_free(&spec);
		return r;
	}
	const char *id = spec.id;
	int rc = 0;
	struct strata_layers l;
	autofree char *sdpath = NULL;
	autoclose int dirfd = strata_state_open(cl->state_dir, &sdpath, &err);
	autoclose int idlock = -1, glock = -1, logfd = -1, fusefd = -1;
	struct strata_server srv = { 0 };
	char dev[64] = "";
	bool reserved = false, mounted = false;
	autojson json_object *rec = NULL, *st = NULL;
	memset(&l, 0, sizeof(l));
	l.target = l.upper = l.work = -1;
	if (dirfd < 0)
		goto out;
	if (strata_layers_open(&spec, &l, &err) < 0)
		goto out;

	char lockname[STRATA_ID_MAX + 8];
	snprintf(lockname, sizeof(lockname), "%s.lock", id);
	idlock = strata_lock(dirfd, lockname, LOCK_EX | LOCK_NB);
	if (idlock < 0) {
		if (errno == EWOULDBLOCK)
			strata_fail(&err, STRATA_EXIT_USAGE, EEXIST, "id",
				    "id '%s' is in use (another strata is working on it)", id);
		else
			strata_fail(&err, STRATA_EXIT_FAIL, errno, NULL, "locking '%s': %s",
				    lockname, strerror(errno));
		goto out;
	}
	glock = strata_lock(dirfd, ".lock", LOCK_EX);
	if (glock < 0) {
		strata_fail(&err, STRATA_EXIT_FAIL, errno, NULL, "locking the state dir: %s",
			    strerror(errno));
		goto out;
	}
	json_object *old = strata_record_read(dirfd, id);
	if (old) {
		json_object_put(old);
		strata_fail(&err, STRATA_EXIT_USAGE, EEXIST, "id",
			    "a mount with id '%s' exists already (strata unmount or gc it first)",
			    id);
		goto out;
	}
	const char *other = target_taken(dirfd, l.target_path);
	if (other) {
		strata_fail(&err, STRATA_EXIT_USAGE, EBUSY, "target",
			    "target '%s' is already mounted (by '%s')", spec.target, other);
		goto out;
	}
	/* reserve: from here a crash leaves a "mounting" record with a free lock, which
	 * status reports as dead and gc clears */
	char name[STRATA_ID_MAX + 8];
	/* leftovers of an earlier mount without a record */
	snprintf(name, sizeof(name), "%s.exit", id);
	unlinkat(dirfd, name, 0);
	rec = json_object_new_object();
	json_object_object_add(rec, "id", json_object_new_string(id));
	json_object_object_add(rec, "state", json_object_new_string("mounting"));
	json_object_object_add(rec, "target", json_object_new_string(l.target_path));
	json_object_object_add(rec, "driverPid", json_object_new_int(getpid()));
	if (strata_record_write(dirfd, id, rec, &err) < 0)
		goto out;
	reserved = true;
	close(steal_fd(&glock));

	snprintf(name, sizeof(name), "%s.log", id);
	logfd = openat(dirfd, name,
		       O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (logfd < 0) {
		strata_fail(&err, STRATA_EXIT_FAIL, errno, NULL, "creating the log: %s",
			    strerror(errno));
		goto out;
	}
	fusefd = strata_fuse_mount(&spec, &l, dev, sizeof(dev), &err);
	if (fusefd < 0)
		goto out;
	mounted = true;
	if (strata_spawn(&spec, &l, fusefd, dirfd, logfd, &srv, &err) < 0)
		goto out;
	/* the server holds the connection alone now: if it dies, the mount fails fast
	 * (ENOTCONN) instead of waiting on us */
	close(steal_fd(&fusefd));
	if (strata_wait_ready(l.target_path, &srv, cl->timeout_ms, &err) < 0)
		goto out;

	char when[64];
	strata_now_rfc3339(when, sizeof(when));
	json_object_object_add(rec, "state", json_object_new_string("mounted"));
	json_object_object_del(rec, "driverPid");
	json_object_object_add(rec, "pid", json_object_new_int(srv.pid));
	json_object_object_add(rec, "pidStart", json_object_new_int64((int64_t)srv.start));
	json_object_object_add(rec, "monitorPid", json_object_new_int(srv.monitor));
	json_object_object_add(rec, "fsType", json_object_new_string("fuse.stratafs"));
	json_object_object_add(rec, "device", json_object_new_string(dev));
	json_object_object_add(rec, "readonly", json_object_new_boolean(spec.readonly));
	json_object *layers = json_object_new_object();
	json_object_object_add(layers, "lower", str_array(spec.lower, spec.nlower));
	if (spec.upper)
		json_object_object_add(layers, "upper", json_object_new_string(spec.upper));
	if (spec.work)
		json_object_object_add(layers, "work", json_object_new_string(spec.work));
	json_object_object_add(rec, "layers", layers);
	json_object_object_add(rec, "mountedAt", json_object_new_string(when));
	json_object_object_add(rec, "elapsedMs", json_object_new_int64(ms_since(&t0)));
	json_object *feat = strata_spec_options_json(&spec);
	strata_add_probed_features(dirfd, id, feat);
	strata_set_passthrough(dirfd, id, spec.passthrough != 0, feat);
	json_object_object_add(rec, "features", feat);
	json_object_object_add(rec, "specForm", json_object_new_string(spec.form));
	char logpath[PATH_MAX];
	snprintf(logpath, sizeof(logpath), "%s/%s.log", sdpath, id);
	json_object_object_add(rec, "log", json_object_new_string(logpath));
	if (strata_record_write(dirfd, id, rec, &err) < 0)
		goto out;
	bool live;
	st = strata_status(dirfd, rec, &live);
	print_json(st);
	reserved = mounted = false;

out:
	if (err.exit_code) {
		if (srv.pid > 0 && strata_pid_alive(srv.pid, srv.start)) {
			kill(srv.pid, SIGKILL);
			strata_wait_pid_gone(srv.pid, srv.start, 5000);
		}
		if (mounted)
			strata_unmount_target(l.target_path, dev, NULL);
		if (srv.monitor > 0)
			waitpid(srv.monitor, NULL, 0);
		if (reserved && dirfd >= 0) {
			char tail[512];
			log_tail(dirfd, id, tail, sizeof(tail));
			if (tail[0] &&
			    strlen(err.message) + strlen(tail) + 4 < sizeof(err.message)) {
				strcat(err.message, " (");
				strcat(err.message, tail);
				strcat(err.message, ")");
			}
			forget(dirfd, id);
		}
		rc = fail_doc(id, &err);
	}
	strata_layers_close(&l);
	strata_spec_free(&spec);
	return rc;
}

static int open_state(const struct cmdline *cl, struct strata_error *err)
{
	return strata_state_open(cl->state_dir, NULL, err);
}

static int cmd_status(const struct cmdline *cl)
{
	struct strata_error err = { 0 };
	if (strata_id_check(cl->arg, &err) < 0)
		return fail_doc(NULL, &err);
	autoclose int dirfd = open_state(cl, &err);
	if (dirfd < 0)
		return fail_doc(cl->arg, &err);
	autojson json_object *rec = strata_record_read(dirfd, cl->arg);
	if (!rec) {
		strata_fail(&err, STRATA_EXIT_FAIL, ENOENT, "id", "no mount with id '%s'", cl->arg);
		return fail_doc(cl->arg, &err);
	}
	bool live;
	autojson json_object *st = strata_status(dirfd, rec, &live);
	print_json(st);
	return 0;
}

/* list and gc: the state dir and the ids of its records. 0, or the exit code of the
 * error document it printed. */
static int open_state_ids(const struct cmdline *cl, int *dirfd, char ***ids)
{
	struct strata_error err = { 0 };
	*dirfd = open_state(cl, &err);
	if (*dirfd < 0)
		return fail_doc(NULL, &err);
	if (strata_record_ids(*dirfd, ids) < 0) {
		strata_fail(&err, STRATA_EXIT_FAIL, errno, NULL, "listing the state dir: %s",
			    strerror(errno));
		return fail_doc(NULL, &err);
	}
	return 0;
}

static int cmd_list(const struct cmdline *cl)
{
	autoclose int dirfd = -1;
	char **ids = NULL;
	int rc = open_state_ids(cl, &dirfd, &ids);
	if (rc)
		return rc;
	autojson json_object *arr = json_object_new_array();
	for (char **p = ids; *p; p++) {
		/* a record removed meanwhile (a concurrent unmount) is simply not listed */
		json_object *rec = strata_record_read(dirfd, *p);
		if (!rec)
			continue;
		bool live;
		json_object_array_add(arr, strata_status(dirfd, rec, &live));
		json_object_put(rec);
	}
	strata_free_strv(ids);
	print_json(arr);
	return 0;
}

/* Unmounts the record's mount (if it is still ours), waits for the server and its monitor
 * to exit (forcing them after the deadline), and removes the record. */
static int teardown(int dirfd, const char *id, json_object *rec, int timeout_ms, bool *forced,
		    struct strata_error *err)
{
	json_object *v;
	const char *target =
		json_object_object_get_ex(rec, "target", &v) ? json_object_get_string(v) : NULL;
	const char *dev =
		json_object_object_get_ex(rec, "device", &v) ? json_object_get_string(v) : NULL;
	pid_t pid = json_object_object_get_ex(rec, "pid", &v) ? json_object_get_int(v) : 0;
	unsigned long long start = json_object_object_get_ex(rec, "pidStart", &v) ?
					   (unsigned long long)json_object_get_int64(v) :
					   0;
	pid_t mon = json_object_object_get_ex(rec, "monitorPid", &v) ? json_object_get_int(v) : 0;
	unsigned long long mstart = 0;
	*forced = false;
	if (mon > 0)
		mstart = strata_pid_start(mon);
	if (target && strata_unmount_target(target, dev, err) < 0)
		return -1;
	if (pid > 0 && strata_wait_pid_gone(pid, start, timeout_ms) < 0) {
		/* still busy (files open in a lazily detached mount): make it go */
		*forced = true;
		kill(pid, SIGTERM);
		if (strata_wait_pid_gone(pid, start, 3000) < 0) {
			kill(pid, SIGKILL);
			strata_wait_pid_gone(pid, start, 3000);
		}
	}
	if (mon > 0 && mstart)
		strata_wait_pid_gone(mon, mstart, 3000);
	forget(dirfd, id);
	return 0;
}

static int cmd_unmount(const struct cmdline *cl)
{
	struct strata_error err = { 0 };
	if (strata_id_check(cl->arg, &err) < 0)
		return fail_doc(NULL, &err);
	autoclose int dirfd = open_state(cl, &err);
	if (dirfd < 0)
		return fail_doc(cl->arg, &err);
	char lockname[STRATA_ID_MAX + 8];
	snprintf(lockname, sizeof(lockname), "%s.lock", cl->arg);
	autoclose int idlock = strata_lock(dirfd, lockname, LOCK_EX);
	autojson json_object *rec = strata_record_read(dirfd, cl->arg);
	autojson json_object *out = json_object_new_object();
	json_object_object_add(out, "id", json_object_new_string(cl->arg));
	json_object_object_add(out, "state", json_object_new_string("unmounted"));
	if (!rec) {
		/* already gone: not an error, so a second unmount is harmless */
		if (idlock >= 0) {
			autoclose int g = strata_lock(dirfd, ".lock", LOCK_EX);
			unlinkat(dirfd, lockname, 0);
		}
		print_json(out);
		return 0;
	}
	json_object *t;
	if (json_object_object_get_ex(rec, "target", &t))
		json_object_object_add(out, "target", json_object_get(t));
	bool forced;
	if (teardown(dirfd, cl->arg, rec, cl->timeout_ms, &forced, &err) < 0)
		return fail_doc(cl->arg, &err);
	if (forced)
		json_object_object_add(out, "forced", json_object_new_boolean(true));
	print_json(out);
	return 0;
}

static int cmd_gc(const struct cmdline *cl)
{
	autoclose int dirfd = -1;
	char **ids = NULL;
	int rc = open_state_ids(cl, &dirfd, &ids);
	if (rc)
		return rc;
	autojson json_object *removed = json_object_new_array();
	int kept = 0;
	for (char **p = ids; *p; p++) {
		char lockname[STRATA_ID_MAX + 8];
		snprintf(lockname, sizeof(lockname), "%s.lock", *p);
		int lk = strata_lock(dirfd, lockname, LOCK_EX | LOCK_NB);
		if (lk < 0) {
			kept++; /* someone is mounting or unmounting it right now */
			continue;
		}
		json_object *rec = strata_record_read(dirfd, *p);
		bool live = false;
		if (rec) {
			json_object *st = strata_status(dirfd, rec, &live);
			json_object_put(st);
		}
		bool forced;
		struct strata_error e2 = { 0 };
		if (rec && !live && teardown(dirfd, *p, rec, 2000, &forced, &e2) == 0)
			json_object_array_add(removed, json_object_new_string(*p));
		else
			kept++;
		json_object_put(rec);
		close(lk);
	}
	strata_free_strv(ids);
	autojson json_object *out = json_object_new_object();
	json_object_object_add(out, "removed", json_object_get(removed));
	json_object_object_add(out, "kept", json_object_new_int(kept));
	print_json(out);
	return 0;
}

static int usage_error(const char *fmt, const char *arg)
{
	struct strata_error err = { 0 };
	strata_fail(&err, STRATA_EXIT_USAGE, EINVAL, NULL, fmt, arg ? arg : "");
	usage(stderr);
	return fail_doc(NULL, &err);
}

int main(int argc, char **argv)
{
	/* a closed stdin/stdout/stderr must not become a layer or the log by accident */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0)
			open("/dev/null", O_RDWR);
	signal(SIGPIPE, SIG_IGN);
	struct cmdline cl = { .timeout_ms = 15000 };
	const char *env = getenv("STRATA_STATE_DIR");
	if (env && *env)
		cl.state_dir = env;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("strata %s\n", STRATA_DRIVER_VERSION);
			return 0;
		} else if (!strcmp(a, "--state-dir") || !strcmp(a, "-f") || !strcmp(a, "--file") ||
			   !strcmp(a, "--timeout")) {
			if (i + 1 >= argc)
				return usage_error("%s needs a value", a);
			const char *v = argv[++i];
			if (!strcmp(a, "--state-dir"))
				cl.state_dir = v;
			else if (!strcmp(a, "--timeout")) {
				char *end;
				long ms = strtol(v, &end, 10);
				if (*end || ms <= 0 || ms > 3600000)
					return usage_error("--timeout %s: expected milliseconds",
							   v);
				cl.timeout_ms = (int)ms;
			} else
				cl.file = v;
		} else if (!strncmp(a, "--state-dir=", 12)) {
			cl.state_dir = a + 12;
		} else if (a[0] == '-' && a[1]) {
			return usage_error("unknown option '%s'", a);
		} else if (!cl.cmd) {
			cl.cmd = a;
		} else if (!cl.arg) {
			cl.arg = a;
		} else {
			return usage_error("unexpected argument '%s'", a);
		}
	}
	if (!cl.cmd)
		return usage_error("no command given%s", "");
	bool needs_id = !strcmp(cl.cmd, "status") || !strcmp(cl.cmd, "unmount");
	if (needs_id && !cl.arg)
		return usage_error("%s needs an id", cl.cmd);
	if (!needs_id && cl.arg)
		return usage_error("unexpected argument '%s'", cl.arg);
	if (cl.file && strcmp(cl.cmd, "mount"))
		return usage_error("-f goes with mount only%s", "");
	if (!strcmp(cl.cmd, "mount"))
		return cmd_mount(&cl);
	if (!strcmp(cl.cmd, "status"))
		return cmd_status(&cl);
	if (!strcmp(cl.cmd, "list"))
		return cmd_list(&cl);
	if (!strcmp(cl.cmd, "unmount") || !strcmp(cl.cmd, "umount"))
		return cmd_unmount(&cl);
	if (!strcmp(cl.cmd, "gc"))
		return cmd_gc(&cl);
	return usage_error("unknown command '%s'", cl.cmd);
}
