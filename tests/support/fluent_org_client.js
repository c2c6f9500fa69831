// Sends COUNT events with @fluent-org/logger (npm) in the given mode, with
// ack on, and exits 0 once every emit resolved (acked).
// usage: node fluent_org_client.js PORT MODE TAG_PREFIX LABEL COUNT START_SEC
const { FluentClient, EventTime } = require('@fluent-org/logger');
const [port, mode, prefix, label, count, startSec] = process.argv.slice(2);
const fs = require('fs');
// Optional TLS, from the environment: CA to trust, client certificate for mTLS.
const tls = process.env.WEIR_TLS_CA ? {
  ca: fs.readFileSync(process.env.WEIR_TLS_CA),
  ...(process.env.WEIR_TLS_CERT ? {
    cert: fs.readFileSync(process.env.WEIR_TLS_CERT),
    key: fs.readFileSync(process.env.WEIR_TLS_KEY),
  } : {}),
} : undefined;
const client = new FluentClient(prefix, {
  socket: { host: '127.0.0.1', port: Number(port), timeout: 10000, ...(tls ? { tls } : {}) },
  eventMode: mode,
  ack: { ackTimeout: 20000 },
  flushInterval: 5,
  // Optional shared-key handshake, from the environment.
  ...(process.env.WEIR_SHARED_KEY ? {
    security: {
      clientHostname: 'client.local',
      sharedKey: process.env.WEIR_SHARED_KEY,
      username: process.env.WEIR_USERNAME || '',
      password: process.env.WEIR_PASSWORD || '',
    },
  } : {}),
});
(async () => {
  const sends = [];
  for (let i = 0; i < Number(count); i++) {
    const t = new EventTime(Number(startSec), i * 1000 + 7);
    sends.push(client.emit(label, { i, msg: `m-${i}`, client: 'fluent-org', mode }, t));
  }
  await Promise.all(sends);
  await client.shutdown();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
