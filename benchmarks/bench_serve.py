"""Cost of ``unmask serve``: start-up, latency per 1-megapixel photo, and memory over many requests.

    python benchmarks/bench_serve.py --checkpoint runs/default            # 100 photos, a few minutes on 2 cores
    python benchmarks/bench_serve.py --checkpoint runs/default -n 20      # quicker

Starts the real command (``python -m unmask.cli serve --port 0``) and talks to it over HTTP, as the page
does. Each request: a real masked photo (``../shared/data/real-masked-photos``, those where a face is
found) resized to 1 megapixel and sent as JPEG (upload -> faces and maps: detection, both stages, the
map as PNG), then its map with a rectangle painted over the first face sent back (re-run: stage 2 on the
changed face, paste-back, the result as PNG). Prints the start-up time (launch to the first answer),
the first upload (the face detectors load then), p50/p95 of the rest, and the server's resident memory
before and after (RSS growth: the photo cache is bounded, so it should level off). Targets: p95 <= 2 s,
RSS growth < 50 MB over 100 requests.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maskgen.source import load_image  # noqa: E402
from tests.testdata import REAL_MASKED  # noqa: E402

MEGAPIXEL = 1_000_000
RSS_AFTER = (1, 2, 4, 8, 16, 25, 50, 75, 100, 200, 400)  # requests after which the server's RSS is printed
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost: never through a proxy


def one_megapixel_jpegs(folder: Path, count: int) -> list[bytes]:
    """``count`` photos of the folder (cycled when fewer), each resized to ~1 Mpx, as JPEG bytes."""
    photos = []
    for path in sorted(folder.glob("*.jpg"))[:count]:
        image = load_image(path, max_side=None)
        scale = (MEGAPIXEL / (image.shape[0] * image.shape[1])) ** 0.5
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(resized, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        photos.append(data.tobytes())
    return photos


def post(url: str, body: bytes) -> tuple[int, bytes]:
    try:
        with HTTP.open(urllib.request.Request(url, data=body, method="POST"), timeout=300) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def edited_map(answer: dict) -> bytes:
    """The page's map with a rectangle painted over the lower half of the first face's box (erased where
    the map covers most of it already, as a barely trained model's may: a re-run must change the map)."""
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["map"].split(",", 1)[1]))).convert("L")).copy()
    sx, sy = answer["map_width"] / answer["width"], answer["map_height"] / answer["height"]
    x0, y0, x1, y1 = answer["faces"][0]["box"]
    lower_half = mask[round((y0 + y1) / 2 * sy):round(y1 * sy), round(x0 * sx):round(x1 * sx)]
    lower_half[...] = 0 if (lower_half >= 128).mean() > 0.5 else 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, "PNG")
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "default")
    parser.add_argument("-n", "--requests", type=int, default=100, help="uploads (each followed by a re-run)")
    parser.add_argument("--photos", type=Path, default=REAL_MASKED)
    args = parser.parse_args()
    if not args.photos.is_dir():
        sys.exit(f"no photos at {args.photos} (set GANMASKER_SHARED_DATA or give --photos)")
    photos = one_megapixel_jpegs(args.photos, 40)

    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "unmask.cli", "serve", "--checkpoint", str(args.checkpoint),
                               "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = server.stdout.readline()
        found = re.search(r"(http://\S+/)", line)
        if not found:
            sys.exit(f"the server did not start: {line}{server.stdout.read()}")
        base = found.group(1)
        with HTTP.open(base + "api/limits", timeout=60) as response:
            json.load(response)
        startup = time.perf_counter() - started

        uploads, reruns, refused, rss_trend = [], [], 0, []
        rss_start = None
        for i in range(args.requests + 1):  # the first one warms the detectors up and is reported alone
            t = time.perf_counter()
            status, body = post(base + "api/photos", photos[i % len(photos)])
            upload_s = time.perf_counter() - t
            if status != 200:
                refused += 1
                continue
            answer = json.loads(body)
            t = time.perf_counter()
            status, body = post(base + f"api/photos/{answer['id']}/refill", edited_map(answer))
            rerun_s = time.perf_counter() - t
            assert status == 200, (status, body)
            if rss_start is None:
                first = (upload_s, rerun_s)
                rss_start = rss_mb(server.pid)
                continue
            uploads.append(upload_s)
            reruns.append(rerun_s)
            if len(uploads) in RSS_AFTER:
                rss_trend.append(f"{len(uploads)}: {rss_mb(server.pid):.0f}")
        rss_end = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)

    load = os.getloadavg()
    print(f"unmask serve, {args.checkpoint}, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)")
    print(f"start-up (launch -> first answer): {startup:.1f} s")
    print(f"first upload / re-run (detectors load): {first[0]:.2f} s / {first[1]:.2f} s")
    print(f"{len(uploads)} photos of 1 Mpx with a face ({refused} without one, refused):")
    print(f"  upload -> maps:          p50 {percentile(uploads, 50):.2f} s, p95 {percentile(uploads, 95):.2f} s, "
          f"max {max(uploads):.2f} s")
    print(f"  re-run with edited map:  p50 {percentile(reruns, 50):.2f} s, p95 {percentile(reruns, 95):.2f} s, "
          f"max {max(reruns):.2f} s")
    print(f"server RSS: {rss_start:.0f} MB after the first request, {rss_end:.0f} MB after {len(uploads)} more "
          f"uploads and re-runs: growth {rss_end - rss_start:+.0f} MB (MB after n: {', '.join(rss_trend)})")


if __name__ == "__main__":
    main()
