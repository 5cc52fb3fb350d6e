// Small shared components: confirmation dialog, error banner, pager, key/value list.
import { useEffect, useRef } from "preact/hooks";
import { explain } from "./api.js";

export function ErrorBanner({ error }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {typeof error === "string" ? error : explain(error)}
    </p>
  );
}

// A modal confirmation (<dialog>): Escape or Cancel closes it, focus starts on Cancel.
export function Confirm({ open, title, children, action, onConfirm, onCancel }) {
  const ref = useRef(null);
  const cancelRef = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) {
      d.showModal();
      cancelRef.current && cancelRef.current.focus();
    } else if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={ref} aria-labelledby="confirm-title" onCancel={(e) => { e.preventDefault(); onCancel(); }}>
      <h2 id="confirm-title">{title}</h2>
      <div>{children}</div>
      <div class="buttons">
        <button type="button" ref={cancelRef} onClick={onCancel}>Cancel</button>
        <button type="button" class="danger" onClick={onConfirm}>{action}</button>
      </div>
    </dialog>
  );
}

export function Pager({ total, offset, limit, onChange, label }) {
  const last = Math.min(total, offset + limit);
  return (
    <nav class="pager" aria-label={`${label} pages`}>
      <button type="button" disabled={offset === 0} onClick={() => onChange(Math.max(0, offset - limit))}>
        Previous
      </button>
      <span aria-live="polite">
        {total ? `${offset + 1}–${last} of ${total}` : "none"}
      </span>
      <button type="button" disabled={last >= total} onClick={() => onChange(offset + limit)}>
        Next
      </button>
    </nav>
  );
}

export function KV({ items }) {
  return (
    <dl class="kv">
      {items.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

export function usePoll(fn, ms, deps) {
  useEffect(() => {
    let alive = true;
    const run = () => alive && fn();
    run();
    const t = setInterval(run, ms);
    return () => {
      alive = false;
      clearInterval(t);
    };
  }, deps);
}
