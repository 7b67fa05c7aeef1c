"""The pure parts of `bench.peers`: the SMPP sink's answers, checked against smpp34's codec
(the library the dispatcher's SMPP provider speaks), and the figures and ratios of the table.
No timings: the benchmark itself prints those."""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import json
import math
import os
import struct
from pathlib import Path

import pytest
import smpp34
from hypothesis import given
from hypothesis import strategies as st

from bench import smpp_sink
from bench.ingest_env import free_port
from bench.peers import build, cpu_seconds, rotated
from bench.peers_systems import Jasmin, Kannel, Rsms, lua_numbers
from bench.peers_table import (
    BULK,
    SINGLE,
    Round,
    markdown,
    paired_ratio,
    ratios,
    summarise,
    table_rows,
)
from bench.profile_summary import Profile, read_collapsed
from services.dispatcher.smpp import pdu


def submit_sm(sequence: int, destination: str = "4790123456") -> bytes:
    return bytes(
        smpp34.SubmitSm(
            "RSMS", destination, b"Your code is 482913", sequence_number=sequence, registered_delivery=0
        ).encode()
    )


def test_a_submit_sm_from_smpp34_gets_a_submit_sm_resp_with_a_message_id_and_is_counted():
    counters = smpp_sink.Counters()
    buffer = bytearray(submit_sm(41))
    [(command_id, status, sequence, _)] = smpp_sink.split_pdus(buffer)
    assert (command_id, status, sequence) == (pdu.Command.SUBMIT_SM, 0, 41)

    reply = smpp_sink.answer(command_id, sequence, counters, now=12.5)

    assert reply is not None
    decoded = smpp34.decode(reply)
    assert decoded.command_id == pdu.Command.SUBMIT_SM_RESP
    assert decoded.command_status == 0
    assert decoded.sequence_number == 41
    assert pdu.c_string_body(reply) == "1"  # the dispatcher's reading of message_id
    assert (counters.submits, counters.first, counters.last) == (1, 12.5, 12.5)


def test_message_ids_are_distinct_and_the_clock_spans_first_to_last_submit():
    counters = smpp_sink.Counters()
    ids = {pdu.c_string_body(smpp_sink.answer(0x4, n, counters, now=float(n)) or b"") for n in range(1, 301)}
    assert len(ids) == 300
    assert (counters.submits, counters.first, counters.last) == (300, 1.0, 300.0)
    counters.reset()
    assert (counters.submits, counters.first, counters.last) == (0, 0.0, 0.0)


@pytest.mark.parametrize("bind", [pdu.Command.BIND_TRANSCEIVER, pdu.Command.BIND_TRANSMITTER])
def test_binds_enquire_link_and_unbind_get_their_responses(bind):
    counters = smpp_sink.Counters()
    frames = [
        pdu.encode_bind(bind, 1, "rsms", "secret", ""),
        pdu.encode_empty(pdu.Command.ENQUIRE_LINK, 2),
        pdu.encode_empty(pdu.Command.UNBIND, 3),
    ]
    buffer = bytearray(b"".join(frames))
    replies = [smpp_sink.answer(c, s, counters, 0.0) for c, _, s, _ in smpp_sink.split_pdus(buffer)]
    headers = [pdu.parse_header(r or b"") for r in replies]
    assert [(h.command_id, h.status, h.sequence) for h in headers] == [
        (bind | 0x80000000, 0, 1),
        (pdu.Command.ENQUIRE_LINK_RESP, 0, 2),
        (pdu.Command.UNBIND_RESP, 0, 3),
    ]
    assert counters.binds == 1
    assert counters.submits == 0


def test_responses_are_not_answered_and_unknown_commands_get_generic_nack():
    counters = smpp_sink.Counters()
    assert smpp_sink.answer(pdu.Command.ENQUIRE_LINK_RESP, 5, counters, 0.0) is None
    nack = pdu.parse_header(smpp_sink.answer(0x00000103, 6, counters, 0.0) or b"")  # data_sm: not supported
    assert (nack.command_id, nack.status, nack.sequence) == (pdu.Command.GENERIC_NACK, 3, 6)


@given(st.lists(st.integers(1, 60), min_size=1, max_size=40), st.data())
def test_pdus_split_across_reads_come_out_whole_and_in_order(sequences, data):
    stream = b"".join(submit_sm(n, destination=f"4790{n:06d}") for n in sequences)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=20)))
    buffer = bytearray()
    seen = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        buffer += stream[start:end]
        seen += smpp_sink.split_pdus(buffer)
    assert [s for _, _, s, _ in seen] == sequences
    assert not buffer
    # Each body is a whole submit_sm body: smpp34 decodes it back to its recipient.
    rebuilt = [smpp34.decode(struct.pack("!IIII", 16 + len(body), c, 0, s) + body) for c, _, s, body in seen]
    assert [p.destination_addr for p in rebuilt] == [f"4790{n:06d}" for n in sequences]


