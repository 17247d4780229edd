// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* installer-uapi: the text protocol (PROTOCOL.md (f)). */
#include "installer_uapi.h"

/* Move *p (len bytes used of cap) into a new buffer of ncap bytes; the
 * old one, which may hold secrets, is wiped and freed. */
int secret_grow(char **p, size_t len, size_t cap, size_t ncap)
{
	char *n = malloc(ncap);

	if (!n)
		return -ENOMEM;
	if (*p) {
		memcpy(n, *p, len);
		sodium_memzero(*p, cap);
		free(*p);
	}
	*p = n;
	return 0;
}

static int sb_grow(struct sbuf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : 256;

	while (cap < b->len + need + 1)
		cap *= 2;
	if (secret_grow(&b->p, b->len, b->cap, cap)) {
		b->oom = true;
		return -ENOMEM;
	}
	b->cap = cap;
	return 0;
}

void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom || (!b->p && sb_grow(b, 0)))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		if (sb_grow(b, n))
			return;
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += n;
}

static void sb_key(struct sbuf *b, const char *name, const uint8_t key[WGGWD_KEY_LEN])
{
	char hex[WG_KEY_HEX_LEN];

	wg_key_to_hex(hex, key);
	sb_printf(b, "%s=%s\n", name, hex);
	sodium_memzero(hex, sizeof(hex));
}

void sb_free(struct sbuf *b)
{
	if (b->p) {
		sodium_memzero(b->p, b->cap);
		free(b->p);
	}
	memset(b, 0, sizeof(*b));
}

/* What an errno from the interface means (PROTOCOL.md (f)). */
const char *uapi_strerror(int err)
{
	switch (-err) {
	case EINVAL:
		return "EINVAL: the interface refused a key or value";
	case EPROTO:
		return "EPROTO: the interface could not parse a line";
	case EADDRINUSE:
		return "EADDRINUSE: the listen port is in use";
	case EIO:
		return "EIO: the interface failed to read or apply it";
	default:
		return strerror(-err);
	}
}

/* ---------------------------------------------------------- replies */

/* A decimal integer within INT64_MIN..INT64_MAX, else -EINVAL (empty, a
 * sign alone, '+', any other character, out of range): the digits are
 * checked against the limit before each step, so nothing overflows. */
