// Queues: depth, bytes, groups, consumers, lag and PEL per group, dead letters;
// create, purge, delete (confirmed); peek at the newest messages.
import { useState } from "preact/hooks";
import { api, call, enc, get } from "../api.js";
import { b64ToBytes, fmtBytes, fmtNum, fmtTime, hex, text } from "../util.js";
import { Confirm, ErrorBanner, KV, usePoll } from "../ui.jsx";

const PEEK = 10;
const dlqOf = (name) => `$dlq/${name}`;

function Peek({ queue }) {
  const [rows, setRows] = useState(null);
  const [error, setError] = useState(null);
  const [asHex, setAsHex] = useState(false);
  const load = async () => {
    try {
      const from = Math.max(queue.first_offset, queue.next_offset - PEEK);
      const body = await get(api(`/queues/${enc(queue.name)}/records?from=${from}&limit=${PEEK}`), { raw: true });
      const recs = body.split("\n").filter(Boolean).map((l) => JSON.parse(l));
      setRows(recs.reverse());
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  return (
    <section class="card" aria-labelledby="peek-title">
      <h3 id="peek-title">Newest messages</h3>
      <div class="buttons">
        <button type="button" onClick={load}>Peek newest {PEEK}</button>
        <label class="check">
          <input type="checkbox" checked={asHex} onChange={(e) => setAsHex(e.currentTarget.checked)} /> Hex
        </label>
      </div>
      <ErrorBanner error={error} />
      {rows && (
        <div class="scroll">
          <table aria-label="Newest messages">
            <thead>
              <tr><th scope="col">Offset</th><th scope="col">Time</th><th scope="col">Topic</th><th scope="col">Payload</th></tr>
            </thead>
            <tbody>
              {rows.map((r) => {
                const bytes = b64ToBytes(r.payload);
                return (
                  <tr key={r.offset} data-offset={r.offset}>
                    <td>{r.offset}</td>
                    <td>{fmtTime(r.timestamp)}</td>
                    <td><code>{r.topic}</code></td>
                    <td class="payload">{asHex ? hex(bytes) : text(bytes)}</td>
                  </tr>
                );
              })}
              {!rows.length && <tr><td colSpan={4}>The queue holds no message.</td></tr>}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function QueueDetail({ name, all, onClose, onAsk }) {
  const [q, setQ] = useState(null);
  const [error, setError] = useState(null);
  usePoll(
    async () => {
      try {
        setQ(await get(api(`/queues/${enc(name)}`)));
        setError(null);
      } catch (e) {
        setError(e);
      }
    },
    2000,
    [name],
  );
  const dlq = all.find((x) => x.name === dlqOf(name));
  return (
    <section class="card detail" aria-labelledby="queue-title">
      <h2 id="queue-title">Queue {name}</h2>
      <ErrorBanner error={error} />
      {q && (
        <>
          <KV
            items={[
              ["Type", q.type],
              ["Depth", fmtNum(q.depth)],
              ["Bytes", fmtBytes(q.bytes)],
              ["Offsets", `${q.first_offset} … ${q.next_offset}`],
              ["Consumers", fmtNum(q.consumers)],
              ["Topics", q.topics.join(", ") || "–"],
              ["Dead letters", dlq ? fmtNum(dlq.depth) : "no dead-letter queue"],
            ]}
          />
          {dlq && (
            <p><a href={`#/queues/${enc(dlq.name)}`}>Open the dead-letter queue {dlq.name}</a></p>
          )}
          <h3>Consumer groups</h3>
          <div class="scroll">
            <table aria-label={`Consumer groups of ${name}`}>
              <thead>
                <tr>
                  <th scope="col">Group</th><th scope="col">Consumers</th><th scope="col">Lag</th>
                  <th scope="col">Pending (PEL)</th><th scope="col">Committed</th><th scope="col">Cursor</th>
                </tr>
              </thead>
              <tbody>
                {q.groups.map((g) => (
                  <tr key={g.name} data-group={g.name}>
                    <th scope="row">{g.name}</th>
                    <td>{fmtNum(g.consumers)}</td>
                    <td>{fmtNum(g.lag)}</td>
                    <td>{fmtNum(g.pending)}</td>
                    <td>{g.committed === null ? "–" : g.committed}</td>
                    <td>{g.cursor}</td>
                  </tr>
                ))}
                {!q.groups.length && <tr><td colSpan={6}>No consumer group.</td></tr>}
              </tbody>
            </table>
          </div>
          <details>
            <summary>Settings</summary>
            <pre>{JSON.stringify(q.config, null, 2)}</pre>
          </details>
          <Peek queue={q} key={q.next_offset} />
        </>
      )}
      <div class="buttons">
        <button type="button" onClick={() => onAsk("purge", name)}>Purge</button>
        <button type="button" class="danger" onClick={() => onAsk("delete", name)}>Delete</button>
        <button type="button" onClick={onClose}>Close</button>
      </div>
    </section>
  );
}

function CreateForm({ onDone, onError }) {
  const [name, setName] = useState("");
  const [type, setType] = useState("classic");
  return (
    <form
      class="filters card"
      aria-label="Create a queue"
      onSubmit={async (e) => {
        e.preventDefault();
        try {
          await call("POST", api("/queues"), { name: name.trim(), type });
          onDone(`Queue ${name.trim()} declared (${type}).`);
          setName("");
        } catch (err) {
          onError(err);
        }
      }}
    >
      <label>
        New queue name
        <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        Type
        <select value={type} onChange={(e) => setType(e.currentTarget.value)}>
          <option value="classic">classic</option>
          <option value="stream">stream</option>
          <option value="ephemeral">ephemeral</option>
        </select>
      </label>
      <button type="submit">Create</button>
    </form>
  );
}

export function Queues({ arg }) {
  const [queues, setQueues] = useState(null);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState("");
  const [ask, setAsk] = useState(null);
  const [tick, setTick] = useState(0);
  const selected = arg || "";
  usePoll(
    async () => {
      try {
        setQueues((await get(api("/queues"))).queues);
        setError(null);
      } catch (e) {
        setError(e);
      }
    },
    2000,
    [tick],
  );
  const act = async () => {
    const { what, name } = ask;
    setAsk(null);
    try {
      if (what === "purge") {
        const r = await call("POST", api(`/queues/${enc(name)}/purge`));
        setNotice(`Purged ${fmtNum(r.purged)} message(s) from ${name}.`);
      } else {
        await call("DELETE", api(`/queues/${enc(name)}`));
        setNotice(`Deleted queue ${name}.`);
        location.hash = "#/queues";
      }
    } catch (e) {
      setError(e);
    }
    setTick((n) => n + 1);
  };
  return (
    <>
      <h1 tabIndex={-1}>Queues</h1>
      <CreateForm onDone={(m) => { setNotice(m); setTick((n) => n + 1); }} onError={setError} />
      <ErrorBanner error={error} />
      {notice && <p class="notice" role="status">{notice}</p>}
      {queues && (
        <div class="scroll card">
          <table aria-label="Queues">
            <thead>
              <tr>
                <th scope="col">Queue</th><th scope="col">Type</th><th scope="col">Depth</th>
                <th scope="col">Bytes</th><th scope="col">Groups</th><th scope="col">Consumers</th>
                <th scope="col">Lag (max)</th><th scope="col">Pending</th><th scope="col">Dead letters</th>
              </tr>
            </thead>
            <tbody>
              {queues.map((q) => {
                const dlq = queues.find((x) => x.name === dlqOf(q.name));
                return (
                  <tr key={q.name} data-queue={q.name} aria-current={q.name === selected ? "true" : undefined}>
                    <th scope="row"><a href={`#/queues/${enc(q.name)}`}>{q.name}</a></th>
                    <td>{q.type}</td>
                    <td data-depth>{fmtNum(q.depth)}</td>
                    <td>{fmtBytes(q.bytes)}</td>
                    <td>{fmtNum(q.groups.length)}</td>
                    <td>{fmtNum(q.consumers)}</td>
                    <td>{fmtNum(Math.max(0, ...q.groups.map((g) => g.lag)))}</td>
                    <td>{fmtNum(q.groups.reduce((a, g) => a + g.pending, 0))}</td>
                    <td>{dlq ? fmtNum(dlq.depth) : "–"}</td>
                  </tr>
                );
              })}
              {!queues.length && <tr><td colSpan={9}>No queue yet.</td></tr>}
            </tbody>
          </table>
        </div>
      )}
      {selected && queues && (
        <QueueDetail
          key={selected}
          name={selected}
          all={queues}
          onClose={() => (location.hash = "#/queues")}
          onAsk={(what, name) => setAsk({ what, name })}
        />
      )}
      <Confirm
        open={!!ask}
        title={ask && ask.what === "purge" ? "Purge queue?" : "Delete queue?"}
        action={ask && ask.what === "purge" ? "Purge" : "Delete"}
        onCancel={() => setAsk(null)}
        onConfirm={act}
      >
        {ask && (
          <p>
            {ask.what === "purge"
              ? `Remove every message of ${ask.name}, pending ones included?`
              : `Delete ${ask.name} with its messages and consumer groups? Its dead-letter queue stays.`}
          </p>
        )}
      </Confirm>
    </>
  );
}
