// The booking page's live count (templates/book.html), served from
// /static/book.js (the portal's CSP takes scripts from this origin only):
// as the filter is typed, the number of nodes it selects is asked from
// /hardware/_count (the lease API's filter parser, through the session),
// as the hardware catalog's filter builder does. Without this script,
// the page counts them on the server when "Check" sends the form.
"use strict";
(function () {
  const filter = document.getElementById("filter");
  const result = document.getElementById("filter-result");
  if (!filter || !result) {
    return;
  }
  function show(text, isError) {
    result.textContent = text;
    result.classList.toggle("error", isError);
    if (isError) {
      filter.setAttribute("aria-invalid", "true");
    } else {
      filter.removeAttribute("aria-invalid");
    }
  }
  let timer = null;
  let asked = 0;
  async function count() {
    const text = filter.value.trim();
    const mine = ++asked;
    const url = "/hardware/_count" + (text ? "?filter=" + encodeURIComponent(text) : "?filter=");
    try {
      const answer = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      const body = await answer.json();
      if (mine !== asked) {
        return;
      }
      if (answer.ok) {
        show((text ? "Matching nodes: " : "No filter: any of ") + body.count + (text ? "." : " nodes."), false);
      } else {
        show(body.error || "the server could not count the nodes", true);
      }
    } catch (e) {
      if (mine === asked) {
        show("the count could not be asked: Check counts on the server", true);
      }
    }
  }
  filter.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(count, 250);
  });
})();
