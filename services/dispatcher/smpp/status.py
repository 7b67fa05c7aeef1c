"""What an SMSC's command_status means for the gateway: pure functions, unit-tested.

A submit_sm_resp with an error status is a definite "not taken" (unlike a missing
response): it is safe to submit that part again.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

ESME_ROK = 0x00
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVDSTADR = 0x0B
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RINVDSTTON = 0x50
ESME_RINVDSTNPI = 0x51
ESME_RINVSYSTYP = 0x53
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64

_NAMES = {
    0x00: "ESME_ROK",
    0x01: "ESME_RINVMSGLEN",
    0x02: "ESME_RINVCMDLEN",
    0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS",
    0x05: "ESME_RALYBND",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x0D: "ESME_RBINDFAIL",
    0x0E: "ESME_RINVPASWD",
    0x0F: "ESME_RINVSYSID",
    0x14: "ESME_RMSGQFUL",
    0x45: "ESME_RSUBMITFAIL",
    0x48: "ESME_RINVSRCTON",
    0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON",
    0x51: "ESME_RINVDSTNPI",
    0x53: "ESME_RINVSYSTYP",
    0x58: "ESME_RTHROTTLED",
    0x64: "ESME_RX_T_APPN",
    0xFF: "ESME_RUNKNOWNERR",
}


class Meaning(StrEnum):
    ACCEPTED = "accepted"
    THROTTLED = "throttled"
    """Back off this bind and submit the same part again: nothing was taken."""
    INVALID = "invalid"
    BLOCKED = "blocked"
    TRANSIENT = "transient"
    AUTH_ERROR = "auth_error"
    NO_CREDITS = "no_credits"


def status_name(status: int) -> str:
    """`ESME_RTHROTTLED (0x00000058)`: what operators and details show."""
    name = _NAMES.get(status, "vendor status")
    return f"{name} (0x{status:08X})"


def parse_status_map(raw: Mapping[str, str]) -> dict[int, Meaning]:
    """`{"0x00000458": "no_credits"}` from the settings; keys in hex or decimal."""
    return {int(key, 0): Meaning(value) for key, value in raw.items()}


def classify_submit(status: int, vendor: Mapping[int, Meaning]) -> Meaning:
    if status in vendor:
        return vendor[status]
    if status == ESME_ROK:
        return Meaning.ACCEPTED
    if status in (ESME_RTHROTTLED, ESME_RMSGQFUL):
        return Meaning.THROTTLED
    if status in (ESME_RINVDSTADR, ESME_RINVDSTTON, ESME_RINVDSTNPI):
        return Meaning.INVALID
    if status in (ESME_RINVPASWD, ESME_RINVSYSID, ESME_RBINDFAIL):
        return Meaning.AUTH_ERROR
    # Anything else is the SMSC refusing this submit for now (a system error, a parameter
    # it does not like): not taken, so a later attempt is safe; attempts run out into the
    # dead-letter queue where an operator sees the status.
    return Meaning.TRANSIENT


def classify_bind(status: int, vendor: Mapping[int, Meaning]) -> Meaning:
    """A bind_*_resp: credentials refused open the circuit; anything else is retried."""
    if status in vendor and vendor[status] in (Meaning.AUTH_ERROR, Meaning.NO_CREDITS):
        return vendor[status]
    if status in (ESME_ROK, ESME_RALYBND):
        return Meaning.ACCEPTED
    if status in (ESME_RINVPASWD, ESME_RINVSYSID, ESME_RBINDFAIL, ESME_RINVSYSTYP):
        return Meaning.AUTH_ERROR
    return Meaning.TRANSIENT
