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
  AIOSMTPD         aiosmtpd 1.4.6 (the mail scenario's SMTP server)

The mail scenario gets a ferrumd of its own (`mail_portal`), started
here in the same namespace, whose [mail] goes to an aiosmtpd that keeps
every message in a maildir: the suite's ferrumd has no mail server (its
admin is shown activation links).
"""

import email
import email.policy
import json
import os
import re
import socket
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


def http(method, path, token=None, body=None, url=URL):
    """(status, parsed JSON or None) of an API call; never raises on 4xx/5xx."""
    req = urllib.request.Request(url + path, method=method)
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


def wait_for_ferrumd(url=URL, data_dir=DATA_DIR, pid=None):
    """Until /healthz answers and admin.token is written (deadline 60 s)."""
    if pid is None and url == URL and os.environ.get("FERRUMD_PID"):
        pid = int(os.environ["FERRUMD_PID"])
    deadline = time.monotonic() + 60
    token_file = data_dir / "admin.token"
    while True:
        try:
            if token_file.exists() and token_file.read_text().strip():
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
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
            pytest.exit(f"ferrumd did not answer at {url}/healthz within 60 s", returncode=1)
        # Paces a readiness probe bounded by the deadline above (ferrumd
        # announces its readiness only by answering).
        time.sleep(0.1)


def activation_link(admin, user, url=URL):
    """The link `ferrum admin user activation-link` prints (its last line)."""
    out = subprocess.run(
        [str(BIN_DIR / "ferrum"), "--url", url, "--token", admin, "admin", "user", "activation-link", user],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout
    link = out.strip().splitlines()[-1].strip()
    assert link.startswith(f"{url}/activate/"), out
    return link


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MailPortal:
    """A ferrumd whose mail an aiosmtpd keeps (a maildir), and its admin."""

    def __init__(self, url, admin, maildir):
        self.url = url
        self.admin = admin
        self.maildir = maildir

    def messages(self):
        """Every message so far: (To, decoded text body)."""
        found = []
        new = self.maildir / "new"
        for f in sorted(new.iterdir()) if new.is_dir() else []:
            m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
            body = m.get_body(preferencelist=("plain",))
            found.append((str(m["To"]), body.get_content() if body else ""))
        return found

    def link(self, to, path):
        """The first link to `path` (e.g. /activate/) mailed to `to`,
        waited for (deadline 20 s)."""
        deadline = time.monotonic() + 20
        pattern = re.compile(re.escape(self.url + path) + r"[A-Za-z0-9_\-]+")
        while True:
            for rcpt, body in self.messages():
                found = pattern.search(body) if to in rcpt else None
                if found:
                    return found.group(0)
            assert time.monotonic() < deadline, f"no mail to {to} with {path} within 20 s: {self.messages()}"
            # Paces a maildir probe bounded by the deadline above (the
            # SMTP server announces nothing).
            time.sleep(0.1)


@pytest.fixture(scope="session")
def mail_portal(tmp_path_factory):
    """A second ferrumd, mailing through aiosmtpd, with the Grid'5000
    fixture tree imported (chifflot's V100 nodes); both killed by PID."""
    work = tmp_path_factory.mktemp("mail-portal")
    smtp_port, port = free_port(), free_port()
    maildir = work / "maildir"
    smtp = subprocess.Popen(
        [os.environ["AIOSMTPD"], "-n", "-l", f"127.0.0.1:{smtp_port}", "-c", "aiosmtpd.handlers.Mailbox", str(maildir)],
        stdout=open(work / "smtp.log", "w"), stderr=subprocess.STDOUT,
    )
    (work / "ferrumd.toml").write_text(
        "[web]\nlogin_burst_per_account = 50\nlogin_burst_per_address = 50\n"
        f"[mail]\nsmtp_url = \"smtp://127.0.0.1:{smtp_port}\"\nfrom = \"ferrum <ferrum@testbed.example>\"\n"
    )
    url = f"http://127.0.0.1:{port}"
    ferrumd = subprocess.Popen(
        [str(BIN_DIR / "ferrumd"), "--config", str(work / "ferrumd.toml"), "--listen", f"127.0.0.1:{port}", "--data-dir", str(work / "data")],
        stdout=open(work / "ferrumd.log", "w"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert smtp.poll() is None, (work / "smtp.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", smtp_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "aiosmtpd did not accept within 20 s"
                # Paces a readiness probe bounded by the deadline above.
                time.sleep(0.1)
        admin = wait_for_ferrumd(url, work / "data", ferrumd.pid)
        subprocess.run(
            [str(BIN_DIR / "ferrum"), "--url", url, "--token", admin, "node", "import", "fixtures/g5k-reference"],
            check=True, capture_output=True, text=True, timeout=60,
        )
        yield MailPortal(url, admin, maildir)
    finally:
        for p in (ferrumd, smtp):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


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
