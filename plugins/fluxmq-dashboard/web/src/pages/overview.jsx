// Overview: live tiles and three plots of the last 15 minutes, sampled in the browser.
import uPlot from "uplot";
import { useEffect, useRef, useState } from "preact/hooks";
import * as sampler from "../sampler.js";
import { fmtBytes, fmtDuration, fmtNum } from "../util.js";
import { ErrorBanner } from "../ui.jsx";

const CHARTS = [
  {
    id: "rates",
    title: "Messages per second",
    series: [
      ["in", "inRate", "#2563eb"],
      ["out", "outRate", "#16a34a"],
      ["dropped", "dropped", "#dc2626"],
    ],
    fmt: (v) => fmtNum(v, 1),
  },
  {
    id: "bytes",
    title: "Bytes per second",
    series: [
      ["in", "bytesIn", "#2563eb"],
      ["out", "bytesOut", "#16a34a"],
    ],
    fmt: fmtBytes,
  },
  {
    id: "clients",
    title: "Connections and subscriptions",
    series: [
      ["connections", "connections", "#7c3aed"],
      ["subscriptions", "subscriptions", "#ea580c"],
    ],
    fmt: (v) => fmtNum(v),
    whole: true,
  },
  {
    id: "memory",
    title: "Memory (resident)",
    series: [["rss", "rss", "#0891b2"]],
    fmt: fmtBytes,
  },
];

// Tick steps of a plot of counts: whole numbers only.
const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6, 1e7];

function columns(def, samples) {
  return [samples.map((s) => s.t), ...def.series.map(([, key]) => samples.map((s) => s[key]))];
}

function Chart({ def, samples }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const el = box.current;
    const width = () => Math.max(240, el.clientWidth - 8);
    plot.current = new uPlot(
      {
        width: width(),
        height: 180,
        series: [
          {},
          ...def.series.map(([label, , stroke]) => ({
            label,
            stroke,
            width: 2,
            value: (u, v) => (v === null || v === undefined ? "–" : def.fmt(v)),
          })),
        ],
        axes: [
          {},
          {
            values: (u, vals) => vals.map((v) => def.fmt(v)),
            size: 70,
            ...(def.whole ? { incrs: WHOLE } : {}),
          },
        ],
        // At most the last 15 minutes (the sampler drops older samples), ending at the
        // newest sample; a single sample gets a one-minute frame.
        scales: {
          x: {
            time: true,
            range: (u, min, max) => (max - min < 1 ? [max - 60, max] : [min, max]),
          },
        },
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
      },
      columns(def, samples),
      el,
    );
    const ro = new ResizeObserver(() => plot.current.setSize({ width: width(), height: 180 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.current.destroy();
    };
  }, []);
  useEffect(() => {
    if (plot.current) plot.current.setData(columns(def, samples));
  });
  return (
    <figure class="card chart" aria-labelledby={`chart-${def.id}`}>
      <figcaption id={`chart-${def.id}`}>{def.title} (last 15 minutes)</figcaption>
      <div ref={box} data-chart={def.id} data-samples={samples.length} role="img" aria-label={`${def.title} plot`} />
    </figure>
  );
}

function Tile({ label, value, id }) {
  return (
    <div class="tile card">
      <div class="label" id={`tile-${id}`}>{label}</div>
      <div class="value" aria-labelledby={`tile-${id}`} data-tile={id}>
        {value}
      </div>
    </div>
  );
}

export function Overview() {
  const [, setTick] = useState(0);
  useEffect(() => sampler.subscribe(() => setTick((n) => n + 1)), []);
  const { last, samples, error } = sampler.state;
  if (!last) return <><h1 tabIndex={-1}>Overview</h1><ErrorBanner error={error} /><p>Sampling…</p></>;
  const { stats, rates } = last;
  const b = stats.broker;
  const q = stats.queues || {};
  const proc = stats.process || {};
  const byProto = sampler.state.byProtocol || {};
  return (
    <>
      <h1 tabIndex={-1}>Overview</h1>
      <ErrorBanner error={error} />
      <section class="tiles" aria-label="Current values">
        <Tile id="connections" label="Connections" value={fmtNum(b.clients_connected)} />
        <Tile id="sessions" label="Sessions" value={fmtNum(Object.values(byProto).reduce((a, r) => a + r.sessions, 0))} />
        <Tile id="subscriptions" label="Subscriptions" value={fmtNum(stats.router.subscriptions)} />
        <Tile id="retained" label="Retained" value={fmtNum(stats.router.retained)} />
        <Tile id="in-rate" label="Messages in/s" value={fmtNum(rates.inRate, 1)} />
        <Tile id="out-rate" label="Messages out/s" value={fmtNum(rates.outRate, 1)} />
        <Tile id="bytes-in" label="Bytes in/s" value={fmtBytes(rates.bytesIn)} />
        <Tile id="bytes-out" label="Bytes out/s" value={fmtBytes(rates.bytesOut)} />
        <Tile id="received" label="Messages received" value={fmtNum(b.messages_received)} />
        <Tile id="sent" label="Messages sent" value={fmtNum(b.messages_sent)} />
        <Tile id="dropped" label="Dropped" value={fmtNum(b.messages_dropped)} />
        <Tile id="queues" label="Queues / pending" value={`${fmtNum(q.queues)} / ${fmtNum(q.pending)}`} />
        <Tile id="memory" label="Memory (RSS)" value={fmtBytes(proc.rss_bytes)} />
        <Tile id="uptime" label="Uptime" value={fmtDuration(stats.uptime)} />
      </section>
      <section class="charts" aria-label="Plots">
        {CHARTS.map((def) => (
          <Chart key={def.id} def={def} samples={samples} />
        ))}
      </section>
      <section class="card">
        <h2>Per protocol</h2>
        <div class="scroll">
          <table aria-label="Sessions per protocol">
            <thead>
              <tr><th scope="col">Protocol</th><th scope="col">Connected</th><th scope="col">Sessions</th><th scope="col">Subscriptions</th></tr>
            </thead>
            <tbody>
              {Object.entries(byProto).map(([p, r]) => (
                <tr key={p} data-protocol={p}>
                  <th scope="row">{p}</th>
                  <td>{fmtNum(r.connected)}</td>
                  <td>{fmtNum(r.sessions)}</td>
                  <td>{fmtNum(r.subscriptions)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <p class="muted">
          Listeners: {Object.entries(stats.listeners).map(([k, v]) => `${k} ${v}`).join(", ")}
        </p>
      </section>
    </>
  );
}
