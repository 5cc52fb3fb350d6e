// Subscriptions by topic filter with subscriber counts; the clients of one filter.
import { useEffect, useState } from "preact/hooks";
import { api, enc, get } from "../api.js";
import { fmtNum } from "../util.js";
import { ErrorBanner, Pager, usePoll } from "../ui.jsx";

const LIMIT = 50;

function Holders({ filter, onClose }) {
  const [rows, setRows] = useState(null);
  const [error, setError] = useState(null);
  usePoll(
    async () => {
      try {
        setRows((await get(api(`/subscriptions?filter=${enc(filter)}&limit=1000`))).subscriptions);
        setError(null);
      } catch (e) {
        setError(e);
      }
    },
    3000,
    [filter],
  );
  return (
    <section class="card detail" aria-labelledby="holders-title">
      <h2 id="holders-title">
        Clients of <code>{filter}</code>
      </h2>
      <ErrorBanner error={error} />
      {rows && (
        <div class="scroll">
          <table aria-label={`Clients subscribed to ${filter}`}>
            <thead>
              <tr><th scope="col">Client id</th><th scope="col">Protocol</th><th scope="col">QoS</th></tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={`${r.protocol}/${r.client_id}`}>
                  <th scope="row"><a href={`#/clients/${enc(r.client_id)}`}>{r.client_id}</a></th>
                  <td>{r.protocol}</td>
                  <td>{r.qos}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div class="buttons">
        <button type="button" onClick={onClose}>Close</button>
      </div>
    </section>
  );
}

export function Subscriptions() {
  const [search, setSearch] = useState("");
  const [query, setQuery] = useState("");
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [selected, setSelected] = useState("");
  useEffect(() => {
    const t = setTimeout(() => { setQuery(search); setOffset(0); }, 250);
    return () => clearTimeout(t);
  }, [search]);
  usePoll(
    async () => {
      try {
        const qs = new URLSearchParams({ limit: LIMIT, offset });
        if (query) qs.set("search", query);
        setPage(await get(api(`/subscriptions/filters?${qs}`)));
        setError(null);
      } catch (e) {
        setError(e);
      }
    },
    3000,
    [query, offset],
  );
  return (
    <>
      <h1 tabIndex={-1}>Subscriptions</h1>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Filter contains
          <input type="search" value={search} placeholder="sensors/" onInput={(e) => setSearch(e.currentTarget.value)} />
        </label>
      </form>
      <ErrorBanner error={error} />
      {page && (
        <>
          <div class="scroll card">
            <table aria-label="Topic filters">
              <thead>
                <tr><th scope="col">Topic filter</th><th scope="col">Subscribers</th><th scope="col">By protocol</th></tr>
              </thead>
              <tbody>
                {page.filters.map((f) => (
                  <tr key={f.filter} data-filter={f.filter}>
                    <th scope="row">
                      <button type="button" class="link" onClick={() => setSelected(f.filter)}>
                        <code>{f.filter}</code>
                      </button>
                    </th>
                    <td>{fmtNum(f.subscribers)}</td>
                    <td>{Object.entries(f.protocols).map(([p, n]) => `${p} ${n}`).join(", ")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager label="Filters" total={page.total} offset={offset} limit={LIMIT} onChange={setOffset} />
        </>
      )}
      {selected && <Holders filter={selected} onClose={() => setSelected("")} />}
    </>
  );
}
