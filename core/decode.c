// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * `wggwd decode`: run a decoder plugin (decoder-noise by default) over
 * packets given as hex or read from a pcap file, one JSON line each.
 * The core knows no crypto: it only feeds the plugin and prints what the
 * plugin put in the item.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <pcap/pcap.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core.h"
#include "decode.h"
#include "wgutil.h"

int tai64n_to_unix(const uint8_t tai[12], int64_t *sec, uint32_t *nsec)
{
	uint64_t s = 0;
	uint32_t ns = 0;
	int i;

	for (i = 0; i < 8; i++)
		s = s << 8 | tai[i];
	for (i = 8; i < 12; i++)
		ns = ns << 8 | tai[i];
	if (s < 0x400000000000000aull || ns >= 1000000000u)
		return -ERANGE;
	*sec = (int64_t)(s - 0x400000000000000aull);
	*nsec = ns;
	return 0;
}

int udp_payload(int linktype, const uint8_t *p, size_t len,
		union wggwd_sockaddr *src, union wggwd_sockaddr *dst,
		const uint8_t **payload, size_t *plen)
{
	size_t off = 0, ihl;
	uint16_t proto = 0;
	struct udphdr uh;
	uint8_t v;

	switch (linktype) {
	case DLT_EN10MB:
		if (len < 14)
			return -EINVAL;
		proto = p[12] << 8 | p[13];
		off = 14;
		if (proto == 0x8100 && len >= 18) { /* one VLAN tag */
			proto = p[16] << 8 | p[17];
			off = 18;
		}
		break;
	case DLT_LINUX_SLL:
		if (len < 16)
			return -EINVAL;
		proto = p[14] << 8 | p[15];
		off = 16;
		break;
	case DLT_RAW:
	case 228: /* DLT_IPV4 */
	case 229: /* DLT_IPV6 */
		if (len < 1)
			return -EINVAL;
		proto = (p[0] >> 4) == 6 ? 0x86dd : 0x0800;
		break;
	default:
		return -EPROTONOSUPPORT;
	}
	memset(src, 0, sizeof(*src));
	memset(dst, 0, sizeof(*dst));
	if (proto == 0x0800) {
		if (len < off + 20)
			return -EINVAL;
		v = p[off];
		ihl = (v & 0xf) * 4;
		if (v >> 4 != 4 || ihl < 20 || len < off + ihl + 8 || p[off + 9] != 17)
			return -EINVAL;
		if ((p[off + 6] << 8 | p[off + 7]) & 0x1fff)
			return -EINVAL; /* not the first fragment */
		src->in4.sin_family = dst->in4.sin_family = AF_INET;
		memcpy(&src->in4.sin_addr, p + off + 12, 4);
		memcpy(&dst->in4.sin_addr, p + off + 16, 4);
		off += ihl;
	} else if (proto == 0x86dd) {
		if (len < off + 40 + 8 || p[off + 6] != 17)
			return -EINVAL; /* extension headers are not followed */
		src->in6.sin6_family = dst->in6.sin6_family = AF_INET6;
		memcpy(&src->in6.sin6_addr, p + off + 8, 16);
		memcpy(&dst->in6.sin6_addr, p + off + 24, 16);
		off += 40;
	} else {
		return -EINVAL;
	}
	memcpy(&uh, p + off, sizeof(uh));
	if (src->sa.sa_family == AF_INET) {
		src->in4.sin_port = uh.source;
		dst->in4.sin_port = uh.dest;
	} else {
		src->in6.sin6_port = uh.source;
		dst->in6.sin6_port = uh.dest;
	}
	off += 8;
	*payload = p + off;
	*plen = len - off;
	if (ntohs(uh.len) >= 8 && ntohs(uh.len) - 8u < *plen)
		*plen = ntohs(uh.len) - 8u; /* Ethernet padding */
	return 0;
}

struct decoder {
	struct stage_conf sc;
	struct wggwd_inst in;
	uint64_t n;
	int errors;
};

