// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * store-sqlite: opening the database (one daemon per file, WAL), checking
 * it, migrating its schema, preparing the statements; and closing it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

/*
 * Each step takes user_version from its index to index + 1, in one
 * transaction with the version bump. Append only.
 *
 * peer.allowed holds any number of allowed IPs, n records of ALLOWED_REC
 * bytes (family 4|6, cidr, addr[16]): a blob has no cap of ours (SQLite's
 * is 10^9 bytes), and a peer is read and written whole, so a child table
 * would only add a join to every cache hit.
 */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE peer ("
	"  key BLOB PRIMARY KEY NOT NULL,"      /* 32 bytes */
	"  origin INTEGER NOT NULL,"            /* enum wggwd_origin */
	"  removed INTEGER NOT NULL DEFAULT 0," /* pushed removal: tombstone */
	"  version INTEGER,"                    /* NULL: none given */
	"  keepalive INTEGER NOT NULL DEFAULT 0,"
	"  allowed BLOB NOT NULL,"              /* n x 18: family 4|6, cidr, addr[16] */
	"  psk BLOB,"                           /* 32 bytes or NULL */
	"  endpoint BLOB,"                      /* family 4|6, port (BE), addr[16] */
	"  expires INTEGER,"                    /* unix ms; NULL: never */
	"  installed INTEGER NOT NULL DEFAULT 0,"
	"  updated INTEGER NOT NULL"            /* unix ms */
	") WITHOUT ROWID;"
	"CREATE TABLE negative (key BLOB PRIMARY KEY NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE stamp (key BLOB PRIMARY KEY NOT NULL, tai64n BLOB NOT NULL,"
	"  seen INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE ratelimit (key BLOB PRIMARY KEY NOT NULL, win INTEGER NOT NULL,"
	"  count INTEGER NOT NULL) WITHOUT ROWID;",
	/* 1 -> 2: the start-up reconcile reads pushed peers without a full scan */
	"CREATE INDEX peer_pushed ON peer(origin, removed) WHERE origin = 2;",
	/* 2 -> 3 (ABI 2.0): what is installed is the installer engine's to
	 * know, not the store's (nothing read `installed`); a peer's lease
	 * end (wggwd_peer.expires_at, unix s) is kept with its config */
	"ALTER TABLE peer DROP COLUMN installed;"
	"ALTER TABLE peer ADD COLUMN lease INTEGER;",
	/* 3 -> 4: the tables strangers can grow are swept and capped oldest
	 * first: an index on their time finds the dead and the oldest */
	"CREATE INDEX negative_expires ON negative(expires);"
	"CREATE INDEX stamp_seen ON stamp(seen);"
	"CREATE INDEX ratelimit_win ON ratelimit(win);",
	/* 4 -> 5: where a pulled peer was last seen and when its last
	 * handshake was (from the installer's dumps), so that a client whose
	 * session is still live is re-installed at once after a restart */
	"ALTER TABLE peer ADD COLUMN last_endpoint BLOB;"
	"ALTER TABLE peer ADD COLUMN last_handshake INTEGER;"
	"CREATE INDEX peer_handshake ON peer(last_handshake) WHERE last_handshake IS NOT NULL;",
	/* 5 -> 6: peer_pushed held every pushed row a second time, so each
	 * push wrote two random pages; the scans it served (the reconcile's,
	 * on the thread pool, and the count at start) read the table instead */
	"DROP INDEX IF EXISTS peer_pushed;",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* A peer row written whole. A new config keeps where the peer was last
 * seen (a renewed answer), unless it changes hands (a pushed config, a
 * tombstone). */
#define PEER_PUT                                                                        \
	"INSERT INTO peer (key, origin, removed, version, keepalive,"                   \
	" allowed, psk, endpoint, expires, lease, updated)"                             \
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"                        \
	" ON CONFLICT (key) DO UPDATE SET"                                              \
	" last_endpoint = CASE WHEN origin = excluded.origin THEN last_endpoint END,"   \
	" last_handshake = CASE WHEN origin = excluded.origin THEN last_handshake END," \
	" origin = excluded.origin, removed = excluded.removed,"                        \
	" version = excluded.version, keepalive = excluded.keepalive,"                  \
	" allowed = excluded.allowed, psk = excluded.psk,"                              \
	" endpoint = excluded.endpoint, expires = excluded.expires,"                    \
	" lease = excluded.lease, updated = excluded.updated"

static const char *const stmt_sql[S_MAX] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_BEGIN_READ] = "BEGIN",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_SYNC_FULL] = "PRAGMA synchronous=FULL",
	[S_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
	[S_PEER_GET] = "SELECT origin, removed, version, keepalive, allowed, psk, endpoint,"
		       " expires, lease, last_handshake, last_endpoint FROM peer WHERE key = ?1",
	[S_PEER_PUT] = PEER_PUT,
	/* a pushed config or tombstone, unless the row holds a newer version
	 * (then nothing changes: sqlite3_changes() is 0). Versions are C's
	 * uint64_t kept as SQLite's signed integers: compared as unsigned
	 * (the same signs: as they are; else the negative one is the larger);
	 * CAST reads the column as row_get's sqlite3_column_int64() does */
	[S_PEER_PUSH] = PEER_PUT " WHERE excluded.version IS NULL OR peer.version IS NULL OR NOT"
			" CASE WHEN (excluded.version < 0) = (CAST(peer.version AS INTEGER) < 0)"
			" THEN excluded.version < CAST(peer.version AS INTEGER)"
			" ELSE CAST(peer.version AS INTEGER) < 0 END",
	/* a pulled peer's last endpoint and handshake (unix s) */
	[S_PEER_LIVE] = "UPDATE peer SET last_endpoint = ?2, last_handshake = ?3"
			" WHERE key = ?1 AND origin IN (1, 3) AND removed = 0",
	[S_PEER_ADOPT] = "INSERT OR IGNORE INTO peer (key, origin, allowed, updated)"
			 " VALUES (?1, 0, x'', ?2)",
	/* a resolver's answer (pulled or static), never a pushed peer */
	[S_PEER_FORGET] = "DELETE FROM peer WHERE key = ?1 AND origin IN (1, 3)",
	[S_NEG_GET] = "SELECT expires FROM negative WHERE key = ?1",
	/* the bounded tables' puts: insert, else update (so that the store
	 * knows how many rows each holds without counting them) */
	[S_NEG_PUT] = "INSERT OR IGNORE INTO negative (key, expires) VALUES (?1, ?2)",
	[S_NEG_SET] = "UPDATE negative SET expires = ?2 WHERE key = ?1",
	[S_NEG_DEL] = "DELETE FROM negative WHERE key = ?1",
	[S_STAMP_GET] = "SELECT tai64n FROM stamp WHERE key = ?1",
	[S_STAMP_PUT] = "INSERT OR IGNORE INTO stamp (key, tai64n, seen) VALUES (?1, ?2, ?3)",
	[S_STAMP_SET] = "UPDATE stamp SET tai64n = ?2, seen = ?3 WHERE key = ?1",
	[S_RL_GET] = "SELECT win, count FROM ratelimit WHERE key = ?1",
	[S_RL_PUT] = "INSERT OR IGNORE INTO ratelimit (key, win, count) VALUES (?1, ?2, ?3)",
	[S_RL_SET] = "UPDATE ratelimit SET win = ?2, count = ?3 WHERE key = ?1",
	/* the sweeper walks the peer table in key order, a slice at a time:
	 * ?1 cursor, ?2 slice, ?3 and ?4 what is dead (an expired answer
	 * is kept max_stale longer: revalidation needs to know when) */
	[S_SWEEP_PEER] = "SELECT key, (origin IN (1, 3) AND expires < ?3) OR"
			 " (removed = 1 AND updated < ?4)"
			 " FROM peer WHERE key > ?1 ORDER BY key LIMIT ?2",
	/* what it found dead, if it still is at commit time */
	[S_DEL_PEER] = "DELETE FROM peer WHERE key = ?1 AND"
		       " ((origin IN (1, 3) AND expires < ?2) OR (removed = 1 AND updated < ?3))",
	/* the bounded tables, through their time index: up to ?2 rows older
	 * than ?1, oldest first (dead ones; or, over a cap, any) */
	[S_EXPIRE_NEG] = "DELETE FROM negative WHERE key IN (SELECT key FROM negative"
			 " WHERE expires < ?1 ORDER BY expires LIMIT ?2)",
	[S_EXPIRE_STAMP] = "DELETE FROM stamp WHERE key IN (SELECT key FROM stamp"
			   " WHERE seen < ?1 ORDER BY seen LIMIT ?2)",
	[S_EXPIRE_RL] = "DELETE FROM ratelimit WHERE key IN (SELECT key FROM ratelimit"
			" WHERE win < ?1 ORDER BY win LIMIT ?2)",
	[S_COUNT_NEG] = "SELECT count(*) FROM negative",
	[S_COUNT_STAMP] = "SELECT count(*) FROM stamp",
	[S_COUNT_RL] = "SELECT count(*) FROM ratelimit",
};

