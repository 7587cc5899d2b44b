"""A live ledger's schema, read back in the spec's terms, and compared with the spec.

:func:`expected` is what the spec (:mod:`klingcost.ledger.schema`) builds in a dialect, as a
:class:`Shape`: the parts both catalogs can report, in comparable terms. SQLite is read through
sqlite-utils, whose :class:`sqlite_utils.Database` turns SQLite's
pragmas into objects (tables, columns, indexes with their origin, foreign keys, views,
triggers); PostgreSQL through its catalog. :func:`schema_differences` compares either with
:func:`expected`: what ``tests/test_schema_spec.py`` and
``klingcost ledger check --full`` report.

Left out of the comparison: the bookkeeping table ``_klingcost_migrations`` (the runners make
it, no migration does) and SQLite's own ``sqlite_*`` tables.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from klingcost.ledger._sqlite import SQLiteBackend
from klingcost.ledger.db import DB, Backend, Dialect
from klingcost.ledger.ddl import column_type, trigger_names
from klingcost.ledger.schema import INDEXES, TABLES, VIEWS, Column, Table

if TYPE_CHECKING:
    import sqlite_utils


@dataclass(frozen=True, slots=True)
class Shape:
    """A schema as both dialects' catalogs can report it, in comparable terms."""

    #: table -> its columns in order: (name, type, not null, default).
    columns: dict[str, tuple[tuple[str, str, bool, str | None], ...]]
    primary_keys: dict[str, tuple[str, ...]]
    #: table -> its unique column sets (not the primary key).
    uniques: dict[str, frozenset[tuple[str, ...]]]
    #: table -> (column, other table, other column).
    foreign_keys: dict[str, frozenset[tuple[str, str, str]]]
    #: index -> (table, columns, partial).
    indexes: dict[str, tuple[str, tuple[str, ...], bool]]
    #: view -> its columns in order.
    views: dict[str, tuple[str, ...]]
    #: (trigger, table).
    triggers: frozenset[tuple[str, str]]


def _columns(table: Table, dialect: Dialect) -> tuple[tuple[str, str, bool, str | None], ...]:
    keys = set(table.primary_key)
    columns = [
        (
            c.name,
            column_type(c, dialect),
            c.not_null or c.primary_key or c.identity or c.name in keys,
            c.default,
        )
        for c in table.columns
    ]
    if table.keeps_rowid and dialect == "postgres":
        columns.append(("rowid", "BIGINT", True, None))
    return tuple(columns)


def _reference(column: Column) -> tuple[str, str, str]:
    other, _, key = str(column.references).rstrip(")").partition("(")
    return column.name, other, key


def expected(dialect: Dialect) -> Shape:
    """What a ledger at the current schema holds in ``dialect``, from the spec alone."""
    uniques: dict[str, frozenset[tuple[str, ...]]] = {}
    for t in TABLES:
        sets = {(c.name,) for c in t.columns if c.unique} | set(t.unique)
        if t.keeps_rowid and dialect == "postgres":
            sets.add(("rowid",))
        uniques[t.name] = frozenset(sets)
    return Shape(
        columns={t.name: _columns(t, dialect) for t in TABLES},
        primary_keys={
            t.name: t.primary_key or tuple(c.name for c in t.columns if c.primary_key or c.identity)
            for t in TABLES
        },
        uniques=uniques,
        foreign_keys={
            t.name: frozenset(_reference(c) for c in t.columns if c.references is not None)
            for t in TABLES
        },
        indexes={i.name: (i.table, i.columns, i.where is not None) for i in INDEXES},
        views={v.name: tuple(c for c, _ in v.columns) for v in VIEWS},
        triggers=trigger_names(dialect),
    )


def differences(want: Shape, have: Shape) -> list[str]:
    """Each way ``have`` (a database's schema) differs from ``want`` (the spec), one line each;
    empty when they match."""
    found: list[str] = []
    for table in sorted(want.columns.keys() & have.columns.keys()):
        wanted_columns = {c[0]: c[1:] for c in want.columns[table]}
        held_columns = {c[0]: c[1:] for c in have.columns[table]}
        before = len(found)
        for column in sorted(wanted_columns.keys() - held_columns.keys()):
            found.append(f"column {table}.{column} is missing")
        for column in sorted(held_columns.keys() - wanted_columns.keys()):
            found.append(f"column {table}.{column} is not in the spec")
        for column in sorted(wanted_columns.keys() & held_columns.keys()):
            if wanted_columns[column] != held_columns[column]:
                found.append(
                    f"column {table}.{column} is (type, not null, default) "
                    f"{held_columns[column]!r}; the spec says {wanted_columns[column]!r}"
                )
        if len(found) == before and list(wanted_columns) != list(held_columns):
            found.append(f"the columns of {table} are in another order than the spec's")
    for part in ("columns", "primary_keys", "uniques", "foreign_keys", "indexes", "views"):
        wanted: dict[str, object] = getattr(want, part)
        held: dict[str, object] = getattr(have, part)
        for name in sorted(wanted.keys() - held.keys()):
            found.append(f"{part}: {name} is missing")
        for name in sorted(held.keys() - wanted.keys()):
            found.append(f"{part}: {name} is not in the spec")
        for name in sorted(wanted.keys() & held.keys()):
            if part != "columns" and wanted[name] != held[name]:
                found.append(f"{part}: {name} is {held[name]!r}, the spec says {wanted[name]!r}")
    for trigger in sorted(want.triggers - have.triggers):
        found.append(f"triggers: {trigger[0]} on {trigger[1]} is missing")
    for trigger in sorted(have.triggers - want.triggers):
        found.append(f"triggers: {trigger[0]} on {trigger[1]} is not in the spec")
    return found


