// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* resolver-http's body writer (TAP). Run it under the ASan/UBSan build
 * too: memcpy(NULL, p, 0) on an empty first write is undefined. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver_http.h"

static unsigned n_checks, n_failed;

__attribute__((format(printf, 2, 3)))
static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	n_checks++;
	n_failed += !ok;
	printf("%s %u - ", ok ? "ok" : "not ok", n_checks);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

int main(void)
{
	struct conf cf = { .max_body = 2048 };
	struct ctx c = { .conf = &cf };
	struct req r = { .c = &c };
	char buf[1500], *empty = buf + sizeof(buf); /* one past the end: read nothing */

	memset(buf, 'x', sizeof(buf));
	check(transfer_on_body(empty, 1, 0, &r) == 0 && !r.body && !r.len && !r.too_big,
	      "an empty first write: nothing stored, no error");
	check(transfer_on_body(buf, 1, 5, &r) == 5 && r.body && r.len == 5,
	      "5 bytes stored");
	check(transfer_on_body(empty, 1, 0, &r) == 0 && r.len == 5,
	      "an empty write in between changes nothing");
	check(transfer_on_body(buf, 1, 1500, &r) == 1500 && r.len == 1505 && r.cap >= 1505 &&
	      !memcmp(r.body, buf, 5) && !memcmp(r.body + 5, buf, 1500),
	      "grows past its first 1024 bytes");
	check(transfer_on_body(buf, 1, 1000, &r) == 0 && r.too_big && r.len == 1505,
	      "past max_body: refused (write error), flagged too big");
	free(r.body);
	printf("1..%u\n", n_checks);
	return n_failed ? 1 : 0;
}
