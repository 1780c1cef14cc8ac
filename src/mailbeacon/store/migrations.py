"""Versioned schema migrations, with the two dialects side by side.

Times are integers: microseconds since the Unix epoch, UTC. That keeps both stores identical
and exact. A migration is never edited once released; a change is a new migration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mailbeacon.store import partitions

if TYPE_CHECKING:  # db.py imports this module
    from mailbeacon.store.db import Conn


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str  # `{id}`: the dialect's auto-increment primary key; `{blob}`: its bytes type
    # A step in Python after the statements, in the same transaction: for what depends on the
    # data or the date (PostgreSQL's monthly partitions).
    then: Callable[[Conn], None] | None = None

    def statements(self, dialect: Literal["sqlite", "postgresql"]) -> list[str]:
        identity = {
            "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
            "postgresql": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        }[dialect]
        blob = {"sqlite": "BLOB", "postgresql": "BYTEA"}[dialect]
        text = self.sql.replace("{id}", identity).replace("{blob}", blob)
        return [s.strip() for s in text.split(";") if s.strip()]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "core",
        """
        CREATE TABLE users (
            id {id},
            email TEXT NOT NULL UNIQUE,
            is_admin BOOLEAN NOT NULL DEFAULT FALSE,
            created_at BIGINT NOT NULL
        );
        CREATE TABLE api_keys (
            id {id},
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            key_hash TEXT NOT NULL UNIQUE,   -- sha256 of the key: keys are random, never stored
            prefix TEXT NOT NULL,            -- the first characters, to tell keys apart
            created_at BIGINT NOT NULL
        );
        CREATE TABLE recipients (
            id {id},
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            address TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            UNIQUE (user_id, address)
        );
        CREATE TABLE messages (
            id TEXT PRIMARY KEY,             -- 12 random bytes, base64url, named by tokens
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            recipient_id BIGINT NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
            campaign TEXT,
            sender TEXT NOT NULL,
            subject TEXT NOT NULL,
            sent_at BIGINT NOT NULL,
            created_at BIGINT NOT NULL
        );
        CREATE INDEX messages_by_user ON messages (user_id, created_at);
        CREATE INDEX messages_by_campaign ON messages (user_id, campaign);
        CREATE TABLE links (
            message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            url TEXT NOT NULL,
            PRIMARY KEY (message_id, position)
        );
        -- No foreign key to messages: a hit whose message is gone (erased) is simply not
        -- inserted (see queries.insert_hits), and one such hit never fails a whole batch.
        CREATE TABLE hits (
            id {id},
            message_id TEXT NOT NULL,
            user_id BIGINT NOT NULL,
            kind TEXT NOT NULL,              -- 'open' | 'click'
            link INTEGER,                    -- the link's position, for clicks
            at BIGINT NOT NULL,
            method TEXT NOT NULL,
            ip TEXT NOT NULL,
            user_agent TEXT NOT NULL,
            accept TEXT NOT NULL,
            accept_language TEXT NOT NULL,
            referer TEXT NOT NULL,
            via TEXT NOT NULL,
            purpose TEXT NOT NULL,           -- Sec-Purpose, Purpose or X-Purpose
            verdict TEXT NOT NULL,
            agent TEXT NOT NULL,
            confidence REAL NOT NULL,
            reasons TEXT NOT NULL            -- JSON list of {"rule", "why"}
        );
        CREATE INDEX hits_by_message ON hits (message_id, id);
        CREATE INDEX hits_by_user ON hits (user_id, id)
        """,
    ),
    Migration(
        2,
        "honest opens",
        """
        ALTER TABLE hits ADD COLUMN client TEXT NOT NULL DEFAULT '';
        ALTER TABLE hits ADD COLUMN client_type TEXT NOT NULL DEFAULT '';
        ALTER TABLE hits ADD COLUMN os TEXT NOT NULL DEFAULT '';
        ALTER TABLE hits ADD COLUMN revised_by TEXT;   -- the rule that settled it, if any
        ALTER TABLE hits ADD COLUMN revised_at BIGINT;
        ALTER TABLE messages ADD COLUMN sender_ip TEXT;  -- where the sender submitted it from
        -- Settling works through clicks in id order: the partial index keeps that cheap while
        -- opens make most of the rows.
        CREATE INDEX hits_clicks ON hits (id) WHERE kind = 'click';
        -- Settling reads a message's hits by time: the same cost to keep as the index it
        -- replaces, and reading one message's hits in id order still uses it.
        DROP INDEX hits_by_message;
        CREATE INDEX hits_by_message ON hits (message_id, at);
        CREATE TABLE settle_state (
            id INTEGER PRIMARY KEY,
            settled_up_to BIGINT NOT NULL
        );
        INSERT INTO settle_state (id, settled_up_to) VALUES (1, 0)
        """,
    ),
    Migration(
        3,
        "sending",
        """
        ALTER TABLE users ADD COLUMN track_default BOOLEAN NOT NULL DEFAULT FALSE;
        -- The outbound queue: one row a recipient's copy, kept until the upstream server has
        -- accepted it (sent) or refused it for good (bounced).
        CREATE TABLE outbound (
            id {id},
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            message_id TEXT REFERENCES messages (id) ON DELETE CASCADE,  -- NULL: untracked
            mail_from TEXT NOT NULL,
            rcpt_to TEXT NOT NULL,
            data {blob} NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued',  -- queued | sent | bounced
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at BIGINT NOT NULL,
            last_error TEXT,
            created_at BIGINT NOT NULL,
            sent_at BIGINT
        );
        CREATE INDEX outbound_due ON outbound (next_attempt_at) WHERE state = 'queued';
        CREATE INDEX outbound_by_message ON outbound (message_id);
        -- Who is not sent campaigns any more, and why.
        CREATE TABLE suppressions (
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            address TEXT NOT NULL,
            reason TEXT NOT NULL,  -- unsubscribed | bounced
            message_id TEXT,       -- the message it came from
            created_at BIGINT NOT NULL,
            PRIMARY KEY (user_id, address)
        );
        -- Each recipient of a campaign once: a send interrupted and run again skips them.
        CREATE TABLE campaign_sends (
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            campaign TEXT NOT NULL,
            address TEXT NOT NULL,
            message_id TEXT,       -- NULL when suppressed
            state TEXT NOT NULL,   -- queued | suppressed
            created_at BIGINT NOT NULL,
            PRIMARY KEY (user_id, campaign, address)
        )
        """,
    ),
    Migration(
        4,
        "bounces by user",
        """
        -- GET /api/v1/bounces pages through a user's bounces in the order they happened.
        CREATE INDEX outbound_bounced ON outbound (user_id, next_attempt_at, id)
            WHERE state = 'bounced'
        """,
    ),
    Migration(
        5,
        "notifications",
        """
        -- alerts: first | every | digest | off (notify.alerts)
        ALTER TABLE users ADD COLUMN alerts TEXT NOT NULL DEFAULT 'first';
        ALTER TABLE messages ADD COLUMN muted BOOLEAN NOT NULL DEFAULT FALSE;  -- no alerts
        -- The outbox of hits: the hits that may notify, written in the hit's own transaction.
        -- The notifier turns each into events once its verdict has settled, then deletes it.
        CREATE TABLE hit_outbox (
            hit_id BIGINT PRIMARY KEY,
            user_id BIGINT NOT NULL,
            due_at BIGINT NOT NULL           -- held until then: see notify.notifier
        );
        CREATE INDEX hit_outbox_due ON hit_outbox (due_at);
        CREATE TABLE webhooks (
            id TEXT PRIMARY KEY,             -- 'wh_' + random
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            url TEXT NOT NULL,
            events TEXT NOT NULL,            -- JSON list of event types
            raw_hits BOOLEAN NOT NULL,       -- subscribes to email.hit: every hit is in the outbox
            secrets TEXT NOT NULL,           -- JSON list of whsec_ secrets, the newest first
            enabled BOOLEAN NOT NULL DEFAULT TRUE,
            disabled_reason TEXT,
            failing_since BIGINT,            -- the first failure since the last success
            created_at BIGINT NOT NULL
        );
        CREATE INDEX webhooks_by_user ON webhooks (user_id);
        -- Published events, in the order they were published (the stream's Last-Event-ID).
        CREATE TABLE events (
            id {id},
            public_id TEXT NOT NULL UNIQUE,  -- webhook-id: 'msg_' + random
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            type TEXT NOT NULL,
            message_id TEXT,
            created_at BIGINT NOT NULL,      -- the payload's timestamp
            data TEXT NOT NULL               -- JSON: the payload's data
        );
        CREATE INDEX events_by_user ON events (user_id, id);
        CREATE INDEX events_by_message ON events (message_id, type);
        -- One event to one endpoint, until it answers 2xx or its retries run out.
        CREATE TABLE deliveries (
            id {id},
            webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
            event_id BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
            state TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at BIGINT NOT NULL,
            created_at BIGINT NOT NULL
        );
        CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
        -- The delivery log: every attempt with what the endpoint answered.
        CREATE TABLE delivery_attempts (
            id {id},
            delivery_id BIGINT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
            webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
            at BIGINT NOT NULL,
            status INTEGER,                  -- the HTTP status, NULL when there was no answer
            error TEXT,
            duration_us BIGINT NOT NULL
        );
        CREATE INDEX delivery_attempts_by_webhook ON delivery_attempts (webhook_id, id);
        -- Opens waiting for their user's hourly digest.
        CREATE TABLE alert_digest (
            event_id BIGINT PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
            user_id BIGINT NOT NULL,
            created_at BIGINT NOT NULL
        );
        CREATE INDEX alert_digest_by_user ON alert_digest (user_id, created_at)
        """,
    ),
    Migration(
        6,
        "dashboard sign-in",
        """
        ALTER TABLE users ADD COLUMN password_hash TEXT;  -- argon2id, NULL: cannot sign in
        -- A signed-in browser. Its cookie holds a random token, and only the token's sha256
        -- is kept, so a leaked database signs no one in.
        CREATE TABLE sessions (
            id {id},
            token_hash TEXT NOT NULL UNIQUE,
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            csrf TEXT NOT NULL,              -- the token its forms must send back
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,      -- slides forward while it is used
            last_seen_at BIGINT NOT NULL
        );
        CREATE INDEX sessions_by_user ON sessions (user_id);
        -- Failed sign-ins of the last minutes, one row for the email and one for the address
        -- of each: in the database, so that every node throttles alike (web.auth).
        CREATE TABLE login_failures (
            key TEXT NOT NULL,               -- 'email:' + the email, or 'ip:' + the address
            at BIGINT NOT NULL
        );
        CREATE INDEX login_failures_by_key ON login_failures (key, at);
        CREATE INDEX login_failures_by_time ON login_failures (at)
        """,
    ),
    Migration(
        7,
        "campaign figures",
        """
        -- A campaign's statistics and charts as last computed (web.charts): a large campaign's
        -- take seconds, so serve keeps them fresh in the background and pages show them.
        CREATE TABLE campaign_figures (
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            campaign TEXT NOT NULL,
            computed_at BIGINT NOT NULL,
            took_us BIGINT NOT NULL,         -- what computing them cost
            viewed_at BIGINT,                -- the last page view: kept fresh while looked at
            figures TEXT NOT NULL,           -- JSON
            PRIMARY KEY (user_id, campaign)
        )
        """,
    ),
    Migration(
        8,
        "settle queue",
        """
        -- The clicks settling has still to look at (classify.settle), written with the hit. It
        -- replaces a cursor over hit ids: with several nodes on one PostgreSQL, ids are taken in
        -- one order and committed in another, and a cursor could pass a click not yet committed.
        CREATE TABLE settle_queue (
            hit_id BIGINT PRIMARY KEY
        );
        INSERT INTO settle_queue (hit_id) SELECT id FROM hits WHERE kind = 'click'
            AND id > (SELECT settled_up_to FROM settle_state WHERE id = 1);
        DROP TABLE settle_state
        """,
    ),
    Migration(
        9,
        "job leases, hits by month",
        """
        -- A background job that must run on one node at a time holds its lease (store.leases).
        CREATE TABLE job_leases (
            name TEXT PRIMARY KEY,
            lease_until BIGINT NOT NULL      -- the holder's claim runs out then
        );
        -- Retention deletes old events and deliveries: their foreign keys cascade through
        -- these, which would otherwise be read whole for each row deleted.
        CREATE INDEX deliveries_by_event ON deliveries (event_id);
        CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id)
        """,
        then=partitions.partition_hits,  # PostgreSQL: hits partitioned by month
    ),
    Migration(
        10,
        "spool drains",
        """
        -- How far each node's spool (store.spool) has been drained, written with the hits it
        -- moves: a drain cut short and done again stores nothing twice.
        CREATE TABLE spool_drains (
            spool TEXT PRIMARY KEY,          -- the spool's random id
            up_to BIGINT NOT NULL            -- its last sequence number stored
        );
        -- One row a live batch of hits on PostgreSQL, written by the batch's own statement: a
        -- batch whose answer never came (a timeout, a dropped connection) is spooled, and its
        -- row tells the drain whether it committed after all. Kept a day.
        CREATE TABLE hit_batches (
            token BIGINT PRIMARY KEY,
            at BIGINT NOT NULL
        );
        CREATE INDEX hit_batches_by_time ON hit_batches (at)
        """,
    ),
    Migration(
        11,
        "privacy",
        """
        -- How much is tracked (privacy.MODES), set per user, per recipient and per send: the
        -- strictest wins, and a message keeps the mode it was registered with.
        ALTER TABLE users ADD COLUMN tracking TEXT NOT NULL DEFAULT 'full';
        ALTER TABLE users ADD COLUMN consent_required BOOLEAN NOT NULL DEFAULT FALSE;
        ALTER TABLE users ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 0;  -- 0: the server's
        ALTER TABLE recipients ADD COLUMN tracking TEXT NOT NULL DEFAULT 'full';
        ALTER TABLE recipients ADD COLUMN consent TEXT NOT NULL DEFAULT 'unknown';
        ALTER TABLE recipients ADD COLUMN consent_at BIGINT;
        ALTER TABLE recipients ADD COLUMN consent_source TEXT;
        ALTER TABLE messages ADD COLUMN tracking TEXT NOT NULL DEFAULT 'full'
        """,
    ),
)
