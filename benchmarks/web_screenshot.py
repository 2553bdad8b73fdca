"""Drive the page of ``denoise serve`` in headless Chromium and save a screenshot.

Starts a real server on a free loopback port, opens the page in Debian's ``chromium``
through Playwright (pointed at that binary: no browser is ever downloaded), drops a noisy
Kodak24 photo on the page (Gaussian noise, sigma 25, seeded), gives the clean photo as the
reference, runs ``dct``, waits for the result, drags the divider, zooms, downloads the
result and saves a screenshot. The README's picture is made by

    python benchmarks/web_screenshot.py --out docs/web.png

which prints the PSNR shown on the page and that of the downloaded file. Needs
``apt-get install chromium`` and ``pip install playwright`` (the ``web-test`` extra).
The browser test (tests/web/test_browser.py) runs the same steps and checks them.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from denoise.web.launch import serve_process

#: Chromium's flags here: no sandbox (root in a container), no GPU, and nothing that
#: reaches for the network (closed here: without them it hangs on connections).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1360, "height": 840}


def chromium_path() -> str | None:
    """The Chromium binary: ``$DENOISE_CHROMIUM``, else ``chromium`` on the PATH."""
    configured = os.environ.get("DENOISE_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def serve(*options: str):
    """A ``denoise serve`` process on a free loopback port (``.url``, ``.log``)."""
    return serve_process(*options)


@contextlib.contextmanager
def browser(executable: str):
    """A fresh headless Chromium (its own empty profile) as a Playwright context."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="denoise-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            accept_downloads=True, viewport=VIEWPORT, timeout=60_000)
        try:
            yield context
        finally:
            context.close()


def test_images(folder: Path, name: str = "kodim23.png", sigma: float = 25.0, seed: int = 0,
                folder_name: str = "Kodak24"):
    """``(noisy.png, clean.png, real)``: a Kodak24 photo (or, without the data folder, a
    synthetic picture: real is False) and a seeded noisy copy, as 8-bit PNG files."""
    from PIL import Image

    from denoise.evaluation.testsets import data_root

    root = data_root()
    source = root / folder_name / name if root is not None else None
    if source is not None and source.is_file():
        clean = np.asarray(Image.open(source).convert("RGB"), dtype=np.float64) / 255
    else:
        yy, xx = np.mgrid[0:384, 0:512] / 512
        clean = np.stack([0.5 + 0.4 * np.sin(9 * xx + k) * np.cos(7 * yy) for k in range(3)], -1)
    rng = np.random.default_rng(seed)
    noisy = np.clip(clean + rng.normal(0, sigma / 255, clean.shape), 0, 1)
    paths = []
    for label, pixels in (("noisy", noisy), ("clean", clean)):
        path = folder / f"{Path(name).stem}-{label}.png"
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths[0], paths[1], source is not None and source.is_file()


