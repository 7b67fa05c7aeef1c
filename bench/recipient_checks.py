"""What the per-recipient checks of a send cost, in process, without servers.

For a 1000-recipient body, the CPU time of ingest's per-recipient work, in three layers
measured in the same run:

1. the baseline: parsing and the E.164 format check (`parse_send_request`, no policy) and
   a cost estimate at one price for every recipient (no country lookup);
2. + the country of every recipient (`shared.countries.country_of`, for the per-country
   price);
3. + the project's destination number policy (`services/ingest/number_policy.py`): the
   whole path of an accepted send.

for bodies of four kinds: the ingest bench's (`+4790000000`…), random Norwegian mobiles,
random NANP numbers (US, Canada, the Caribbean) and random mobiles of twenty countries.
Each layer runs `--runs` times per body, interleaved; the table shows medians in µs per
recipient. Run it next to `bench.ingest_send`, which measures the same work inside the
whole request.

    .venv/bin/python -m bench.recipient_checks [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

import phonenumbers

from services.ingest.number_policy import NumberPolicy
from services.ingest.validation import parse_send_request
from shared.countries import country_of

RECIPIENTS = 1000
NANP_AREA_CODES = ["212", "202", "415", "305", "312", "416", "604", "514", "403", "876", "787", "246"]
WORLD = [
    "NO",
    "SE",
    "DK",
    "FI",
    "DE",
    "FR",
    "GB",
    "ES",
    "IT",
    "PL",
    "NL",
    "BE",
    "CH",
    "AT",
    "PT",
    "GR",
    "HU",
    "JP",
    "AU",
    "IN",
]


def bodies(seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)

    def digits(n: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(n))

    examples = (phonenumbers.example_number_for_type(r, phonenumbers.PhoneNumberType.MOBILE) for r in WORLD)
    mobiles = [phonenumbers.format_number(e, phonenumbers.PhoneNumberFormat.E164) for e in examples if e is not None]
    return {
        "ingest bench (+4790……)": [f"+4790{i:06d}" for i in range(RECIPIENTS)],
        "random NO mobile": [f"+474{digits(7)}" for _ in range(RECIPIENTS)],
        "random NANP": [f"+1{rng.choice(NANP_AREA_CODES)}{rng.randint(2, 9)}{digits(6)}" for _ in range(RECIPIENTS)],
        "random mobiles, 20 countries": [rng.choice(mobiles)[:-4] + digits(4) for _ in range(RECIPIENTS)],
    }


def layers(policy: NumberPolicy) -> dict[str, Callable[[bytes], object]]:
    price = Decimal("0.67")

    def baseline(body: bytes) -> object:
        request = parse_send_request(body, policy=None)
        return price * len(request.recipients)

    def with_country(body: bytes) -> object:
        request = parse_send_request(body, policy=None)
        return [country_of(n) for n in request.recipients]

    def with_policy(body: bytes) -> object:
        request = parse_send_request(body, policy=policy)
        return [country_of(n) for n in request.recipients]

    return {"format only": baseline, "+ country": with_country, "+ country + policy": with_policy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    steps = layers(NumberPolicy())
    print(f"µs per recipient, median of {args.runs} runs of {RECIPIENTS}-recipient bodies\n")
    print("| body | " + " | ".join(steps) + " | policy + country over format only |")
    print("| --- |" + " ---: |" * (len(steps) + 1))
    for name, numbers in bodies(args.seed).items():
        body = json.dumps({"tag": "t", "recipients": numbers, "message": "hi"}).encode()
        for step in steps.values():
            step(body)  # first sight: fills the caches, as the first request of a prefix does
        times: dict[str, list[float]] = {layer: [] for layer in steps}
        for _ in range(args.runs):
            for layer, step in steps.items():
                started = time.perf_counter()
                step(body)
                times[layer].append((time.perf_counter() - started) * 1e6 / RECIPIENTS)
        medians = [statistics.median(t) for t in times.values()]
        added = medians[-1] - medians[0]
        print(f"| {name} | " + " | ".join(f"{m:.2f}" for m in medians) + f" | +{added:.2f} µs |")


if __name__ == "__main__":
    main()
