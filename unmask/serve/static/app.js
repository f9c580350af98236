// The page of `unmask serve`: upload a photo, paint or erase its map, re-run stage 2, download.
// State for tests and people alike: body[data-state] is idle | busy | ready | error, and
// body[data-results] counts the results shown.
"use strict";

const $ = (id) => document.getElementById(id);
const mapCanvas = $("map"), mapContext = mapCanvas.getContext("2d");
const boxCanvas = $("boxes");
let limits = null;      // from /api/limits
let photo = null;       // the server's answer to the upload: id, sizes, faces, map
let predictedMap = null; // the map as first predicted (an ImageData), for "back to the predicted map"
let resultUrl = null, photoUrl = null;
let stroke = null;      // the last point of the stroke being painted

function setState(state, message) {
  document.body.dataset.state = state;
  $("status").textContent = message || "";
  for (const button of ["rerun", "reset"]) $(button).disabled = state === "busy";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  setState("error", "");
}

async function errorOf(response) {
  try {
    return (await response.json()).error || `HTTP ${response.status}`;
  } catch (_) {
    return `HTTP ${response.status} ${response.statusText}`;
  }
}

function megabytes(bytes) { return `${Math.round(bytes / 2 ** 20)} MB`; }

async function upload(file) {
  $("error").hidden = true;
  if (!limits) limits = await (await fetch("/api/limits")).json();
  if (file.size === 0) return showError(`${file.name}: empty file (0 bytes)`);
  if (file.size > limits.max_upload_bytes) {
    return showError(`${file.name}: too large (${megabytes(file.size)}; the limit is ${megabytes(limits.max_upload_bytes)})`);
  }
  setState("busy", `unmasking ${file.name} ...`);
  let response;
  try {
    response = await fetch("/api/photos", {method: "POST", body: file});
  } catch (err) {
    return showError(`${file.name}: the server did not answer (${err.message})`);
  }
  if (!response.ok) return showError(`${file.name}: ${await errorOf(response)}`);
  photo = await response.json();
  photo.name = file.name;
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  await loaded($("photo"), photoUrl);
  mapCanvas.width = photo.map_width;
  mapCanvas.height = photo.map_height;
  predictedMap = await mapImage(photo.map);
  mapContext.putImageData(predictedMap, 0, 0);
  $("tools").hidden = $("views").hidden = false;
  fitView();
  const stem = file.name.replace(/\.[^.]*$/, "") || "photo";
  $("download").download = `${stem}-unmasked.png`;
  const faces = photo.faces.length === 1 ? "1 face" : `${photo.faces.length} faces`;
  await showResult(await fetch(`/api/photos/${photo.id}/result.png`),
                   `${faces} unmasked. Paint or erase the map, then re-run stage 2.`);
}

function loaded(image, url) {
  return new Promise((resolve, reject) => {
    image.onload = resolve;
    image.onerror = () => reject(new Error("the browser cannot show this image"));
    image.src = url;
  });
}

// The server's map (grey PNG, 255 = mask) as red pixels whose alpha is the map.
async function mapImage(dataUrl) {
  const image = new Image();
  await loaded(image, dataUrl);
  const scratch = document.createElement("canvas");
  scratch.width = image.width;
  scratch.height = image.height;
  const context = scratch.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, image.width, image.height);
  const data = pixels.data;
  for (let i = 0; i < data.length; i += 4) {
    const value = data[i];
    data[i] = 255; data[i + 1] = 0; data[i + 2] = 0; data[i + 3] = value;
  }
  return pixels;
}

// The photo and the result side by side, as large as their columns allow and never taller than most of
// the window.
function fitView() {
  if (!photo || $("views").hidden) return;
  const column = $("stack").parentElement.clientWidth;
  const scale = Math.min(column / photo.width, 0.75 * window.innerHeight / photo.height);
  $("stack").style.width = $("result").style.width = `${Math.floor(photo.width * scale)}px`;
  drawBoxes();
}

