// Publish a test message (POST /api/v1/publish, the admin twin of POST /publish).
import { useState } from "preact/hooks";
import { api, call } from "../api.js";
import { bytesToB64 } from "../util.js";
import { ErrorBanner } from "../ui.jsx";

export function Publish() {
  const [topic, setTopic] = useState("test/hello");
  const [payload, setPayload] = useState("hello from the console");
  const [encoding, setEncoding] = useState("text");
  const [qos, setQos] = useState("0");
  const [retain, setRetain] = useState(false);
  const [result, setResult] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setResult("");
    setError(null);
    let b64;
    try {
      b64 = encoding === "text" ? bytesToB64(new TextEncoder().encode(payload)) : btoa(atob(payload.trim()));
    } catch {
      setError("The payload is not valid base64.");
      return;
    }
    setBusy(true);
    try {
      const r = await call("POST", api("/publish"), { topic, payload: b64, qos: Number(qos), retain });
      setResult(r.queue !== undefined ? `Stored in queue ${r.queue} at offset ${r.offset}.` : `Published to ${topic}.`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <h1 tabIndex={-1}>Publish</h1>
      <form class="card form" onSubmit={submit} aria-label="Publish a message">
        <label for="pub-topic">Topic</label>
        <input id="pub-topic" required value={topic} onInput={(e) => setTopic(e.currentTarget.value)} />
        <p class="muted">A topic <code>$queue/&lt;name&gt;/&lt;key&gt;</code> appends to a queue.</p>
        <label for="pub-payload">Payload</label>
        <textarea id="pub-payload" rows={5} value={payload} onInput={(e) => setPayload(e.currentTarget.value)} />
        <fieldset>
          <legend>Payload is</legend>
          <label><input type="radio" name="enc" checked={encoding === "text"} onChange={() => setEncoding("text")} /> text (UTF-8)</label>
          <label><input type="radio" name="enc" checked={encoding === "base64"} onChange={() => setEncoding("base64")} /> base64</label>
        </fieldset>
        <label for="pub-qos">QoS</label>
        <select id="pub-qos" value={qos} onChange={(e) => setQos(e.currentTarget.value)}>
          <option value="0">0</option>
          <option value="1">1</option>
          <option value="2">2</option>
        </select>
        <label class="check">
          <input type="checkbox" checked={retain} onChange={(e) => setRetain(e.currentTarget.checked)} /> Retain
        </label>
        <div class="buttons">
          <button type="submit" disabled={busy}>Publish</button>
        </div>
      </form>
      <ErrorBanner error={error} />
      {result && <p class="notice" role="status">{result}</p>}
    </>
  );
}
