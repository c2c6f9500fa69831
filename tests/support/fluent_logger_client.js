// Sends COUNT events with fluent-logger (npm) with requireAckResponse, and
// exits 0 once every emit's callback reported success.
// usage: node fluent_logger_client.js PORT MODE TAG_PREFIX LABEL COUNT START_SEC
const logger = require('fluent-logger');
const [port, mode, prefix, label, count, startSec] = process.argv.slice(2);
const sender = logger.createFluentSender(prefix, {
  host: '127.0.0.1', port: Number(port), timeout: 10.0,
  requireAckResponse: true, ackResponseTimeout: 20000, eventMode: mode,
});
let pending = Number(count);
let failed = false;
sender.on('error', (e) => { console.error(e); failed = true; });
for (let i = 0; i < Number(count); i++) {
  const t = new logger.EventTime(Number(startSec), i * 1000 + 3);
  sender.emit(label, { i, msg: `m-${i}`, client: 'fluent-logger', mode }, t, (err) => {
    if (err) { console.error(err); failed = true; }
    if (--pending === 0) {
      sender.end(null, null, () => process.exit(failed ? 1 : 0));
    }
  });
}
