"""Money as clients see it: `"1.34 NOK"`, two decimals rounded half up, as the contract shows."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def format_money(amount: Decimal, currency: str | None) -> str:
    text = str(amount.quantize(CENT, rounding=ROUND_HALF_UP))
    return f"{text} {currency}" if currency else text
