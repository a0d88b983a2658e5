/* fuzz_netmux.c — libFuzzer target for the vm network channel's frame
 * parser (netmux.c): the bytes a guest sends the host over "aegis-net".
 * The input is fed to a serving mux in chunks of varying size, as reads
 * deliver it; streams are served by socketpairs (odd ids are refused).
 * Properties beyond "no crash": after every chunk, each stream's pending
 * bytes plus what it took and the credit it still grants never exceed a
 * window, and the active count is the number of open streams. */
#include "../../src/common/netmux.c"

static int far[NETMUX_MAX_STREAMS * 4];
static size_t nfar;

static int fuzz_open(void *arg, unsigned id)
{
	int sp[2];

	(void)arg;
	if (id % 2 || nfar >= sizeof far / sizeof far[0] ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) < 0)
		return -1;
	far[nfar++] = sp[1];
	return sp[0];
}

static void check(const struct netmux *m)
{
	size_t open = 0;

	for (unsigned id = 0; id < NETMUX_MAX_STREAMS; id++) {
		const struct netmux_stream *s = &m->s[id];

		if (s->state == STREAM_OPEN)
			open++;
		if (s->pend_off > s->pend_len ||
		    (uint64_t)s->recv_credit + s->taken + (s->pend_len - s->pend_off) > NETMUX_WINDOW ||
		    s->send_credit > NETMUX_WINDOW)
			abort();
	}
	if (open != m->active)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct aegis_error err;
	struct netmux *m;
	int sp[2];
	size_t off = 0, chunk = 1;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return 0;
	m = netmux_new(sp[0], fuzz_open, NULL);
	while (m && off < size) {
		size_t n = size - off < chunk ? size - off : chunk;

		if (n > sizeof m->in - m->in_len)
			n = sizeof m->in - m->in_len;
		memcpy(m->in + m->in_len, data + off, n);
		m->in_len += n;
		off += n;
		chunk = chunk * 7 % 4099 + 1;	/* odd sizes: frames split anywhere */
		if (parse(m, &err) < 0)
			break;
		check(m);
	}
	netmux_free(m);
	close(sp[0]), close(sp[1]);
	while (nfar)
		close(far[--nfar]);
	return 0;
}
