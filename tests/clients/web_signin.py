#!/usr/bin/python3
"""Drives the app-password site in headless Debian chromium (WebDriver via
chromium-driver and python3-selenium) for tests/web_e2e.rs.

  web_signin.py SITE_URL LOGIN SCREENSHOT_DIR

Signs in at the provider's own login and consent pages, creates an app
password called "Phone", reads it off the page, and tries a replay of the
authorization response. Saves screenshots as web-*.png in SCREENSHOT_DIR.
Prints one JSON object on a line: the password, the pages' texts, the
replay page.

Then it takes commands on standard input, one a line, and answers each
with a JSON line, until "quit" or the end of input:
  create NAME   creates an app password NAME: {"password": ...}
  revoke NAME   clicks NAME's Revoke button on the list: {"list": ...}
"""
import json
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--ignore-certificate-errors", "--window-size=480,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def callback_urls(driver):
    """The /oidc/callback URLs the browser requested (the performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if "/oidc/callback" in url:
                urls.append(url)
    return urls


def sign_in(driver, wait, site, login, shots=None):
    """Signs in to the site at the provider's login and consent pages;
    returns the user the site shows."""
    def shot(name):
        if shots:
            driver.save_screenshot(f"{shots}/{name}.png")
    driver.get(site)
    shot("web-signin")
    driver.find_element(By.ID, "signin").click()
    # The provider's login page (oidc-provider's dev interactions).
    wait.until(ec.presence_of_element_located((By.NAME, "login")))
    driver.find_element(By.NAME, "login").send_keys(login)
    driver.find_element(By.NAME, "password").send_keys("any password")
    shot("web-provider-login")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # Its consent page (offline_access asks for it).
    wait.until(lambda d: d.find_elements(By.ID, "user")
               or d.find_elements(By.CSS_SELECTOR, "button[type=submit]"))
    if not driver.find_elements(By.ID, "user"):
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.ID, "user")))
    return driver.find_element(By.ID, "user").text


def create(driver, wait, site, name):
    driver.get(site)
    wait.until(ec.presence_of_element_located((By.ID, "name")))
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "create").click()
    wait.until(ec.presence_of_element_located((By.ID, "password")))
    return {"password": driver.find_element(By.ID, "password").text}


def revoke(driver, wait, site, name):
    driver.get(site)
    wait.until(ec.presence_of_element_located((By.ID, "user")))
    row = f"//table[@id='passwords']//tr[td[1][normalize-space()='{name}']]"
    driver.find_element(By.XPATH, f"{row}//button").click()
    wait.until(ec.presence_of_element_located((By.ID, "user")))
    rows = driver.find_elements(By.ID, "passwords")
    return {"list": rows[0].text if rows else ""}


def commands(driver, wait, site):
    for line in sys.stdin:
        verb, _, name = line.strip().partition(" ")
        if verb == "create":
            answer = create(driver, wait, site, name)
        elif verb == "revoke":
            answer = revoke(driver, wait, site, name)
        else:
            return
        print(json.dumps(answer), flush=True)


def main():
    site, login, shots = sys.argv[1], sys.argv[2], sys.argv[3]
    driver = browser()
    wait = WebDriverWait(driver, 20)
    out = {}
    try:
        out["user"] = sign_in(driver, wait, site, login, shots)
        callbacks = callback_urls(driver)
        driver.find_element(By.ID, "name").send_keys("Phone")
        driver.find_element(By.ID, "create").click()
        wait.until(ec.presence_of_element_located((By.ID, "password")))
        out["password"] = driver.find_element(By.ID, "password").text
        driver.save_screenshot(f"{shots}/web-created.png")
        driver.get(site)
        wait.until(ec.presence_of_element_located((By.ID, "passwords")))
        out["list"] = driver.find_element(By.ID, "passwords").text
        driver.save_screenshot(f"{shots}/web-list.png")
        # The authorization response again: code and state are used up.
        if callbacks:
            driver.get(callbacks[-1])
            out["replay"] = driver.find_element(By.TAG_NAME, "body").text
            driver.save_screenshot(f"{shots}/web-refused.png")
        out["callbacks"] = len(callbacks)
        print(json.dumps(out), flush=True)
        commands(driver, wait, site)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
