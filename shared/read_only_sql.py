"""Which SQL `rsms sql` passes to the ledger: one SELECT (or WITH … SELECT), nothing else.

Checked on both sides: the command refuses before sending, and the ledger checks again
before it runs the statement wrapped as `SELECT * FROM (…) SETTINGS …, readonly = 1`, so
ClickHouse itself refuses writes, DDL, table functions that reach outside (file, url) and
the row and time limits' being lifted. This check gives the clear message; readonly gives
the guarantee.
"""

from __future__ import annotations

import re

_STARTS_AS_QUERY = re.compile(r"\A[\s(]*(SELECT|WITH)\b", re.IGNORECASE)
_INTO_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)


class NotASelect(ValueError):
    """The statement is not one read-only SELECT; `str()` says why."""


def select_statement(sql: str) -> str:
    """`sql` without surrounding spaces and trailing semicolons; raises NotASelect."""
    statement = sql.strip().rstrip(";").rstrip()
    if not statement:
        raise NotASelect("empty statement: give one SELECT")
    if not _STARTS_AS_QUERY.match(statement):
        first = statement.split(None, 1)[0][:20]
        raise NotASelect(f"only SELECT (or WITH … SELECT) is allowed, not {first}")
    if ";" in statement:
        raise NotASelect("one statement only: remove the ';' inside it")
    if _INTO_OUTFILE.search(statement):
        raise NotASelect("INTO OUTFILE is not allowed: the result comes back to you")
    return statement
