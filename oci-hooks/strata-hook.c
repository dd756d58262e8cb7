/* strata-hook.c - OCI hooks that put a container's root on a strata overlay and clean up
 * after it (see strata-hook(1)).
 *
 *   strata-hook [--strata PATH] [--state-dir DIR] [--run-dir DIR] precreate
 *       stdin: the proposed OCI config (podman's precreate stage); stdout: the config, with
 *       root.path on a strata mount when annotations["io.strata.spec"] holds a spec (inline
 *       JSON or an absolute path to a file) and annotations["io.strata.mount-id"] set.
 *   strata-hook [...] poststop
 *       stdin: the OCI state; unmounts annotations["io.strata.mount-id"] (idempotent).
 *
 * strata runs with stdin, stdout and stderr on memfds, never on the hook's own pipes: the
 * runtime waits for EOF on the hook's stdout/stderr, and nothing strata leaves running (the
 * server, its monitor) may hold them.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ANN_SPEC "io.strata.spec"
#define ANN_ID "io.strata.mount-id"
#define HOOK_MAX_INPUT (16u << 20)

static const char *opt_strata;
static const char *opt_state_dir;
static const char *opt_run_dir;

static const char *run_dir(void);
static int mkdir_p(const char *path, mode_t mode);
static const char *stage = "";

/* Failures are also appended to RUN_DIR/strata-hook.log, one line each: engines may drop a
 * hook's stderr (see tell_engine). */
static void log_failure(const char *text)
{
	char path[PATH_MAX];
	if (mkdir_p(run_dir(), 0700) < 0)
		return;
	snprintf(path, sizeof(path), "%s/strata-hook.log", run_dir());
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	char stamp[64];
	time_t now = time(NULL);
	struct tm tm;
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	dprintf(fd, "%s %s[%d] %s: %s\n", stamp, "strata-hook", (int)getpid(), stage, text);
	close(fd);
}

/* podman runs a precreate hook with its stdout and stderr on one buffer, which it drops when
 * the hook fails: the user sees only "exit status 1". So that they also see why, a failing
 * hook run by podman, buildah or CRI-O writes its message to the engine's own stderr
 * (/proc/PPID/fd/2) as well, when that is a terminal or a pipe (never a regular file: our
 * write would race the engine's file offset) and not where our stderr already goes. */