def test_a_length_no_pdu_has_is_refused():
    with pytest.raises(ValueError):
        smpp_sink.split_pdus(bytearray(struct.pack("!IIII", 8, 4, 0, 1)))


async def test_the_sink_over_tcp_counts_submits_and_answers_its_control_port():
    port, control_port = free_port(), free_port()
    server = asyncio.create_task(smpp_sink.serve("127.0.0.1", port, control_port))
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            await asyncio.sleep(0.05)
        writer.write(pdu.encode_bind(pdu.Command.BIND_TRANSCEIVER, 1, "rsms", "rsms", "") + submit_sm(2) + submit_sm(3))
        replies = [
            await reader.readexactly(pdu.parse_header(await reader.readexactly(16)).length - 16) for _ in range(3)
        ]
        assert replies[1:] == [b"1\0", b"2\0"]

        ctl_reader, ctl_writer = await asyncio.open_connection("127.0.0.1", control_port)
        ctl_writer.write(b"stats\n")
        stats = json.loads(await ctl_reader.readline())
        assert (stats["submits"], stats["binds"]) == (2, 1)
        assert stats["destinations"] == 1  # both to the same number
        assert stats["last"] >= stats["first"] > 0
        ctl_writer.write(b"reset\nstats\n")
        assert await ctl_reader.readline() == b"ok\n"
        assert json.loads(await ctl_reader.readline())["submits"] == 0
        writer.close()
        ctl_writer.close()
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


# --- the table ----------------------------------------------------------------------------


def single(system, accepted, submits, span, cpu, broker=0.0):
    return Round(system, SINGLE, accepted, 10.0, submits, span, cpu, rabbitmq_cpu_seconds=broker)


def bulk(system, accepted, submits, span):
    return Round(system, BULK, accepted, 2.0, submits, span, 1.0)


def test_a_round_gives_rates_from_wrk_and_the_sink_and_cpu_per_submit():
    r = single("rsms", accepted=10_000, submits=10_001, span=20.0, cpu=21.0, broker=5.0)
    assert r.accepted_per_s == 1_000
    assert r.e2e_per_s == 500  # 10,001 submits span 10,000 intervals
    assert r.cpu_ms_per_msg == pytest.approx(21_000 / 10_001)
    assert r.rabbitmq_ms_per_msg == pytest.approx(5_000 / 10_001)
    empty = single("rsms", accepted=0, submits=1, span=0.0, cpu=1.0)
    assert math.isnan(empty.e2e_per_s)


def test_ratios_pair_round_i_with_round_i_and_take_the_median():
    assert paired_ratio([100, 200, 300], [50, 400, 100]) == 2.0  # quotients 2, 0.5, 3
    assert math.isnan(paired_ratio([1.0], [0.0]))


def test_the_table_has_medians_per_system_and_rsms_over_each_peer():
    rounds = [
        single("rsms", 10_000, 7_001, 10.0, 14.0),
        single("jasmin", 30_000, 10_001, 10.0, 8.0),
        single("kannel", 120_000, 87_001, 10.0, 14.0),
        single("rsms", 12_000, 7_001, 7.0, 14.0),
        single("jasmin", 28_000, 10_001, 12.5, 8.0),
        single("kannel", 118_000, 87_001, 10.0, 14.0),
        single("rsms", 11_000, 9_001, 10.0, 14.0),
        single("jasmin", 29_000, 10_001, 10.0, 8.0),
        single("kannel", 119_000, 87_001, 10.0, 14.0),
        bulk("rsms", 300_000, 100_001, 10.0),
        bulk("kannel", 30_000, 30_001, 3.0),
    ]
    labels = {"rsms": "RSMS", "jasmin": "Jasmin 0.11.1 (PyPI)", "kannel": "Kannel 1.4.5 (Debian)"}
    summaries = summarise(rounds, labels)
    by = {s.system: s.medians for s in summaries}
    assert by["rsms"]["accepted_per_s"] == 1_100
    assert by["rsms"]["e2e_per_s"] == 900
    assert by["rsms"]["bulk_accepted_per_s"] == 150_000
    assert math.isnan(by["jasmin"]["bulk_accepted_per_s"])

    peer = ratios(summaries)
    assert set(peer) == {"jasmin", "kannel"}
    assert peer["jasmin"]["accepted_per_s"] == pytest.approx(11 / 29)  # rounds: 1/3, 12/28, 11/29
    assert peer["kannel"]["bulk_accepted_per_s"] == pytest.approx(10)  # 150,000 / 15,000

    rows = table_rows(summaries, peer)
    assert rows[0] == ["RSMS", "1,100", "900", "150,000 / 10,000", "2.00 ms"]
    assert rows[1][3] == "— / —"
    assert rows[3][0] == "RSMS / Jasmin 0.11.1"
    assert rows[4][0] == "RSMS / Kannel 1.4.5" and rows[4][3] == "10.00× / 1.00×"
    text = markdown(rows)
    assert text.splitlines()[0].startswith("| system | accepted/s | end to end msgs/s |")
    assert len(text.splitlines()) == 2 + 5