int sqlite_errno(sqlite3 *db, int rc)
{
	int sys = db ? sqlite3_system_errno(db) : 0;

	switch (rc & 0xff) {
	case SQLITE_OK:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_PERM:
	case SQLITE_AUTH:
	case SQLITE_READONLY:
		return -EACCES;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
		return sys ? -sys : -EIO;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	default:
		return -EIO;
	}
}

void schema_close(struct ctx *c)
{
	int i;

	for (i = 0; i < S_MAX; i++) {
		sqlite3_finalize(c->st[i]);
		c->st[i] = NULL;
	}
	if (c->db) {
		sqlite3_close_v2(c->db); /* the last connection checkpoints */
		c->db = NULL;
	}
}

void schema_close_worker(struct ctx *c)
{
	if (c->wdb) {
		sqlite3_close_v2(c->wdb);
		c->wdb = NULL;
	}
}

void schema_close_lock(struct ctx *c)
{
	/* only once SQLite holds no lock on the file any more: closing any
	 * descriptor of it would drop SQLite's POSIX locks */
	if (c->lock_fd >= 0 && !c->db && !c->wdb) {
		close(c->lock_fd);
		c->lock_fd = -1;
	}
}

/* Explain a failure to open or use the database at start, and what to do. */
static int start_error(struct ctx *c, int rc, const char *what)
{
	const char *path = c->conf->path;
	const char *msg = c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
	int ret = sqlite_errno(c->db, rc);

	switch (rc & 0xff) {
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: %s: the database is corrupt or not a wggwd store (%s). Stop wggwd, move %s and its -wal and -shm files aside (keep them for analysis) and start again: the store starts empty, pushed peers come back as the control plane redelivers them, pulled ones on their next handshake",
			     path, what, msg, path);
		return -EUCLEAN;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: %s: the database stayed locked by another process for lock_timeout (%lld ms): a sqlite3 shell or a backup holding a transaction? End it and start again",
			     path, what, (long long)c->conf->lock_timeout_ms);
		return -EBUSY;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_CANTOPEN:
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: %s: %s (%s): the daemon must be able to read and write the file and create files in its directory",
			     path, what, msg, ret ? strerror(-ret) : "?");
		return ret ? ret : -EACCES;
	case SQLITE_FULL:
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: %s: the disk is full", path, what);
		return -ENOSPC;
	default:
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: %s: %s", path, what, msg);
		return ret ? ret : -EIO;
	}
}