static void tell_engine(const char *text)
{
	char path[64], comm[32] = "";
	pid_t parent = getppid();
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)parent);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, comm, sizeof(comm) - 1);
	close(fd);
	if (n <= 0)
		return;
	comm[n] = '\0';
	comm[strcspn(comm, "\n")] = '\0';
	if (strcmp(comm, "podman") != 0 && strcmp(comm, "buildah") != 0 &&
	    strcmp(comm, "crio") != 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/fd/2", (int)parent);
	fd = open(path, O_WRONLY | O_APPEND | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat theirs, ours;
	if (fstat(fd, &theirs) == 0 && (S_ISFIFO(theirs.st_mode) || S_ISCHR(theirs.st_mode)) &&
	    !(fstat(STDERR_FILENO, &ours) == 0 && ours.st_dev == theirs.st_dev &&
	      ours.st_ino == theirs.st_ino && ours.st_rdev == theirs.st_rdev))
		dprintf(fd, "strata-hook: %s: %s\n", stage, text);
	close(fd);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	char text[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	fprintf(stderr, "strata-hook: %s\n", text);
	log_failure(text);
	tell_engine(text);
	exit(1);
}

static void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void msg(const char *fmt, ...)
{
	char text[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	fprintf(stderr, "strata-hook: %s\n", text);
	log_failure(text);
}

/* Reads all of fd (at most HOOK_MAX_INPUT bytes) into a NUL-terminated buffer. */
static char *read_all(int fd, size_t *lenp, const char *what)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		die("out of memory");
	for (;;) {
		if (len + 1 >= cap) {
			if (cap >= HOOK_MAX_INPUT + 1)
				die("%s is larger than %u bytes", what, HOOK_MAX_INPUT);
			cap *= 2;
			char *n = realloc(buf, cap);
			if (!n)
				die("out of memory");
			buf = n;
		}
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("reading %s: %s", what, strerror(errno));
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = 0;
	if (lenp)
		*lenp = len;
	return buf;
}

/* Parses text as one JSON document; NULL with *err set on failure. */
static json_object *parse_json(const char *text, size_t len, const char **err)
{
	json_tokener *tok = json_tokener_new_ex(64);
	if (!tok)
		die("out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	enum json_tokener_error e = json_tokener_get_error(tok);
	if (!o && e == json_tokener_continue) {
		*err = "unexpected end of input";
	} else if (!o) {
		*err = json_tokener_error_desc(e);
	} else {
		/* nothing but whitespace may follow */
		size_t off = json_tokener_get_parse_end(tok);
		for (; off < len; off++) {
			if (!strchr(" \t\r\n", text[off])) {
				json_object_put(o);
				o = NULL;
				*err = "trailing characters after the JSON document";
				break;
			}
		}
	}
	json_tokener_free(tok);
	return o;
}

/* The strata binary: --strata, $STRATA, else "strata" next to this program (the build
 * tree), else ../../bin/strata from it (installed: LIBEXECDIR/strata/strata-hook and
 * BINDIR/strata under one prefix), else the first strata on $PATH. */
static const char *strata_path(void)
{
	static char buf[PATH_MAX];
	if (opt_strata)
		return opt_strata;
	const char *e = getenv("STRATA");
	if (e && *e)
		return e;
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 32);
	if (n > 0) {
		buf[n] = 0;
		char *slash = strrchr(buf, '/');
		if (slash) {
			strcpy(slash + 1, "strata");
			if (access(buf, X_OK) == 0)
				return buf;
			strcpy(slash + 1, "../../bin/strata");
			if (access(buf, X_OK) == 0)
				return buf;
		}
	}
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	while (*path) {
		size_t len = strcspn(path, ":");
		if (len > 0 && path[0] == '/' &&
		    (size_t)snprintf(buf, sizeof(buf), "%.*s/strata", (int)len, path) <
			    sizeof(buf) &&
		    access(buf, X_OK) == 0)
			return buf;
		path += len;
		if (*path == ':')
			path++;
	}
	return "strata";
}

static const char *state_dir(void)
{
	if (opt_state_dir)
		return opt_state_dir;
	const char *e = getenv("STRATA_STATE_DIR");
	return e && *e ? e : NULL;
}

/* Where targets the hook creates live: --run-dir, $STRATA_HOOK_RUN_DIR, /run/strata-hook
 * (root) or $XDG_RUNTIME_DIR/strata-hook. */
static const char *run_dir(void)
{
	static char buf[PATH_MAX];
	if (opt_run_dir)
		return opt_run_dir;
	const char *e = getenv("STRATA_HOOK_RUN_DIR");
	if (e && *e)
		return e;
	if (geteuid() != 0) {
		const char *x = getenv("XDG_RUNTIME_DIR");
		if (x && *x) {
			snprintf(buf, sizeof(buf), "%s/strata-hook", x);
			return buf;
		}
	}
	return "/run/strata-hook";
}

static int memfd_with(const char *name, const char *data)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		die("memfd_create: %s", strerror(errno));
	size_t len = data ? strlen(data) : 0, off = 0;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("memfd write: %s", strerror(errno));
		off += (size_t)w;
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

struct run_result {
	int status; /* exit status, or 128+signal */
	char *out;
	char *err;
};

/* Runs strata [--state-dir DIR] ARGS... with input on stdin; stdout and stderr collected. */
static void run_strata(const char *input, const char *const *args, struct run_result *res)
{
	const char *argv[16];
	int n = 0;
	argv[n++] = strata_path();
	if (state_dir()) {
		argv[n++] = "--state-dir";
		argv[n++] = state_dir();
	}
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;

	int in = memfd_with("strata-in", input);
	int out = memfd_with("strata-out", NULL);
	int err = memfd_with("strata-err", NULL);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
			_exit(127);
		/* nothing else the hook was given (a runtime's or a shell's pipes) may reach
		 * what strata leaves running */
		if (close_range(3, ~0U, 0) < 0) {
			for (int fd = 3; fd < 4096; fd++)
				close(fd);
		}
		execv(argv[0], (char *const *)argv);
		dprintf(2, "cannot run %s: %s (set STRATA or --strata)", argv[0], strerror(errno));
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	}
	res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	lseek(out, 0, SEEK_SET);
	lseek(err, 0, SEEK_SET);
	res->out = read_all(out, NULL, "strata's output");
	res->err = read_all(err, NULL, "strata's errors");
	close(in);
	close(out);
	close(err);
}

static void free_result(struct run_result *r)
{
	free(r->out);
	free(r->err);
}

/* Trailing whitespace off, for messages. */
static char *chomp(char *s)
{
	size_t n = strlen(s);
	while (n && strchr(" \t\r\n", s[n - 1]))
		s[--n] = 0;
	return s;
}

/* The best message strata gave for a failure: the status document's error, else stderr. */
static void strata_error(const struct run_result *r, char *buf, size_t size)
{
	const char *perr = NULL;
	json_object *st = r->out ? parse_json(r->out, strlen(r->out), &perr) : NULL;
	json_object *e = NULL, *m = NULL, *f = NULL, *c = NULL;
	if (st && json_object_object_get_ex(st, "error", &e) &&
	    json_object_object_get_ex(e, "message", &m)) {
		json_object_object_get_ex(e, "field", &f);
		json_object_object_get_ex(e, "code", &c);
		snprintf(buf, size, "%s%s%s%s%s", c ? json_object_get_string(c) : "", c ? ": " : "",
			 f ? json_object_get_string(f) : "", f ? ": " : "",
			 json_object_get_string(m));
	} else if (r->err && *r->err) {
		snprintf(buf, size, "%s", chomp(r->err));
	} else {
		snprintf(buf, size, "exit status %d", r->status);
	}
	json_object_put(st);
}

static bool unmount_id(const char *id, bool quiet)
{
	const char *args[] = { "unmount", id, NULL };
	struct run_result r;
	char why[2048];
	run_strata("", args, &r);
	bool ok = r.status == 0;
	if (!ok && !quiet) {
		strata_error(&r, why, sizeof(why));
		msg("strata unmount %s failed: %s", id, why);
	}
	free_result(&r);
	return ok;
}

/* An id for a spec without one: "hook-" and 16 random hex digits. */
static void make_id(char *buf, size_t size)
{
	unsigned char b[8];
	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		unsigned long long v = (unsigned long long)ts.tv_nsec ^
				       ((unsigned long long)ts.tv_sec << 20) ^
				       ((unsigned long long)getpid() << 40);
		memcpy(b, &v, sizeof(b));
	}
	snprintf(buf, size, "hook-%02x%02x%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
		 b[5], b[6], b[7]);
}

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return errno = ENAMETOOLONG, -1;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* Removes RUN_DIR/ID/rootfs and RUN_DIR/ID when they are empty directories (never more). */
static void remove_own_target(const char *id)
{
	char buf[PATH_MAX];
	snprintf(buf, sizeof(buf), "%s/%s/rootfs", run_dir(), id);
	rmdir(buf);
	snprintf(buf, sizeof(buf), "%s/%s", run_dir(), id);
	rmdir(buf);
}

static bool valid_id_for_path(const char *id)
{
	return *id && *id != '.' && !strchr(id, '/') && strlen(id) <= 128;
}

/* The spec an annotation holds: inline JSON, or an absolute path to a file holding it. */
static json_object *load_spec(const char *ann)
{
	const char *p = ann;
	while (*p && strchr(" \t\r\n", *p))
		p++;
	const char *perr = NULL;
	json_object *spec;
	if (*p == '{' || *p == '[') {
		spec = parse_json(ann, strlen(ann), &perr);
		if (!spec)
			die("annotation %s: not valid JSON: %s", ANN_SPEC, perr);
	} else if (*p == '/') {
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("annotation %s: cannot open spec file %s: %s", ANN_SPEC, p,
			    strerror(errno));
		size_t len;
		char *text = read_all(fd, &len, "the spec file");
		close(fd);
		spec = parse_json(text, len, &perr);
		if (!spec)
			die("annotation %s: spec file %s is not valid JSON: %s", ANN_SPEC, p, perr);
		free(text);
	} else {
		die("annotation %s must hold an inline JSON spec or an absolute path to a spec "
		    "file, not '%.200s'",
		    ANN_SPEC, ann);
	}
	/* a one-element array of containerd Mounts: take the element */
	if (json_object_is_type(spec, json_type_array)) {
		if (json_object_array_length(spec) != 1)
			die("annotation %s: an array spec must hold exactly one mount", ANN_SPEC);
		json_object *el = json_object_get(json_object_array_get_idx(spec, 0));
		json_object_put(spec);
		spec = el;
	}
	if (!json_object_is_type(spec, json_type_object))
		die("annotation %s: the spec must be a JSON object", ANN_SPEC);
	return spec;
}

/* Reads stdin, the engine's WHAT ("OCI config", "OCI state"), as a JSON object, or dies;
 * *textp and *lenp get its bytes (precreate prints them back unchanged). */
static json_object *read_stdin_object(const char *what, char **textp, size_t *lenp)
{
	char label[64];
	snprintf(label, sizeof(label), "the %s on stdin", what);
	*textp = read_all(0, lenp, label);
	const char *perr = NULL;
	json_object *o = parse_json(*textp, *lenp, &perr);
	if (!o || !json_object_is_type(o, json_type_object))
		die("stdin is not an %s (a JSON object): %s", what, o ? "not an object" : perr);
	return o;
}

static int cmd_precreate(void)
{
	size_t len;
	char *text;
	json_object *cfg = read_stdin_object("OCI config", &text, &len);

	json_object *anns = NULL, *ann = NULL;
	if (!json_object_object_get_ex(cfg, "annotations", &anns) ||
	    !json_object_is_type(anns, json_type_object) ||
	    !json_object_object_get_ex(anns, ANN_SPEC, &ann)) {
		/* not ours: the config unchanged, byte for byte */
		if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0)
			die("writing the config: %s", strerror(errno));
		return 0;
	}
	if (!json_object_is_type(ann, json_type_string))
		die("annotation %s must be a string", ANN_SPEC);
	json_object *spec = load_spec(json_object_get_string(ann));

	/* the id: the spec's, else a fresh one */
	char idbuf[64];
	const char *id;
	json_object *jid = NULL;
	if (json_object_object_get_ex(spec, "id", &jid)) {
		if (!json_object_is_type(jid, json_type_string))
			die("annotation %s: spec field id must be a string", ANN_SPEC);
		id = json_object_get_string(jid);
	} else {
		make_id(idbuf, sizeof(idbuf));
		json_object_object_add(spec, "id", json_object_new_string(idbuf));
		id = idbuf;
	}

	/* the target: the spec's, else RUN_DIR/ID/rootfs, made here */
	bool own_target = false;
	char tbuf[PATH_MAX];
	json_object *jt = NULL;
	const char *target;
	if (json_object_object_get_ex(spec, "target", &jt)) {
		if (!json_object_is_type(jt, json_type_string))
			die("annotation %s: spec field target must be a string", ANN_SPEC);
		target = json_object_get_string(jt);
	} else {
		if (!valid_id_for_path(id))
			die("annotation %s: spec field id '%.200s' is not a valid mount id",
			    ANN_SPEC, id);
		if (snprintf(tbuf, sizeof(tbuf), "%s/%s/rootfs", run_dir(), id) >=
		    (int)sizeof(tbuf))
			die("target path too long");
		if (mkdir_p(tbuf, 0700) < 0)
			die("cannot create the mount target %s: %s", tbuf, strerror(errno));
		json_object_object_add(spec, "target", json_object_new_string(tbuf));
		target = tbuf;
		own_target = true;
	}
	char *id_copy = strdup(id), *target_copy = strdup(target);
	if (!id_copy || !target_copy)
		die("out of memory");

	const char *spec_text = json_object_to_json_string_ext(
		spec, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	const char *args[] = { "mount", NULL };
	struct run_result r;
	run_strata(spec_text, args, &r);
	if (r.status != 0) {
		char why[4096];
		strata_error(&r, why, sizeof(why));
		if (own_target)
			remove_own_target(id_copy);
		die("cannot mount the spec in annotation %s: %s", ANN_SPEC, why);
	}
	free_result(&r);

	/* the config, on the mount */
	json_object *root = NULL;
	if (!json_object_object_get_ex(cfg, "root", &root) ||
	    !json_object_is_type(root, json_type_object)) {
		root = json_object_new_object();
		json_object_object_add(cfg, "root", root);
	}
	json_object_object_add(root, "path", json_object_new_string(target_copy));
	json_object_object_add(anns, ANN_ID, json_object_new_string(id_copy));
	const char *out = json_object_to_json_string_ext(
		cfg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t olen = strlen(out);
	if (fwrite(out, 1, olen, stdout) != olen || fputc('\n', stdout) == EOF ||
	    fflush(stdout) != 0) {
		int e = errno;
		unmount_id(id_copy, false);
		if (own_target)
			remove_own_target(id_copy);
		die("writing the config: %s (unmounted %s again)", strerror(e), id_copy);
	}
	json_object_put(spec);
	json_object_put(cfg);
	free(text);
	free(id_copy);
	free(target_copy);
	return 0;
}

/* The mount id from the annotations of o (a state or a config), or NULL. */
static const char *mount_id_of(json_object *o)
{
	json_object *anns = NULL, *jid = NULL;
	if (!json_object_object_get_ex(o, "annotations", &anns) ||
	    !json_object_is_type(anns, json_type_object) ||
	    !json_object_object_get_ex(anns, ANN_ID, &jid))
		return NULL;
	if (!json_object_is_type(jid, json_type_string))
		die("annotation %s must be a string", ANN_ID);
	return json_object_get_string(jid);
}

/* podman (4.x) hands poststop hooks the annotations of the config as it was before the
 * precreate stage: the mount id is then only in the bundle's config.json, the config the
 * runtime was given. */
static json_object *bundle_config(json_object *st)
{
	json_object *jb = NULL;
	if (!json_object_object_get_ex(st, "bundle", &jb) ||
	    !json_object_is_type(jb, json_type_string))
		return NULL;
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/config.json", json_object_get_string(jb)) >=
	    (int)sizeof(path))
		return NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t len;
	char *text = read_all(fd, &len, path);
	close(fd);
	const char *perr = NULL;
	json_object *cfg = parse_json(text, len, &perr);
	free(text);
	return cfg;
}

static int cmd_poststop(void)
{
	size_t len;
	char *text;
	json_object *st = read_stdin_object("OCI state", &text, &len);
	json_object *cfg = NULL;
	const char *id = mount_id_of(st);
	if (!id && (cfg = bundle_config(st)))
		id = mount_id_of(cfg);
	int rc = 0;
	if (id) {
		if (unmount_id(id, false)) {
			if (valid_id_for_path(id))
				remove_own_target(id);
		} else {
			rc = 1;
		}
	}
	json_object_put(cfg);
	json_object_put(st);
	free(text);
	return rc;
}

static void usage(FILE *f)
{
	fputs("usage: strata-hook [--strata PATH] [--state-dir DIR] [--run-dir DIR] "
	      "precreate|poststop\n\n"
	      "  precreate  stdin: an OCI config; stdout: the config, with root.path on a strata\n"
	      "             mount when annotation io.strata.spec holds a spec (inline JSON or an\n"
	      "             absolute path), and annotation io.strata.mount-id set\n"
	      "  poststop   stdin: an OCI state; unmounts annotation io.strata.mount-id\n\n"
	      "Environment: STRATA, STRATA_STATE_DIR, STRATA_HOOK_RUN_DIR. See strata-hook(1).\n",
	      f);
}

int main(int argc, char **argv)
{
	/* a runtime may start hooks with SIGPIPE or SIGCHLD ignored */
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	int i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		const char **dst = NULL;
		if (!strcmp(a, "--strata"))
			dst = &opt_strata;
		else if (!strcmp(a, "--state-dir"))
			dst = &opt_state_dir;
		else if (!strcmp(a, "--run-dir"))
			dst = &opt_run_dir;
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else
			break;
		if (i + 1 >= argc) {
			msg("%s needs a value", a);
			return 2;
		}
		*dst = argv[++i];
		if (**dst != '/') {
			msg("%s must be an absolute path, not '%s'", a, *dst);
			return 2;
		}
	}
	if (i + 1 != argc) {
		usage(stderr);
		return 2;
	}
	stage = argv[i];
	if (!strcmp(argv[i], "precreate"))
		return cmd_precreate();
	if (!strcmp(argv[i], "poststop"))
		return cmd_poststop();
	msg("unknown stage '%s' (precreate or poststop)", argv[i]);
	usage(stderr);
	return 2;
}
