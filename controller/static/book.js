// The booking page's live count (templates/book.html), served from
// /static/book.js after /static/filter-count.js: as the filter is typed,
// the number of nodes it selects is said beside it. Without scripts, the
// page counts them on the server when "Check" sends the form.
"use strict";
(function () {
  const filter = document.getElementById("filter");
  const result = document.getElementById("filter-result");
  if (!filter || !result || !window.ferrumFilterCount) {
    return;
  }
  const ask = window.ferrumFilterCount(filter, result, {
    found: (count, typed) => (typed ? "Matching nodes: " + count + "." : "No filter: any of " + count + " nodes."),
    offline: "the count could not be asked: Check counts on the server",
  });
  filter.addEventListener("input", ask);
})();
