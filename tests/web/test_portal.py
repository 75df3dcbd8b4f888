"""The web portal as a user clicks it, in Chromium (scripts/web-test.sh).

Tests run in file order: the activation comes first (alice sets her
password there); the other tests get a signed-in alice from the fixtures,
which activate her themselves when that test did not run.
"""

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

from playwright.sync_api import Page, expect

from conftest import (
    BIN_DIR, PASSWORD, PROJECT, SCREENSHOT_DIR, URL, USER, activation_link, check_a11y, http, set_password, sign_in,
)


def test_activation_then_sign_in(page: Page, alice):
    page.goto(alice["link"])
    expect(page.get_by_role("heading", name="Set your password")).to_be_visible()
    expect(page.get_by_text(f"For the user {USER}")).to_be_visible()
    check_a11y(page, "activation")

    # Too short: the browser holds the form (minlength) and says why.
    set_password(page, "short", "short")
    field = page.get_by_label("New password")
    expect(page).to_have_url(alice["link"])
    message = field.evaluate("e => e.validationMessage")
    assert re.search(r"10 characters", message), message
    assert field.evaluate("e => e.validity.tooShort")
    # The server says it too, in words on the page, to a browser that does
    # not check (the form marked novalidate: what an old browser sends).
    page.locator("form.stack").evaluate("f => f.noValidate = true")
    set_password(page, "short", "short")
    expect(page.get_by_role("alert")).to_have_text("password: at least 10 characters")
    expect(page.get_by_label("New password")).to_have_attribute("aria-describedby", "password-error")
    check_a11y(page, "activation with an error")

    set_password(page, PASSWORD, PASSWORD + " but different")
    expect(page.get_by_role("alert")).to_have_text("confirm: the two passwords differ")

    set_password(page, PASSWORD, PASSWORD)
    expect(page).to_have_url(f"{URL}/login?activated={USER}")
    alice["password"] = PASSWORD
    expect(page.get_by_role("status")).to_have_text(f"Your password is set, {USER}: sign in with it.")
    expect(page.get_by_label("User name")).to_have_value("")
    check_a11y(page, "sign-in")

    sign_in(page, USER, "not the password at all")
    expect(page.get_by_role("alert")).to_have_text("wrong user name or password")
    expect(page.get_by_label("User name")).to_have_value(USER)
    check_a11y(page, "sign-in with an error")

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{URL}/")
    expect(page.get_by_role("heading", name=f"Welcome, {USER}")).to_be_visible()
    expect(page.get_by_text(f"Your projects: {PROJECT}.")).to_be_visible()
    check_a11y(page, "home")

    page.goto(alice["link"])
    expect(page.get_by_role("alert")).to_contain_text("unknown, used or expired")
    check_a11y(page, "used activation link")


def token_works(secret):
    status, me = http("GET", "/api/v1/users/me", secret)
    return status, (me or {}).get("name")


def test_profile_tokens(signed_in: Page):
    page = signed_in
    page.get_by_role("navigation").get_by_role("link", name="Profile", exact=True).click()
    expect(page.get_by_role("heading", name="Profile", exact=True)).to_be_visible()
    check_a11y(page, "profile")

    page.get_by_label("Name of a new token").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token").inner_text().strip()
    assert secret, "no token on the page"
    check_a11y(page, "profile with a new token")
    assert token_works(secret) == (200, USER)

    # The form's answer is at /profile/tokens: open the profile again (a
    # reload would post the form again).
    assert page.url == f"{URL}/profile/tokens"
    page.get_by_role("navigation").get_by_role("link", name="Profile", exact=True).click()
    expect(page).to_have_url(f"{URL}/profile")
    expect(page.get_by_role("row").filter(has_text="laptop")).to_have_count(1)
    expect(page.locator("#new-token")).to_have_count(0)
    assert secret not in page.content(), "the token is shown once only"

    row = page.get_by_role("row").filter(has_text="laptop")
    row.get_by_role("button", name=re.compile(r"^Revoke token")).click()
    expect(page.get_by_role("row").filter(has_text="laptop")).to_have_count(0)
    assert token_works(secret)[0] == 401