static void print_result(struct decoder *d, struct wggwd_item *it, int v,
			 long frame)
{
	char b64[sodium_base64_ENCODED_LEN(WGGWD_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
	char hex[25], addr[64], utc[64];
	int64_t sec;
	uint32_t nsec;
	struct tm tm;
	time_t t;

	d->n++;
	printf("{\"packet\":%llu", (unsigned long long)d->n);
	if (frame >= 0)
		printf(",\"frame\":%ld", frame);
	if (it->src.sa.sa_family) {
		wg_sockaddr_str(&it->src, addr, sizeof(addr));
		printf(",\"src\":\"%s\"", addr);
	}
	printf(",\"length\":%u", it->pkt_len);
	if (v == WGGWD_CONTINUE || v == WGGWD_DONE) {
		sodium_bin2base64(b64, sizeof(b64), it->public_key, WGGWD_KEY_LEN,
				  sodium_base64_VARIANT_ORIGINAL);
		printf(",\"public_key\":\"%s\",\"sender_index\":%u", b64, it->sender_index);
		if (it->flags & WGGWD_ITEM_HAS_TIMESTAMP) {
			sodium_bin2hex(hex, sizeof(hex), it->tai64n, sizeof(it->tai64n));
			printf(",\"timestamp\":\"%s\"", hex);
			if (!tai64n_to_unix(it->tai64n, &sec, &nsec)) {
				t = sec;
				gmtime_r(&t, &tm);
				strftime(utc, sizeof(utc), "%Y-%m-%dT%H:%M:%S", &tm);
				printf(",\"timestamp_utc\":\"%s.%09uZ\"", utc, nsec);
			}
		}
		printf(",\"mac1_ok\":%s,\"authenticated\":%s}\n",
		       it->flags & WGGWD_ITEM_MAC1_OK ? "true" : "false",
		       it->flags & WGGWD_ITEM_AUTHENTICATED ? "true" : "false");
	} else {
		printf(",\"error\":\"%s\",\"mac1_ok\":%s,\"authenticated\":false}\n",
		       it->reason ? reason_name(it->reason) : "error",
		       it->flags & WGGWD_ITEM_MAC1_OK ? "true" : "false");
	}
}

static void decode_one(struct decoder *d, const uint8_t *pkt, size_t len,
		       const union wggwd_sockaddr *src, long frame)
{
	struct wggwd_item *it = item_alloc();
	int v;

	it->type = WGGWD_MSG_PKT;
	it->transport = WGGWD_TR_UDP;
	if (item_set_pkt(it, pkt, len)) {
		item_release(it);
		d->errors++;
		return;
	}
	if (src) {
		it->src = *src;
		it->endpoint = *src;
	}
	it->rx_realtime_ns = now_real_ns();
	v = d->in.ops->process(d->in.ctx, it);
	if (v == WGGWD_PENDING) {
		fprintf(stderr, "wggwd decode: the decoder wants to finish later; not supported here\n");
		d->errors++;
		return; /* the plugin keeps the item */
	}
	print_result(d, it, v, frame);
	item_release(it);
}

static int decode_pcap(struct decoder *d, const char *file, bool all)
{
	char errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const uint8_t *data, *pl;
	union wggwd_sockaddr src, dst;
	size_t plen;
	long frame = 0;
	pcap_t *pc;
	int ret, lt;

	pc = pcap_open_offline(file, errbuf);
	if (!pc) {
		fprintf(stderr, "wggwd decode: %s\n", errbuf);
		return -1;
	}
	lt = pcap_datalink(pc);
	while ((ret = pcap_next_ex(pc, &h, &data)) == 1) {
		frame++;
		if (udp_payload(lt, data, h->caplen, &src, &dst, &pl, &plen))
			continue;
		/* what source-bpf selects: initiations, by their type byte */
		if (!all && (plen < 1 || pl[0] != 1))
			continue;
		decode_one(d, pl, plen, &src, frame);
	}
	if (ret == -1) {
		fprintf(stderr, "wggwd decode: %s: %s\n", file, pcap_geterr(pc));
		d->errors++;
	}
	pcap_close(pc);
	return 0;
}

static int decode_hex(struct decoder *d, const char *hex)
{
	uint8_t buf[2048];
	size_t len;

	if (sodium_hex2bin(buf, sizeof(buf), hex, strlen(hex), ": ", &len, NULL)) {
		fprintf(stderr, "wggwd decode: --hex: not hex, or longer than %zu bytes\n",
			sizeof(buf));
		return -1;
	}
	decode_one(d, buf, len, NULL, -1);
	return 0;
}

static const struct wggwd_opt *find_opt(const struct wggwd_opt *o, const char *name)
{
	for (; o && o->name; o++)
		if (!strcmp(o->name, name))
			return o;
	return NULL;
}

int cmd_decode(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "private-key-file", required_argument, NULL, 'k' },
		{ "hex", required_argument, NULL, 'x' },
		{ "pcap", required_argument, NULL, 'p' },
		{ "decoder", required_argument, NULL, 'd' },
		{ "set", required_argument, NULL, 's' },
		{ "no-auth", no_argument, NULL, 'n' },
		{ "all", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *keyfile = NULL, *decoder = "decoder-noise";
	const char *hexes[64], *pcaps[16], *sets[16];
	size_t nhex = 0, npcap = 0, nset = 0, i;
	bool noauth = false, all = false;
	struct decoder d = { 0 };
	struct search_path sp;
	struct opt_ctx oc = { .file = "(decode)", .prefix = "" };
	const struct wggwd_opt *o;
	char err[1024];
	uv_loop_t loop;
	struct plugin *p;
	int c, ret = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "k:x:p:d:s:nah", lo, NULL)) != -1) {
		switch (c) {
		case 'k': keyfile = optarg; break;
		case 'x': if (nhex < ARRAY_SIZE(hexes)) hexes[nhex++] = optarg; break;
		case 'p': if (npcap < ARRAY_SIZE(pcaps)) pcaps[npcap++] = optarg; break;
		case 'd': decoder = optarg; break;
		case 's': if (nset < ARRAY_SIZE(sets)) sets[nset++] = optarg; break;
		case 'n': noauth = true; break;
		case 'a': all = true; break;
		case 'h':
			puts("usage: wggwd decode --private-key-file F (--hex HEX | --pcap FILE)...\n"
			     "         [--no-auth] [--all] [--decoder NAME] [--set OPTION=VALUE]...\n"
			     "F holds the responder's private key in base64, as `wg genkey` writes it.\n"
			     "--no-auth stops after the initiator's static key (it is then unproven);\n"
			     "--all decodes every UDP payload of the pcap, not only type-1 packets.");
			return 0;
		default:
			return 2;
		}
	}
	if (!keyfile || (!nhex && !npcap)) {
		fputs("wggwd decode: --private-key-file and --hex or --pcap are required\n", stderr);
		return 2;
	}
	search_path_init(&sp, NULL);
	p = plugin_load(&sp, decoder, err, sizeof(err));
	search_path_free(&sp);
	if (!p) {
		fprintf(stderr, "wggwd decode: %s\n", err);
		return 1;
	}
	if (p->desc.kind != WGGWD_DECODER) {
		fprintf(stderr, "wggwd decode: %s is a %s, not a decoder\n", decoder,
			kind_name(p->desc.kind));
		goto out_unload;
	}
	uv_loop_init(&loop);
	host_init(&loop);
	d.sc.name = (char *)"decode";
	d.sc.plugin_name = (char *)decoder;
	d.sc.plugin = p;
	d.sc.conf = xcalloc(1, p->desc.conf_size);
	d.in.sc = &d.sc;
	d.in.p = p;
	d.in.ops = &p->ops;
	snprintf(d.in.prefix, sizeof(d.in.prefix), "[%s:decode]", decoder);
	opts_apply(&oc, p->desc.opts, d.sc.conf, 0, (yaml_mark_t){ 0 });
	/* the decoder's options, set as if written in YAML */
	o = find_opt(p->desc.opts, "private_key_file");
	if (!o || opt_set_string(o, d.sc.conf, keyfile, err, sizeof(err))) {
		fprintf(stderr, "wggwd decode: %s: %s\n", decoder,
			o ? err : "has no private_key_file option");
		goto out;
	}
	if (noauth && ((o = find_opt(p->desc.opts, "authenticate")) == NULL ||
		       opt_set_string(o, d.sc.conf, "false", err, sizeof(err)))) {
		fprintf(stderr, "wggwd decode: %s: cannot turn authentication off\n", decoder);
		goto out;
	}
	/* one packet at a time, here: a decoder that can decode on threads
	 * is told not to (it would answer PENDING) */
	if ((o = find_opt(p->desc.opts, "threads")) != NULL)
		opt_set_string(o, d.sc.conf, "0", err, sizeof(err));
	for (i = 0; i < nset; i++) {
		char name[128], *eq = strchr(sets[i], '=');

		if (!eq || (size_t)(eq - sets[i]) >= sizeof(name)) {
			fprintf(stderr, "wggwd decode: --set %s: expected OPTION=VALUE\n", sets[i]);
			goto out;
		}
		memcpy(name, sets[i], eq - sets[i]);
		name[eq - sets[i]] = '\0';
		o = find_opt(p->desc.opts, name);
		if (!o || opt_set_string(o, d.sc.conf, eq + 1, err, sizeof(err))) {
			fprintf(stderr, "wggwd decode: --set %s: %s\n", sets[i],
				o ? err : "no such option");
			goto out;
		}
	}
	if (oc.errors)
		goto out;
	if (d.in.ops->create(&host_services, &d.in, d.sc.conf, &d.in.ctx)) {
		fprintf(stderr, "wggwd decode: %s: create failed\n", decoder);
		goto out;
	}
	d.in.created = true;
	if (d.in.ops->start && d.in.ops->start(d.in.ctx)) {
		fprintf(stderr, "wggwd decode: %s: start failed (see above)\n", decoder);
		goto out;
	}
	ret = 0;
	for (i = 0; i < nhex; i++)
		if (decode_hex(&d, hexes[i]))
			ret = 1;
	for (i = 0; i < npcap; i++)
		if (decode_pcap(&d, pcaps[i], all))
			ret = 1;
	if (d.errors)
		ret = 1;
	fflush(stdout);
out:
	if (d.in.created) {
		d.in.stopping = true;
		if (d.in.ops->stop)
			d.in.ops->stop(d.in.ctx);
	}
	host_shutdown();
	uv_run(&loop, UV_RUN_DEFAULT);
	if (d.in.created)
		d.in.ops->destroy(d.in.ctx);
	opts_free(p->desc.opts, d.sc.conf);
	free(d.sc.conf);
	if (uv_loop_close(&loop)) {
		fputs("wggwd decode: event loop not closed cleanly\n", stderr);
		ret = 1;
	}
out_unload:
	plugins_unload_all();
	return ret;
}

#ifdef WGGWD_DECODE_MAIN
int main(int argc, char **argv)
{
	if (sodium_init() < 0) {
		fputs("wggwd decode: libsodium failed to initialise\n", stderr);
		return 1;
	}
	return cmd_decode(argc, argv);
}
#endif
