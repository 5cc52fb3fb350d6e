// Live tail: the admin event stream (/api/v1/tail, the /subscribe SSE stream under
// the admin token) read with fetch so the token travels in a header.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, explain, headers } from "../api.js";
import { b64ToBytes, hex, text } from "../util.js";

const MAX = 500;

function parseEvents(buffer, onEvent) {
  let idx;
  while ((idx = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, idx);
    buffer = buffer.slice(idx + 2);
    let data = "";
    let event = "message";
    for (const line of block.split("\n")) {
      if (line.startsWith("data:")) data += line.slice(5).trimStart();
      else if (line.startsWith("event:")) event = line.slice(6).trim();
    }
    if (data && event === "message") onEvent(JSON.parse(data));
  }
  return buffer;
}

export function Tail() {
  const [filter, setFilter] = useState("#");
  const [running, setRunning] = useState(false);
  const [paused, setPaused] = useState(false);
  const [asHex, setAsHex] = useState(false);
  const [rows, setRows] = useState([]);
  const [held, setHeld] = useState(0);
  const [status, setStatus] = useState("stopped");
  const [error, setError] = useState("");
  const ctl = useRef(null);
  const pausedRef = useRef(false);
  const pending = useRef([]);
  const seq = useRef(0);

  const push = (items) => setRows((r) => [...items.reverse(), ...r].slice(0, MAX));

  const start = async () => {
    stop();
    const ac = new AbortController();
    ctl.current = ac;
    setError("");
    setRunning(true);
    setStatus("connecting");
    try {
      const id = `console-tail-${Math.random().toString(36).slice(2, 10)}`;
      const resp = await fetch(api(`/tail?filter=${encodeURIComponent(filter)}`), {
        headers: headers({ "X-FluxMQ-Client-Id": id, Accept: "text/event-stream" }),
        signal: ac.signal,
        cache: "no-store",
      });
      if (!resp.ok) {
        let msg = resp.statusText;
        try { msg = (await resp.json()).error || msg; } catch { /* not JSON */ }
        throw new ApiError(resp.status, msg);
      }
      setStatus(`streaming ${filter}`);
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const batch = [];
        buf = parseEvents(buf + dec.decode(value, { stream: true }), (m) => {
          m.seq = ++seq.current;
          m.at = new Date().toISOString().slice(11, 23);
          batch.push(m);
        });
        if (!batch.length) continue;
        if (pausedRef.current) {
          pending.current = [...pending.current, ...batch].slice(-MAX);
          setHeld(pending.current.length);
        } else push(batch);
      }
      setStatus("the stream ended");
    } catch (e) {
      if (e.name !== "AbortError") {
        setError(explain(e));
        setStatus("stopped");
      }
    }
    if (ctl.current === ac) {
      ctl.current = null;
      setRunning(false);
    }
  };

  const stop = () => {
    if (ctl.current) ctl.current.abort();
    ctl.current = null;
    setRunning(false);
    setStatus("stopped");
  };

  const togglePause = () => {
    const next = !pausedRef.current;
    pausedRef.current = next;
    setPaused(next);
    if (!next && pending.current.length) {
      push(pending.current);
      pending.current = [];
      setHeld(0);
    }
  };

  useEffect(() => () => ctl.current && ctl.current.abort(), []);

  return (
    <>
      <h1 tabIndex={-1}>Live tail</h1>
      <form
        class="filters card"
        aria-label="Tail settings"
        onSubmit={(e) => {
          e.preventDefault();
          start();
        }}
      >
        <label>
          Topic filter
          <input required value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
        </label>
        <button type="submit">{running ? "Restart" : "Start"}</button>
        <button type="button" disabled={!running} onClick={stop}>Stop</button>
        <button type="button" aria-pressed={paused} onClick={togglePause}>
          {paused ? `Resume (${held} held)` : "Pause"}
        </button>
        <label class="check">
          <input type="checkbox" checked={asHex} onChange={(e) => setAsHex(e.currentTarget.checked)} /> Hex
        </label>
        <button type="button" onClick={() => setRows([])}>Clear</button>
      </form>
      <p class="muted" role="status">
        {status}; showing {rows.length} of at most {MAX} messages
      </p>
      {error && <p class="error" role="alert">{error}</p>}
      <div class="scroll card">
        <table aria-label="Messages">
          <thead>
            <tr><th scope="col">#</th><th scope="col">Time</th><th scope="col">Topic</th><th scope="col">QoS</th><th scope="col">Payload</th></tr>
          </thead>
          <tbody>
            {rows.map((m) => {
              const bytes = b64ToBytes(m.payload);
              return (
                <tr key={m.seq} data-topic={m.topic}>
                  <td>{m.seq}</td>
                  <td>{m.at}</td>
                  <td><code>{m.topic}</code>{m.retain ? " (retained)" : ""}</td>
                  <td>{m.qos}</td>
                  <td class="payload">{asHex ? hex(bytes) : text(bytes)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </>
  );
}
