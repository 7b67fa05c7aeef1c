"""A counting SMPP 3.4 sink for `bench.peers`: every gateway under test sends to it.

Standard library only (`asyncio`, `struct`), so it favours no gateway's SMPP stack: it
answers `bind_transmitter`/`bind_transceiver`/`bind_receiver` with an OK `*_resp`,
`submit_sm` with a `submit_sm_resp` carrying a fresh message id, `enquire_link` and
`unbind` with their responses, anything else with `generic_nack`; and it counts the
`submit_sm`s with the time of the first and the last. It sends no delivery receipts (the
peers are configured not to ask for them). A benchmark sink, not product code.

    python -m bench.smpp_sink --port 2775 --control-port 2776

The control port speaks one line at a time: `stats` answers a JSON line
`{"submits": n, "first": t, "last": t, "binds": b, "destinations": d}` (times from
`time.monotonic()`, 0 before the first submit; `destinations`: distinct `destination_addr`s
submitted, so `submits - destinations` is how many went to a destination a second time: a
duplicate when every request names a new number, as `bench.saturation`'s load does),
`reset` zeroes the counters and answers `ok`, `destinations` answers a JSON line
`{"<destination_addr>": submits, ...}` (`bench.faults_under_load` reads which numbers
arrived, and which more than once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

HEADER = struct.Struct("!IIII")
GENERIC_NACK = 0x80000000
RESPONSE_BIT = 0x80000000
SUBMIT_SM = 0x00000004
ENQUIRE_LINK = 0x00000015
UNBIND = 0x00000006
BINDS = {0x00000001, 0x00000002, 0x00000009}  # receiver, transmitter, transceiver
ESME_RINVCMDID = 0x00000003
ESME_RINVCMDLEN = 0x00000002
MAX_PDU = 64 * 1024
SYSTEM_ID = b"rsms-bench-sink"


@dataclass
class Counters:
    submits: int = 0
    first: float = 0.0
    last: float = 0.0
    binds: int = 0
    destinations: Counter[bytes] = field(default_factory=Counter)

    def submitted(self, now: float, destination: bytes = b"") -> None:
        if self.submits == 0:
            self.first = now
        self.submits += 1
        self.last = now
        self.destinations[destination] += 1

    def reset(self) -> None:
        """A new round: submits and times start again (binds are the sessions still open)."""
        self.submits, self.first, self.last = 0, 0.0, 0.0
        self.destinations = Counter()

    def as_json(self) -> str:
        return json.dumps(
            {
                "submits": self.submits,
                "first": self.first,
                "last": self.last,
                "binds": self.binds,
                "destinations": len(self.destinations),
            }
        )


def pdu(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return HEADER.pack(HEADER.size + len(body), command_id, status, sequence) + body


def split_pdus(buffer: bytearray) -> list[tuple[int, int, int, bytes]]:
    """Takes every complete PDU off the front of `buffer`: (command_id, status, sequence, body).

    Raises ValueError on a length no SMPP PDU has (the connection is then closed)."""
    found = []
    while len(buffer) >= HEADER.size:
        length, command_id, status, sequence = HEADER.unpack_from(buffer)
        if length < HEADER.size or length > MAX_PDU:
            raise ValueError(f"command_length {length}")
        if len(buffer) < length:
            break
        found.append((command_id, status, sequence, bytes(buffer[HEADER.size : length])))
        del buffer[:length]
    return found


def destination_addr(body: bytes) -> bytes:
    """A submit_sm's destination_addr: after service_type, source ton/npi, source_addr and
    destination ton/npi (SMPP 3.4, 4.4.1); empty when the body is cut short."""
    try:
        source = body.index(0) + 3  # service_type's NUL, source_addr_ton, source_addr_npi
        destination = body.index(0, source) + 3  # source_addr's NUL, dest_addr_ton, dest_addr_npi
        return body[destination : body.index(0, destination)]
    except ValueError:
        return b""


def answer(command_id: int, sequence: int, counters: Counters, now: float, body: bytes = b"") -> bytes | None:
    """The sink's whole behaviour: the response to one PDU (None for a response it got)."""
    if command_id & RESPONSE_BIT:
        return None  # e.g. an enquire_link_resp; the sink sends no requests that need one
    if command_id == SUBMIT_SM:
        counters.submitted(now, destination_addr(body))
        return pdu(command_id | RESPONSE_BIT, 0, sequence, b"%x\0" % counters.submits)
    if command_id in BINDS:
        counters.binds += 1
        return pdu(command_id | RESPONSE_BIT, 0, sequence, SYSTEM_ID + b"\0")
    if command_id in (ENQUIRE_LINK, UNBIND):
        return pdu(command_id | RESPONSE_BIT, 0, sequence)
    return pdu(GENERIC_NACK, ESME_RINVCMDID, sequence)


class SmppSession(asyncio.Protocol):
    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they are one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        try:
            pdus = split_pdus(self.buffer)
        except ValueError:
            self.transport.write(pdu(GENERIC_NACK, ESME_RINVCMDLEN, 0))
            self.transport.close()
            return
        now = time.monotonic()
        replies = [
            reply
            for command_id, _, sequence, body in pdus
            if (reply := answer(command_id, sequence, self.counters, now, body))
        ]
        if replies:
            self.transport.write(b"".join(replies))
        if any(command_id == UNBIND for command_id, *_ in pdus):
            self.transport.close()


async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counters: Counters) -> None:
    with contextlib.suppress(ConnectionError):
        while line := (await reader.readline()).strip():
            if line == b"reset":
                counters.reset()
                writer.write(b"ok\n")
            elif line == b"destinations":
                counts = {addr.decode(errors="replace"): n for addr, n in counters.destinations.items()}
                writer.write(json.dumps(counts).encode() + b"\n")
            elif line == b"stats":
                writer.write(counters.as_json().encode() + b"\n")
            else:
                writer.write(b"?\n")
            await writer.drain()
    writer.close()


async def serve(host: str, port: int, control_port: int) -> None:
    counters = Counters()
    loop = asyncio.get_running_loop()
    smpp = await loop.create_server(lambda: SmppSession(counters), host, port)
    ctl = await asyncio.start_server(lambda r, w: control(r, w, counters), host, control_port)
    print(f"smpp sink listening on {host}:{port}, control on {control_port}", flush=True)
    async with smpp, ctl:
        await asyncio.gather(smpp.serve_forever(), ctl.serve_forever())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2775)
    parser.add_argument("--control-port", type=int, default=2776)
    args = parser.parse_args()
    try:
        import uvloop  # the project depends on it; the sink must not be the bottleneck

        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.control_port))


if __name__ == "__main__":
    main()
