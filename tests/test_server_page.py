"""The page at ``/`` of ``knnkit serve``, in a real browser: headless Chromium (Debian's
``chromium`` and ``chromium-driver``, installed by ``make browser``) driven by Selenium. It lists
the collections (once given a key), shows records page by page, and runs a text query and a
vector query with a filter, showing scores and distances. ``KNNKIT_PAGE_SCREENSHOT=path`` saves
a screenshot (docs/img/serve-page.png was made so)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from _server import Server, needs_server

import knnkit

pytestmark = needs_server

TOPICS = ["graphs", "trees", "hashing", "quantization"]
TITLES = [
    "Approximate nearest neighbour search with navigable small world graphs",
    "KD-trees for exact nearest neighbour queries in low dimensions",
    "Locality-sensitive hashing for similarity search",
    "Product quantization for nearest neighbour search",
    "Ball trees and metric space indexing",
    "Hierarchical graphs for billion-scale vector search",
    "Learning to hash: binary codes for retrieval",
    "Scalar quantization of embeddings at scale",
]


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="the page test needs selenium")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "no headless Chromium: install Debian's chromium and chromium-driver "
            "(`make browser` does, with apt-get as root or through sudo)"
        )
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--hide-scrollbars",
    ):
        opts.add_argument(a)
    try:
        return webdriver.Chrome(service=Service(driver), options=opts)
    except Exception as e:  # a broken install: say so rather than fail obscurely
        pytest.skip(f"headless Chromium did not start: {type(e).__name__}: {str(e)[:200]}")


def test_page_lists_browses_and_queries(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from knnkit.server.auth import add_key

    path = tmp_path / "db"
    store = knnkit.Store(path)
    rng = np.random.default_rng(0)
    col = store.create_collection("papers", dim=4, metric="cosine", index="flat")
    n = 45
    x = rng.standard_normal((n, 4)).astype(np.float32)
    col.add(
        [f"paper-{i:02d}" for i in range(n)],
        x,
        [{"year": 2015 + i % 10, "topic": TOPICS[i % 4]} for i in range(n)],
        [TITLES[i % len(TITLES)] + f" (part {i // len(TITLES) + 1})" for i in range(n)],
    )
    store.create_collection("notes", dim=4, index="flat")
    keys = tmp_path / "keys.toml"
    key = add_key(keys, "viewer", "read", ["*"])
    del store, col

    browser = _browser()
    try:
        with Server(path, "--keys", str(keys)) as s:
            wait = WebDriverWait(browser, 20)
            browser.get(s.url + "/")
            # without a key the page says so
            wait.until(ec.text_to_be_present_in_element((By.ID, "error"), "API key is required"))
            browser.find_element(By.ID, "api-key").send_keys(key)
            browser.find_element(By.ID, "connect").click()
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#collections li")) == 2)
            items = browser.find_elements(By.CSS_SELECTOR, "#collections li")
            assert [li.get_attribute("data-name") for li in items] == ["notes", "papers"]
            assert "45 records" in items[1].text
            items[1].click()
            wait.until(ec.text_to_be_present_in_element((By.ID, "records-range"), "1–20 of 45"))
            rows = browser.find_elements(By.CSS_SELECTOR, "#records tbody tr")
            assert len(rows) == 20 and rows[0].text.startswith("paper-00")
            browser.find_element(By.ID, "next").click()
            wait.until(ec.text_to_be_present_in_element((By.ID, "records-range"), "21–40 of 45"))
            assert browser.find_element(By.CSS_SELECTOR, "#records tbody tr").text.startswith(
                "paper-20"
            )

            # a vector query with a filter: distances, only matching records
            browser.find_element(By.ID, "query-vector").send_keys(", ".join(map(str, x[7])))
            browser.find_element(By.ID, "query-where").send_keys('{"year": {"$gte": 2020}}')
            k = browser.find_element(By.ID, "query-k")
            k.clear()
            k.send_keys("5")
            browser.find_element(By.ID, "run-query").click()
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results tbody tr")) == 5)
            first = browser.find_element(By.CSS_SELECTOR, "#results tbody tr").find_elements(
                By.TAG_NAME, "td"
            )
            assert first[1].text == "paper-07" and first[2].text == "0.0000"
            assert browser.find_element(By.ID, "value-head").text == "distance"
            for tr in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr"):
                assert (
                    int(tr.find_elements(By.TAG_NAME, "td")[3].text.split('"year":')[1][:4]) >= 2020
                )

            # a text query (BM25): scores, documents holding the words
            browser.find_element(By.ID, "query-vector").clear()
            Select(browser.find_element(By.ID, "query-mode")).select_by_value("text")
            browser.find_element(By.ID, "query-text").send_keys("quantization search")
            browser.find_element(By.ID, "run-query").click()
            wait.until(ec.text_to_be_present_in_element((By.ID, "value-head"), "score"))
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results tbody tr")) >= 1)
            docs = [
                tr.find_elements(By.TAG_NAME, "td")[4].text
                for tr in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
            ]
            assert docs and all("quantization" in d.lower() or "search" in d.lower() for d in docs)
            assert "quantization" in docs[0].lower()
            # a bad filter is reported, not a blank page
            browser.find_element(By.ID, "query-where").send_keys("oops")
            browser.find_element(By.ID, "run-query").click()
            wait.until(ec.text_to_be_present_in_element((By.ID, "error"), "where: not valid JSON"))
            where = browser.find_element(By.ID, "query-where")
            where.clear()
            where.send_keys('{"year": {"$gte": 2020}}')
            browser.find_element(By.ID, "run-query").click()
            wait.until(lambda b: b.find_element(By.ID, "error").text == "")
            shot = os.environ.get("KNNKIT_PAGE_SCREENSHOT")
            if shot:
                browser.save_screenshot(shot)
    finally:
        browser.quit()