def _ours(table: str) -> bool:
    return not table.startswith(("sqlite_", "_klingcost"))


def sqlite_shape(database: sqlite_utils.Database) -> Shape:
    """The schema of the SQLite database ``database`` wraps."""
    tables = [t for t in database.tables if _ours(t.name)]
    return Shape(
        columns={
            t.name: tuple(
                (c.name, c.type.upper(), bool(c.notnull or c.is_pk), c.default_value)
                for c in t.columns
            )
            for t in tables
        },
        primary_keys={t.name: tuple(t.pks) for t in tables},
        uniques={
            t.name: frozenset(tuple(i.columns) for i in t.indexes if i.origin == "u")
            for t in tables
        },
        foreign_keys={
            t.name: frozenset(
                (str(fk.column), fk.other_table, str(fk.other_column)) for fk in t.foreign_keys
            )
            for t in tables
        },
        # Only indexes made by CREATE INDEX: not those behind a key ("pk") or UNIQUE ("u").
        indexes={
            i.name: (t.name, tuple(i.columns), bool(i.partial))
            for t in tables
            for i in t.indexes
            if i.origin == "c"
        },
        views={v.name: tuple(c.name for c in v.columns) for v in database.views},
        triggers=frozenset((t.name, t.table) for t in database.triggers),
    )


_IN_SCHEMA = "JOIN pg_namespace AS ns ON ns.oid = t.relnamespace AND ns.nspname = current_schema()"


def _pg_type(data_type: str, collation: str | None) -> str:
    return data_type.upper() + ("" if collation is None else f' COLLATE "{collation}"')


def postgres_shape(db: DB) -> Shape:
    """The schema of the ledger in ``db``'s current PostgreSQL schema."""
    columns: dict[str, list[tuple[str, str, bool, str | None]]] = defaultdict(list)
    views: dict[str, list[str]] = defaultdict(list)
    for table, kind, name, data_type, collation, nullable, default in db.execute(
        "SELECT c.table_name, t.table_type, c.column_name, c.data_type, c.collation_name,"
        " c.is_nullable, c.column_default FROM information_schema.columns AS c"
        " JOIN information_schema.tables AS t"
        " ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = current_schema() ORDER BY c.table_name, c.ordinal_position"
    ):
        if kind == "VIEW":
            views[table].append(name)
        elif _ours(table):
            # A default as PostgreSQL shows it: '{}'::text is the spec's '{}'.
            plain = None if default is None else re.sub(r"::[a-z ]+$", "", default)
            columns[table].append((name, _pg_type(data_type, collation), nullable == "NO", plain))
    keys: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    primary: dict[str, tuple[str, ...]] = {}
    uniques: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    indexes: dict[str, tuple[str, tuple[str, ...], bool]] = {}
    rows: list[Any] = db.execute(
        "SELECT i.relname, t.relname, ix.indisprimary, ix.indisunique, ix.indpred IS NOT NULL,"
        " EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = ix.indexrelid), a.attname"
        " FROM pg_index AS ix JOIN pg_class AS t ON t.oid = ix.indrelid"
        f" {_IN_SCHEMA} JOIN pg_class AS i ON i.oid = ix.indexrelid"
        " JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS key(attnum, n) ON true"
        " JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = key.attnum"
        " ORDER BY i.relname, key.n"
    ).fetchall()
    for index, table, _, _, _, _, column in rows:
        keys[table][index].append(column)
    for index, table, is_primary, is_unique, partial, constraint, _ in rows:
        if not _ours(table):
            continue
        names = tuple(keys[table][index])
        if is_primary:
            primary[table] = names
        elif constraint and is_unique:
            uniques[table].add(names)
        elif not constraint:
            indexes[index] = (table, names, bool(partial))
    foreign: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for table, column, other, key in db.execute(
        "SELECT t.relname, a.attname, o.relname, oa.attname FROM pg_constraint AS k"
        f" JOIN pg_class AS t ON t.oid = k.conrelid {_IN_SCHEMA}"
        " JOIN pg_class AS o ON o.oid = k.confrelid"
        " JOIN pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]"
        " JOIN pg_attribute AS oa ON oa.attrelid = k.confrelid AND oa.attnum = k.confkey[1]"
        " WHERE k.contype = 'f'"
    ):
        foreign[table].add((column, other, key))
    triggers = frozenset(
        (name, table)
        for name, table in db.execute(
            "SELECT tg.tgname, t.relname FROM pg_trigger AS tg"
            f" JOIN pg_class AS t ON t.oid = tg.tgrelid {_IN_SCHEMA} WHERE NOT tg.tgisinternal"
        )
    )
    return Shape(
        columns={table: tuple(found) for table, found in columns.items()},
        primary_keys={table: primary.get(table, ()) for table in columns},
        uniques={table: frozenset(uniques[table]) for table in columns},
        foreign_keys={table: frozenset(foreign[table]) for table in columns},
        indexes=indexes,
        views={view: tuple(found) for view, found in views.items()},
        triggers=triggers,
    )


def shape(backend: Backend) -> Shape:
    """The schema of the ledger ``backend`` holds, read in one snapshot."""
    if isinstance(backend, SQLiteBackend):
        database = backend.database
        return backend.read(lambda _: sqlite_shape(database))
    return backend.read(postgres_shape)


def schema_differences(backend: Backend) -> list[str]:
    """Each way the ledger's schema differs from the spec (empty when it matches)."""
    return differences(expected(backend.dialect), shape(backend))


__all__ = [
    "Shape",
    "differences",
    "expected",
    "postgres_shape",
    "schema_differences",
    "shape",
    "sqlite_shape",
]
