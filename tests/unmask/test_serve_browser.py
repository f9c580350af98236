"""``unmask serve`` in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven by
selenium. The page says why a file that is not a photo is refused; then a real photo is uploaded, a stroke
painted on its map and partly erased, stage 2 re-run and the result downloaded, which must differ from
the photo only inside the edited map (as the page holds it) and its paste margin. Skips, saying how to
install, without a browser; CI installs one (.ci/run)."""

from __future__ import annotations

import base64
import io
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskgen.source import load_image
from tests.unmask.test_serve import changed_only_near, need_photo, paste_margin, tiny_unmasker

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver; pip install -e '.[dev]'"
WAIT_S = 120  # for the page's answers: a loaded 2-core machine, first use of the face detectors

pytest.importorskip("starlette", reason="unmask serve needs the serve extra: pip install -e '.[serve]'")
webdriver = pytest.importorskip("selenium.webdriver", reason=f"no selenium to drive a browser: {INSTALL}")
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip(f"no headless browser ({CHROMIUM}, {CHROMEDRIVER}): {INSTALL}", allow_module_level=True)

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from unmask.serve.app import create_app, listen  # noqa: E402


@pytest.fixture
def server_url():
    """The page on a free port, served by uvicorn in a thread (the socket listens before the browser comes)."""
    import uvicorn

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(tiny_unmasker()), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-proxy-server", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads")})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()


def wait_for(driver, results: int) -> None:
    """Until the page shows its ``results``-th result (or an error, which fails the test with its text)."""
    def settled(d):
        body = d.find_element(By.TAG_NAME, "body")
        return body.get_attribute("data-state") == "error" or body.get_attribute("data-results") == str(results)
    WebDriverWait(driver, WAIT_S).until(settled)
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready", \
        driver.find_element(By.ID, "error").text


def stroke(driver, canvas, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag the pointer over the canvas between two points given in map pixels."""
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", canvas)
    scale = rect[0] / int(canvas.get_attribute("width"))
    # selenium's offsets start at the centre
    to_centre = [(p * scale - size / 2) for p, size in zip(start, rect, strict=True)]
    ActionChains(driver).move_to_element_with_offset(canvas, *map(round, to_centre)).click_and_hold() \
        .move_by_offset(round((end[0] - start[0]) * scale), round((end[1] - start[1]) * scale)).release().perform()


def test_paint_erase_rerun_and_download_in_a_browser(server_url, browser, tmp_path):
    photo_path = need_photo()
    browser.get(server_url)
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("not a photo\n")
    browser.find_element(By.ID, "file").send_keys(str(not_a_photo))
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "error")
    assert browser.find_element(By.ID, "error").text.startswith("notes.jpg: not a usable image: unreadable image")

    browser.find_element(By.ID, "file").send_keys(str(photo_path))
    wait_for(browser, 1)
    assert browser.find_element(By.ID, "status").text.startswith("1 face unmasked")
    x0, y0, x1, y1 = browser.execute_script("return photo.faces[0].box")  # photo px = map px (512 px wide)
    canvas = browser.find_element(By.ID, "map")
    middle_y = (y0 + y1) / 2 + 20
    stroke(browser, canvas, (x0 + 10, middle_y), (x1 - 10, middle_y))  # paint across the face
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=erase]").click()
    centre_x = (x0 + x1) / 2
    stroke(browser, canvas, (centre_x, middle_y - 40), (centre_x, middle_y + 40))  # erase a gap in the middle
    browser.find_element(By.ID, "rerun").click()
    wait_for(browser, 2)

    data_url = browser.execute_script("return document.getElementById('map').toDataURL('image/png')")
    alpha = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).getchannel("A"))
    edited = np.where(alpha >= 128, 255, 0).astype(np.uint8)  # what the page sent: the server's rule
    row = edited[round(middle_y)]
    assert row[round(x0 + 30)] and row[round(x1 - 30)] and not row[round(centre_x)]  # painted, then erased

    browser.find_element(By.ID, "download").click()
    downloaded = tmp_path / "downloads" / f"{photo_path.stem}-unmasked.png"
    WebDriverWait(browser, WAIT_S).until(lambda _: downloaded.is_file())
    result = np.asarray(Image.open(downloaded).convert("RGB"))
    photo = load_image(photo_path, max_side=None)
    unmasker = tiny_unmasker()
    (face,) = unmasker(photo, aligned=False).faces
    changed_only_near(result, photo, edited, paste_margin(unmasker, face.matrix))
