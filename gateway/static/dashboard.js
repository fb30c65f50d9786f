// Turnout live dashboard: polls the gateway's JSON feeds once a second. Plain DOM.
"use strict";
// With server.admin_token set, the feeds need the session cookie the sign-in form (ui/login)
// sets: the browser sends it with these same-origin requests; no script can read it.

(function () {
  const POLL_MS = 1000;
  const FEEDS = {
    targets: "admin/targets",
    traces: "admin/traces?limit=60",
    events: "admin/events?limit=150",
  };
  const state = { selectedId: null, selected: null, pickedSpan: 0, traces: [], tracesFeed: null };

  // -- helpers ---------------------------------------------------------------------------

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      else if (k === "style") Object.assign(node.style, v); // CSSOM: allowed by the page's CSP
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, String(v));
    }
    for (const c of [].concat(children || [])) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clock(epochSeconds) {
    const d = new Date(epochSeconds * 1000);
    const pad = (n, w) => String(n).padStart(w || 2, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function ms(v) {
    if (v === null || v === undefined) return "–";
    return v >= 100 ? `${Math.round(v)} ms` : `${Number(v).toFixed(1)} ms`;
  }

  function pair(a, b) {
    return `${ms(a)} / ${ms(b)}`;
  }

  function pct(v) {
    return v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`;
  }

  async function getJson(url) {
    const headers = { Accept: "application/json" };
    const r = await fetch(url, { cache: "no-store", credentials: "same-origin", headers });
    if (r.status === 401) location.assign("ui/login"); // not signed in, or the session ended
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return r.json();
  }

  // -- targets ---------------------------------------------------------------------------

  function renderTargets(feed) {
    const now = Date.now() / 1000;
    const rows = feed.data.map((t) => {
      const throttled = t.throttled_until && t.throttled_until > now
        ? el("span", { class: "throttled", text: `${clock(t.throttled_until)} (${(t.throttled_until - now).toFixed(1)} s)` })
        : "–";
      const openUntil = t.state === "open" && t.open_until
        ? el("span", { class: "sub", text: ` until ${clock(t.open_until)}` })
        : null;
      const last = t.last_transition
        ? `${t.last_transition.to} at ${clock(t.last_transition.at)}: ${t.last_transition.reason}`
        : "–";
      return el("tr", { "data-target": t.id, "data-state": t.state }, [
        el("td", { class: "mono", text: t.id }),
        el("td", { text: `${t.provider} · ${t.model}` }),
        el("td", {}, [
          el("span", { class: `state state-${t.state}`, text: t.state.replace("_", "-") }),
          openUntil,
          t.misconfigured ? el("span", { class: "flag", text: "misconfigured" }) : null,
        ]),
        el("td", { class: "num", text: `${pct(t.error_rate)} of ${t.window_calls}` }),
        el("td", { class: "num", text: pair(t.latency_ms_p50, t.latency_ms_ewma) }),
        el("td", { class: "num", text: pair(t.ttft_ms_p50, t.ttft_ms_ewma) }),
        el("td", { class: "num", text: t.in_flight }),
        el("td", {}, [throttled]),
        el("td", { class: "sub", text: last }),
      ]);
    });
    document.querySelector("#targets tbody").replaceChildren(...rows);
    const store = feed.degraded ? `${feed.store} (degraded: local view)` : feed.store;
    document.getElementById("store").textContent = `health store: ${store}`;
  }

  // -- timeline --------------------------------------------------------------------------

  function renderTimeline(feed) {
    const list = document.getElementById("timeline");
    if (!feed.data.length) return;
    const items = feed.data.map((e) => {
      let body;
      if (e.kind === "breaker") {
        body = [
          el("span", {
            class: `badge to-${e.to}`,
            text: `breaker ${e.to.replace("_", "-")}`,
            title: e.from ? `from ${e.from.replace("_", "-")}` : null,
          }),
          el("span", { class: "mono", text: e.target }),
          el("span", { class: "sub", text: e.reason }),
        ];
      } else {
        body = [
          el("span", { class: "badge failover", text: "failover" }),
          el("span", { class: "what" }, [
            el("span", { class: "mono", text: e.target }),
            ` ${e.reason} · attempt ${e.attempt}${e.route ? ` · ${e.route}` : ""} `,
          ]),
          e.trace_id ? el("a", { text: "trace", onclick: () => select(e.trace_id) }) : null,
        ];
      }
      return el("li", { "data-kind": e.kind, "data-target": e.target }, [
        el("span", { class: "time", text: clock(e.at) }),
        ...body,
      ]);
    });
    list.replaceChildren(...items);
  }

  // -- traces ----------------------------------------------------------------------------

  function renderTraces(feed) {
    state.traces = feed.data;
    state.tracesFeed = feed;
    const only = document.getElementById("only-failovers").checked;
    const shown = only ? feed.data.filter((t) => t.failovers > 0 || t.status !== "ok") : feed.data;
    const rows = shown.map((t) => {
      const classes = [t.status, t.failovers > 0 ? "failover" : "", t.trace_id === state.selectedId ? "selected" : ""];
      return el("tr", {
        class: classes.join(" ").trim(),
        "data-trace-id": t.trace_id,
        "data-attempts": t.attempts,
        "data-failovers": t.failovers,
        onclick: () => select(t.trace_id),
      }, [
        el("td", { text: clock(t.start) }),
        el("td", { text: t.route || "–" }),
        el("td", { class: "status", text: t.http_status || t.status }),
        el("td", { class: "num", text: ms(t.duration_ms) }),
        el("td", { class: "num attempts", text: t.failovers ? `${t.attempts} (${t.failovers} failover${t.failovers > 1 ? "s" : ""})` : t.attempts }),
        el("td", { class: "mono", text: t.target || "–" }),
      ]);
    });
    document.querySelector("#traces tbody").replaceChildren(...rows);
    document.getElementById("traces-count").textContent =
      `${feed.data.length} shown of ${feed.held} kept (last ${feed.capacity})`;
    if (state.selectedId && !state.selected) {
      const found = feed.data.find((t) => t.trace_id === state.selectedId);
      if (found) showTrace(found);
    }
  }

  async function select(traceId) {
    state.selectedId = traceId;
    state.selected = null;
    state.pickedSpan = 0;
    for (const row of document.querySelectorAll("#traces tbody tr")) {
      row.classList.toggle("selected", row.dataset.traceId === traceId);
    }
    let trace = state.traces.find((t) => t.trace_id === traceId);
    if (!trace) {
      try {
        trace = await getJson(`admin/traces/${encodeURIComponent(traceId)}`);
      } catch (err) {
        document.getElementById("detail-summary").textContent = `Trace ${traceId} is no longer kept.`;
        return;
      }
    }
    if (state.selectedId === traceId) showTrace(trace);
  }

  // -- waterfall -------------------------------------------------------------------------

  function outcomeOf(span) {
    if (span.kind !== "client") return "server";
    return span.attributes["turnout.outcome"] || "unknown";
  }

  function failoverReasons(trace) {
    const byAttempt = new Map();
    for (const s of trace.spans) {
      for (const e of s.events) {
        if (e.name === "turnout.failover") byAttempt.set(e.attributes["turnout.attempt"], e);
      }
    }
    return byAttempt;
  }

  function showTrace(trace) {
    state.selected = trace;
    document.getElementById("detail-id").textContent = trace.trace_id;
    const reasons = failoverReasons(trace);
    const summary = [
      `${trace.name} · route ${trace.route || "–"} · ${trace.http_status || trace.status}`,
      ` · ${ms(trace.duration_ms)} · ${trace.attempts} attempt${trace.attempts === 1 ? "" : "s"}`,
      trace.target ? ` · served by ${trace.target}` : "",
      trace.request_id ? ` · request ${trace.request_id}` : "",
    ].join("");
    document.getElementById("detail-summary").textContent = summary;
    document.getElementById("detail-summary").className = "";
    const total = Math.max(trace.duration_ms, 0.001);
    const rows = trace.spans.map((s, i) => {
      const outcome = outcomeOf(s);
      const left = (s.start_offset_ms / total) * 100;
      const width = Math.max((s.duration_ms / total) * 100, 0.3);
      const a = s.attributes;
      const isAttempt = s.kind === "client";
      const failover = isAttempt ? reasons.get(a["turnout.attempt"]) : null;
      const flags = ["probe", "hedge", "panic"].filter((f) => a[`turnout.${f}`]).join(", ");
      const label = isAttempt
        ? `#${a["turnout.attempt"] || "?"} ${a["turnout.target"] || s.name}${flags ? ` (${flags})` : ""}`
        : s.name;
      let note = `${ms(s.duration_ms)}`;
      if (isAttempt) {
        note += ` · ${outcome}`;
        if (a["error.type"]) note += ` · ${a["error.type"]}`;
        if (a["turnout.ttft_ms"] !== undefined) note += ` · TTFT ${ms(a["turnout.ttft_ms"])}`;
      }
      // The label goes after the bar, before it when the bar ends far right, inside when wide.
      let textPos = { left: `calc(${left + width}% + 6px)` };
      let textClass = "bar-text";
      if (width > 60) {
        textPos = { left: `calc(${left}% + 6px)` };
        textClass += " inside";
      } else if (left + width > 65) {
        textPos = { right: `calc(${100 - left}% + 6px)` };
      }
      const track = el("div", { class: "wf-track" }, [
        el("div", { class: `bar o-${outcome}`, style: { left: `${left}%`, width: `${width}%` }, title: note }),
        el("span", { class: textClass, style: textPos }, [
          note,
          failover ? el("span", { class: "failover-note", text: ` → failover: ${failover.attributes["turnout.reason"]}` }) : null,
        ]),
        ...s.events.filter((e) => e.name === "turnout.failover").map((e) =>
          el("div", { class: "marker", style: { left: `${(e.offset_ms / total) * 100}%` }, title: `failover: ${e.attributes["turnout.reason"]}` })),
      ]);
      return el("div", {
        class: `wf-row ${isAttempt ? "attempt" : "root"}${i === state.pickedSpan ? " picked" : ""}`,
        "data-kind": s.kind,
        "data-outcome": outcome,
        "data-target": a["turnout.target"],
        onclick: () => { state.pickedSpan = i; showTrace(trace); },
      }, [el("div", { class: "wf-label", title: s.name, text: label }), track]);
    });
    document.getElementById("waterfall").replaceChildren(...rows);
    showAttributes(trace.spans[state.pickedSpan] || trace.spans[0]);
  }

  function showAttributes(span) {
    const rows = [
      ["span", `${span.name} (${span.kind}, ${span.status})`],
      ...Object.entries(span.attributes).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : v]),
      ...span.events.map((e) => [`event @ ${ms(e.offset_ms)}`, `${e.name} ${JSON.stringify(e.attributes)}`]),
    ];
    document.querySelector("#span-attrs tbody").replaceChildren(
      ...rows.map(([k, v]) => el("tr", {}, [el("td", { text: k }), el("td", { text: v })])));
  }

  // -- polling ---------------------------------------------------------------------------

  async function poll() {
    const conn = document.getElementById("conn");
    try {
      const [targets, traces, events] = await Promise.all(
        [FEEDS.targets, FEEDS.traces, FEEDS.events].map(getJson));
      renderTargets(targets);
      renderTraces(traces);
      renderTimeline(events);
      conn.dataset.state = "live";
      conn.textContent = "live";
      document.getElementById("updated").textContent = `updated ${clock(Date.now() / 1000)}`;
    } catch (err) {
      conn.dataset.state = "down";
      conn.textContent = "gateway unreachable";
      console.warn(err);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  document.getElementById("only-failovers").addEventListener("change", () => {
    if (state.tracesFeed) renderTraces(state.tracesFeed);
  });
  poll();
})();
