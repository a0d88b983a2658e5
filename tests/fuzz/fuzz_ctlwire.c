/* fuzz_ctlwire.c — libFuzzer target for what a guest sends the host on a
 * vm instance's control channel (ctlwire.h): a header and its JSON, as the
 * host's ctlproxy.c reads an answer. Properties beyond "no crash": an
 * accepted header's length is within the bound and not zero, and its
 * flag is the one defined; what is accepted as JSON is an object. The
 * same bytes as the host's clock message, as aegis-guest reads it after a
 * resume: a clock taken is within its bounds, one refused says why. */
#include <stdlib.h>
#include <string.h>

#include "../../src/common/ctlwire.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t len;
	bool with_fd;
	const char *why = NULL;
	json_t *j;

	if (size < CTLWIRE_HEADER)
		return 0;
	if (ctlwire_parse_header(data, CTLWIRE_ANSWER_MAX, &len, &with_fd))
		return 0;
	if (len == 0 || len > CTLWIRE_ANSWER_MAX || (data[4] & ~CTLWIRE_FLAG_FD))
		abort();
	if (size - CTLWIRE_HEADER < len)
		return 0;
	j = ctlwire_parse_json((const char *)data + CTLWIRE_HEADER, len, &why);
	if (j && !json_is_object(j))
		abort();
	if (!j && !why)
		abort();
	if (j) {
		struct timespec ts = { -1, -1 };

		why = ctlwire_clock_parse(j, &ts);
		if (!why && (ts.tv_sec < CTLWIRE_CLOCK_SEC_MIN || ts.tv_sec > CTLWIRE_CLOCK_SEC_MAX || ts.tv_nsec < 0 ||
			     ts.tv_nsec >= 1000000000L || json_object_size(j) != 1))
			abort();
	}
	json_decref(j);
	return 0;
}
