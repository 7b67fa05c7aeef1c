// A test SMSC on the npm `smpp` package's server: another codec than the gateway's, so a
// codec bug cannot hide on both sides.
//
//   node smsc.js PORT RECORD_FILE SYSTEM_ID PASSWORD
//
// Prints {"ready": PORT} on stdout once listening. Every PDU it receives is appended to
// RECORD_FILE as one JSON line (submit_sm with the UDH and text as *this* library decodes
// them), and so is the status of every deliver_sm_resp it gets back. Behaviour changes
// by JSON lines on stdin, each answered by {"ack": N} on stdout:
//   {"refuse_binds": 14}            answer binds with this status (null: accept again)
//   {"throttle": 3}                 the next 3 submit_sm get ESME_RTHROTTLED
//   {"reject": {"447700900999": 11}}  submit_sm to that destination get that status
//   {"hold": true, "drop_after": 5} answer no submit_sm; once 5 are unanswered, drop
//                                   every connection (and answer normally again)
//   {"delay_ms": 100}               answer each submit_sm that much later (a slow SMSC),
//                                   so a window of submits is outstanding at any moment
//   {"receipts": {"stat": "DELIVRD", "err": "000"}}  a receipt for every accepted part
//   {"deliver": {...deliver_sm fields, "short_message_hex": "..."}}  to every receiver
'use strict';

const fs = require('fs');
const readline = require('readline');
const smpp = require('smpp');

const [port, recordFile, systemId, password] = process.argv.slice(2);
const out = fs.openSync(recordFile, 'a');
const state = { refuseBinds: null, throttle: 0, reject: {}, hold: false, dropAfter: 0, delayMs: 0, receipts: null };
const held = [];
const sessions = new Set();
let nextMessageId = 0x10000;
let sessionCount = 0;

function record(entry) {
  fs.writeSync(out, JSON.stringify({ at: Date.now() / 1000, ...entry }) + '\n');
}

function hex(value) {
  return Buffer.isBuffer(value) ? value.toString('hex') : value;
}

function describe(pdu, session) {
  const entry = { session: session.id, command: pdu.command, sequence: pdu.sequence_number, status: pdu.command_status };
  for (const key of [
    'system_id', 'system_type', 'source_addr', 'source_addr_ton', 'source_addr_npi', 'destination_addr',
    'dest_addr_ton', 'dest_addr_npi', 'esm_class', 'data_coding', 'registered_delivery', 'service_type',
    'sar_msg_ref_num', 'sar_total_segments', 'sar_segment_seqnum',
  ]) {
    if (pdu[key] !== undefined) entry[key] = pdu[key];
  }
  if (pdu.short_message !== undefined) {
    const sm = pdu.short_message;
    entry.udh = sm.udh ? sm.udh.map((ie) => Array.from(ie)) : [];
    entry.message = typeof sm.message === 'string' ? sm.message : hex(sm.message);
  }
  return entry;
}

function receiversOf(session) {
  return [...sessions].filter((s) => s.bound && s.receives && s.systemId === session.systemId);
}

function sendReceipt(session, pdu, messageId) {
  const spec = state.receipts;
  const receivers = receiversOf(session);
  if (!spec || !receivers.length) return;
  const text = `id:${messageId} sub:001 dlvrd:001 submit date:2611250400 done date:2611250401 stat:${spec.stat} err:${spec.err} text:`;
  const target = receivers[0];
  target.deliver_sm({
    source_addr: pdu.destination_addr, source_addr_ton: 1, source_addr_npi: 1,
    destination_addr: pdu.source_addr, esm_class: 0x04, data_coding: 0,
    short_message: Buffer.from(text, 'ascii'),
    receipted_message_id: messageId,
  }, (resp) => record({ session: target.id, command: 'deliver_sm_resp', status: resp.command_status, receipt_for: messageId }));
}

function answerSubmit(session, pdu) {
  if (state.throttle > 0) {
    state.throttle -= 1;
    session.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
    record({ session: session.id, command: 'submit_sm_answer', sequence: pdu.sequence_number, status: smpp.ESME_RTHROTTLED });
    return;
  }
  const status = state.reject[pdu.destination_addr];
  if (status !== undefined) {
    session.send(pdu.response({ command_status: status }));
    record({ session: session.id, command: 'submit_sm_answer', sequence: pdu.sequence_number, status });
    return;
  }
  const messageId = (nextMessageId++).toString(16);
  session.send(pdu.response({ message_id: messageId }));
  record({ session: session.id, command: 'submit_sm_answer', sequence: pdu.sequence_number, status: 0, message_id: messageId });
  sendReceipt(session, pdu, messageId);
}

const server = smpp.createServer((session) => {
  session.id = ++sessionCount;
  sessions.add(session);
  session.on('close', () => sessions.delete(session));
  session.on('error', () => {});
  session.on('pdu', (pdu) => {
    if (pdu.command === 'deliver_sm_resp' || pdu.command === 'enquire_link_resp') return;
    record(describe(pdu, session));
  });
  for (const bind of ['bind_transceiver', 'bind_transmitter', 'bind_receiver']) {
    session.on(bind, (pdu) => {
      let status = 0;
      if (state.refuseBinds !== null) status = state.refuseBinds;
      else if (pdu.system_id !== systemId || pdu.password !== password) status = smpp.ESME_RINVPASWD;
      session.send(pdu.response({ command_status: status, system_id: 'TESTSMSC' }));
      if (status) {
        session.close();
        return;
      }
      session.bound = true;
      session.systemId = pdu.system_id;
      session.receives = bind !== 'bind_transmitter';
    });
  }
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', (pdu) => {
    if (!state.hold && state.delayMs) {
      // Taken now (it is in the record file above), answered later: a process killed
      // before the answer leaves the submit's outcome unknown to it.
      setTimeout(() => {
        if (!session.socket.destroyed) answerSubmit(session, pdu);
      }, state.delayMs);
      return;
    }
    if (!state.hold) {
      answerSubmit(session, pdu);
      return;
    }
    held.push(pdu);
    if (state.dropAfter && held.length >= state.dropAfter) {
      record({ command: 'dropped_connections', unanswered: held.length });
      held.length = 0;
      state.hold = false;
      state.dropAfter = 0;
      for (const s of sessions) s.destroy();
    }
  });
});

let commands = 0;
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line);
  if ('refuse_binds' in command) state.refuseBinds = command.refuse_binds;
  if ('throttle' in command) state.throttle = command.throttle;
  if ('reject' in command) state.reject = command.reject;
  if ('hold' in command) state.hold = command.hold;
  if ('drop_after' in command) state.dropAfter = command.drop_after;
  if ('delay_ms' in command) state.delayMs = command.delay_ms;
  if ('receipts' in command) state.receipts = command.receipts;
  if ('deliver' in command) {
    const { short_message_hex: raw, ...fields } = command.deliver;
    for (const target of [...sessions].filter((s) => s.bound && s.receives)) {
      target.deliver_sm({ ...fields, short_message: Buffer.from(raw, 'hex') }, (resp) =>
        record({ session: target.id, command: 'deliver_sm_resp', status: resp.command_status, tag: command.tag }));
    }
  }
  process.stdout.write(JSON.stringify({ ack: ++commands }) + '\n');
});
process.stdin.on('end', () => process.exit(0));

server.listen(Number(port), '127.0.0.1', () => process.stdout.write(JSON.stringify({ ready: Number(port) }) + '\n'));
