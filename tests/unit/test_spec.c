/* test_spec.c - the spec parser (driver/spec.c): both forms, defaults, and a specific error
 * naming the field for each kind of bad input. */
#include "strata.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

static struct strata_error err;
static struct strata_spec spec;

static int parse(const char *json)
{
	memset(&err, 0, sizeof(err));
	strata_spec_free(&spec);
	return strata_spec_parse(json, strlen(json), &spec, &err);
}

/* parse must fail with exit 2 naming field (and errno e, unless 0) */
static void bad(const char *name, const char *json, const char *field, int e)
{
	char n[2048];
	int r = parse(json);
	snprintf(n, sizeof(n), "%s: refused", name);
	CHECK(n, r < 0 && err.exit_code == STRATA_EXIT_USAGE);
	snprintf(n, sizeof(n), "%s: names field '%s' (got '%s': %s)", name, field, err.field,
		 err.message);
	CHECK(n, !strcmp(err.field, field));
	if (e) {
		snprintf(n, sizeof(n), "%s: %s (got %s)", name, strata_errno_name(e),
			 strata_errno_name(err.errnum));
		CHECK(n, err.errnum == e);
	}
}

static char *layers_json(int n)
{
	size_t cap = (size_t)n * 16 + 128;
	char *s = malloc(cap), *p = s;
	p += sprintf(p, "{\"target\":\"/t\",\"lower\":[");
	for (int i = 0; i < n; i++)
		p += sprintf(p, "%s\"/l%d\"", i ? "," : "", i);
	sprintf(p, "]}");
	return s;
}

