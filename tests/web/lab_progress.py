"""A real deployment on the virtual lab, watched in Chromium: the lease page
follows it live (issue 19, "a deployment's progress updates live on the lab").

Run by the lab's full-loop test (tests/tests/e2e/deploy.rs) with the web
venv's python, inside the lab's network namespace (the lab's ferrumd is
local there; the namespace has no route out). The protocol:

  environment  LAB_URL          the lab's portal (lab.env's FERRUM_URL)
               ACTIVATION_LINK  `ferrum admin user activation-link USER`
               LAB_USER         the lease owner, who signs in
               CHROMIUM         Debian's chromium (never `playwright install`)
               DEPLOY_DEADLINE  seconds the deployment may take
               SCREENSHOT_DIR   if set: lease-deploying.png goes there, the
                                page while the image is written (the
                                README's; `WEB_TEST_SCREENSHOTS=docs/screenshots`
                                for the test)
  stdout       `signed in` once the browser is signed in (the test creates
               the lease only then), then what the page showed
  stdin        one line, `LEASE DEPLOYMENT`, once the deployment runs

It passes when, in one document (no reload, no navigation), every node's
phase took at least two values pushed by the page's event stream, and the
deployment ended `done` with every node `finished`, the bytes written in
MiB, and the page saying that nothing moves any more. The password is made
here and said nowhere.
"""

import os
import secrets
import sys
import time
from urllib.parse import urlsplit

from playwright.sync_api import expect, sync_playwright

URL = os.environ["LAB_URL"].rstrip("/")
LINK = os.environ["ACTIVATION_LINK"]
USER = os.environ["LAB_USER"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DEPLOY_DEADLINE_MS = int(float(os.environ.get("DEPLOY_DEADLINE", "420")) * 1000)
SCREENSHOT_DIR = os.environ.get("SCREENSHOT_DIR")

# Under TCG the lab's ferrumd shares two cores with the QEMU nodes.
expect.set_options(timeout=60_000)

# Records, in the page, every value each node's cells take from now on.
WATCH = """() => {
  window.ferrumWatch = { seen: {} };
  const record = () => {
    for (const row of document.querySelectorAll('#progress tr[id^="op-"]')) {
      const node = row.querySelector('th').textContent;
      const seen = (window.ferrumWatch.seen[node] ||= { state: [], phase: [], written: [] });
      for (const field of Object.keys(seen)) {
        const text = row.querySelector(`[data-field="${field}"]`).textContent;
        if (seen[field].at(-1) !== text) seen[field].push(text);
      }
    }
  };
  record();
  new MutationObserver(record).observe(document.getElementById('progress'), { subtree: true, childList: true, characterData: true });
}"""


def say(line):
    print(line, flush=True)


def main():
    password = secrets.token_urlsafe(18)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(base_url=URL, viewport={"width": 1280, "height": 800})
        page.set_default_navigation_timeout(60_000)

        # The lease owner sets a password through the link and signs in.
        assert LINK.startswith(URL + "/activate/"), f"the link names the lab's public_url {URL}: {LINK}"
        page.goto(urlsplit(LINK).path)
        page.get_by_label("New password").fill(password)
        page.get_by_label("The same password again").fill(password)
        page.get_by_role("button", name="Set password").click()
        expect(page).to_have_url(f"{URL}/login?activated={USER}")
        page.get_by_label("User name").fill(USER)
        page.get_by_label("Password", exact=True).fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name=f"Welcome, {USER}")).to_be_visible()
        say("signed in")

        line = sys.stdin.readline().split()
        assert len(line) == 2, f"expected `LEASE DEPLOYMENT` on stdin, got {line}"
        lease, deployment = line
        started = time.monotonic()
        response = page.goto(f"/leases/{lease}")
        assert response is not None and response.ok, f"/leases/{lease}: {response and response.status}"
        # Rendered at load: a running deployment makes the page follow it.
        running = "the page follows a running deployment (it was over before the page opened?)"
        expect(page.locator("#progress"), running).to_have_attribute("data-live", "true", timeout=1_000)
        page.evaluate(WATCH)
        say(f"lease {lease}: page open, deployment {deployment} running")

        state = page.locator(f"#deployment-{deployment}-state")
        if SCREENSHOT_DIR:
            # Once a node is past its ramdisk's start (or it is all over).
            page.wait_for_function(
                """id => document.getElementById(id).textContent !== 'running' ||
                    [...document.querySelectorAll('#progress [data-field="phase"]')]
                        .some(c => !['boot_ramdisk', 'wait_agent'].includes(c.textContent))""",
                arg=f"deployment-{deployment}-state",
                timeout=DEPLOY_DEADLINE_MS,
                polling=100,
            )
            page.screenshot(path=os.path.join(SCREENSHOT_DIR, "lease-deploying.png"), full_page=True)

        # The end, read from the page as the event stream leaves it.
        expect(state).not_to_have_text("running", timeout=DEPLOY_DEADLINE_MS)
        expect(state).to_have_text("done")
        expect(page.locator("#live")).to_have_text("Nothing is being deployed now: the table shows how each node ended.")
        watch = page.evaluate("() => window.ferrumWatch")
        assert watch is not None, "the page was reloaded or left: its watcher is gone"
        say(f"deployment {deployment} done on the page after {time.monotonic() - started:.1f} s")

        assert watch["seen"], "no node row on the page"
        for node, seen in sorted(watch["seen"].items()):
            say(f"  {node}: phase {' -> '.join(seen['phase'])}; written {' -> '.join(seen['written'])}")
            assert len(seen["phase"]) >= 2, f"{node}: the phase never changed on the page: {seen}"
            assert seen["phase"][-1] == "finished", f"{node}: {seen}"
            assert seen["state"][-1] == "done", f"{node}: {seen}"
            assert seen["written"][-1].endswith("MiB"), f"{node}: {seen}"
        browser.close()


if __name__ == "__main__":
    main()
