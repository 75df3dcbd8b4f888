// The hardware catalog's filter builder (templates/hardware.html), served
// from /static/hardware.js (the portal's CSP takes scripts from this origin
// only, never inline). The helpers write their condition into the filter
// text as `compose` in controller/src/web/catalog.rs does on the server,
// and the number of matching nodes is counted as the filter changes
// (/static/filter-count.js, loaded first).
// Without this script, the form's button does the same on the server.
"use strict";
(function () {
  const form = document.getElementById("filter-form");
  if (!form || !window.ferrumFilterCount) {
    return;
  }
  const filter = document.getElementById("filter");
  const result = document.getElementById("filter-result");
  const total = Number(result.dataset.total);

  const quoted = (v) => "'" + v.replace(/'/g, "''") + "'";
  const positive = (t) => (/^\d+$/.test(t.trim()) ? Number(t.trim()) : 0);
  const clauses = {
    "h-cluster": (v) => (v.trim() ? "cluster = " + quoted(v.trim()) : ""),
    "h-gpu-model": (v) => (v.trim() ? "gpu_model = " + quoted(v.trim()) : ""),
    "h-min-gpus": (v) => (positive(v) > 0 ? "gpu_count >= " + positive(v) : ""),
    "h-min-memory": (v) => (positive(v) > 0 ? "memnode >= " + positive(v) * 1024 : ""),
  };

  // Whether the text has an OR outside parentheses and quotes.
  function hasTopLevelOr(text) {
    let depth = 0;
    let quote = null;
    let word = "";
    for (const c of text + " ") {
      if (quote) {
        if (c === quote) {
          quote = null;
        }
        continue;
      }
      if (/[A-Za-z0-9_]/.test(c)) {
        word += c;
        continue;
      }
      if (depth === 0 && word.toLowerCase() === "or") {
        return true;
      }
      word = "";
      if (c === "'" || c === '"') {
        quote = c;
      } else if (c === "(") {
        depth += 1;
      } else if (c === ")") {
        depth -= 1;
      }
    }
    return false;
  }

  // Where the condition stands in the text as a whole one (bounded by the
  // ends, spaces or parentheses: "gpu_count >= 2" is not in
  // "gpu_count >= 20"); -1 if nowhere.
  function findClause(text, clause) {
    for (let at = text.indexOf(clause); at >= 0; at = text.indexOf(clause, at + 1)) {
      const before = at === 0 ? " " : text[at - 1];
      const end = at + clause.length;
      const after = end === text.length ? " " : text[end];
      if ((before === " " || before === "(") && (after === " " || after === ")")) {
        return at;
      }
    }
    return -1;
  }

  // The text without a helper's previous condition and the AND joining it.
  function without(text, old) {
    const at = old ? findClause(text, old) : -1;
    if (at < 0) {
      return text;
    }
    let from = at;
    let to = at + old.length;
    if (text.startsWith(" AND ", to)) {
      to += 5;
    } else if (text.slice(0, at).endsWith(" AND ")) {
      from -= 5;
    }
    return (text.slice(0, from) + text.slice(to)).trim();
  }

  // The text AND the condition, unless it holds it already.
  function withClause(text, clause) {
    text = text.trim();
    if (!clause || findClause(text, clause) >= 0) {
      return text;
    }
    if (!text) {
      return clause;
    }
    return (hasTopLevelOr(text) ? "(" + text + ")" : text) + " AND " + clause;
  }

  // The calendar link follows the filter.
  const calendar = document.getElementById("calendar-link");
  const ask = window.ferrumFilterCount(filter, result, {
    empty: "No filter: all " + total + " nodes.",
    found: (count) => "Matching nodes: " + count + " of " + total + ".",
    offline: "the count could not be asked: the button counts on the server",
    shown: (typed) => {
      calendar.href = typed ? "/calendar?filter=" + encodeURIComponent(typed) : "/calendar";
    },
  });

  for (const id of Object.keys(clauses)) {
    const control = document.getElementById(id);
    const prev = document.getElementById(control.dataset.prev);
    // A list changes when chosen; a number as it is typed.
    control.addEventListener(control.tagName === "SELECT" ? "change" : "input", () => {
      const before = clauses[id](prev.value);
      const now = clauses[id](control.value);
      let text = filter.value.trim();
      if (before !== now) {
        text = without(text, before);
      }
      filter.value = withClause(text, now);
      prev.value = control.value;
      ask();
    });
  }
  filter.addEventListener("input", ask);
})();