static int parse_int(const char *s, size_t n, int64_t *out)
{
	bool neg = n && s[0] == '-';
	uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	size_t i = neg;

	if (i == n)
		return -EINVAL;
	for (; i < n; i++) {
		unsigned d = (unsigned char)s[i] - '0';

		if (d > 9 || v > (lim - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	/* -(v - 1) - 1: v may be 2^63, whose int64_t negation overflows */
	*out = neg ? (v ? -(int64_t)(v - 1) - 1 : 0) : (int64_t)v;
	return 0;
}

/* A reply ends in "errno=N\n\n": 0, or a negative errno. */
int reply_status(const char *s, size_t len)
{
	size_t i, end;
	int64_t v;

	if (len < 2)
		return -EPROTO;
	end = len - 2;
	for (i = end; i > 0 && s[i - 1] != '\n'; i--)
		;
	if (end - i < 7 || memcmp(s + i, "errno=", 6) || parse_int(s + i + 6, end - i - 6, &v))
		return -EPROTO;
	if (v > 4095 || v < -4095)
		return -EPROTO;
	return v > 0 ? (int)-v : (int)v;
}

/* A peer's preshared_key or allowed_ip line, into its digest. */
static int fill_line(const struct wge_env *env, struct wge_acc *acc, bool ip, const char *val,
		     size_t vl)
{
	uint8_t psk[WGGWD_KEY_LEN];
	struct wggwd_allowed_ip a;
	char buf[64];
	size_t bl;
	int ret = 0;

	if (ip) {
		if (vl >= sizeof(buf))
			return -EPROTO;
		memcpy(buf, val, vl);
		buf[vl] = '\0';
		if (wg_allowed_ip_parse(&a, buf))
			return -EPROTO;
		wge_acc_ip(env, acc, &a);
		return 0;
	}
	if (vl != 64 || sodium_hex2bin(psk, sizeof(psk), val, vl, NULL, &bl, NULL) ||
	    bl != WGGWD_KEY_LEN)
		ret = -EPROTO;
	else
		wge_acc_psk(env, acc, psk);
	sodium_memzero(psk, sizeof(psk));
	return ret;
}

/*
 * Parse a get reply: device lines into `dev` (if set), peers into a
 * new array (if `peersp`; else only counted into *np), and with `fill`,
 * each peer's configuration to the engine (wge_found). Linear; reads the
 * private key straight into the device struct, copies no other secret.
 */
int parse_get(const char *s, size_t len, struct wggwd_device *dev,
	      struct wggwd_peer_state **peersp, size_t *np, const struct wge_env *fill)
{
	static const uint8_t zero[WGGWD_KEY_LEN];
	struct wggwd_peer_state *v = NULL, *p = NULL;
	size_t n = 0, cap = 0, pos = 0, bl;
	struct wge_acc acc = { 0 };
	bool in_peer = false;

	while (pos < len) {
		const char *line = s + pos, *nl = memchr(line, '\n', len - pos), *eq, *val;
		size_t ll, kl, vl;
		int64_t num;

		if (!nl)
			break;
		ll = nl - line;
		pos += ll + 1;
		if (!ll)
			break;
		eq = memchr(line, '=', ll);
		if (!eq)
			goto proto;
		kl = eq - line;
		val = eq + 1;
		vl = ll - kl - 1;
#define IS(k) (kl == sizeof(k) - 1 && !memcmp(line, k, kl))
		if (IS("errno"))
			break;
		if (IS("public_key")) {
			in_peer = true;
			if (fill && p)
				wge_found(fill, p, &acc);
			if (fill) {
				memset(&acc, 0, sizeof(acc));
				wge_acc_psk(fill, &acc, zero);
			}
			if (!peersp) {
				n++;
				continue;
			}
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				struct wggwd_peer_state *nv = realloc(v, ncap * sizeof(*v));

				if (!nv) {
					free(v);
					return -ENOMEM;
				}
				v = nv;
				cap = ncap;
			}
			p = &v[n++];
			memset(p, 0, sizeof(*p));
			if (vl != 64 || sodium_hex2bin(p->public_key, WGGWD_KEY_LEN, val, vl, NULL,
						       &bl, NULL) || bl != WGGWD_KEY_LEN)
				goto proto;
			continue;
		}
		if (!in_peer) {
			if (!dev)
				continue;
			if (IS("private_key")) {
				if (vl != 64 || sodium_hex2bin(dev->private_key, WGGWD_KEY_LEN, val, vl,
							       NULL, &bl, NULL) || bl != WGGWD_KEY_LEN)
					goto proto;
				dev->has_private_key = !sodium_is_zero(dev->private_key,
									 WGGWD_KEY_LEN);
			} else if (IS("listen_port")) {
				if (parse_int(val, vl, &num) || num < 0 || num > 65535)
					goto proto;
				dev->listen_port = num;
			}
			continue;
		}
		if (!p)
			continue;
		if (fill && (IS("preshared_key") || IS("allowed_ip"))) {
			if (fill_line(fill, &acc, IS("allowed_ip"), val, vl))
				goto proto;
			continue;
		}
		if (IS("endpoint")) {
			char ep[INET6_ADDRSTRLEN + 16];

			/* a scoped v6 address (fe80::1%eth0) stays unset */
			if (vl < sizeof(ep)) {
				memcpy(ep, val, vl);
				ep[vl] = '\0';
				wg_sockaddr_parse(&p->endpoint, ep);
			}
			continue;
		}
		if (!IS("last_handshake_time_sec") && !IS("last_handshake_time_nsec") &&
		    !IS("rx_bytes") && !IS("tx_bytes") && !IS("persistent_keepalive_interval"))
			continue; /* allowed_ip, preshared_key, protocol_version, ... */
		if (parse_int(val, vl, &num) || num < 0 ||
		    (IS("last_handshake_time_nsec") && num > 999999999))
			goto proto;
		if (IS("last_handshake_time_sec"))
			p->last_handshake_sec = num;
		else if (IS("last_handshake_time_nsec"))
			p->last_handshake_nsec = num;
		else if (IS("rx_bytes"))
			p->rx_bytes = num;
		else if (IS("tx_bytes"))
			p->tx_bytes = num;
		else
			p->keepalive = num > 65535 ? 65535 : num;
#undef IS
	}
	if (fill && p)
		wge_found(fill, p, &acc);
	if (peersp)
		*peersp = v;
	*np = n;
	return 0;
proto:
	free(v);
	return -EPROTO;
}

/* One set of every entry, in order (PROTOCOL.md (f)). */
void render(struct sbuf *t, const struct wge_op *op)
{
	static const uint8_t zero[WGGWD_KEY_LEN];
	char buf[64];
	size_t i;
	uint32_t j;

	sb_printf(t, "set=1\n");
	for (i = 0; i < op->n; i++) {
		const struct wge_ent *en = &op->ent[i];
		const struct wggwd_peer *pe = en->peer;

		sb_key(t, "public_key", en->key);
		if (en->kind == WGE_REMOVE) {
			sb_printf(t, "remove=true\n");
			continue;
		}
		if (en->kind == WGE_KEEPALIVE) {
			sb_printf(t, "update_only=true\npersistent_keepalive_interval=%u\n",
				  en->keepalive);
			continue;
		}
		sb_key(t, "preshared_key", pe->has & WGGWD_PEER_HAS_PRESHARED_KEY ?
		       pe->preshared_key : zero); /* zero: none */
		if (en->ep.sa.sa_family != AF_UNSPEC) {
			wg_sockaddr_str(&en->ep, buf, sizeof(buf));
			sb_printf(t, "endpoint=%s\n", buf);
		}
		if (pe->has & WGGWD_PEER_HAS_ALLOWED_IPS) {
			if (!en->keep_ips)
				sb_printf(t, "replace_allowed_ips=true\n");
			for (j = 0; j < pe->n_allowed; j++) {
				wg_allowed_ip_str(&pe->allowed[j], buf, sizeof(buf));
				sb_printf(t, "allowed_ip=%s\n", buf);
			}
		}
		/* last, and in the same request as the endpoint: wireguard-go
		 * sends at once only on a change from 0 to non-zero */
		if (en->zero_first)
			sb_printf(t, "persistent_keepalive_interval=0\n");
		sb_printf(t, "persistent_keepalive_interval=%u\n", en->keepalive);
	}
	sb_printf(t, "\n");
}

void render_join(struct sbuf *t, const struct sbuf *more)
{
	/* "set=1\n" ENTRIES "\n" + "set=1\n" MORE "\n" -> "set=1\n" ENTRIES MORE "\n" */
	if (t->oom || more->oom || t->len < 7 || more->len < 7) {
		t->oom = true;
		return;
	}
	t->len--;
	if (t->cap < t->len + more->len - 6 + 1 && sb_grow(t, more->len - 6))
		return;
	memcpy(t->p + t->len, more->p + 6, more->len - 6);
	t->len += more->len - 6;
	t->p[t->len] = 0;
}

/*
 * The only blocking I/O: one get, to learn the private key and the port
 * before the decoder asks for them.
 */
int get_device_blocking(struct ctx *c, struct wggwd_device *dev, size_t *npeers)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = c->conf->e.timeout_ms / 1000,
			      .tv_usec = c->conf->e.timeout_ms % 1000 * 1000 };
	static const char get[] = "get=1\n\n";
	struct wggwd_peer_state *peers = NULL;
	char *buf = NULL;
	size_t len = 0, cap = 0, off = 0;
	ssize_t n;
	int fd, ret;

	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "cannot connect to %s: %s (is wireguard-go running for %s?)", c->path,
			     strerror(-ret), c->conf->e.interface);
		goto out;
	}
	while (off < sizeof(get) - 1) {
		n = write(fd, get + off, sizeof(get) - 1 - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = errno == EAGAIN ? -ETIMEDOUT : -errno;
			goto io;
		}
		off += n;
	}
	for (;;) {
		if (cap - len < RBUF_MIN / 4) {
			size_t ncap = cap ? cap * 2 : RBUF_MIN;

			if (ncap > c->conf->max_reply)
				ncap = c->conf->max_reply;
			ret = -EMSGSIZE;
			if (ncap - len < RBUF_MIN / 4)
				goto io; /* no blank line within max_reply */
			ret = -ENOMEM;
			if (secret_grow(&buf, len, cap, ncap))
				goto io;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = errno == EAGAIN ? -ETIMEDOUT : -errno;
			goto io;
		}
		if (n == 0) {
			ret = -ECONNRESET;
			goto io;
		}
		off = len ? len - 1 : 0;
		len += n;
		if (memmem(buf + off, len - off, "\n\n", 2))
			break;
	}
	ret = reply_status(buf, len);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "get on %s failed: errno=%d (%s)", c->path,
			     ret, uapi_strerror(ret));
		goto out;
	}
	ret = parse_get(buf, len, dev, &peers, npeers, c->env);
	if (ret)
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: could not parse the reply to get",
			     c->path);
	goto out;
io:
	if (ret == -EMSGSIZE)
		c->host->log(c->self, WGGWD_LOG_ERROR, "get on %s: no end of the reply within max_reply (%llu bytes)",
			     c->path, (unsigned long long)c->conf->max_reply);
	else
		c->host->log(c->self, WGGWD_LOG_ERROR, "get on %s: %s", c->path, strerror(-ret));
out:
	if (buf) {
		sodium_memzero(buf, cap);
		free(buf);
	}
	free(peers);
	close(fd);
	return ret;
}

