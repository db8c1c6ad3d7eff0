"""The Airflow 3 UI driven as a person would, in headless Chromium (Debian's package).

Playwright drives the system browser (`/usr/bin/chromium`); it downloads no browser.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# No background traffic: this machine's network is closed, and tests talk to 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def logged_in(url: str, user: str, password: str) -> Iterator[Page]:
    """A browser page logged into the Airflow UI at `url` through its login form."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(url)
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", password)
            page.click("button:has-text('Sign in')")
            page.wait_for_url(lambda u: "/auth/login" not in u)
            yield page
        finally:
            browser.close()


def toggle_pause(page: Page, base_url: str, dag_id: str, paused: bool) -> None:
    """Flip the DAG's pause switch on its page, as a user does, and wait until it shows."""
    page.goto(f"{base_url}/dags/{dag_id}")
    page.wait_for_load_state("networkidle")  # the switch shows the server's state by then
    switch = page.locator("[data-testid=toggle-pause]").first
    want = "unchecked" if paused else "checked"
    if switch.get_attribute("data-state") != want:
        switch.click()
    page.wait_for_selector(f"[data-testid=toggle-pause][data-state={want}]")
    page.wait_for_load_state("networkidle")  # the PATCH has been answered
