// rhea (the Node.js AMQP 1.0 client) scenarios run by test_interop_rhea.py against
// the broker. Usage: node client.js <scenario> <port> <address>
// Prints one JSON line with what the client saw; exits 2 on error or time-out.
'use strict';

const rhea = require('rhea');

const [scenario, portText, address] = process.argv.slice(2);
const port = Number(portText);
const container = rhea.create_container({ id: `rhea-${scenario}` });
const connections = [];

function connect() {
  const c = container.connect({ host: '127.0.0.1', port, reconnect: false });
  c.on('error', (ctx) => fail(`connection error: ${ctx.error || ctx.connection.error}`));
  c.on('disconnected', (ctx) => {
    if (!finished) fail(`disconnected: ${ctx.error || 'by the peer'}`);
  });
  connections.push(c);
  return c;
}

let finished = false;
function finish(result) {
  finished = true;
  process.stdout.write(JSON.stringify(result) + '\n');
  for (const c of connections) c.close();
  setTimeout(() => process.exit(0), 100).unref();
}

function fail(why) {
  if (finished) return;
  finished = true;
  process.stderr.write(`rhea ${scenario}: ${why}\n`);
  process.exit(2);
}

// what a scenario saw so far, told when it times out
const progress = [];
setTimeout(() => fail(`timed out; saw ${JSON.stringify(progress)}`), 15000).unref();

// Send `n` messages unsettled; `then` runs once the broker accepted every one.
function sendAll(conn, n, then) {
  const sender = conn.open_sender({ target: { address } });
  let sent = 0;
  let accepted = 0;
  sender.on('sendable', () => {
    while (sent < n && sender.sendable()) {
      sender.send({ body: `m${sent}`, application_properties: { i: sent }, durable: true });
      sent += 1;
    }
  });
  sender.on('accepted', () => {
    accepted += 1;
    if (accepted === n) then(accepted);
  });
  sender.on('rejected', (ctx) => fail(`send rejected: ${JSON.stringify(ctx.delivery.remote_state)}`));
  sender.on('released', () => fail('send released'));
}

