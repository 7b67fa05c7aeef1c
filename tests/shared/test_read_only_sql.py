"""What `rsms sql` lets through to the ledger: one SELECT, nothing else."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.read_only_sql import NotASelect, select_statement


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", "SELECT 1"),
        ("  select count() from rsms.sms_outcomes ;; ", "select count() from rsms.sms_outcomes"),
        ("WITH t AS (SELECT 1 AS a) SELECT a FROM t;", "WITH t AS (SELECT 1 AS a) SELECT a FROM t"),
        ("(SELECT 1) UNION ALL (SELECT 2)", "(SELECT 1) UNION ALL (SELECT 2)"),
    ],
)
def test_one_select_passes_without_its_trailing_semicolons(sql: str, expected: str) -> None:
    assert select_statement(sql) == expected


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("", "empty statement"),
        (" ; ", "empty statement"),
        ("INSERT INTO rsms.sms_outcomes VALUES (1)", "not INSERT"),
        ("DROP TABLE rsms.sms_requests", "not DROP"),
        ("ALTER TABLE rsms.sms_requests DELETE WHERE 1", "not ALTER"),
        ("SET readonly = 0", "not SET"),
        ("SYSTEM SHUTDOWN", "not SYSTEM"),
        ("-- a comment\nDROP TABLE x", "not --"),
        ("SELECT 1; DROP TABLE rsms.sms_requests", "one statement only"),
        ("SELECT * FROM rsms.sms_requests INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
        ("selection", "not selection"),
    ],
)
def test_anything_but_one_select_is_refused_with_the_reason(sql: str, reason: str) -> None:
    with pytest.raises(NotASelect, match=reason):
        select_statement(sql)


@given(st.text())
def test_whatever_passes_starts_as_a_query_and_is_one_statement(sql: str) -> None:
    try:
        checked = select_statement(sql)
    except NotASelect:
        return
    assert re.sub(r"\A[\s(]*", "", checked).upper().startswith(("SELECT", "WITH"))
    assert ";" not in checked
