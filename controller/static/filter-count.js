// The live count of the nodes a filter selects, shared by the hardware
// catalog's filter builder (hardware.js) and the booking page (book.js):
// as the filter is typed, /hardware/_count (the lease API's filter parser,
// through the session) is asked, at most every 250 ms and keeping only the
// latest answer, and the words go to the page's status line, the field
// marked invalid on an error. Served from /static/filter-count.js (the
// portal's CSP takes scripts from this origin only); without scripts, each
// page counts on the server when its form is sent.
"use strict";
// `words.empty`: the text for an empty filter, said without asking (else
// the server counts every node); `words.found(count, typed)`: the text
// for a count; `words.offline`: when the server cannot be asked;
// `words.shown(typed)`: called after each answer is shown (optional).
// Answers the function that asks again (call it on each change).
window.ferrumFilterCount = function (filter, result, words) {
  let timer = null;
  let asked = 0;
  function show(text, isError) {
    result.textContent = text;
    result.classList.toggle("error", isError);
    if (isError) {
      filter.setAttribute("aria-invalid", "true");
    } else {
      filter.removeAttribute("aria-invalid");
    }
    if (words.shown) {
      words.shown(filter.value.trim());
    }
  }
  async function count() {
    const text = filter.value.trim();
    const mine = ++asked;
    if (!text && words.empty) {
      show(words.empty, false);
      return;
    }
    try {
      const answer = await fetch("/hardware/_count?filter=" + encodeURIComponent(text), {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const body = await answer.json();
      if (mine !== asked) {
        return;
      }
      if (answer.ok) {
        show(words.found(body.count, text), false);
      } else {
        show(body.error || "the server could not count the nodes", true);
      }
    } catch (e) {
      if (mine === asked) {
        show(words.offline, true);
      }
    }
  }
  return function ask() {
    clearTimeout(timer);
    timer = setTimeout(count, 250);
  };
};