def drop_file(page, selector: str, path: Path) -> None:
    """Drop ``path`` on ``selector`` as a user dragging it from a file manager would."""
    data = base64.b64encode(path.read_bytes()).decode()
    page.evaluate("""([selector, name, data]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: "image/png" }));
        const target = document.querySelector(selector);
        for (const type of ["dragenter", "dragover", "drop"])
            target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [selector, path.name, data])


def wait_for(page, selector: str, timeout: float = 180.0) -> None:
    """Wait for ``selector``; on a timeout, say what the page showed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(selector, timeout=timeout * 1000)
    except PlaywrightTimeout:
        state = page.evaluate("""() => ({progress: document.querySelector('#progress-text').textContent,
            message: document.querySelector('#message').textContent,
            a: document.querySelector('#row-a').dataset.state,
            b: document.querySelector('#row-b').dataset.state})""")
        raise AssertionError(f"{selector} did not appear in {timeout:.0f} s; the page showed {state}") from None


def drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()


def drive(context, url: str, noisy: Path, clean: Path, out: Path, *, model: str = "dct",
          model_b: str | None = "wavelet", screenshot: Path | None = None) -> dict:
    """Every step of the page a user takes; what the page showed, as a dict."""
    page = context.new_page()
    seen = {"requests": [], "errors": [], "console_errors": []}
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("console", lambda m: m.type == "error" and seen["console_errors"].append(m.text))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))  # uncaught script errors
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=yes]", timeout=60_000)
    drop_file(page, "#drop", noisy)  # the image, by drag and drop
    wait_for(page, "body[data-input=ready]", 60)
    page.set_input_files("#reference", str(clean))  # the reference, by the file picker
    page.locator("#reference-info", has_text="×").wait_for()
    seen["estimate"] = page.inner_text("#sigma-estimate")
    page.select_option("#model-a", model)
    seen["card"] = page.inner_text("#card-a")
    if model_b:
        page.select_option("#model-b", model_b)
    start = time.monotonic()
    page.click("#run")
    wait_for(page, "#row-a[data-state=done]")
    seen["seconds"] = time.monotonic() - start
    if model_b:  # the A/B comparison: the viewer shows A against B once both are done
        wait_for(page, "#row-b[data-state=done]")
        page.wait_for_timeout(200)
        seen["b_psnr"] = page.inner_text("#row-b .psnr")
        seen["viewer_tags"] = (page.inner_text("#tag-left"), page.inner_text("#tag-right"))
        page.select_option("#left", "input")
        page.select_option("#right", "a")
    for key in ("psnr", "ssim", "sigma"):
        seen[f"shown_{key}"] = page.inner_text(f"#row-a .{key}")
    seen["shown_input_psnr"] = page.inner_text("#input-psnr")
    seen["progress"] = page.inner_text("#progress-text")
    box = page.locator("#viewer").bounding_box()
    handle = page.locator("#divider").bounding_box()
    y = box["y"] + box["height"] * 0.5
    drag(page, (handle["x"] + handle["width"] / 2, y), (box["x"] + box["width"] * 0.3, y))
    seen["split_after_drag"] = float(page.get_attribute("#viewer", "data-split"))
    page.select_option("#zoom", "4")
    drag(page, (box["x"] + box["width"] * 0.7, box["y"] + 100), (box["x"] + box["width"] * 0.6, box["y"] + 60))
    seen["zoom"] = page.get_attribute("#viewer", "data-zoom")
    with page.expect_download(timeout=60_000) as download:
        page.click("#download-a")
    seen["filename"] = download.value.suggested_filename
    target = out / seen["filename"]
    download.value.save_as(target)
    seen["downloaded"] = target
    if screenshot is not None:
        page.select_option("#zoom", "fit")
        drag(page, (page.locator("#divider").bounding_box()["x"] + 1, y), (box["x"] + box["width"] * 0.5, y))
        page.evaluate("document.querySelector('#message').hidden = true")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot))
        seen["screenshot"] = screenshot
    page.click("#download-a")  # a second time: the server deleted it, the page says so
    page.locator("#message", has_text="already downloaded").wait_for()
    seen["second_download_message"] = page.inner_text("#message")
    page.set_input_files("#reference", {"name": "notes.png", "mimeType": "image/png",
                                        "buffer": b"not an image"})
    page.locator("#message", has_text="not an image").wait_for()
    seen["refusal_message"] = page.inner_text("#message")
    seen["foreign_requests"] = [r for r in seen["requests"]
                                if not (r.startswith(url + "/") or r.startswith(("blob:", "data:")))]
    page.close()
    return seen


def psnr_db(path: Path, clean: Path) -> float:
    from denoise.io import read_image
    from denoise.metrics import psnr

    return float(psnr(read_image(path)[0], read_image(clean)[0])[0])


def shrink_png(path: Path, limit: int = 300_000) -> int:
    """Re-encode a screenshot as a 256-colour PNG (dithered, so that smooth areas show no
    bands), at full size or smaller, until it is at most ``limit`` bytes; 0: as it is."""
    import io

    from PIL import Image

    if not limit or path.stat().st_size <= limit:
        return path.stat().st_size
    with Image.open(path) as im:
        full = im.convert("RGB")
    for scale in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5):
        size = (round(full.width * scale), round(full.height * scale))
        im = full if scale == 1.0 else full.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        im.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                    dither=Image.Dither.FLOYDSTEINBERG).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= limit:
            break
    path.write_bytes(buffer.getvalue())
    return path.stat().st_size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/web.png"), help="screenshot file")
    parser.add_argument("--image", default="kodim23.png", help="image name in the set")
    parser.add_argument("--set", default="Kodak24_full", help="folder of the data root (default "
                        "Kodak24_full: 768x512 photos)")
    parser.add_argument("--model", default="dct")
    parser.add_argument("--max-bytes", type=int, default=300_000,
                        help="shrink the screenshot to at most this size (0: keep it as taken)")
    args = parser.parse_args(argv)
    executable = chromium_path()
    if executable is None:
        sys.exit("no chromium binary: apt-get install chromium (or set DENOISE_CHROMIUM)")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        noisy, clean, real = test_images(folder, args.image, folder_name=args.set)
        with serve() as server, browser(executable) as context:
            seen = drive(context, server.url, noisy, clean, folder, model=args.model, screenshot=args.out)
        size = shrink_png(args.out, args.max_bytes)
        print(f"image: {args.image if real else 'synthetic (no data folder)'}, noise sigma 25, model {args.model}")
        print(f"noisy input PSNR {psnr_db(noisy, clean):.2f} dB; downloaded result "
              f"{psnr_db(seen['downloaded'], clean):.2f} dB; page showed {seen['shown_psnr']} "
              f"(input {seen['shown_input_psnr']}); run + display {seen['seconds']:.1f} s")
        print(f"screenshot: {args.out} ({size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