def test_profile_ssh_keys(signed_in: Page, tmp_path):
    page = signed_in
    page.goto("/profile")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(key)], check=True)
    fingerprint = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], check=True, capture_output=True, text=True).stdout.split()[1]
    assert fingerprint.startswith("SHA256:")

    page.get_by_label("Name of the key").fill("laptop")
    page.get_by_label("Public key").fill(key.with_suffix(".pub").read_text().strip())
    page.get_by_role("button", name="Add key").click()
    row = page.get_by_role("row").filter(has_text=fingerprint)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("laptop")
    check_a11y(page, "profile with a key")

    page.get_by_label("Public key").fill("hello")
    page.get_by_role("button", name="Add key").click()
    expect(page.get_by_role("alert")).to_contain_text("public_key: not an OpenSSH public key")
    # Beside the field, which keeps what was pasted and is marked.
    expect(page.get_by_label("Public key")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Public key")).to_have_value("hello")
    check_a11y(page, "profile with an error")

    page.get_by_role("button", name=f"Remove key {fingerprint}").click()
    expect(page.get_by_role("row").filter(has_text=fingerprint)).to_have_count(0)
    expect(page.get_by_text("You have registered no SSH key.")).to_be_visible()


def test_profile_personal_data_download(signed_in: Page):
    page = signed_in
    page.goto("/profile")
    expect(page.get_by_role("heading", name="Personal data")).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("link", name="Download my personal data").click()
    download = info.value
    assert download.suggested_filename == f"ferrum-personal-data-{USER}.json"
    data = json.loads(open(download.path(), encoding="utf-8").read())
    assert data["user"]["name"] == USER
    assert PROJECT in data["user"]["projects"]
    assert {"tokens", "ssh_keys", "account_requests", "leases", "usage_records"} <= data.keys()
    assert "hash" not in json.dumps(data).lower()


def test_keyboard_only_sign_in(page: Page, activated):
    page.goto("/login")
    name = page.get_by_label("User name")
    password = page.get_by_label("Password", exact=True)
    button = page.get_by_role("button", name="Sign in")
    # First the skip link, shown when focused, then the navigation.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    for _ in range(10):
        if name.evaluate("e => e === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(name).to_be_focused()
    page.keyboard.type(USER)
    page.keyboard.press("Tab")
    expect(password).to_be_focused()
    page.keyboard.type(activated["password"])
    page.keyboard.press("Tab")
    expect(button).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Welcome, {USER}")).to_be_visible()


def test_sign_out(signed_in: Page):
    page = signed_in
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{URL}/login")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    page.goto("/profile")
    expect(page).to_have_url(f"{URL}/login?next=%2Fprofile")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_not_found_page(page: Page):
    response = page.goto("/no-such-page")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("there is no page here")
    check_a11y(page, "404")


def test_users_have_no_admin_entry(signed_in: Page):
    page = signed_in
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin")).to_have_count(0)
    response = page.goto("/admin/leases")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("this operation is for admins")
    check_a11y(page, "403")


def one_line(locators):
    """Whether the elements' vertical centres are within a few pixels."""
    centres = []
    for loc in locators:
        box = loc.bounding_box()
        centres.append(box["y"] + box["height"] / 2)
    return max(centres) - min(centres) < 6


def admin_shot(page: Page, name: str):
    """A screenshot of an admin page (README, like test_screenshots')."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), full_page=True)


def test_admin_queues(page: Page, admin):
    # Two nodes without a BMC (they enrol at once) and sam, of another
    # project, whose 2 nodes x 6 h = 12 node-hours are above the threshold
    # of 10 (scripts/web-test.sh): the lease waits for an admin.
    for i in (1, 2):
        node = {"name": f"web-{i}", "site": "lab", "cluster": "web", "macs": [f"02:00:00:00:0a:0{i}"]}
        assert http("POST", "/api/v1/nodes", admin, node)[0] == 201
    assert http("POST", "/api/v1/projects", admin, {"name": "p-big"})[0] == 201
    status, sam = http("POST", "/api/v1/users", admin, {"name": "sam", "projects": ["p-big"]})
    assert status == 201, status
    start = (datetime.now(timezone.utc) + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0).isoformat()
    status, lease = http("POST", "/api/v1/leases", sam["token"], {"name": "big-run", "nodes": {"count": 2}, "duration": "6h", "start": start})
    assert status == 201, status
    assert lease["state"] == "awaiting_approval", lease
    lease_id = lease["id"]

    # Two account requests: one through the form, one through the API.
    page.goto("/request-account")
    page.get_by_label("Login you would like").fill("lea")
    page.get_by_label("E-mail address").fill("lea@univ-lille.example")
    page.get_by_label("University, laboratory or company").fill("Université de Lille")
    page.get_by_label("You are").select_option("student")
    page.get_by_label("Project to join").fill("p-thesis")
    page.get_by_label("What the account is for").fill("Master's thesis on GPU scheduling.")
    page.get_by_role("button", name="Send the request").click()
    expect(page.get_by_role("heading", name="Request sent")).to_be_visible()
    ask = {"name": "mo", "email": "mo@example.org", "affiliation": "Nowhere", "project": "p-mo", "motivation": "Mining cryptocurrency, sorry."}
    assert http("POST", "/api/v1/account-requests", None, ask)[0] == 202

    # The admin sets a password and signs in: "Admin" is in the navigation,
    # on one line with the rest.
    page.goto(activation_link(admin, "admin"))
    set_password(page, PASSWORD, PASSWORD)
    expect(page).to_have_url(f"{URL}/login?activated=admin")
    sign_in(page, "admin", PASSWORD)
    nav = page.get_by_role("navigation", name="Main")
    entries = [nav.get_by_role("link", name=n, exact=True) for n in ("Home", "Profile", "Admin")]
    assert one_line(entries + [nav.get_by_role("button", name="Sign out")]), "the navigation wraps"
    entries[2].click()
    expect(page.get_by_role("heading", name="Admin", exact=True)).to_be_visible()
    expect(page.get_by_role("listitem").filter(has_text="Account requests")).to_have_text("Account requests: 2 waiting.")
    expect(page.get_by_role("listitem").filter(has_text="Leases awaiting approval")).to_have_text("Leases awaiting approval: 1 waiting.")
    check_a11y(page, "admin")

    page.get_by_role("link", name="Account requests").first.click()
    lea = page.get_by_role("region", name=re.compile(r"^Request \d+: lea$"))
    expect(lea).to_contain_text("lea@univ-lille.example")
    expect(lea).to_contain_text("no: no mail server is configured")
    expect(lea).to_contain_text("Université de Lille")
    expect(lea).to_contain_text("Student")
    expect(lea).to_contain_text("p-thesis")
    expect(lea).to_contain_text("Master's thesis on GPU scheduling.")
    check_a11y(page, "account requests")
    admin_shot(page, "admin-account-requests")

    # A rejection needs a reason: the browser holds the form (required); a
    # browser that does not check gets the server's words beside the field.
    mo = page.get_by_role("region", name=re.compile(r"^Request \d+: mo$"))
    reason = mo.get_by_label(re.compile(r"^Reason for rejecting request"))
    assert reason.evaluate("e => e.required")
    reason.evaluate("e => e.form.noValidate = true")
    mo.get_by_role("button", name=re.compile(r"^Reject request")).click()
    expect(mo.get_by_role("alert")).to_have_text("reason: 1 to 1000 characters of text")
    expect(reason).to_have_attribute("aria-describedby", re.compile(r"^reject-\d+-error$"))
    check_a11y(page, "account requests with an error")
    # From the keyboard: the reason, then Enter.
    reason.focus()
    page.keyboard.type("not what this testbed is for")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Request \d+ rejected\.$"))
    expect(mo).to_have_count(0)

    # Approval without a mail server: the page gives the activation link.
    lea.get_by_role("button", name=re.compile(r"^Approve request \d+ \(lea\)$")).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Request \d+ approved$"))).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("User lea is created, in project p-thesis.")
    link = page.locator("#activation-url").inner_text().strip()
    assert link.startswith(f"{URL}/activate/"), link
    check_a11y(page, "account request approved")

    # The lease: its facts, then approved with a note, from the keyboard.
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Leases awaiting approval").click()
    item = page.get_by_role("region", name=f"Lease {lease_id} (big-run) by sam")
    expect(item).to_contain_text("sam, project p-big")
    expect(item).to_contain_text("2: web-")
    expect(item).to_contain_text("12 node-hours is above the approval threshold of 10 node-hours")
    check_a11y(page, "leases awaiting approval")
    admin_shot(page, "admin-leases")
    item.get_by_label(f"Note on approving lease {lease_id} (optional)").focus()
    page.keyboard.type("fine for the paper")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text(f"Lease {lease_id} approved: it starts on time.")
    expect(page.get_by_text("No lease is waiting.")).to_be_visible()
    status, seen = http("GET", f"/api/v1/leases/{lease_id}", sam["token"])
    assert (seen["state"], seen["reason"]) == ("pending", "approved by admin: fine for the paper"), seen

    # The new user sets a password through the link and signs in.
    page.get_by_role("button", name="Sign out").click()
    page.goto(link)
    set_password(page, PASSWORD, PASSWORD)
    sign_in(page, "lea", PASSWORD)
    expect(page.get_by_text("Your projects: p-thesis.")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin")).to_have_count(0)


def test_hardware_catalog(signed_in: Page, admin):
    # After the admin's queues (whose lease must land on their web-*
    # nodes): the fixture tree, imported as an operator does.
    subprocess.run(
        [str(BIN_DIR / "ferrum"), "--url", URL, "--token", admin, "node", "import", "fixtures/g5k-reference"],
        check=True, capture_output=True, text=True, timeout=60,
    )
    status, nodes = http("GET", "/api/v1/nodes", admin)
    assert status == 200, status
    total = len(nodes)

    def api_count(text):
        status, found = http("GET", "/api/v1/nodes?filter=" + urllib.parse.quote(text), admin)
        assert status == 200, (text, status)
        return len(found)

    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Hardware", exact=True).click()
    expect(page.get_by_role("heading", name="Hardware", exact=True)).to_be_visible()
    chifflot = page.get_by_role("region", name="Cluster chifflot")
    expect(chifflot).to_contain_text("2 × Tesla V100-PCIE-32GB (32 GiB each) on 2 nodes")
    expect(page.get_by_role("region", name="Cluster servan")).to_contain_text("1 × Alveo U200 (fpga)")
    result = page.locator("#filter-result")
    expect(result).to_have_text(f"No filter: all {total} nodes.")
    check_a11y(page, "hardware")

    # The count follows the filter as it is typed (no reload).
    field = page.get_by_label("Filter, in the property language of leases")
    wanted = "gpu_count >= 2 AND cluster IN ('chifflot')"
    field.press_sequentially(wanted)
    expect(result).to_have_text(f"Matching nodes: {api_count(wanted)} of {total}.")
    # The calendar link follows the filter.
    expect(page.get_by_role("link", name=re.compile("^When are these nodes free"))).to_have_attribute(
        "href", "/calendar?filter=" + urllib.parse.quote(wanted, safe="!*'()"))
    # A typo: the parser's words beside the field.
    field.fill("gpu_cont >= 2")
    expect(result).to_have_text("filter: at position 1: unknown property 'gpu_cont' (did you mean 'gpu_count'?)")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(f"{URL}/hardware")
    check_a11y(page, "hardware with a wrong filter")

    # The helpers write their conditions into the text, which stays editable.
    field.fill("NOT exotic")
    page.get_by_label("Cluster", exact=True).select_option("chifflot")
    expect(field).to_have_value("NOT exotic AND cluster = 'chifflot'")
    page.get_by_label("At least this many GPUs").fill("2")
    expect(field).to_have_value("NOT exotic AND cluster = 'chifflot' AND gpu_count >= 2")
    page.get_by_label("GPU model").select_option("Tesla V100-PCIE-32GB")
    composed = "NOT exotic AND cluster = 'chifflot' AND gpu_count >= 2 AND gpu_model = 'Tesla V100-PCIE-32GB'"
    expect(field).to_have_value(composed)
    page.get_by_label("Cluster", exact=True).select_option("")
    composed = "NOT exotic AND gpu_count >= 2 AND gpu_model = 'Tesla V100-PCIE-32GB'"
    expect(field).to_have_value(composed)
    # A helper's condition is a whole one: a typed "gpu_count >= 20" is
    # neither taken for "gpu_count >= 2" nor cut by it.
    field.fill("gpu_count >= 20 AND " + composed)
    page.get_by_label("At least this many GPUs").fill("")
    expect(field).to_have_value("gpu_count >= 20 AND NOT exotic AND gpu_model = 'Tesla V100-PCIE-32GB'")
    page.get_by_label("At least this many GPUs").fill("2")
    expect(field).to_have_value("gpu_count >= 20 AND NOT exotic AND gpu_model = 'Tesla V100-PCIE-32GB' AND gpu_count >= 2")
    field.fill(composed)
    expect(field).to_have_value(composed)
    expect(result).to_have_text(f"Matching nodes: {api_count(composed)} of {total}.")
    # From the keyboard: the filter, then the button; the server's page
    # says the same, the filter still in its field.
    field.focus()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Count matching nodes")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/hardware\?filter="))
    expect(field).to_have_value(composed)
    expect(result).to_have_text(f"Matching nodes: {api_count(composed)} of {total}.")
    expect(chifflot).to_contain_text("2 match the filter")
    check_a11y(page, "hardware with a filter")
    admin_shot(page, "hardware")

    # A narrow window: nothing wider than the page.
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), "the catalog is wider than a phone"
    page.set_viewport_size({"width": 1280, "height": 800})

    # A cluster, then a node.
    chifflot.get_by_role("link", name="list them").click()
    expect(page.get_by_role("heading", name="Cluster chifflot")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("2 of 8 nodes match")
    page.get_by_role("link", name="Show all nodes").click()
    rows = page.get_by_role("table", name="Nodes of chifflot").get_by_role("row")
    expect(rows).to_have_count(9)
    check_a11y(page, "cluster")
    page.get_by_role("link", name="chifflot-7", exact=True).click()
    expect(page.get_by_role("heading", name="Node chifflot-7")).to_be_visible()
    memory = page.get_by_role("table", name="Memory")
    expect(memory.get_by_role("row", name=re.compile("^RAM"))).to_contain_text("192 GiB")
    expect(page.get_by_text("No agent has reported this node's hardware yet")).to_be_visible()
    expect(page.get_by_role("table", name="Properties of chifflot-7")).to_contain_text("'Tesla V100-PCIE-32GB'")
    check_a11y(page, "node")
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), "the node page is wider than a phone"
    page.set_viewport_size({"width": 1280, "height": 800})
    admin_shot(page, "hardware-node")


def test_calendar_find_a_slot_and_book(signed_in: Page, admin):
    # Two nodes of their own cluster, without a BMC (they enrol at once).
    for i in (1, 2):
        node = {"name": f"gantt-{i}", "site": "lab", "cluster": "gantt", "macs": [f"02:00:00:00:0b:0{i}"]}
        assert http("POST", "/api/v1/nodes", admin, node)[0] == 201
    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Calendar").click()
    expect(page.get_by_role("heading", name="Calendar")).to_be_visible()
    expect(page.locator("#gantt")).to_be_visible()
    check_a11y(page, "calendar")

    # A bad filter is said beside the field, and nothing is lost.
    page.get_by_label("Nodes (an OAR filter, empty for all)").fill("gpus >> 2")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#filter-error")).to_contain_text("filter")
    expect(page.get_by_label("Nodes (an OAR filter, empty for all)")).to_have_value("gpus >> 2")

    # Find a slot for both nodes, from the keyboard, then book it.
    page.get_by_label("Nodes (an OAR filter, empty for all)").fill("cluster = 'gantt'")
    page.get_by_label("Nodes", exact=True).fill("2")
    page.get_by_label("For (e.g. 2h, 1d)").fill("1h")
    page.get_by_label("For (e.g. 2h, 1d)").press("Enter")
    found = page.get_by_role("region", name="Earliest slot")
    expect(found).to_contain_text("gantt-1, gantt-2")
    expect(page.locator("#gantt rect.slot")).to_have_count(2)
    check_a11y(page, "calendar with a slot")
    found.get_by_role("button", name="Book these nodes").click()
    expect(page.get_by_role("status")).to_contain_text("is booked")
    expect(page.locator("#gantt rect.mine")).to_have_count(2)
    lease_id = page.url.split("booked=")[1]
    expect(page.locator(f"#lease-{lease_id}")).to_contain_text("gantt-1, gantt-2")
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "calendar.png"), full_page=True)

    # A bar takes the focus and leads to its lease's line.
    page.locator(f'#gantt a[href="#lease-{lease_id}"]').first.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{page.url.split('#')[0]}#lease-{lease_id}")


def test_admin_nodes_and_audit_log(page: Page, admin):
    # A node of its own cluster, without a BMC (it enrols at once).
    node = {"name": "maint-1", "site": "lab", "cluster": "maint", "macs": ["02:00:00:00:0e:01"]}
    assert http("POST", "/api/v1/nodes", admin, node)[0] == 201
    page.goto(activation_link(admin, "admin"))
    set_password(page, PASSWORD, PASSWORD)
    sign_in(page, "admin", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    expect(page.get_by_role("listitem").filter(has_text="Nodes:")).to_contain_text("in maintenance")
    page.get_by_role("link", name="Nodes", exact=True).click()
    expect(page.get_by_role("heading", name="Nodes", exact=True)).to_be_visible()
    check_a11y(page, "admin nodes")

    # Filtered on the server, from the keyboard.
    page.get_by_label("Cluster").select_option("maint")
    page.get_by_label("State").select_option("available")
    page.get_by_role("button", name="Show").press("Enter")
    expect(page).to_have_url(re.compile(r"/admin/nodes\?state=available&cluster=maint$"))
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("maint-1")
    expect(rows.first).to_contain_text("no BMC")
    check_a11y(page, "admin nodes filtered")
    admin_shot(page, "admin-nodes")

    # Maintenance on, with a reason typed and Enter.
    page.get_by_role("link", name="maint-1").click()
    expect(page.get_by_role("heading", name="Node maint-1")).to_be_visible()
    expect(page.get_by_text("This node has no BMC")).to_be_visible()
    check_a11y(page, "admin node")
    page.get_by_label("Reason for putting maint-1 in maintenance").focus()
    page.keyboard.type("fan replacement")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("maint-1 is in maintenance now: no new lease gets it.")
    expect(page.locator("dd").nth(1)).to_have_text("maintenance")
    status, seen = http("GET", "/api/v1/nodes/maint-1", admin)
    assert seen["state"] == "maintenance", seen
    check_a11y(page, "admin node in maintenance")

    # And back in service.
    page.get_by_label("Reason for taking maint-1 out of maintenance").fill("fan replaced")
    page.get_by_role("button", name="End maintenance").click()
    expect(page.get_by_role("status")).to_have_text("maint-1 is back in service.")
    status, seen = http("GET", "/api/v1/nodes/maint-1", admin)
    assert seen["state"] == "available", seen

    # Both in the audit log, newest first, after its enrolment.
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    check_a11y(page, "audit log")
    page.get_by_label("Target (e.g. node/sim-1)").fill("node/maint-1")
    page.get_by_label("Target (e.g. node/sim-1)").press("Enter")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("maintenance: false; reason: fan replaced")
    expect(rows.nth(1)).to_contain_text("maintenance: true; reason: fan replacement")
    expect(rows.nth(2)).to_contain_text("node.add")
    expect(rows.nth(0).get_by_role("link", name="node/maint-1")).to_be_visible()
    check_a11y(page, "audit log filtered")
    admin_shot(page, "admin-audit")

    # A time the page cannot read: said beside its field.
    page.get_by_label("From (UTC, YYYY-MM-DD HH:MM)").fill("last week")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_have_text("from: a time in UTC, YYYY-MM-DD or YYYY-MM-DD HH:MM")
    expect(page.get_by_label("From (UTC, YYYY-MM-DD HH:MM)")).to_have_attribute("aria-describedby", "audit-error")
    check_a11y(page, "audit log with an error")


def test_usage_page(signed_in: Page):
    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", name="Usage")).to_be_visible()
    check_a11y(page, "usage")
    page.get_by_label("By", exact=True).select_option("user")
    page.get_by_label("Months").fill("40")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_have_text("months: a whole number from 1 to 24")
    expect(page.get_by_label("By", exact=True)).to_have_value("user")
    check_a11y(page, "usage with an error")


def test_screenshots(page: Page, activated):
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shots = []

    def shot(name):
        path = SCREENSHOT_DIR / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    page.goto("/login")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    shot("sign-in")
    sign_in(page, USER, activated["password"])
    expect(page.get_by_role("heading", name=f"Welcome, {USER}")).to_be_visible()
    shot("home")
    page.goto("/profile")
    expect(page.get_by_role("heading", name="Profile", exact=True)).to_be_visible()
    shot("profile")
    for path in shots:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", path
        assert int.from_bytes(data[16:20], "big") == 1280, f"{path}: not 1280 px wide"


def wait_lease_state(token, lease_id, states):
    """The lease once its state is one of `states` (deadline 30 s): the
    clock loop starts and ends leases on its own time."""
    deadline = time.monotonic() + 30
    while True:
        status, lease = http("GET", f"/api/v1/leases/{lease_id}", token)
        assert status == 200, status
        if lease["state"] in states:
            return lease
        assert time.monotonic() < deadline, f"lease {lease_id} not {states} within 30 s: {lease}"
        # Paces a state probe bounded by the deadline above (the API has
        # no event to wait on).
        time.sleep(0.1)


def test_my_leases(signed_in: Page, admin):
    # A node of its own (no BMC: it enrols at once) and a running lease of
    # alice's on it, through the API with a token of hers. This ferrumd has
    # no agent: no deployment runs, so the page shows none and the live
    # progress (tested over HTTP in controller/tests/it/web/leases.rs) stays off.
    node = {"name": "mine-1", "site": "lab", "cluster": "mine", "macs": ["02:00:00:00:0c:01"]}
    assert http("POST", "/api/v1/nodes", admin, node)[0] == 201
    status, token = http("POST", f"/api/v1/users/{USER}/tokens", admin, {"name": "leases-test"})
    assert status == 201, status
    token = token["token"]
    status, lease = http("POST", "/api/v1/leases", token, {"name": "web-run", "nodes": {"names": ["mine-1"]}, "duration": "2h"})
    assert status == 201, status
    lease_id = lease["id"]
    lease = wait_lease_state(token, lease_id, ("active",))
    end = datetime.fromisoformat(lease["end"].replace("Z", "+00:00"))

    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Leases").click()
    expect(page.get_by_role("heading", name="Your leases")).to_be_visible()
    row = page.get_by_role("table", name=re.compile("^Running and upcoming")).get_by_role("row").filter(has_text="web-run")
    expect(row).to_contain_text("active")
    check_a11y(page, "leases")
    admin_shot(page, "leases")

    # The lease's page, reached from the keyboard.
    link = row.get_by_role("link", name=f"Lease {lease_id}")
    link.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Lease {lease_id} (web-run)")).to_be_visible()
    expect(page.locator("#lease-state")).to_contain_text("active")
    expect(page.locator("#live")).to_have_text("No deployment on this lease.")
    expect(page.get_by_role("link", name="Refresh")).to_be_visible()
    check_a11y(page, "lease")

    # A refused extension is said beside its field, as typed.
    new_end = page.get_by_label(re.compile(f"^New end of lease {lease_id}"))
    new_end.fill("+soon")
    new_end.press("Enter")
    expect(page.locator("#extend-error")).to_contain_text("end: ")
    expect(new_end).to_have_value("+soon")
    expect(new_end).to_have_attribute("aria-invalid", "true")
    check_a11y(page, "lease with a refusal")

    # Extend by an hour, from the keyboard.
    new_end.fill("+1h")
    new_end.press("Enter")
    expect(page.get_by_role("status").filter(has_text="Extended")).to_be_visible()
    later = (end + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M UTC")
    expect(page.locator("dd").filter(has_text=later)).to_have_count(1)
    status, seen = http("GET", f"/api/v1/leases/{lease_id}", token)
    assert datetime.fromisoformat(seen["end"].replace("Z", "+00:00")) == end + timedelta(hours=1), seen
    admin_shot(page, "lease")

    # The live script, fed a canned stream (this ferrumd deploys nothing):
    # the page as served but marked live, and one progress event naming a
    # deployment the page does not have, then `end`.
    def live_page(route):
        response = route.fetch()
        route.fulfill(response=response, body=response.text().replace('data-live="false"', 'data-live="true"'))

    def canned_stream(route):
        progress = {"lease_state": "active", "moving": True, "deployments": [{"id": 99, "state": "running", "nodes": []}]}
        body = f"event: progress\ndata: {json.dumps(progress)}\n\nevent: end\ndata: nothing is running\n\n"
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    page.route(f"{URL}/leases/{lease_id}", live_page)
    page.route(f"{URL}/leases/{lease_id}/events", canned_stream)
    page.goto(f"/leases/{lease_id}")
    expect(page.locator("#live")).to_have_text("A deployment started since this page was loaded: refresh the page to see it.")
    page.unroute(f"{URL}/leases/{lease_id}")
    page.unroute(f"{URL}/leases/{lease_id}/events")

    # Release it.
    release = page.get_by_role("button", name=f"Release lease {lease_id}")
    release.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="Released")).to_be_visible()
    expect(page.locator("#lease-state")).to_contain_text("released by alice")
    expect(page.get_by_role("button", name=f"Release lease {lease_id}")).to_have_count(0)
    check_a11y(page, "lease released")
    wait_lease_state(token, lease_id, ("ending", "finished"))

    # The lease's start was a notification: counted in the navigation,
    # listed with a link to the lease, marked read from the keyboard.
    nav = page.get_by_role("navigation", name="Main")
    entry = nav.get_by_role("link", name=re.compile(r"^Notifications \d+ unread$"))
    expect(entry).to_be_visible()
    entry.click()
    expect(page.get_by_role("heading", name="Notifications", exact=True)).to_be_visible()
    started = page.get_by_role("heading", name=re.compile(f"^Your lease {lease_id} \\(web-run\\) has started"))
    expect(started).to_be_visible()
    expect(page.get_by_role("link", name=f"Lease {lease_id}", exact=True).first).to_be_visible()
    check_a11y(page, "notifications")
    mark = page.get_by_role("button", name=re.compile("^Mark all \\d+ read$"))
    mark.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name=re.compile("^Mark all"))).to_have_count(0)
    expect(nav.get_by_role("link", name="Notifications", exact=True)).to_be_visible()
    expect(started).to_be_visible()
    check_a11y(page, "notifications read")


def test_book_page(signed_in: Page, admin):
    # A node of its own (no BMC: it enrols at once) and a public
    # environment; the lease is booked for tomorrow (this ferrumd has no
    # agent to deploy with).
    node = {"name": "book-1", "site": "lab", "cluster": "book", "macs": ["02:00:00:00:0d:01"]}
    assert http("POST", "/api/v1/nodes", admin, node)[0] == 201
    tiny = {"name": "tiny", "version": 1, "description": "test image", "image": "tiny.raw.zst", "format": "raw.zst",
            "sha256": "ab" * 32, "size": 50331648, "root_partition": 1, "visibility": "public"}
    assert http("POST", "/api/v1/environments", admin, tiny)[0] == 201
    desk = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIbVmR/TNyE+Jq3F4nDVz6LVYq4x6VaBZqdv0cfk9Sg0 alice@desk"
    status, key = http("POST", f"/api/v1/users/{USER}/ssh-keys", admin, {"name": "desk", "public_key": desk})
    assert status == 201, status
    start = (datetime.now(timezone.utc) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)

    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Book", exact=True).click()
    expect(page.get_by_role("heading", name="Book nodes")).to_be_visible()
    check_a11y(page, "book")
    page.get_by_label("How many nodes").fill("1")
    # The count follows the filter as it is typed.
    page.get_by_label(re.compile("^Matching this filter")).press_sequentially("cluster = 'book'")
    expect(page.locator("#filter-result")).to_have_text("Matching nodes: 1.")
    page.get_by_label("At the start below").check()
    page.get_by_label("Start (UTC)").fill(start.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Environment to deploy when the lease starts").select_option("admin/tiny")
    # The profile's keys, ticked at first.
    expect(page.get_by_label(f"desk ({key['fingerprint']})")).to_be_checked()
    page.get_by_label("Lease name (optional)").fill("booked-here")
    # A wrong duration is said beside it, the rest kept.
    page.get_by_label(re.compile("^For how long")).fill("soonish")
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#duration-error")).to_contain_text("duration: ")
    expect(page.get_by_label(re.compile("^For how long"))).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Environment to deploy when the lease starts")).to_have_value("admin/tiny")
    expect(page.get_by_role("button", name="Book", exact=True)).to_have_count(0)
    check_a11y(page, "book with an error")

    # Check, from the keyboard: where, when, what the policy says.
    page.get_by_label(re.compile("^For how long")).fill("2h")
    page.get_by_label(re.compile("^For how long")).press("Enter")
    preview = page.get_by_role("region", name="If you book now")
    when = start.strftime("%Y-%m-%d %H:%M UTC")
    expect(preview.locator("#placement")).to_have_text(re.compile(f"^From {when} to .*, on book-1\\.$"))
    expect(preview.get_by_role("list", name="What the policy says")).to_contain_text("It needs no admin's approval.")
    check_a11y(page, "book with a preview")
    admin_shot(page, "book")
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), "the booking page is wider than a phone"
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("button", name="Book", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Lease \d+ \(booked-here\)$"))).to_be_visible()
    expect(page.locator("#lease-deploys")).to_have_text("admin/tiny, with 1 SSH key(s), when it starts")
    expect(page.locator("#lease-state")).to_contain_text("pending")
    lease_id = int(page.url.rsplit("/", 1)[1])
    # Cancelled, so that it holds nothing.
    page.get_by_role("button", name=f"Cancel lease {lease_id}").click()
    expect(page.get_by_role("status").filter(has_text="Cancelled")).to_be_visible()
    assert http("DELETE", f"/api/v1/users/{USER}/ssh-keys/{key['id']}", admin)[0] == 200


def test_a_student_from_account_request_to_a_released_lease(page: Page, mail_portal):
    portal = mail_portal
    url = portal.url
    # The request, from the public form.
    page.goto(f"{url}/request-account")
    page.get_by_label("Login you would like").fill("stu")
    page.get_by_label("E-mail address").fill("stu@univ-lille.example")
    page.get_by_label("University, laboratory or company").fill("Université de Lille")
    page.get_by_label("You are").select_option("student")
    page.get_by_label("Project to join").fill("p-gpu-thesis")
    page.get_by_label("What the account is for").fill("Training models on V100s for my thesis.")
    page.get_by_role("button", name="Send the request").click()
    expect(page.get_by_role("heading", name="Request sent")).to_be_visible()

    # The mail's link: a page that asks for a press (mail scanners open links).
    page.goto(portal.link("stu@univ-lille.example", "/verify-email/"))
    expect(page.get_by_role("heading", name="Confirm your e-mail address")).to_be_visible()
    check_a11y(page, "confirm e-mail")
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.get_by_text("stu@univ-lille.example is confirmed")).to_be_visible()

    # The admin approves: the activation link is mailed, not shown.
    page.goto(activation_link(portal.admin, "admin", url=url))
    set_password(page, PASSWORD, PASSWORD)
    sign_in(page, "admin", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    page.get_by_role("link", name="Account requests").first.click()
    request = page.get_by_role("region", name=re.compile(r"^Request \d+: stu$"))
    expect(request).to_contain_text("yes, on ")
    request.get_by_role("button", name=re.compile(r"^Approve request \d+ \(stu\)$")).click()
    expect(page.get_by_text("The link where stu sets their password was mailed to stu@univ-lille.example.")).to_be_visible()
    expect(page.locator("#activation-url")).to_have_count(0)
    check_a11y(page, "account request approved, link mailed")
    page.get_by_role("button", name="Sign out").click()

    # The student sets a password through the mailed link and signs in.
    page.goto(portal.link("stu@univ-lille.example", "/activate/"))
    set_password(page, PASSWORD, PASSWORD)
    expect(page).to_have_url(f"{url}/login?activated=stu")
    sign_in(page, "stu", PASSWORD)
    expect(page.get_by_role("heading", name="Welcome, stu")).to_be_visible()

    # The earliest slot for 2 V100 nodes, on the calendar, then booked.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Calendar").click()
    page.get_by_label("Nodes (an OAR filter, empty for all)").fill("gpu_model LIKE '%V100%'")
    page.get_by_label("Nodes", exact=True).fill("2")
    page.get_by_label("For (e.g. 2h, 1d)").fill("1h")
    page.get_by_label("For (e.g. 2h, 1d)").press("Enter")
    found = page.get_by_role("region", name="Earliest slot")
    expect(found).to_contain_text("on chifflot-7, chifflot-8.")
    expect(found.get_by_role("list", name="What the policy says")).to_contain_text("It needs no admin's approval.")
    found.get_by_role("button", name="Book these nodes").click()
    expect(page.get_by_role("status")).to_contain_text("is booked")
    lease_id = int(page.url.split("booked=")[1])
    # Its bars on the Gantt chart: one per node, outlined as the user's.
    expect(page.locator(f'#gantt a[href="#lease-{lease_id}"] rect.mine')).to_have_count(2)
    expect(page.locator(f"#lease-{lease_id}")).to_contain_text("chifflot-7, chifflot-8")

    # Its page, once it runs: extended by an hour, then released.
    deadline = time.monotonic() + 30
    while http("GET", f"/api/v1/leases/{lease_id}", portal.admin, url=url)[1]["state"] != "active":
        assert time.monotonic() < deadline, "the lease did not start within 30 s"
        # Paces a state probe bounded by the deadline above (the API has
        # no event to wait on).
        time.sleep(0.1)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Leases").click()
    page.get_by_role("link", name=f"Lease {lease_id}", exact=True).click()
    expect(page.locator("#lease-state")).to_contain_text("active")
    new_end = page.get_by_label(re.compile(f"^New end of lease {lease_id}"))
    new_end.fill("+1h")
    new_end.press("Enter")
    expect(page.get_by_role("status").filter(has_text="Extended")).to_be_visible()
    page.get_by_role("button", name=f"Release lease {lease_id}").click()
    expect(page.get_by_role("status").filter(has_text="Released")).to_be_visible()
    expect(page.locator("#lease-state")).to_contain_text("released by stu")