// Each face's box and number, on a canvas at the screen's resolution (not the map's) so that lines and
// letters are sharp and the same size whatever the photo's size.
function drawBoxes() {
  if (!photo || $("views").hidden) return;
  const rect = mapCanvas.getBoundingClientRect(), pixel = window.devicePixelRatio || 1;
  boxCanvas.width = Math.round(rect.width * pixel);
  boxCanvas.height = Math.round(rect.height * pixel);
  const context = boxCanvas.getContext("2d");
  const sx = boxCanvas.width / photo.width, sy = boxCanvas.height / photo.height;
  const line = 2 * pixel, letters = 14 * pixel;
  context.lineWidth = line;
  context.strokeStyle = context.fillStyle = "#ffd400";
  context.font = `${letters}px sans-serif`;
  context.textBaseline = "bottom";
  photo.faces.forEach((face, index) => {
    const [x0, y0, x1, y1] = face.box;
    context.strokeRect(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy);
    const label = `${index + 1}: ${Math.round(face.coverage * 100)}% map`;
    context.fillText(label, x0 * sx + line, y0 * sy > letters ? y0 * sy - line : y1 * sy + letters);
  });
}
window.addEventListener("resize", fitView);

async function showResult(response, message) {
  if (!response.ok) return showError(await errorOf(response));
  const blob = await response.blob();
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = URL.createObjectURL(blob);
  await loaded($("result"), resultUrl);
  $("download").href = resultUrl;
  document.body.dataset.results = String(Number(document.body.dataset.results) + 1);
  setState("ready", message);
}

async function rerun() {
  if (!photo) return;
  $("error").hidden = true;
  setState("busy", "re-running stage 2 on the edited map ...");
  const started = performance.now();
  const blob = await new Promise((resolve) => mapCanvas.toBlob(resolve, "image/png"));
  let response;
  try {
    response = await fetch(`/api/photos/${photo.id}/refill`, {method: "POST", body: blob,
                                                              headers: {"Content-Type": "image/png"}});
  } catch (err) {
    return showError(`the server did not answer (${err.message})`);
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  await showResult(response, `re-ran stage 2 in ${seconds} s. Paint more, or download the result.`);
}

// Painting: strokes in map pixels; the brush size is in screen pixels.
function mapPoint(event) {
  const rect = mapCanvas.getBoundingClientRect();
  return {x: (event.clientX - rect.left) * mapCanvas.width / rect.width,
          y: (event.clientY - rect.top) * mapCanvas.height / rect.height,
          scale: mapCanvas.width / rect.width};
}

function paintTo(point) {
  const erase = document.querySelector("input[name=mode]:checked").value === "erase";
  mapContext.globalCompositeOperation = erase ? "destination-out" : "source-over";
  mapContext.strokeStyle = "rgb(255, 0, 0)";
  mapContext.lineCap = mapContext.lineJoin = "round";
  mapContext.lineWidth = Number($("brush").value) * point.scale;
  mapContext.beginPath();
  mapContext.moveTo(stroke.x, stroke.y);
  mapContext.lineTo(point.x + 0.01, point.y);  // a click alone still leaves a dot
  mapContext.stroke();
  stroke = point;
}

mapCanvas.addEventListener("pointerdown", (event) => {
  if (document.body.dataset.state === "busy") return;
  mapCanvas.setPointerCapture(event.pointerId);
  stroke = mapPoint(event);
  paintTo(stroke);
});
mapCanvas.addEventListener("pointermove", (event) => { if (stroke) paintTo(mapPoint(event)); });
for (const end of ["pointerup", "pointercancel"]) mapCanvas.addEventListener(end, () => { stroke = null; });

$("brush").addEventListener("input", () => { $("brush-size").textContent = $("brush").value; });
$("show-map").addEventListener("change", () => { mapCanvas.style.opacity = $("show-map").checked ? "" : "0"; });
$("reset").addEventListener("click", () => { if (predictedMap) mapContext.putImageData(predictedMap, 0, 0); });
$("rerun").addEventListener("click", () => rerun().catch((err) => showError(err.message)));
$("file").addEventListener("change", () => {
  if ($("file").files.length) upload($("file").files[0]).catch((err) => showError(err.message));
});

// The limits now: asking for them also starts the server's warm-up while a photo is being picked.
fetch("/api/limits").then((response) => response.json()).then((answer) => { limits = answer; }, () => {});

// Drop anywhere on the page.
document.addEventListener("dragover", (event) => { event.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) upload(file).catch((err) => showError(err.message));
});
