"""The decisions about an inbound SMS (no I/O): keywords and routing."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.inbound_rules import (
    Keywords,
    Owner,
    first_word,
    inbound_routes,
    keyword_action,
    opt_out_number,
    route,
)
from shared import accounts as store

KEYWORDS = Keywords.with_defaults(["avmeld"], ["Unstop"])


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("STOP", "opt_out"),
        ("  stop  ", "opt_out"),
        ("Stopp", "opt_out"),
        ("unsubscribe me please", "opt_out"),
        ("STOP!", "opt_out"),
        ("Stop.\nThanks", "opt_out"),
        ("AVMELD", "opt_out"),  # configured
        ("START", "opt_in"),
        ("start again", "opt_in"),
        ("UNSTOP", "opt_in"),  # configured
        ("Please stop", None),  # only the first word counts
        ("STOPPING by later", None),
        ("", None),
        ("   ", None),
        ("ＳＴＯＰ", None),  # fullwidth letters are not the keyword
    ],
)
def test_the_first_word_decides(text: str, action: str | None) -> None:
    assert keyword_action(text, KEYWORDS) == action


@given(
    keyword=st.sampled_from(["STOP", "STOPP", "UNSUBSCRIBE", "START"]),
    case=st.lists(st.booleans(), min_size=11, max_size=11),
    before=st.text(" \t\n", max_size=3),
    rest=st.one_of(st.just(""), st.text(min_size=1).map(lambda t: " " + t)),
)
def test_keywords_match_in_any_case_with_any_spacing_and_any_rest(
    keyword: str, case: list[bool], before: str, rest: str
) -> None:
    spelled = "".join(c.lower() if lower else c for c, lower in zip(keyword, case, strict=False))
    expected = "opt_in" if keyword == "START" else "opt_out"
    assert keyword_action(before + spelled + rest, KEYWORDS) == expected


@given(st.text())
def test_an_action_comes_only_from_a_keyword_first_word(text: str) -> None:
    action = keyword_action(text, KEYWORDS)
    assert (action is not None) == (first_word(text) in KEYWORDS.opt_out | KEYWORDS.opt_in)
    assert keyword_action("Hello " + text, KEYWORDS) is None


def test_a_word_configured_both_ways_is_an_opt_out() -> None:
    assert keyword_action("halt", Keywords.with_defaults(["HALT"], ["halt"])) == "opt_out"


@pytest.mark.parametrize(
    ("sender", "number"),
    [("+4790000555", "+4790000555"), ("4790000555", None), ("ACME", None), ("+0123", None)],
)
def test_only_an_international_number_can_opt_out(sender: str, number: str | None) -> None:
    assert opt_out_number(sender) == number


@dataclass
class Spec:
    inbound: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    store_bodies: bool = True


def accounts_with(**projects: Spec) -> store.AccountsFile:
    data = store.AccountsFile()
    for project_id, spec in projects.items():
        store.create_project(data, project_id, project_id.title(), store_bodies=spec.store_bodies)
        for tag, sender in spec.tags.items():
            store.set_tag(data, project_id, tag, sender)
        for number in spec.inbound:
            store.add_inbound_number(data, project_id, number)
    return data


def test_routing_by_inbound_number_then_by_the_one_project_sending_from_it() -> None:
    routes = inbound_routes(
        accounts_with(
            acme=Spec(inbound=["+4790000001", "2222", "ACMEINFO"], tags={"a": "+4790000009"}),
            quiet=Spec(inbound=["+4790000002"], tags={"q": "+4790000001"}, store_bodies=False),
            shared1=Spec(tags={"s": "+4790000007"}),
            shared2=Spec(tags={"s": "+4790000007"}),
        )
    )
    acme, quiet = Owner("acme", True), Owner("quiet", False)
    assert route("+4790000001", routes) == acme  # its inbound number beats quiet's tag sender
    assert route("4790000001", routes) == acme  # as the carrier may spell it
    assert route("+2222", routes) == route("2222", routes) == acme  # a short code, with or without +
    assert route("acmeinfo", routes) == acme
    assert route("+4790000002", routes) == quiet
    assert route("+4790000009", routes) == acme  # a reply to the number acme sends from
    assert route("+4790000007", routes) is None  # two projects send from it: nobody's
    assert route("+4790000003", routes) is None


def test_an_inbound_number_belongs_to_one_project_only() -> None:
    data = accounts_with(acme=Spec(inbound=["+4790000001"]), other=Spec())
    with pytest.raises(store.AccountsError, match="belongs to project 'acme'"):
        store.add_inbound_number(data, "other", "4790000001")
    store.add_inbound_number(data, "acme", "4790000001")  # its own again: nothing changes
    assert data.projects["acme"].inbound_numbers == ["+4790000001"]
    with pytest.raises(store.AccountsError, match="must be a phone number"):
        store.add_inbound_number(data, "acme", "not a number!")
    clash = data.model_dump()
    clash["projects"]["other"]["inbound_numbers"] = ["+4790000001"]
    with pytest.raises(ValueError, match="also 'acme'"):
        store.AccountsFile.model_validate(clash)
    store.remove_inbound_number(data, "acme", "4790000001")
    assert data.projects["acme"].inbound_numbers == []
