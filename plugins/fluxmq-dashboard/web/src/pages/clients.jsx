// Clients and sessions of every protocol: search, paging, detail, disconnect.
import { useEffect, useState } from "preact/hooks";
import { api, call, enc, get } from "../api.js";
import { fmtNum, fmtTime } from "../util.js";
import { Confirm, ErrorBanner, KV, Pager, usePoll } from "../ui.jsx";

const LIMIT = 25;

function Detail({ id, protocol, onClose, onKick }) {
  const [info, setInfo] = useState(null);
  const [error, setError] = useState(null);
  usePoll(
    async () => {
      try {
        setInfo(await get(api(`/sessions/${enc(id)}?protocol=${enc(protocol)}`)));
        setError(null);
      } catch (e) {
        setError(e);
      }
    },
    2000,
    [id, protocol],
  );
  return (
    <section class="card detail" aria-labelledby="detail-title">
      <h2 id="detail-title">Session {id}</h2>
      <ErrorBanner error={error} />
      {info && (
        <>
          <KV
            items={[
              ["Protocol", `${info.protocol} ${info.version || ""}`],
              ["Connected", info.connected ? "yes" : "no"],
              ["Connected since", fmtTime(info.extra && info.extra.connected_at)],
              ["User", info.username || "–"],
              ["Remote", info.remote || "–"],
              ["In flight", fmtNum(info.inflight)],
              ["Queued", fmtNum(info.queued)],
              ["Expiry", info.expiry === null ? "–" : `${info.expiry} s`],
              ["Disconnected at", fmtTime(info.disconnected_at)],
              ...Object.entries(info.extra || {})
                .filter(([k]) => k !== "connected_at")
                .map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]),
            ]}
          />
          <h3>Subscriptions</h3>
          <ul class="plain">
            {Object.entries(info.subscriptions).map(([f, qos]) => (
              <li key={f}>
                <code>{f}</code> QoS {qos}
              </li>
            ))}
            {!Object.keys(info.subscriptions).length && <li>none</li>}
          </ul>
        </>
      )}
      <div class="buttons">
        {info && info.connected && (
          <button type="button" class="danger" onClick={() => onKick(info)}>
            Disconnect {id}
          </button>
        )}
        <button type="button" onClick={onClose}>Close</button>
      </div>
    </section>
  );
}

export function Clients({ arg }) {
  const [search, setSearch] = useState(arg || "");
  const [query, setQuery] = useState(arg || "");
  const [protocol, setProtocol] = useState("");
  const [connected, setConnected] = useState("");
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState(null);
  const [protocols, setProtocols] = useState([]);
  const [error, setError] = useState(null);
  const [selected, setSelected] = useState(null);
  const [kick, setKick] = useState(null);
  const [notice, setNotice] = useState("");
  const [tick, setTick] = useState(0);

  useEffect(() => {
    const t = setTimeout(() => {
      setQuery(search);
      setOffset(0);
    }, 250);
    return () => clearTimeout(t);
  }, [search]);

  usePoll(
    async () => {
      try {
        const qs = new URLSearchParams({ limit: LIMIT, offset });
        if (query) qs.set("search", query);
        if (protocol) qs.set("protocol", protocol);
        if (connected) qs.set("connected", connected);
        const [p, s] = await Promise.all([get(api(`/sessions?${qs}`)), get(api("/stats"))]);
        setPage(p);
        setProtocols(s.protocols);
        setError(null);
      } catch (e) {
        setError(e);
      }
    },
    3000,
    [query, protocol, connected, offset, tick],
  );

  const doKick = async () => {
    const info = kick;
    setKick(null);
    try {
      await call("DELETE", api(`/sessions/${enc(info.client_id)}?protocol=${enc(info.protocol)}`));
      setNotice(`Disconnected ${info.client_id} (${info.protocol}).`);
    } catch (e) {
      setError(e);
    }
    setTick((n) => n + 1);
  };

  return (
    <>
      <h1 tabIndex={-1}>Clients and sessions</h1>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Search
          <input
            type="search"
            name="search"
            placeholder="client id, user or address"
            value={search}
            onInput={(e) => setSearch(e.currentTarget.value)}
          />
        </label>
        <label>
          Protocol
          <select value={protocol} onChange={(e) => { setProtocol(e.currentTarget.value); setOffset(0); }}>
            <option value="">all</option>
            {protocols.map((p) => (
              <option key={p} value={p}>{p}</option>
            ))}
          </select>
        </label>
        <label>
          State
          <select value={connected} onChange={(e) => { setConnected(e.currentTarget.value); setOffset(0); }}>
            <option value="">all</option>
            <option value="true">connected</option>
            <option value="false">offline sessions</option>
          </select>
        </label>
      </form>
      <ErrorBanner error={error} />
      {notice && <p class="notice" role="status">{notice}</p>}
      {page && (
        <>
          <div class="scroll card">
            <table aria-label="Sessions">
              <thead>
                <tr>
                  <th scope="col">Client id</th>
                  <th scope="col">Protocol</th>
                  <th scope="col">User</th>
                  <th scope="col">Remote</th>
                  <th scope="col">Connected since</th>
                  <th scope="col">Subs</th>
                  <th scope="col">In flight</th>
                  <th scope="col">Queued</th>
                  <th scope="col"><span class="sr-only">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {page.sessions.map((s) => (
                  <tr key={`${s.protocol}/${s.client_id}`} data-client={s.client_id}>
                    <th scope="row">
                      <button type="button" class="link" onClick={() => setSelected(s)}>
                        {s.client_id}
                      </button>
                    </th>
                    <td>{s.protocol}</td>
                    <td>{s.username || "–"}</td>
                    <td>{s.remote || "–"}</td>
                    <td>{s.connected ? fmtTime(s.extra && s.extra.connected_at) : "offline"}</td>
                    <td>{fmtNum(Object.keys(s.subscriptions).length)}</td>
                    <td>{fmtNum(s.inflight)}</td>
                    <td>{fmtNum(s.queued)}</td>
                    <td>
                      {s.connected && (
                        <button
                          type="button"
                          class="danger small"
                          aria-label={`Disconnect ${s.client_id}`}
                          onClick={() => setKick(s)}
                        >
                          Disconnect
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager label="Sessions" total={page.total} offset={offset} limit={LIMIT} onChange={setOffset} />
        </>
      )}
      {selected && (
        <Detail
          id={selected.client_id}
          protocol={selected.protocol}
          onClose={() => setSelected(null)}
          onKick={(info) => setKick(info)}
        />
      )}
      <Confirm
        open={!!kick}
        title="Disconnect client?"
        action="Disconnect"
        onCancel={() => setKick(null)}
        onConfirm={doKick}
      >
        {kick && (
          <p>
            Close the connection of <strong>{kick.client_id}</strong> ({kick.protocol})? Its session
            then lives as its expiry says; the client may reconnect.
          </p>
        )}
      </Confirm>
    </>
  );
}
