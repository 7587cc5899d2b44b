"""The proxy's keys as the ledger keeps them: :mod:`klingcost.keys` makes and checks them,
and a row holds no secret (the bearer key's sha256). A key belongs to a team with a budget;
its open holds are what ``--max-concurrent`` counts."""

from __future__ import annotations

from dataclasses import replace

from klingcost.errors import BudgetNotFound, KeyNotFound
from klingcost.keys import ApiKey
from klingcost.ledger._base import LedgerBase
from klingcost.ledger.db import DB
from klingcost.ledger.reserve import _OPEN_FOR_KEY_SQL
from klingcost.ledger.rows import _KEY_COLUMNS, _dt, _key_from_row


class KeysPart(LedgerBase):
    """The proxy's keys: :meth:`add_key`, :meth:`api_keys`, :meth:`get_key`,
    :meth:`find_key`, :meth:`revoke_key`, :meth:`open_holds_for_key`."""

    def add_key(self, key: ApiKey) -> ApiKey:
        """Store a new key of ``key.team``, which must have a budget (BudgetNotFound)."""
        at = key.created_at.isoformat()
        expires = None if key.expires_at is None else key.expires_at.isoformat()

        def operation(conn: DB) -> ApiKey:
            if conn.execute("SELECT 1 FROM budgets WHERE name = ?", (key.team,)).fetchone() is None:
                raise BudgetNotFound(team=key.team)
            conn.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.team,
                    key.name,
                    key.key_hash,
                    key.access_key,
                    at,
                    expires,
                    None,
                    key.max_concurrent,
                ),
            )
            self._event(
                conn,
                at,
                "key_create",
                None,
                key.team,
                key_id=key.id,
                name=key.name,
                expires_at=expires,
                max_concurrent=key.max_concurrent,
            )
            return replace(key, revoked_at=None)

        return self._write(operation)

    def api_keys(self, team: str | None = None) -> list[ApiKey]:
        """Every key (revoked ones too), oldest first, optionally of one team."""
        where, params = ("WHERE team = ?", (team,)) if team is not None else ("", ())
        sql = f"SELECT {_KEY_COLUMNS} FROM api_keys {where} ORDER BY created_at, id"
        with self.reading():
            return [_key_from_row(row) for row in self._db.execute(sql, params).fetchall()]

    def get_key(self, key_id: str) -> ApiKey:
        with self.reading():
            sql = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?"
            row = self._db.execute(sql, (key_id,)).fetchone()
        if row is None:
            raise KeyNotFound(key_id=key_id)
        return _key_from_row(row)

    def find_key(
        self, *, key_hash: str | None = None, access_key: str | None = None
    ) -> ApiKey | None:
        """The key with this bearer-key hash, or this access key; None when there is none."""
        column, value = (
            ("key_hash", key_hash) if key_hash is not None else ("access_key", access_key)
        )
        with self.reading():
            sql = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE {column} = ?"
            row = self._db.execute(sql, (value,)).fetchone()
        return None if row is None else _key_from_row(row)

    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke a key (KeyNotFound if there is none): refused from now on. Its open holds stay
        as they are. Revoking again changes nothing."""
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> ApiKey:
            sql = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?{self._row_lock}"
            row = conn.execute(sql, (key_id,)).fetchone()
            if row is None:
                raise KeyNotFound(key_id=key_id)
            key = _key_from_row(row)
            if key.revoked_at is not None:
                return key
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (at, key_id))
            self._event(conn, at, "key_revoke", None, key.team, key_id=key_id)
            return replace(key, revoked_at=_dt(at))

        return self._write(operation)

    def open_holds_for_key(self, key_id: str) -> int:
        """How many open holds ``key_id`` placed (what ``--max-concurrent`` counts)."""
        with self.reading():
            (count,) = self._db.execute(f"SELECT {_OPEN_FOR_KEY_SQL}", (key_id,)).fetchone()
        return int(count)