const scenarios = {
  // Unsettled sends, then a receiver that settles by hand: the first delivery is
  // released (it comes back, its delivery-count not incremented), the rest accepted.
  settle() {
    const conn = connect();
    sendAll(conn, 4, (accepted) => {
      const receiver = conn.open_receiver({ source: { address }, autoaccept: false, credit_window: 10 });
      const received = [];
      let released = false;
      receiver.on('message', (ctx) => {
        received.push({ body: ctx.message.body, count: ctx.message.delivery_count || 0 });
        if (!released) {
          released = true;
          ctx.delivery.release();
          return;
        }
        ctx.delivery.accept();
        if (received.length === 5) finish({ accepted, received });
      });
    });
  },

  // A receiver without a credit window: it gets exactly the credit it grants.
  // Two credits, then a drain (answered once nothing more is owed), then ten
  // with drain: the remaining three arrive and the broker drains the rest.
  credit() {
    const conn = connect();
    sendAll(conn, 5, () => {
      const receiver = conn.open_receiver({ source: { address }, credit_window: 0 });
      let got = 0;
      const drained = [];
      receiver.on('receiver_open', () => receiver.add_credit(2));
      receiver.on('message', () => {
        got += 1;
        if (got === 2) receiver.drain_credit();
      });
      receiver.on('receiver_drained', () => {
        drained.push({ got, credit: receiver.credit });
        if (drained.length === 1) {
          receiver.add_credit(10);
        } else {
          finish({ drained });
        }
      });
    });
  },

  // Request/response: a service consumes `address` and answers through the anonymous
  // relay (a sender without a target: each reply goes to its `to`); the client gets
  // a dynamic node as its reply-to.
  rpc() {
    const service = connect();
    const relay = service.open_sender({ target: {} });
    const requests = service.open_receiver({ source: { address } });
    requests.on('message', (ctx) => {
      const m = ctx.message;
      relay.send({ to: m.reply_to, correlation_id: m.message_id, body: String(m.body).toUpperCase() });
    });
    requests.on('receiver_open', () => {
      const client = connect();
      const replies = client.open_receiver({ source: { dynamic: true } });
      replies.on('receiver_open', (ctx) => {
        const replyTo = ctx.receiver.source.address;
        const sender = client.open_sender({ target: { address } });
        sender.once('sendable', () => {
          sender.send({ message_id: 'req-1', reply_to: replyTo, body: 'hello' });
        });
        replies.on('message', (rctx) => {
          finish({
            reply_to: replyTo,
            correlation_id: rctx.message.correlation_id,
            body: rctx.message.body,
            offered: service.remote.open.offered_capabilities || null,
          });
        });
      });
    });
  },

  // At-most-once both ways: a pre-settled sender (no outcomes come back) and a
  // receiver that asks for pre-settled deliveries (they arrive settled).
  presettled() {
    const conn = connect();
    const sender = conn.open_sender({ target: { address }, snd_settle_mode: 1 });
    sender.once('sendable', () => {
      for (let i = 0; i < 3; i += 1) sender.send({ body: `p${i}` });
      const receiver = conn.open_receiver({ source: { address }, snd_settle_mode: 1 });
      const received = [];
      receiver.on('message', (ctx) => {
        received.push({ body: ctx.message.body, settled: ctx.delivery.remote_settled });
        if (received.length === 3) {
          finish({ received, snd_settle_mode: receiver.remote.attach.snd_settle_mode });
        }
      });
    });
  },

  // Every outcome from a receiver: m0 rejected (dead-lettered), m1 modified with
  // delivery-failed (comes back counted), m2 released (comes back uncounted), the
  // rest and the redeliveries accepted; then the dead-letter queue is read. Credit
  // one at a time: rhea merges dispositions sent in one tick into one range with
  // the first one's outcome, which would turn the modified into a reject.
  outcomes() {
    const conn = connect();
    sendAll(conn, 4, () => {
      const receiver = conn.open_receiver({ source: { address }, autoaccept: false, credit_window: 1 });
      const received = [];
      const accepted = new Set();
      receiver.on('message', (ctx) => {
        const body = ctx.message.body;
        const count = ctx.message.delivery_count || 0;
        received.push({ body, count });
        progress.push(body);
        if (body === 'm0') ctx.delivery.reject({ condition: 'app:bad', description: 'no' });
        else if (body === 'm1' && count === 0) ctx.delivery.modified({ delivery_failed: true });
        else if (body === 'm2' && !accepted.has('m2-released')) {
          accepted.add('m2-released');
          ctx.delivery.release();
        } else {
          ctx.delivery.accept();
          accepted.add(body);
        }
        if (['m1', 'm2', 'm3'].every((m) => accepted.has(m))) {
          const name = address.replace(/^\$queue\//, '');
          const dlq = conn.open_receiver({ source: { address: `$dlq/${name}` } });
          dlq.on('message', (dctx) => finish({ received, dead: dctx.message.body }));
        }
      });
    });
  },

  // A JMS selector (rhea.filter.selector): first on a browser (distribution-mode
  // copy: read without consuming), then on a consumer; a plain consumer gets the rest.
  selector() {
    const conn = connect();
    const sender = conn.open_sender({ target: { address } });
    const colors = ['blue', 'red', 'green', 'red'];
    let accepted = 0;
    sender.once('sendable', () => {
      colors.forEach((color, i) => {
        sender.send({ body: `${color}-${i}`, application_properties: { color } });
      });
    });
    sender.on('accepted', () => {
      accepted += 1;
      if (accepted < colors.length) return;
      const filter = rhea.filter.selector("color = 'red'");
      const browsed = [];
      const browser = conn.open_receiver({ source: { address, distribution_mode: 'copy', filter } });
      browser.on('message', (bctx) => {
        browsed.push(bctx.message.body);
        if (browsed.length < 2) return;
        const selected = [];
        const red = conn.open_receiver({ source: { address, filter }, autoaccept: true });
        red.on('message', (rctx) => {
          selected.push(rctx.message.body);
          if (selected.length < 2) return;
          const rest = [];
          const plain = conn.open_receiver({ source: { address } });
          plain.on('message', (pctx) => {
            rest.push(pctx.message.body);
            if (rest.length === 2) finish({ browsed, selected, rest });
          });
        });
      });
    });
  },
};

if (!scenarios[scenario]) fail(`unknown scenario ${scenario}`);
scenarios[scenario]();
