// The FluxMQ console: a hash-routed single page over the admin API.
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { api, explain, get, getToken, setAuthHandler, setToken } from "./api.js";
import * as sampler from "./sampler.js";
import { Overview } from "./pages/overview.jsx";
import { Clients } from "./pages/clients.jsx";
import { Subscriptions } from "./pages/subscriptions.jsx";
import { Queues } from "./pages/queues.jsx";
import { Tail } from "./pages/tail.jsx";
import { Cluster } from "./pages/cluster.jsx";
import { Publish } from "./pages/publish.jsx";

const PAGES = [
  ["overview", "Overview", Overview],
  ["clients", "Clients", Clients],
  ["subscriptions", "Subscriptions", Subscriptions],
  ["queues", "Queues", Queues],
  ["tail", "Live tail", Tail],
  ["cluster", "Cluster", Cluster],
  ["publish", "Publish", Publish],
];

function parseHash() {
  const [page, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const known = PAGES.find((p) => p[0] === page);
  return { page: known ? page : "overview", arg: rest.length ? decodeURIComponent(rest.join("/")) : "" };
}

function TokenForm({ error, onSave }) {
  const [value, setValue] = useState(getToken());
  const ref = useRef(null);
  useEffect(() => ref.current && ref.current.focus(), []);
  return (
    <form
      class="token card"
      aria-labelledby="token-title"
      onSubmit={(e) => {
        e.preventDefault();
        onSave(value.trim());
      }}
    >
      <h2 id="token-title">Admin token</h2>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <p>
        The console uses the broker's admin API. Enter the <code>[http] admin_token</code> of this
        broker; it is kept for this browser tab only (session storage).
      </p>
      <label for="token-input">Token</label>
      <input
        id="token-input"
        ref={ref}
        type="password"
        autocomplete="off"
        value={value}
        onInput={(e) => setValue(e.currentTarget.value)}
      />
      <div class="buttons">
        <button type="submit">Use token</button>
      </div>
    </form>
  );
}

function App() {
  const [route, setRoute] = useState(parseHash());
  const [auth, setAuth] = useState({ state: "checking", error: "" });
  const [nodeId, setNodeId] = useState("");
  const mainRef = useRef(null);

  const check = async () => {
    try {
      const s = await get(api("/stats"));
      setNodeId(s.node_id);
      setAuth({ state: "ok", error: "" });
      sampler.start();
    } catch (e) {
      sampler.stop();
      setAuth({ state: "need", error: explain(e) });
    }
  };

  useEffect(() => {
    const onHash = () => setRoute(parseHash());
    addEventListener("hashchange", onHash);
    setAuthHandler((e) => {
      sampler.stop();
      setAuth({ state: "need", error: explain(e) });
    });
    check();
    return () => removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => {
    const h = mainRef.current && mainRef.current.querySelector("h1");
    if (h) h.focus();
  }, [route.page, auth.state]);

  const Page = PAGES.find((p) => p[0] === route.page)[2];
  return (
    <div class="shell">
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); mainRef.current.focus(); }}>
        Skip to content
      </a>
      <header>
        <span class="brand">FluxMQ</span>
        {nodeId && <span class="node" title="node id">{nodeId}</span>}
        <nav aria-label="Pages">
          <ul>
            {PAGES.map(([id, label]) => (
              <li key={id}>
                <a href={`#/${id}`} aria-current={route.page === id ? "page" : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <button
          type="button"
          class="link"
          onClick={() => setAuth({ state: "need", error: "" })}
        >
          {getToken() ? "Change token" : "Set token"}
        </button>
      </header>
      <main id="main" ref={mainRef} tabIndex={-1}>
        {auth.state === "checking" && <p>Connecting to the admin API…</p>}
        {auth.state === "need" && (
          <TokenForm
            error={auth.error}
            onSave={(t) => {
              setToken(t);
              setAuth({ state: "checking", error: "" });
              check();
            }}
          />
        )}
        {auth.state === "ok" && <Page arg={route.arg} />}
      </main>
    </div>
  );
}

render(<App />, document.getElementById("app"));