static int exec_sql(struct ctx *c, sqlite3 *db, const char *sql, const char *what)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : start_error(c, rc, what);
}

/* One row, one text column (a PRAGMA's answer) into buf. */
static int query_text(struct ctx *c, const char *sql, char *buf, size_t len, const char *what)
{
	sqlite3_stmt *s;
	int rc;

	rc = sqlite3_prepare_v2(c->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return start_error(c, rc, what);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		snprintf(buf, len, "%s", (const char *)sqlite3_column_text(s, 0) ?: "");
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		buf[0] = '\0';
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK) {
		int ret = start_error(c, rc, what);

		sqlite3_finalize(s);
		return ret;
	}
	sqlite3_finalize(s);
	return 0;
}

static int migrate(struct ctx *c)
{
	char buf[32], sql[64];
	int ret, v, i;

	ret = exec_sql(c, c->db, "BEGIN IMMEDIATE", "locking the database");
	if (ret)
		return ret;
	ret = query_text(c, "PRAGMA user_version", buf, sizeof(buf), "reading the schema version");
	if (ret)
		goto rollback;
	v = atoi(buf);
	if (v > SCHEMA_VERSION) {
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: schema version %d was written by a newer wggwd (this one knows up to %d); run that version, or move the file aside",
			     c->conf->path, v, SCHEMA_VERSION);
		ret = -EPROTO;
		goto rollback;
	}
	for (i = v; i < SCHEMA_VERSION; i++) {
		ret = exec_sql(c, c->db, migrations[i], "migrating the schema");
		if (ret)
			goto rollback;
	}
	if (v != SCHEMA_VERSION) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
		ret = exec_sql(c, c->db, sql, "migrating the schema");
		if (ret)
			goto rollback;
	}
	ret = exec_sql(c, c->db, "COMMIT", "migrating the schema");
	if (ret)
		goto rollback;
	if (v != SCHEMA_VERSION)
		c->host->log(c->self, WGGWD_LOG_INFO, "%s: schema %d -> %d", c->conf->path, v,
			     SCHEMA_VERSION);
	return 0;