def test_without_rsms_there_are_no_ratios():
    assert ratios(summarise([single("kannel", 1, 2, 1.0, 1.0)], {"kannel": "Kannel"})) == {}


def test_cpu_counts_only_processes_seen_before_and_after():
    before, after = {1: 100, 2: 50}, {1: 300, 3: 999}
    assert cpu_seconds(before, after) == 200 / os.sysconf("SC_CLK_TCK")


def test_every_round_starts_with_another_system():
    assert [rotated(["a", "b", "c"], r)[0] for r in range(4)] == ["a", "b", "c", "a"]  # type: ignore[arg-type]


def test_the_bulk_script_numbers_are_distinct_and_within_the_block():
    text = lua_numbers(1000)
    assert "999999 - 1000" in text and "for i = 0, 999 do" in text
    assert "math.random(0, 999999)" in lua_numbers(1)


# --- the profile summary ------------------------------------------------------------------

COLLAPSED = """\
process 12 (python -m cli ledger);run (services/ledger/main.py:15);Runner.run (asyncio/runners.py:118) 5
run (services/ledger/main.py:15);consume (faststream/_internal/endpoint/subscriber/usecase.py:347);\
asolve (fast_depends/core/model.py:339);Condition.notify (threading.py:382) 3
run (services/ledger/main.py:15);consume (faststream/_internal/endpoint/subscriber/usecase.py:347);\
record_event (services/ledger/handlers.py:40) 2
Thread.run (threading.py:982);_worker (concurrent/futures/thread.py:83) 10
not a stack line
"""


def test_the_profile_summary_counts_busy_samples_by_package_and_by_leaf():
    profile = Profile()
    read_collapsed(COLLAPSED, profile)
    assert (profile.samples, profile.idle, profile.busy) == (20, 10, 10)
    assert profile.inclusive["faststream"] == 5
    assert profile.inclusive["fast_depends"] == 3
    assert profile.inclusive["services/ledger/handlers.py"] == 2
    assert "cli" not in profile.inclusive  # on every stack: says nothing
    assert profile.leaves["uvloop's event loop (C: I/O, callbacks)"] == 5
    assert profile.leaves["Condition.notify (threading.py)"] == 3


# --- the peers' configuration ----------------------------------------------------------------


def test_kannel_is_configured_to_send_to_the_sink_over_smpp_and_keep_a_store():
    kannel = Kannel(sink_port=40123)
    conf = kannel.config()
    groups = [block for block in conf.split("\n\n") if "group = " in block]
    smsc = next(block for block in groups if "group = smsc" in block)
    assert "smsc = smpp" in smsc and "port = 40123" in smsc and "transceiver-mode = true" in smsc
    core = next(block for block in groups if "group = core" in block)
    assert "store-type = file" in core and 'admin-allow-ip = "127.0.0.1"' in core
    assert f"sendsms-port = {kannel.sendsms_port}" in conf


def test_one_window_is_given_to_rsms_and_kannel_alike_and_none_leaves_their_defaults():
    rsms, jasmin, kannel = build(["rsms", "jasmin", "kannel"], 40123, {"RSMS_X": "1"}, window=100)
    assert isinstance(rsms, Rsms) and isinstance(kannel, Kannel) and isinstance(jasmin, Jasmin)
    assert rsms.extra_settings == {"RSMS_X": "1", "RSMS_SMPP_WINDOW": "100"}
    smsc = next(block for block in kannel.config().split("\n\n") if "group = smsc" in block)
    assert "max-pending-submits = 100" in smsc
    default_rsms, default_kannel = build(["rsms", "kannel"], 40123, {})
    assert isinstance(default_rsms, Rsms) and "RSMS_SMPP_WINDOW" not in default_rsms.extra_settings
    assert "max-pending-submits" not in default_kannel.config()


def test_jasmin_listens_only_locally_on_its_own_vhost_and_redis():
    jasmin = Jasmin(sink_port=40123)
    parser = configparser.ConfigParser()
    parser.read_string(jasmin.config("jasmin-bench-peers-x", 41000, Path("/spec.xml")))
    assert parser["amqp-broker"]["vhost"] == "jasmin-bench-peers-x"
    assert parser["amqp-broker"]["spec"] == "/spec.xml"
    assert parser["redis-client"]["port"] == "41000"
    assert parser["jcli"]["port"] == str(jasmin.jcli_port)
    assert parser["http-api"]["port"] == str(jasmin.http_port)
    assert all(parser[s]["bind"] == "127.0.0.1" for s in parser.sections() if "bind" in parser[s])


def test_every_system_gets_one_random_recipient_a_request():
    for system in (Kannel(40123), Jasmin(40123)):
        load = system.load(1)
        assert load is not None
        assert "math.random(0, 999999)" in load.script and "request = function()" in load.script
    assert Jasmin(40123).load(1000) is None  # one `to` a request
    assert "table.concat(numbers" in Kannel(40123).load(1000).script
