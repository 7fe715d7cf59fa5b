"""Notebook 01's widgets, tested where learners see them: JupyterLab in a real browser.

The test starts the server of ``make lab`` (``jupyter lab``, headless, on 127.0.0.1, a free
port and a token) on a temporary copy of notebook 01, so that saving and autosaving never
touch ``notebooks/``. Its kernel runs the ``cpu`` profile, where the notebook shows its
widgets (``make test`` exports ``KOALA_PROFILE=ci``, which shows static images instead).
Debian's Chromium, driven by selenium through Debian's chromedriver, opens the notebook,
runs every cell, checks that the a,b explorer renders (no "Error displaying widget"),
moves the "a shift" slider with the keyboard as a learner would and checks that the image
changes, and saves screenshots under ``build/browser/``.

``make test`` installs the browser (apt packages ``chromium`` and ``chromium-driver``) when
it is missing; without them, or without selenium, the test skips and says why.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, portraits_dir
from PIL import Image

from koala_lib import course

NOTEBOOK = ROOT / "notebooks" / "01_lab_color_space.ipynb"
# Read at import, before conftest's autouse fixture points KOALA_BUILD_DIR at a tmp folder:
# the screenshots are for people to look at, in the build folder of `make test`.
BUILD = Path(os.environ.get("KOALA_BUILD_DIR") or ROOT / "build")
SCREENSHOTS = BUILD / "browser"
WIDGET_PROFILE = "cpu"  # a profile whose `widgets` setting is True
SERVER_START_S = 60
RUN_ALL_S = 180
WIDGET_UPDATE_S = 30
SHIFT_STEPS = 20  # arrow-key presses on the "a shift" slider (its step is 1)


def browser_paths() -> tuple[str, str]:
    """Debian's Chromium and its chromedriver; skips with the reason when either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver))
                   if not path]
        pytest.skip(f"no {' or '.join(missing)}: install the apt packages chromium and "
                    "chromium-driver (`make test` does so when run as root or with sudo)")
    return chromium, driver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabServer:
    """``jupyter lab`` on ``folder``: started, waited for, and shut down with its kernels."""

    def __init__(self, folder: Path, env: dict[str, str], log: Path):
        self.folder, self.log_path = folder, log
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "jupyter", "lab", str(folder),
            "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
            # window.jupyterapp: the test runs cells through the app's own commands.
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--ServerApp.allow_root=True")  # CI and containers run as root
        self.log = log.open("w")
        # Its own process group: the kernels it starts can be ended with it.
        self.process = subprocess.Popen(command, cwd=folder, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read() or b"null")

    def wait_until_ready(self, timeout: float = SERVER_START_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n"
                                   + self.log_tail())
            try:
                self.api("/api/status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        raise TimeoutError(f"jupyter lab did not answer within {timeout} s:\n" + self.log_tail())

    def log_tail(self, lines: int = 40) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Ask the server to shut down (it ends its kernels); end the group if it will not."""
        if self.process.poll() is None:
            try:
                self.api("/api/shutdown", method="POST")
                self.process.wait(timeout=15)
            except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)  # kernels left in the server's group
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
        self.log.close()


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a temporary copy of notebook 01, its kernel in the widgets profile."""
    assert course.SETTINGS[WIDGET_PROFILE].widgets, f"profile {WIDGET_PROFILE} shows no widgets"
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy2(NOTEBOOK, folder / NOTEBOOK.name)
    env = dict(os.environ)
    env.update(
        KOALA_PROFILE=WIDGET_PROFILE,
        KOALA_FIG_DIR=str(SCREENSHOTS / "figures"),  # under build/, never figures/
        KOALA_BUILD_DIR=str(tmp_path / "build"),  # the cpu profile's results stay apart
        KOALA_CACHE_DIR=os.environ.get("KOALA_CACHE_DIR") or str(tmp_path / "cache"),
        # Jupyter's user folders: no settings, workspaces or kernels from the home folder.
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter" / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter" / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter" / "runtime"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    portraits = portraits_dir()
    if portraits is not None and portraits.is_dir():
        env["KOALA_DATA_DIR"] = str(portraits)
    # Learners see no news prompt in the screenshot's corner either way; keep it out.
    labconfig = tmp_path / "jupyter" / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    server = LabServer(folder, env, tmp_path / "jupyter_lab.log")
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                    "(it is in koala's dev extras: pip install -e .[dev])")
    chromium, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000", "--no-first-run",
                     f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=driver_path,
                                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_script_timeout(RUN_ALL_S)
    try:
        yield driver
    finally:
        driver.quit()


# JavaScript run in the page, on JupyterLab's own application object.
WAIT_FOR_NOTEBOOK_JS = """
const done = arguments[arguments.length - 1];
(async () => {
  const app = window.jupyterapp;
  await app.restored;
  let panel = app.shell.currentWidget;
  for (let i = 0; i < 600 && !(panel && panel.sessionContext); i++) {
    await new Promise(r => setTimeout(r, 100));
    panel = app.shell.currentWidget;
  }
  await panel.context.ready;
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session.kernel;
  for (let i = 0; i < 600 && kernel.status !== 'idle'; i++) {
    await new Promise(r => setTimeout(r, 100));
  }
  return {path: panel.context.path, kernel: kernel.name, status: kernel.status};
})().then(done, error => done({error: String(error)}));
"""

RUN_ALL_JS = """
const done = arguments[arguments.length - 1];
(async () => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  const ok = await app.commands.execute('notebook:run-all-cells');
  const errors = [];
  const cells = panel.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    for (const output of cell.toJSON().outputs) {
      if (output.output_type === 'error') {
        errors.push(`cell ${i}: ${output.ename}: ${output.evalue}`);
      }
    }
  }
  return {ok, errors, status: panel.sessionContext.session.kernel.status};
})().then(done, error => done({error: String(error)}));
"""

KERNEL_STATUS_JS = ("return window.jupyterapp.shell.currentWidget"
                    ".sessionContext.session.kernel.status;")


def slider_labelled(driver, label: str):
    from selenium.webdriver.common.by import By

    for slider in driver.find_elements(By.CSS_SELECTOR, ".widget-hslider"):
        if slider.find_element(By.CSS_SELECTOR, ".widget-label").text.strip() == label:
            return slider
    return None


def image_pixels(element) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB"), float)


def test_the_ab_slider_renders_and_moving_it_changes_the_image(browser, lab):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    browser.get(f"{lab.url}/lab/tree/{NOTEBOOK.name}?token={lab.token}")
    WebDriverWait(browser, SERVER_START_S).until(
        lambda d: d.execute_script("return !!window.jupyterapp"))
    opened = browser.execute_async_script(WAIT_FOR_NOTEBOOK_JS)
    assert "error" not in opened, opened
    assert opened["path"] == NOTEBOOK.name and opened["status"] == "idle", opened

    ran = browser.execute_async_script(RUN_ALL_JS)
    assert "error" not in ran, ran
    assert ran["errors"] == [], f"cells failed in JupyterLab: {ran['errors']}"
    assert ran["ok"], ran

    # The explorer renders: an image and the a and b sliders, and no widget error.
    wait = WebDriverWait(browser, WIDGET_UPDATE_S)
    image = wait.until(lambda d: next(iter(
        d.find_elements(By.CSS_SELECTOR, ".jp-OutputArea img.widget-image")), None))
    outputs = "\n".join(output.text for output in
                        browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))
    assert "Error displaying widget" not in outputs
    assert "Interactive explorer off" not in outputs  # the cpu profile shows the widgets
    slider_a, slider_b = slider_labelled(browser, "a shift"), slider_labelled(browser, "b shift")
    assert slider_a is not None and slider_b is not None, "no a,b sliders in the output"
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", image)
    readout = slider_a.find_element(By.CSS_SELECTOR, ".widget-readout")
    assert readout.text.strip() == "0"
    wait.until(lambda d: image.size["width"] > 100 and image.get_attribute("complete"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "01_ab_slider_before.png"))
    source_before, pixels_before = image.get_attribute("src"), image_pixels(image)

    # A learner clicks the handle and presses the right arrow: a shifts towards red.
    handle = slider_a.find_element(By.CSS_SELECTOR, ".noUi-handle")
    for _ in range(SHIFT_STEPS):
        handle.send_keys(Keys.ARROW_RIGHT)
    wait.until(lambda _: readout.text.strip() == str(SHIFT_STEPS))

    # The kernel renders each new value; wait for the last one to arrive and settle.
    last = {"src": None, "since": 0.0}

    def settled(driver):
        source = image.get_attribute("src")
        if source != last["src"]:
            last.update(src=source, since=time.monotonic())
            return False
        idle = driver.execute_script(KERNEL_STATUS_JS) == "idle"
        return (idle and source != source_before and image.get_attribute("complete")
                and time.monotonic() - last["since"] > 1.0)

    wait.until(settled, "the image did not change after moving the a shift slider")
    pixels_after = image_pixels(image)
    browser.save_screenshot(str(SCREENSHOTS / "01_ab_slider.png"))
    assert pixels_after.shape == pixels_before.shape
    change = np.abs(pixels_after - pixels_before).mean(axis=(0, 1))
    # a + 20 adds red and takes away green: the image changed, in the expected direction.
    assert change.mean() > 2, change
    red_minus_green = lambda px: (px[..., 0] - px[..., 1]).mean()  # noqa: E731
    assert red_minus_green(pixels_after) > red_minus_green(pixels_before) + 5
    print(f"browser test: {time.monotonic() - started:.1f} s from opening the page; "
          f"screenshot {SCREENSHOTS / '01_ab_slider.png'}")
