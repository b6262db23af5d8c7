'use strict';
// A real third-party forward-protocol client for tests/inputs/test_forward.py: the fluent-logger
// npm package sends events to mlwatch's forward input in the mode the spec asks for.
//
// Input (JSON on stdin):
//   {host, port, tagPrefix, eventMode: "Message"|"PackedForward"|"CompressedPackedForward",
//    requireAckResponse, security: {clientHostname, sharedKey} | null, timeoutMs,
//    events: [{label, record, time: [seconds, nanoseconds] | seconds | null}]}
// Output (one JSON line on stdout): {"acked": <callbacks without error>, "errors": [...]}.
// With requireAckResponse, fluent-logger calls an emit's callback only after the server's
// ack for that chunk arrived; without it, after the write. The script always exits 0 and
// reports; the Python test decides.

const { createFluentSender, EventTime } = require('fluent-logger');

function readStdin() {
  return new Promise((resolve, reject) => {
    let text = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk) => { text += chunk; });
    process.stdin.on('end', () => resolve(text));
    process.stdin.on('error', reject);
  });
}

async function main() {
  const spec = JSON.parse(await readStdin());
  const errors = [];
  const sender = createFluentSender(spec.tagPrefix, {
    host: spec.host,
    port: spec.port,
    eventMode: spec.eventMode,
    requireAckResponse: !!spec.requireAckResponse,
    ackResponseTimeout: spec.timeoutMs,
    flushInterval: 20,
    enableReconnect: false, // no 10-minute reconnect timer keeping the process alive
    security: spec.security || undefined,
    internalLogger: { info() {}, error: (...args) => errors.push(args.map(String).join(' ')) },
  });
  sender.on('error', (err) => errors.push(String((err && err.message) || err)));

  let acked = 0;
  let pending = spec.events.length;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    process.stdout.write(JSON.stringify({ acked, errors }) + '\n', () => process.exit(0));
  };
  const timer = setTimeout(finish, spec.timeoutMs);
  if (pending === 0) finish();

  const done = (err) => {
    if (err) errors.push(String(err.message || err));
    else acked += 1;
    pending -= 1;
    if (pending === 0) {
      clearTimeout(timer);
      finish();
    }
  };
  for (const ev of spec.events) {
    if (ev.time === null || ev.time === undefined) {
      sender.emit(ev.label, ev.record, done);
    } else if (Array.isArray(ev.time)) {
      sender.emit(ev.label, ev.record, new EventTime(ev.time[0], ev.time[1]), done);
    } else {
      sender.emit(ev.label, ev.record, ev.time, done);
    }
  }
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ acked: 0, errors: ['script: ' + err.stack] }) + '\n',
    () => process.exit(0));
});
