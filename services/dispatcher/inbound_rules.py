"""The decisions about an inbound SMS, as plain functions: which project it belongs to, and
whether its first word is an opt-out (STOP …) or opt-in (START) keyword.

Routing: the project whose `inbound_numbers` hold the destination; failing that, the one
project that sends from it (a tag's sender), so a reply to a project's own number reaches
it without configuration. A destination no project claims, or that several projects send
from, is unrouted. Addresses compare by `inbound_address_key` (digits of a number with or
without `+`, an alphanumeric case-folded), since carriers spell numbers either way.

Keywords: the text's first word, trimmed, case-folded and stripped of the punctuation
people add ("Stop.", "STOP!"), compared with the service-wide keywords (STOP, STOPP,
UNSUBSCRIBE; START) and the configured extra ones. Only the first word counts: "Please
stop" is a message for the project to read, not an opt-out.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.accounts import AccountsFile, inbound_address_key
from shared.contracts import OptOutAction

DEFAULT_OPT_OUT_KEYWORDS: tuple[str, ...] = ("STOP", "STOPP", "UNSUBSCRIBE")
DEFAULT_OPT_IN_KEYWORDS: tuple[str, ...] = ("START",)
_E164 = re.compile(r"\+[1-9]\d{1,14}", re.ASCII)
_PUNCTUATION = string.punctuation + "¡¿«»“”‘’…"


@dataclass(frozen=True, slots=True)
class Keywords:
    """Case-folded keywords; a word in both sets is an opt-out (the safer reading)."""

    opt_out: frozenset[str]
    opt_in: frozenset[str]

    @classmethod
    def with_defaults(cls, extra_opt_out: Iterable[str] = (), extra_opt_in: Iterable[str] = ()) -> Keywords:
        def folded(words: Iterable[str]) -> frozenset[str]:
            return frozenset(word for word in map(_fold, words) if word)

        return cls(
            folded((*DEFAULT_OPT_OUT_KEYWORDS, *extra_opt_out)), folded((*DEFAULT_OPT_IN_KEYWORDS, *extra_opt_in))
        )


def _fold(word: str) -> str:
    return word.strip().strip(_PUNCTUATION).casefold()


def first_word(text: str) -> str:
    words = text.split(maxsplit=1)
    return _fold(words[0]) if words else ""


def keyword_action(text: str, keywords: Keywords) -> OptOutAction | None:
    word = first_word(text)
    if word in keywords.opt_out:
        return "opt_out"
    if word in keywords.opt_in:
        return "opt_in"
    return None


def opt_out_number(sender: str) -> str | None:
    """The sender as ingest writes recipients (E.164 with `+`), or None when it is not a
    number anything could be sent to (an alphanumeric, a national-format number)."""
    return sender if _E164.fullmatch(sender) else None


@dataclass(frozen=True, slots=True)
class Owner:
    project: str
    store_bodies: bool


def inbound_routes(accounts: AccountsFile) -> dict[str, Owner]:
    """Address key → the project an inbound SMS to it belongs to."""
    senders: defaultdict[str, set[str]] = defaultdict(set)
    for project_id, project in accounts.projects.items():
        for tag in project.tags.values():
            senders[inbound_address_key(tag.sender)].add(project_id)
    routes = {
        key: Owner(next(iter(owners)), accounts.projects[next(iter(owners))].store_bodies)
        for key, owners in senders.items()
        if len(owners) == 1
    }
    for project_id, project in accounts.projects.items():
        for number in project.inbound_numbers:
            routes[inbound_address_key(number)] = Owner(project_id, project.store_bodies)  # over a tag's sender
    return routes


def route(destination: str, routes: Mapping[str, Owner]) -> Owner | None:
    return routes.get(inbound_address_key(destination))
