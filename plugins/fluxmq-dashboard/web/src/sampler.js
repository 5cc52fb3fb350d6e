// Samples /api/v1/stats in the browser every INTERVAL ms and keeps the last
// 15 minutes: rates come from the differences of the broker's counters.
import { api, get } from "./api.js";

export const INTERVAL = 2000;
export const WINDOW = 15 * 60 * 1000;

const listeners = new Set();
// Sessions per protocol walk every session on the broker: asked every 5th sample.
const PROTOCOL_EVERY = 5;
export const state = { samples: [], last: null, error: null, byProtocol: null };
let timer = null;
let prev = null;
let ticks = 0;

export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit() {
  for (const fn of listeners) fn(state);
}

function counter(stats, key) {
  return Number(stats.broker[key] || 0);
}

async function tick() {
  try {
    const withProtocols = ticks++ % PROTOCOL_EVERY === 0;
    const stats = await get(api(withProtocols ? "/stats?by_protocol=true" : "/stats"));
    if (stats.sessions_by_protocol) state.byProtocol = stats.sessions_by_protocol;
    const t = Date.now();
    const s = {
      t: t / 1000,
      connections: counter(stats, "clients_connected"),
      subscriptions: stats.router.subscriptions,
      rss: stats.process ? stats.process.rss_bytes || 0 : 0,
      // Rates need two samples: the first one leaves a gap in the plots.
      inRate: null,
      outRate: null,
      bytesIn: null,
      bytesOut: null,
      dropped: null,
    };
    if (prev) {
      const dt = Math.max(0.001, (t - prev.t) / 1000);
      const rate = (k) => Math.max(0, (counter(stats, k) - counter(prev.stats, k)) / dt);
      s.inRate = rate("messages_received");
      s.outRate = rate("messages_sent");
      s.bytesIn = rate("bytes_received");
      s.bytesOut = rate("bytes_sent");
      s.dropped = rate("messages_dropped");
    }
    prev = { t, stats };
    state.last = { stats, rates: s };
    state.error = null;
    state.samples.push(s);
    const cutoff = (t - WINDOW) / 1000;
    while (state.samples.length && state.samples[0].t < cutoff) state.samples.shift();
  } catch (e) {
    state.error = e;
  }
  emit();
}

export function start() {
  if (timer) return;
  tick();
  timer = setInterval(tick, INTERVAL);
}

export function stop() {
  clearInterval(timer);
  timer = null;
}