rollback:
	sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return ret;
}

static int integrity(struct ctx *c)
{
	char buf[512];
	int ret;

	if (c->conf->integrity_check == CHECK_NONE)
		return 0;
	ret = query_text(c, c->conf->integrity_check == CHECK_FULL ? "PRAGMA integrity_check(1)" :
			 "PRAGMA quick_check(1)", buf, sizeof(buf), "checking integrity");
	if (ret)
		return ret;
	if (strcmp(buf, "ok")) {
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: integrity check failed (%s). Stop wggwd, move the file and its -wal and -shm files aside (keep them for analysis) and start again: the store starts empty, pushed peers come back as the control plane redelivers them, pulled ones on their next handshake",
			     c->conf->path, buf);
		return -EUCLEAN;
	}
	return 0;
}

/* Open, lock, check, migrate, prepare. On failure the caller closes. */
int schema_open(struct ctx *c)
{
	const char *path = c->conf->path;
	char buf[64], sql[192];
	struct stat st;
	int ret, rc, i;

	c->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (c->lock_fd < 0) {
		ret = -errno;
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: cannot open the database: %s; its directory must exist and the daemon must be able to read and write there",
			     path, strerror(errno));
		return ret;
	}
	if (fstat(c->lock_fd, &st) || !S_ISREG(st.st_mode)) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: not a regular file", path);
		return -EINVAL;
	}
	/* one daemon per database: flock() does not mix with SQLite's POSIX
	 * locks, and goes away with the process */
	if (flock(c->lock_fd, LOCK_EX | LOCK_NB)) {
		ret = -errno;
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: in use by another process (another wggwd with the same path?): %s; give each store its own file",
			     path, strerror(errno));
		return ret == -EWOULDBLOCK ? -EBUSY : ret;
	}
	if (st.st_mode & 077)
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "%s: mode %04o lets group or others read preshared keys; chmod 600 it",
			     path, (unsigned)(st.st_mode & 07777));
	rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			     SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		return start_error(c, rc, "opening");
	sqlite3_extended_result_codes(c->db, 0);
	sqlite3_busy_timeout(c->db, (int)c->conf->lock_timeout_ms);
	ret = query_text(c, "PRAGMA journal_mode=WAL", buf, sizeof(buf), "opening");
	if (ret)
		return ret;
	if (strcmp(buf, "wal")) {
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: cannot switch to WAL mode (got \"%s\"): is it on a network file system?",
			     path, buf);
		return -EOPNOTSUPP;
	}
	snprintf(sql, sizeof(sql),
		 "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-%llu; PRAGMA temp_store=MEMORY;"
		 " PRAGMA journal_size_limit=67108864;",
		 (unsigned long long)(c->conf->cache_size / 1024));
	ret = exec_sql(c, c->db, sql, "configuring");
	if (ret)
		return ret;
	ret = integrity(c);
	if (ret)
		return ret;
	ret = migrate(c);
	if (ret)
		return ret;
	for (i = 0; i < S_MAX; i++) {
		rc = sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&c->st[i], NULL);
		if (rc != SQLITE_OK)
			return start_error(c, rc == SQLITE_ERROR ? SQLITE_NOTADB : rc,
					   "preparing statements");
	}
	/* checkpoints run on the thread pool (the second connection) */
	sqlite3_wal_hook(c->db, batch_wal_hook, c);
	rc = sqlite3_open_v2(path, &c->wdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		sqlite3_close_v2(c->wdb);
		c->wdb = NULL;
		return start_error(c, rc, "opening the second connection");
	}
	sqlite3_busy_timeout(c->wdb, 1000);
	sqlite3_exec(c->wdb, "PRAGMA cache_size=-1024", NULL, NULL, NULL);
	sqlite3_busy_timeout(c->db, RUN_BUSY_MS);
	return 0;
}

void schema_count(struct ctx *c)
{
	sqlite3_stmt *s;
	long long pushed = -1;

	if (sqlite3_prepare_v2(c->db, "SELECT count(*) FROM peer WHERE origin = 2 AND removed = 0",
			       -1, &s, NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			pushed = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	}
	c->host->log(c->self, WGGWD_LOG_INFO, "%s: schema %d, %lld pushed peers", c->conf->path,
		     SCHEMA_VERSION, pushed);
}
