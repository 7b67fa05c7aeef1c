"""Estimated cost of a send: segments × the per-segment price of each recipient's country."""

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

    def estimate(self, recipients: list[str], segments: int) -> Decimal:
        countries = Counter(country_of(number) for number in recipients)
        total = sum((self.price(c) * n for c, n in countries.items()), Decimal(0))
        return total * segments

    def prices_applied(self) -> dict[str, Decimal]:
        return dict(self.by_country)
