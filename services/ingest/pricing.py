"""Estimated cost of a send: segments × the per-segment price of each recipient's country.

A job carries the prices it was quoted at (`SmsJob.prices`), so that a price change after
acceptance does not change what it costs: only those of its recipients' countries, not the
whole table. A table of every country is a few kilobytes; the job of one recipient would
carry it through RabbitMQ twice (the dispatcher's queue and the ledger's), the dispatcher's
decoding and the ledger's row, where it needs one entry (or none: the default price).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from shared.countries import country_of


@dataclass(frozen=True, slots=True)
class PriceTable:
    currency: str
    default: Decimal
    by_country: Mapping[str, Decimal]

    def price(self, country: str) -> Decimal:
        return self.by_country.get(country, self.default)

    def quote(self, recipients: list[str], segments: int) -> Quote:
        countries = Counter(country_of(number) for number in recipients)
        total = sum((self.price(c) * n for c, n in countries.items()), Decimal(0))
        by_country = self.by_country
        return Quote(total * segments, {c: by_country[c] for c in countries if c in by_country})


@dataclass(frozen=True, slots=True)
class Quote:
    cost: Decimal
    prices: dict[str, Decimal]
    """The per-segment prices of the recipients' countries that have one (the others pay
    the default): what `SmsJob.prices` carries."""
