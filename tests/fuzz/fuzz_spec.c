/* fuzz_spec.c - libFuzzer target for the strata spec parser (driver/spec.c): any bytes must
 * give either a spec or an error naming a field, never a crash, a leak or undefined
 * behaviour. Built and run by `make fuzz` (clang, ASan, UBSan). */
#include "strata.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct strata_spec spec;
	struct strata_error err;
	memset(&err, 0, sizeof(err));
	int r = strata_spec_parse((const char *)data, size, &spec, &err);
	if (r < 0 && (!err.exit_code || !err.message[0]))
		__builtin_trap(); /* every failure must explain itself */
	if (r == 0 && (!spec.id || !spec.target || spec.nlower < 1 || spec.target[0] != '/'))
		__builtin_trap(); /* a parsed spec is complete */
	if (r == 0) {
		json_object *o = strata_spec_options_json(&spec);
		json_object_put(o);
	}
	strata_spec_free(&spec);
	return 0;
}
