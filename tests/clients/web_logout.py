#!/usr/bin/python3
"""Signs in to the app-password site as LOGIN (the provider's own login and
consent pages), then signs out at the provider's end-session endpoint and
confirms, in headless Debian chromium, for tests/web_e2e.rs: the provider
then sends its back-channel logout to the clients of that session.

  web_logout.py SITE_URL END_SESSION_URL LOGIN

Prints one JSON object: the signed-in user and the page after the logout.
"""
import json
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from web_signin import browser, sign_in


def main():
    site, end_session, login = sys.argv[1], sys.argv[2], sys.argv[3]
    driver = browser()
    wait = WebDriverWait(driver, 20)
    out = {}
    try:
        out["user"] = sign_in(driver, wait, site, login)
        driver.get(end_session)
        # oidc-provider's logout confirmation ("Do you want to sign-out from ...?").
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "button[name=logout]")))
        driver.find_element(By.CSS_SELECTOR, "button[name=logout][value=yes]").click()
        wait.until(lambda d: "/session/end" not in d.current_url or
                   "success" in d.current_url)
        out["after"] = driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
