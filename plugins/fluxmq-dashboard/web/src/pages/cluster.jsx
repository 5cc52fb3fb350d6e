// Cluster: the driver's view of every node (this node alone without a cluster driver).
import { useState } from "preact/hooks";
import { api, get } from "../api.js";
import { fmtNum, fmtTime } from "../util.js";
import { ErrorBanner, KV, usePoll } from "../ui.jsx";

export function Cluster() {
  const [c, setC] = useState(null);
  const [error, setError] = useState(null);
  usePoll(
    async () => {
      try {
        setC(await get(api("/cluster")));
        setError(null);
      } catch (e) {
        setError(e);
      }
    },
    3000,
    [],
  );
  const scalar = c
    ? Object.entries(c).filter(([k, v]) => k !== "nodes" && (typeof v !== "object" || v === null))
    : [];
  const nested = c ? Object.entries(c).filter(([k, v]) => k !== "nodes" && v && typeof v === "object") : [];
  return (
    <>
      <h1 tabIndex={-1}>Cluster</h1>
      <ErrorBanner error={error} />
      {c && (
        <>
          {c.driver === "none" && (
            <p class="muted">Single node: no cluster driver is installed (the etcd plugin adds one).</p>
          )}
          <section class="card">
            <KV items={scalar.map(([k, v]) => [k, String(v)])} />
          </section>
          <div class="scroll card">
            <table aria-label="Nodes">
              <thead>
                <tr>
                  <th scope="col">Node</th><th scope="col">Address</th><th scope="col">Health</th>
                  <th scope="col">Local</th><th scope="col">Started</th><th scope="col">Sessions</th>
                </tr>
              </thead>
              <tbody>
                {c.nodes.map((n) => (
                  <tr key={n.node_id} data-node={n.node_id}>
                    <th scope="row">{n.node_id}</th>
                    <td>{n.address || "–"}</td>
                    <td class={n.alive ? "ok" : "bad"}>{n.alive ? "alive" : "down"}</td>
                    <td>{n.local ? "yes" : "no"}</td>
                    <td>{typeof n.started === "number" ? fmtTime(n.started) : n.started || "–"}</td>
                    <td data-sessions>{fmtNum(n.sessions)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {nested.map(([k, v]) => (
            <section class="card" key={k}>
              <h2>{k}</h2>
              <pre>{JSON.stringify(v, null, 2)}</pre>
            </section>
          ))}
        </>
      )}
    </>
  );
}
