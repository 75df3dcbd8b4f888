// A lease's live deploy progress (templates/lease.html), served from
// /static/lease.js (the portal's CSP takes scripts from this origin only,
// never inline). While something moves, it follows the page's
// Server-Sent Events stream (/leases/{id}/events, the session's) and
// writes each `progress` event into the deployments' tables; the server
// formats every value, the script only places text. It stops at `end`.
// Without this script the page shows the state at load and a Refresh link.
"use strict";
(function () {
  const section = document.getElementById("progress");
  if (!section || section.dataset.live !== "true" || !window.EventSource) {
    return;
  }
  const live = document.getElementById("live");
  const leaseState = document.getElementById("lease-state");
  // What was last said in the live region (announced on change only).
  let said = "";
  const say = (text) => {
    if (text !== said) {
      said = text;
      live.textContent = text;
    }
  };
  say("Deploying: the table below follows the nodes as they go.");

  const source = new EventSource(section.dataset.events);
  source.addEventListener("progress", (event) => {
    let progress;
    try {
      progress = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    if (leaseState && !leaseState.textContent.startsWith(progress.lease_state)) {
      leaseState.textContent = progress.lease_state;
    }
    let unknown = false;
    const running = [];
    for (const d of progress.deployments) {
      const state = document.getElementById("deployment-" + d.id + "-state");
      if (!state) {
        unknown = true;
        continue;
      }
      state.textContent = d.state;
      for (const op of d.nodes) {
        const row = document.getElementById("op-" + d.id + "-" + op.node);
        if (!row) {
          unknown = true;
          continue;
        }
        for (const cell of row.querySelectorAll("[data-field]")) {
          const field = cell.dataset.field;
          if (field === "ssh") {
            if (op.ssh) {
              const code = document.createElement("code");
              code.textContent = op.ssh;
              cell.replaceChildren(code);
            } else {
              cell.textContent = "-";
            }
          } else if (field in op) {
            cell.textContent = String(op[field]);
          }
        }
        if (op.state === "running") {
          running.push(op.node + ": " + op.phase.replace(/_/g, " "));
        }
      }
    }
    if (unknown) {
      say("A deployment started since this page was loaded: refresh the page to see it.");
    } else if (running.length > 0) {
      say("Deploying (" + running.join(", ") + ").");
    }
  });
  source.addEventListener("end", () => {
    source.close();
    if (!said.startsWith("A deployment started")) {
      say("Nothing is being deployed now: the table shows how each node ended.");
    }
  });
  source.onerror = () => {
    // The browser retries by itself; say that the table may lag meanwhile.
    if (source.readyState === EventSource.CLOSED) {
      say("Live progress stopped: refresh the page to see the current state.");
    }
  };
})();
