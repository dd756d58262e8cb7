/* fuzz_params.c - libFuzzer target for stratafs's option parser (core/params.c): option
 * strings (split at NUL bytes into several -o arguments), lowerdir escapes (\: and \\),
 * uid/gid mappings, numbers. Any bytes give parameters or a one-line error, never a
 * crash, a leak or undefined behaviour; lowerdir splitting round-trips. Built and run by
 * `make fuzz` (clang, ASan, UBSan). */
#include "ovl.h"

#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* Escapes a list back into lowerdir syntax: splitting it must give the list again. */
static char *join_escaped(char **v, int n)
{
	size_t len = 1;
	for (int i = 0; i < n; i++)
		len += 2 * strlen(v[i]) + 1;
	char *s = malloc(len), *o = s;
	if (!s)
		return NULL;
	for (int i = 0; i < n; i++) {
		if (i)
			*o++ = ':';
		for (const char *c = v[i]; *c; c++) {
			if (*c == ':' || *c == '\\')
				*o++ = '\\';
			*o++ = *c;
		}
	}
	*o = '\0';
	return s;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char *buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';

	struct ovl_params p;
	memset(&p, 0, sizeof(p));
	p.threaded = true;
	p.squash_uid = p.squash_gid = -1;
	char err[512];
	bool ok = true;
	/* each NUL-separated piece is one -o argument, as main() passes them */
	for (size_t off = 0; off <= size && ok; off += strlen(buf + off) + 1) {
		err[0] = '\0';
		if (ovl_parse_opts(&p, buf + off, err, sizeof(err)) < 0) {
			ok = false;
			if (!err[0])
				__builtin_trap(); /* a refusal must say why */
		}
	}
	if (ok) {
		p.mountpoint = strdup("/mnt");
		err[0] = '\0';
		if (ovl_params_validate(&p, err, sizeof(err)) < 0 && !err[0])
			__builtin_trap();
	}
	if (p.nlower < 0 || p.nlower > 100000 || (p.nlower && !p.lowerdirs))
		__builtin_trap();
	for (int i = 0; i < p.nlower; i++)
		if (!p.lowerdirs[i] || !p.lowerdirs[i][0])
			__builtin_trap(); /* empty layers are dropped */
	ovl_params_free(&p);

	/* lowerdir splitting on the raw input: no empty element, and a round trip */
	char **v = NULL;
	int n = ovl_split_lowerdir(buf, &v);
	if (n > 0) {
		char *j = join_escaped(v, n);
		char **v2 = NULL;
		int n2 = j ? ovl_split_lowerdir(j, &v2) : -1;
		if (j && n2 != n)
			__builtin_trap();
		for (int i = 0; i < n2; i++) {
			if (strcmp(v[i], v2[i]))
				__builtin_trap();
			free(v2[i]);
		}
		free(v2);
		free(j);
	}
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
	free(buf);
	return 0;
}