int main(void)
{
	CHECK("native spec parses",
	      parse("{\"id\":\"web-1\",\"target\":\"/mnt/x\",\"lower\":[\"/a\",\"/b\"],"
		    "\"upper\":\"/u\",\"work\":\"/w\",\"options\":{\"volatile\":true,"
		    "\"timeout\":2.5,\"mountOptions\":[\"nosuid\",\"dev\"]},"
		    "\"uidMappings\":[{\"containerID\":0,\"hostID\":100000,\"size\":65536}]}") ==
		      0);
	CHECK("native: id", !strcmp(spec.id, "web-1") && spec.id_given);
	CHECK("native: layers in order",
	      spec.nlower == 2 && !strcmp(spec.lower[0], "/a") && !strcmp(spec.lower[1], "/b"));
	CHECK("native: upper/work", !strcmp(spec.upper, "/u") && !strcmp(spec.work, "/w"));
	CHECK("native: read-write", !spec.readonly && !(spec.mflags & MS_RDONLY));
	CHECK("native: options", spec.volatile_ && spec.timeout_set && spec.timeout == 2.5);
	CHECK("native: mount flags", (spec.mflags & MS_NOSUID) && !(spec.mflags & MS_NODEV));
	CHECK("native: uid mapping",
	      spec.nuidmap == 1 && spec.uidmap[0].host == 100000 && spec.uidmap[0].size == 65536);
	CHECK("native: form", !strcmp(spec.form, "native"));

	CHECK("no upper: read-only", parse("{\"target\":\"/t\",\"lower\":[\"/a\"]}") == 0 &&
					     spec.readonly && (spec.mflags & MS_RDONLY) &&
					     !spec.id_given && !strncmp(spec.id, "mnt-", 4));
	CHECK("readonly:true with an upper is read-only",
	      parse("{\"target\":\"/t\",\"lower\":[\"/a\"],\"upper\":\"/u\",\"work\":\"/w\","
		    "\"readonly\":true}") == 0 &&
		      spec.readonly);
	CHECK("trailing whitespace is fine",
	      parse("{\"target\":\"/t\",\"lower\":[\"/a\"]}\n\n") == 0);

	CHECK("containerd Mount parses",
	      parse("{\"type\":\"fuse3.stratafs\",\"source\":\"overlay\",\"target\":\"/t\","
		    "\"options\":[\"lowerdir=/a:/b\\\\:c\",\"upperdir=/u\",\"workdir=/w\",\"index=off\","
		    "\"userxattr\",\"nodev\"]}") == 0);
	CHECK("containerd: form", !strcmp(spec.form, "containerd"));
	CHECK("containerd: lowerdir split with \\: escapes",
	      spec.nlower == 2 && !strcmp(spec.lower[0], "/a") && !strcmp(spec.lower[1], "/b:c"));
	CHECK("containerd: upper/work", !strcmp(spec.upper, "/u") && !strcmp(spec.work, "/w"));
	CHECK("containerd: userxattr", spec.userxattr);
	CHECK("containerd: a one-element array is taken",
	      parse("[{\"type\":\"overlay\",\"source\":\"overlay\",\"target\":\"/t\",\"id\":\"c1\","
		    "\"options\":[\"lowerdir=/a\"]}]") == 0 &&
		      !strcmp(spec.id, "c1") && spec.readonly);

	bad("malformed JSON", "{\"target\": \"/t\", ", "spec", EINVAL);
	bad("not JSON at all", "hello", "spec", EINVAL);
	bad("empty spec", "", "spec", EINVAL);
	bad("trailing data", "{\"target\":\"/t\",\"lower\":[\"/a\"]} x", "spec", EINVAL);
	bad("invalid UTF-8", "{\"target\":\"/t\xff\",\"lower\":[\"/a\"]}", "spec", EILSEQ);
	bad("not an object", "[1,2]", "spec", EINVAL);
	bad("a number", "42", "spec", EINVAL);
	bad("missing target", "{\"lower\":[\"/a\"]}", "target", EINVAL);
	bad("missing lower", "{\"target\":\"/t\"}", "lower", EINVAL);
	bad("empty lower", "{\"target\":\"/t\",\"lower\":[]}", "lower", EINVAL);
	bad("lower not an array", "{\"target\":\"/t\",\"lower\":\"/a\"}", "lower", EINVAL);
	bad("target not a string", "{\"target\":7,\"lower\":[\"/a\"]}", "target", EINVAL);
	bad("relative target", "{\"target\":\"t\",\"lower\":[\"/a\"]}", "target", EINVAL);
	bad("relative lower", "{\"target\":\"/t\",\"lower\":[\"/a\",\"b/c\"]}", "lower[1]", EINVAL);
	bad("lower of wrong type", "{\"target\":\"/t\",\"lower\":[\"/a\",null]}", "lower[1]",
	    EINVAL);
	bad("NUL in a path", "{\"target\":\"/t\",\"lower\":[\"/a\\u0000b\"]}", "lower[0]", EINVAL);
	bad("empty path", "{\"target\":\"/t\",\"lower\":[\"\"]}", "lower[0]", EINVAL);
	bad("upper without work", "{\"target\":\"/t\",\"lower\":[\"/a\"],\"upper\":\"/u\"}", "work",
	    EINVAL);
	bad("work without upper", "{\"target\":\"/t\",\"lower\":[\"/a\"],\"work\":\"/w\"}", "upper",
	    EINVAL);
	bad("relative upper",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"upper\":\"u\",\"work\":\"/w\"}", "upper",
	    EINVAL);
	bad("readonly not a bool", "{\"target\":\"/t\",\"lower\":[\"/a\"],\"readonly\":\"yes\"}",
	    "readonly", EINVAL);
	bad("unknown field", "{\"target\":\"/t\",\"lower\":[\"/a\"],\"lowers\":[]}", "lowers",
	    EINVAL);
	bad("id with a slash", "{\"id\":\"a/b\",\"target\":\"/t\",\"lower\":[\"/a\"]}", "id",
	    EINVAL);
	bad("id '..'", "{\"id\":\"..\",\"target\":\"/t\",\"lower\":[\"/a\"]}", "id", EINVAL);
	bad("empty id", "{\"id\":\"\",\"target\":\"/t\",\"lower\":[\"/a\"]}", "id", EINVAL);
	bad("id not a string", "{\"id\":5,\"target\":\"/t\",\"lower\":[\"/a\"]}", "id", EINVAL);
	{
		char json[512], id[200];
		memset(id, 'x', 129);
		id[129] = '\0';
		snprintf(json, sizeof(json), "{\"id\":\"%s\",\"target\":\"/t\",\"lower\":[\"/a\"]}",
			 id);
		bad("id of 129 bytes", json, "id", ENAMETOOLONG);
		id[128] = '\0';
		snprintf(json, sizeof(json), "{\"id\":\"%s\",\"target\":\"/t\",\"lower\":[\"/a\"]}",
			 id);
		CHECK("id of 128 bytes is fine", parse(json) == 0);
	}
	{
		char *j = layers_json(600);
		bad("600 layers", j, "lower", E2BIG);
		free(j);
		j = layers_json(500);
		CHECK("500 layers are fine", parse(j) == 0 && spec.nlower == 500);
		free(j);
	}
	{
		size_t n = 10u << 20;
		char *big = malloc(n + 1);
		memset(big, ' ', n);
		memcpy(big, "{\"target\":\"/t\",\"lower\":[\"/a\"]}", 30);
		big[n] = '\0';
		memset(&err, 0, sizeof(err));
		strata_spec_free(&spec);
		int r = strata_spec_parse(big, n, &spec, &err);
		CHECK("a 10 MB spec is refused",
		      r < 0 && err.errnum == E2BIG && !strcmp(err.field, "spec"));
		free(big);
	}
	{
		char path[5000] = "{\"target\":\"/";
		memset(path + 12, 'a', 4200);
		strcpy(path + 4212, "\",\"lower\":[\"/a\"]}");
		bad("a path over PATH_MAX", path, "target", ENAMETOOLONG);
	}
	bad("deep nesting",
	    "{\"target\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
	    "spec", 0);
	bad("options not an object", "{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":[]}",
	    "options", EINVAL);
	bad("unknown option", "{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"turbo\":true}}",
	    "options.turbo", EINVAL);
	bad("option of wrong type",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"volatile\":1}}",
	    "options.volatile", EINVAL);
	bad("negative timeout",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"timeout\":-1}}",
	    "options.timeout", ERANGE);
	bad("bad mount option",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"mountOptions\":[\"nodev\",\"bind\"]}}",
	    "options.mountOptions[1]", EINVAL);
	bad("passthrough of wrong type",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"passthrough\":1}}",
	    "options.passthrough", EINVAL);
	bad("passthrough: a string other than all",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"passthrough\":\"yes\"}}",
	    "options.passthrough", EINVAL);
	bad("passthrough with the writeback cache",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"passthrough\":true,"
	    "\"writeback\":true}}",
	    "options.passthrough", EINVAL);
	CHECK("passthrough: off by default",
	      parse("{\"target\":\"/t\",\"lower\":[\"/a\"]}") == 0 && spec.passthrough == 0);
	CHECK("passthrough: true",
	      parse("{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"passthrough\":true}}") ==
			      0 &&
		      spec.passthrough == 1);
	CHECK("passthrough: false",
	      parse("{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"passthrough\":false}}") ==
			      0 &&
		      spec.passthrough == 0);
	CHECK("passthrough: \"all\"",
	      parse("{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"passthrough\":\"all\"}}") ==
			      0 &&
		      spec.passthrough == 2);
	CHECK("containerd: passthrough=all",
	      parse("{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\","
		    "\"passthrough=all\"]}") == 0 &&
		      spec.passthrough == 2);
	CHECK("containerd: passthrough (bare word)",
	      parse("{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\","
		    "\"passthrough\"]}") == 0 &&
		      spec.passthrough == 1);
	CHECK("containerd: passthrough=0",
	      parse("{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\","
		    "\"passthrough=0\"]}") == 0 &&
		      spec.passthrough == 0);
	bad("containerd: passthrough=yes",
	    "{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\","
	    "\"passthrough=yes\"]}",
	    "options[1]", EINVAL);
	CHECK("spin: stratafs's default unless given",
	      parse("{\"target\":\"/t\",\"lower\":[\"/a\"]}") == 0 && spec.spin_us == -1);
	CHECK("spin: 0 and 100000 taken",
	      parse("{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"spin\":0}}") == 0 &&
		      spec.spin_us == 0 &&
		      parse("{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"spin\":100000}}") ==
			      0 &&
		      spec.spin_us == 100000);
	bad("spin: over 100000",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"spin\":100001}}", "options.spin",
	    EINVAL);
	bad("spin: negative", "{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"spin\":-1}}",
	    "options.spin", EINVAL);
	bad("spin: not an integer",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"options\":{\"spin\":1.5}}", "options.spin",
	    EINVAL);
	CHECK("containerd: spin=20",
	      parse("{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\","
		    "\"spin=20\"]}") == 0 &&
		      spec.spin_us == 20);
	bad("containerd: spin=x",
	    "{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\","
	    "\"spin=x\"]}",
	    "options[1]", EINVAL);
	bad("mapping without hostID",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"uidMappings\":[{\"containerID\":0,\"size\":1}]}",
	    "uidMappings[0].hostID", EINVAL);
	bad("mapping of size 0",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"gidMappings\":[{\"containerID\":0,\"hostID\":1,"
	    "\"size\":0}]}",
	    "gidMappings[0].size", EINVAL);
	bad("mapping with a negative id",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"uidMappings\":[{\"containerID\":-1,\"hostID\":1,"
	    "\"size\":1}]}",
	    "uidMappings[0].containerID", EINVAL);
	bad("mapping that overflows",
	    "{\"target\":\"/t\",\"lower\":[\"/a\"],\"uidMappings\":[{\"containerID\":0,"
	    "\"hostID\":4294967295,\"size\":2}]}",
	    "uidMappings[0]", ERANGE);
	bad("containerd: wrong type",
	    "{\"type\":\"ext4\",\"source\":\"x\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\"]}",
	    "type", EINVAL);
	bad("containerd: no lowerdir",
	    "{\"type\":\"fuse3.stratafs\",\"source\":\"x\",\"target\":\"/t\",\"options\":[\"upperdir=/u\"]}",
	    "options", EINVAL);
	bad("containerd: relative lowerdir",
	    "{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a:b\"]}",
	    "options[0].lowerdir[1]", EINVAL);
	bad("containerd: empty lowerdir element",
	    "{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a::/b\"]}",
	    "options[0].lowerdir[1]", EINVAL);
	bad("containerd: relative upperdir",
	    "{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\","
	    "\"upperdir=u\",\"workdir=/w\"]}",
	    "options[1]", EINVAL);
	bad("containerd: upperdir without workdir",
	    "{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\","
	    "\"upperdir=/u\"]}",
	    "options", EINVAL);
	bad("containerd: unknown option",
	    "{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\",\"bind\"]}",
	    "options[1]", EINVAL);
	bad("containerd: option not a string",
	    "{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\",3]}",
	    "options[1]", EINVAL);
	bad("containerd: unknown field",
	    "{\"type\":\"fuse3.stratafs\",\"target\":\"/t\",\"options\":[\"lowerdir=/a\"],\"x\":1}",
	    "x", EINVAL);
	bad("two mounts in an array", "[{\"target\":\"/t\",\"lower\":[\"/a\"]},{}]", "spec",
	    EINVAL);

	/* the JSON helpers the document is built from */
	memset(&err, 0, sizeof(err));
	strata_fail(&err, 1, ENOENT, "lower[1]", "gone");
	strata_fail(&err, 2, EINVAL, "id", "later errors do not replace the first");
	json_object *doc = strata_error_doc("x", &err);
	const char *s = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN);
	CHECK("error document", !strcmp(s, "{\"id\":\"x\",\"state\":\"error\",\"error\":{\"code\":"
					   "\"ENOENT\",\"errno\":2,\"field\":\"lower[1]\","
					   "\"message\":\"gone\"}}"));
	json_object_put(doc);
	strata_spec_free(&spec);
	TAP_DONE();
}
