"""The Airflow 3 UI driven as a person would, in headless Chromium (Debian's package).

Playwright drives the system browser (`/usr/bin/chromium`); it downloads no browser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Page, Response, sync_playwright

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


def server_errors(page: Page) -> list[str]:
    """The page's responses with a 5xx status from now on (status, method, URL), as a
    list that grows while the page is used: a view can look loaded with a call failed."""
    seen: list[str] = []

    def record(response: Response) -> None:
        if response.status >= 500:
            seen.append(f"{response.status} {response.request.method} {response.url}")

    page.on("response", record)
    return seen


def error_messages(page: Page) -> list[str]:
    """The alerts the page shows (the UI's ErrorAlert: the status and the server's detail)."""
    return page.locator("[data-scope=alert][data-part=root]:visible").all_inner_texts()


def open_view(page: Page, url: str, shows: str) -> None:
    """Go to `url` and wait until the page shows the text `shows` and has no call pending."""
    page.goto(url)
    page.get_by_text(shows).first.wait_for()
    page.wait_for_load_state("networkidle")


def graph_nodes(page: Page) -> list[str]:
    """The labels of the graph on the page, all in view (the graph draws only what is)."""
    page.locator(".react-flow__node").first.wait_for()
    page.get_by_role("button", name="Fit View").click()
    page.wait_for_load_state("networkidle")
    return [" ".join(text.split()) for text in page.locator(".react-flow__node").all_inner_texts()]


def dag_graph(
    page: Page, base_url: str, dag_id: str, dependencies: str = "Only tasks"
) -> list[str]:
    """A DAG's Graph view with its Dependencies option (`Only tasks`, `External
    conditions`, `All Dag Dependencies`); the labels it draws."""
    open_view(page, f"{base_url}/dags/{dag_id}", dag_id)
    page.get_by_role("button", name="Show Graph").click()
    page.locator(".react-flow__node").first.wait_for()
    page.get_by_role("button", name="Options").click()
    page.get_by_role("combobox").filter(
        has_text=re.compile("tasks|conditions|Dependencies")
    ).click()
    page.get_by_role("option", name=dependencies).click()
    page.keyboard.press("Escape")
    page.wait_for_load_state("networkidle")
    return graph_nodes(page)
