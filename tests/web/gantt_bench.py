"""Times the calendar page in Chromium (scripts/gantt-browser-bench.sh):
from navigation to the chart drawn (the load event, then two animation
frames: the frame after layout and paint), against a named baseline in
the same run: the same page without its chart. The page and the
stylesheet are served to the browser by Playwright itself (no server, no
network), so the time is the browser's: parsing, style, layout, paint.

usage: gantt_bench.py PAGE.html ferrum.css [RUNS]
"""

import re
import statistics
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ORIGIN = "http://ferrum.bench"
DRAWN = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now()))))"


def measure(browser, html, css, runs):
    times = []
    for _ in range(runs):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()

        def serve(route, html=html):
            path = route.request.url[len(ORIGIN):]
            if path == "/calendar":
                route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)
            elif path == "/static/ferrum.css":
                route.fulfill(status=200, content_type="text/css", body=css)
            else:
                route.abort()

        page.route(ORIGIN + "/**", serve)
        page.goto(ORIGIN + "/calendar", wait_until="load")
        times.append(page.evaluate(DRAWN))
        assert page.locator("#gantt").count() == (1 if "<svg id=\"gantt\"" in html else 0)
        context.close()
    return statistics.median(times), max(times)


def main():
    html = Path(sys.argv[1]).read_text()
    css = Path(sys.argv[2]).read_text()
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    bare = re.sub(r'<figure class="gantt">.*?</figure>', "", html, flags=re.S)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"],
        )
        page50, page_max = measure(browser, html, css, runs)
        bare50, bare_max = measure(browser, bare, css, runs)
        browser.close()
    bars = html.count("<rect class=\"bar")
    print(f"{runs} navigations each; p50 / max ms from navigation to the chart drawn")
    print(
        f"calendar page ({len(html.encode()) // 1024} KB, {bars} bars): {page50:.0f} / {page_max:.0f} ms"
        f" | baseline page without its chart ({len(bare.encode()) // 1024} KB): {bare50:.0f} / {bare_max:.0f} ms"
        f" | ratio {page50 / bare50:.2f}"
    )


if __name__ == "__main__":
    main()
