"""`PriceTable.quote`: the estimate, and the prices a job carries (its countries' only)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.ingest.pricing import PriceTable
from shared.countries import country_of

NUMBERS = ["+4712345678", "+46701234567", "+14165550123", "+12025551234", "+447700900123", "+4915112345678"]
TABLE = PriceTable("NOK", Decimal("0.80"), {"NO": Decimal("0.50"), "US": Decimal("0.10"), "CA": Decimal("0.20")})


@given(recipients=st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=20), segments=st.integers(1, 10))
def test_a_quote_prices_each_recipient_by_its_country_and_carries_only_those_prices(
    recipients: list[str], segments: int
) -> None:
    quote = TABLE.quote(recipients, segments)
    assert quote.cost == sum(TABLE.price(country_of(n)) for n in recipients) * segments
    countries = {country_of(n) for n in recipients}
    assert quote.prices == {c: p for c, p in TABLE.by_country.items() if c in countries}
    # What the dispatcher bills with (`SmsJob.price_for`) is unchanged by carrying fewer prices.
    for country in countries:
        assert quote.prices.get(country, TABLE.default) == TABLE.price(country)
