"""The web portal in a real browser: fixtures.

scripts/web-test.sh starts ferrumd (inside a loopback-only network
namespace) and runs pytest there with:
  FERRUM_URL       the portal, http://127.0.0.1:PORT
  FERRUM_DATA_DIR  ferrumd's data dir (admin.token)
  FERRUM_BIN_DIR   where the ferrum CLI is
  FERRUMD_PID      ferrumd's PID (a dead ferrumd stops the wait at once)
  AXE_JS           axe-core's axe.min.js (pinned)
  CHROMIUM         Debian's chromium (never `playwright install`)
  SCREENSHOT_DIR   where the screenshots go (docs/screenshots)
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

URL = os.environ["FERRUM_URL"]
DATA_DIR = Path(os.environ["FERRUM_DATA_DIR"])
BIN_DIR = Path(os.environ["FERRUM_BIN_DIR"])
AXE_JS = Path(os.environ["AXE_JS"]).read_text()
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR", "docs/screenshots"))

PASSWORD = "correct horse battery staple"
PROJECT = "p-vision"
USER = "alice"

expect.set_options(timeout=10_000)


def http(method, path, token=None, body=None):
    """(status, parsed JSON or None) of an API call; never raises on 4xx/5xx."""
    req = urllib.request.Request(URL + path, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data=data, timeout=10) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, None


def wait_for_ferrumd():
    """Until /healthz answers and admin.token is written (deadline 60 s)."""
    pid = int(os.environ["FERRUMD_PID"]) if os.environ.get("FERRUMD_PID") else None
    deadline = time.monotonic() + 60
    token_file = DATA_DIR / "admin.token"
    while True:
        try:
            if token_file.exists() and token_file.read_text().strip():
                with urllib.request.urlopen(URL + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return token_file.read_text().strip()
        except OSError:
            pass
        if pid is not None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pytest.exit("ferrumd exited before answering", returncode=1)
        if time.monotonic() > deadline:
            pytest.exit(f"ferrumd did not answer at {URL}/healthz within 60 s", returncode=1)
        # Paces a readiness probe bounded by the deadline above (ferrumd
        # announces its readiness only by answering).
        time.sleep(0.1)


def activation_link(admin, user):
    """The link `ferrum admin user activation-link` prints (its last line)."""
    out = subprocess.run(
        [str(BIN_DIR / "ferrum"), "--url", URL, "--token", admin, "admin", "user", "activation-link", user],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout
    link = out.strip().splitlines()[-1].strip()
    assert link.startswith(f"{URL}/activate/"), out
    return link


@pytest.fixture(scope="session")
def admin():
    return wait_for_ferrumd()


@pytest.fixture(scope="session")
def alice(admin):
    """Project p-vision and its user alice (no password yet), made through
    the API; `state` says whether the browser set her password."""
    status, _ = http("POST", "/api/v1/projects", admin, {"name": PROJECT})
    assert status == 201, status
    status, _ = http("POST", "/api/v1/users", admin, {"name": USER, "projects": [PROJECT]})
    assert status == 201, status
    return {"admin": admin, "link": activation_link(admin, USER), "password": None}


@pytest.fixture(scope="session")
def playwright_instance():
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_instance):
    b = playwright_instance.chromium.launch(
        executable_path=CHROMIUM,
        args=["--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"],
    )
    yield b
    b.close()


@pytest.fixture
def page(browser):
    # bypass_csp: the portal's CSP (rightly) refuses the injected axe-core.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True, base_url=URL)
    p = context.new_page()
    yield p
    context.close()


def set_password(page: Page, password: str, confirm: str):
    page.get_by_label("New password").fill(password)
    page.get_by_label("The same password again").fill(confirm)
    page.get_by_role("button", name="Set password").click()


@pytest.fixture
def activated(alice, browser):
    """alice with a password: the activation test's, or set here (through
    the same form) when that test did not run first."""
    if alice["password"] is None:
        context = browser.new_context(bypass_csp=True)
        p = context.new_page()
        p.goto(activation_link(alice["admin"], USER))
        set_password(p, PASSWORD, PASSWORD)
        expect(p).to_have_url(f"{URL}/login?activated={USER}")
        context.close()
        alice["password"] = PASSWORD
    return alice


def sign_in(page: Page, name: str, password: str):
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def signed_in(page, activated):
    page.goto("/login")
    sign_in(page, USER, activated["password"])
    expect(page.get_by_role("heading", name=f"Welcome, {USER}")).to_be_visible()
    return page


CHECKED_PAGES = set()


def check_a11y(page: Page, name: str):
    """axe-core (pinned) on the page as it is: any serious or critical
    violation fails, printed with its nodes; lesser ones are printed."""
    page.add_script_tag(content=AXE_JS)
    result = page.evaluate("() => axe.run(document, { resultTypes: ['violations'] })")
    bad = []
    for v in result["violations"]:
        line = f"[{name}] {v['impact']}: {v['id']}: {v['help']} ({v['helpUrl']})"
        for n in v["nodes"]:
            line += f"\n    {n['target']}: {n.get('failureSummary', '')}"
        print(line)
        if v["impact"] in ("serious", "critical"):
            bad.append(line)
    CHECKED_PAGES.add(name)
    assert not bad, f"accessibility violations on {name} ({page.url}):\n" + "\n".join(bad)
