// The page of `unmask serve`: a queue of photos; for each, its map painted or erased (undo, zoom, grow or
// shrink), stage 2 re-run, the result downloaded.
// State for tests and people alike: body[data-state] is the photo shown's: idle | waiting | busy | ready |
// error; body[data-results] counts the results received (all photos), body[data-ready] the photos ready,
// body[data-undo] / [data-redo] the steps that can be undone / redone, body[data-compare] before | after.
"use strict";

const $ = (id) => document.getElementById(id);
const mapCanvas = $("map"), mapContext = mapCanvas.getContext("2d", {willReadFrequently: true});
const boxCanvas = $("boxes");
const UNDO_STEPS = 50;   // edits kept for undo, per photo
const MAP_ON = 128;      // a map pixel counts where its alpha is at least this (the server's rule)
const ZOOM_STEP = 1.25, MAX_ZOOM = 16;
let limits = null;       // from /api/limits
const queue = [];        // one item per photo chosen or dropped (newItem)
let shown = -1;          // index of the photo on the page
let uploading = false;   // one upload at a time, in the queue's order
let stroke = null;       // the last point of the stroke being painted
let pan = null;          // {x, y} where a pan drag last was
const view = {fit: 1, zoom: 1, x: 0, y: 0};  // the photo's fit scale, zoom and pan (CSS px)

function newItem(file) {
  return {file, name: file.name, state: "waiting", message: `waiting: ${file.name}`, error: "",
          photo: null, predicted: null, map: null, undo: [], redo: [], photoUrl: null, firstResultUrl: null,
          resultUrl: null};
}

const current = () => queue[shown] || null;

// ----- what the page shows: one photo's state, status and tools together

function render() {
  const item = current();
  const state = item ? item.state : "idle";
  document.body.dataset.state = state;
  document.body.dataset.ready = String(queue.filter((each) => each.state === "ready").length);
  $("status").textContent = item ? item.message : "";
  $("error").textContent = item ? item.error : "";
  $("error").hidden = !(item && item.error);
  const usable = Boolean(item && item.photo && item.resultUrl && state !== "error");
  $("tools").hidden = $("views").hidden = !usable;  // a failed upload leaves no earlier photo's tools
  for (const id of ["rerun", "reset", "download", "grow", "shrink"]) $(id).disabled = !usable || state === "busy";
  $("undo").disabled = !usable || !item.undo.length;
  $("redo").disabled = !usable || !item.redo.length;
  document.body.dataset.undo = String(item ? item.undo.length : 0);
  document.body.dataset.redo = String(item ? item.redo.length : 0);
  $("queue").hidden = queue.length < 2;
  $("queue-position").textContent = item ? `photo ${shown + 1} of ${queue.length}: ${item.name}` : "";
  $("previous").disabled = shown <= 0;
  $("next").disabled = shown >= queue.length - 1;
  fitView(false);  // a message shown or gone moves the photo: it still ends above the fold
}

function setItem(item, state, message, error = "") {
  Object.assign(item, {state, message, error});
  render();  // the shown photo's, and the queue's count of photos ready
}

async function errorOf(response) {
  try {
    return (await response.json()).error || `the server answered HTTP ${response.status}`;
  } catch (_) {
    return `the server answered HTTP ${response.status} ${response.statusText}`;
  }
}

function megabytes(bytes) { return `${Math.round(bytes / 2 ** 20)} MB`; }

function loaded(image, url) {
  return new Promise((resolve, reject) => {
    image.onload = resolve;
    image.onerror = () => reject(new Error("the browser cannot show this image"));
    image.src = url;
  });
}

// ----- the queue

function addFiles(files) {
  if (!files.length) return;
  const first = queue.length;
  for (const file of files) queue.push(newItem(file));
  show(first);
  uploadNext();
}

async function uploadNext() {
  if (uploading) return;
  const item = queue.find((each) => each.state === "waiting");
  if (!item) return;
  uploading = true;
  try {
    await upload(item);
  } catch (err) {
    setItem(item, "error", "", `${item.name}: ${err.message}`);
  } finally {
    uploading = false;
  }
  uploadNext();
}

// The photo sent; the answer: id, sizes, faces, map. Throws with the server's reason.
async function send(file) {
  let response;
  try {
    response = await fetch("/api/photos", {method: "POST", body: file});
  } catch (err) {
    throw new Error(`the server did not answer (${err.message})`);
  }
  if (!response.ok) throw new Error(await errorOf(response));
  return response.json();
}

async function upload(item) {
  if (!limits) limits = await (await fetch("/api/limits")).json();
  const file = item.file;
  if (file.size === 0) return setItem(item, "error", "", `${file.name}: empty file (0 bytes)`);
  if (file.size > limits.max_upload_bytes) {
    return setItem(item, "error", "", `${file.name}: too large (${megabytes(file.size)}; ` +
                                      `the limit is ${megabytes(limits.max_upload_bytes)})`);
  }
  setItem(item, "busy", `unmasking ${file.name} ...`);
  item.photo = await send(file);
  item.photoUrl = URL.createObjectURL(file);
  item.predicted = await mapAlpha(item.photo.map);
  item.map = item.predicted.slice();
  const response = await fetch(`/api/photos/${item.photo.id}/result.png`);
  if (!response.ok) throw new Error(await errorOf(response));
  item.firstResultUrl = item.resultUrl = URL.createObjectURL(await response.blob());
  countResult();
  const faces = item.photo.faces.length === 1 ? "1 face" : `${item.photo.faces.length} faces`;
  setItem(item, "ready", `${faces} unmasked. Paint or erase the map, then re-run stage 2.`);
  if (item === current()) await showPhoto(item);
}

function countResult() {
  document.body.dataset.results = String(Number(document.body.dataset.results) + 1);
}

// Show the queue's index-th photo; the shown one's map is kept in its item first.
async function show(index) {
  if (index < 0 || index >= queue.length) return;
  const leaving = current();
  if (leaving && leaving.photo && leaving !== queue[index] && !$("views").hidden) leaving.map = readAlpha();
  stroke = pan = null;
  shown = index;
  render();
  const item = current();
  if (item.state !== "error" && item.photo && item.resultUrl) await showPhoto(item);
}

async function showPhoto(item) {
  await loaded($("photo"), item.photoUrl);
  await loaded($("result"), item.resultUrl);
  if (item !== current()) return;
  mapCanvas.width = item.photo.map_width;
  mapCanvas.height = item.photo.map_height;
  writeAlpha(item.map);
  render();
  fitView();
}

// ----- the map: an alpha channel (Uint8Array at the map's size) drawn in the overlay's colour

function colour() {
  const hex = $("colour").value;
  return [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
}

// The server's map (grey PNG whose level is the map, soft at its edges) as alpha values.
async function mapAlpha(dataUrl) {
  const image = new Image();
  await loaded(image, dataUrl);
  const scratch = document.createElement("canvas");
  scratch.width = image.width;
  scratch.height = image.height;
  const context = scratch.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, image.width, image.height).data;
  const alpha = new Uint8Array(image.width * image.height);
  for (let i = 0; i < alpha.length; i++) alpha[i] = data[4 * i];
  return alpha;
}

function readAlpha() {
  const data = mapContext.getImageData(0, 0, mapCanvas.width, mapCanvas.height).data;
  const alpha = new Uint8Array(mapCanvas.width * mapCanvas.height);
  for (let i = 0; i < alpha.length; i++) alpha[i] = data[4 * i + 3];
  return alpha;
}

function writeAlpha(alpha) {
  const pixels = mapContext.createImageData(mapCanvas.width, mapCanvas.height);
  const [r, g, b] = colour(), data = pixels.data;
  for (let i = 0; i < alpha.length; i++) {
    data[4 * i] = r; data[4 * i + 1] = g; data[4 * i + 2] = b; data[4 * i + 3] = alpha[i];
  }
  mapContext.putImageData(pixels, 0, 0);
  updateCoverage();
}

// Before an edit: the map as it is, for undo; an edit clears what could be redone.
function remember() {
  const item = current();
  item.undo.push(readAlpha());
  if (item.undo.length > UNDO_STEPS) item.undo.shift();
  item.redo = [];
  render();
}

function undo(from, to) {
  const item = current();
  if (!item || !item.photo || !item[from].length || item.state === "busy") return;
  item[to].push(readAlpha());
  writeAlpha(item[from].pop());
  render();
}

// Grow (or shrink, by a negative n) the map by n map pixels: a pixel is in the grown map within n of the
// map, in the shrunk one farther than n from outside it (a two-pass chamfer distance, close to Euclidean).
// Its edge is soft over one pixel, as the predicted map's.
function grown(alpha, width, height, n) {
  const inside = (i) => (alpha[i] >= MAP_ON) === (n > 0);
  const far = width + height, distance = new Float32Array(alpha.length);
  for (let i = 0; i < alpha.length; i++) distance[i] = inside(i) ? 0 : far;
  const diagonal = Math.SQRT2;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      let d = distance[i];
      if (x > 0) d = Math.min(d, distance[i - 1] + 1);
      if (y > 0) {
        d = Math.min(d, distance[i - width] + 1);
        if (x > 0) d = Math.min(d, distance[i - width - 1] + diagonal);
        if (x < width - 1) d = Math.min(d, distance[i - width + 1] + diagonal);
      }
      distance[i] = d;
    }
  }
  for (let y = height - 1; y >= 0; y--) {
    for (let x = width - 1; x >= 0; x--) {
      const i = y * width + x;
      let d = distance[i];
      if (x < width - 1) d = Math.min(d, distance[i + 1] + 1);
      if (y < height - 1) {
        d = Math.min(d, distance[i + width] + 1);
        if (x < width - 1) d = Math.min(d, distance[i + width + 1] + diagonal);
        if (x > 0) d = Math.min(d, distance[i + width - 1] + diagonal);
      }
      distance[i] = d;
    }
  }
  // Soft over the last pixel, as the predicted map's edges are; in the map exactly where the rule says.
  const reach = Math.abs(n), out = new Uint8Array(alpha.length);
  for (let i = 0; i < alpha.length; i++) {
    const past = n > 0 ? reach - distance[i] : distance[i] - reach;  // >= 0 (grow), > 0 (shrink): in the map
    const level = Math.round(Math.min(1, Math.max(0, past + 0.5)) * 255);
    out[i] = (n > 0 ? past >= 0 : past > 0) ? Math.max(MAP_ON, level) : Math.min(MAP_ON - 1, level);
  }
  return out;
}

function growMap(sign) {
  const item = current();
  if (!item || $("grow").disabled) return;
  const n = Math.max(1, Math.round(Number($("grow-by").value) || 1));
  remember();
  writeAlpha(grown(readAlpha(), mapCanvas.width, mapCanvas.height, sign * n));
}

// Each face's share of its box that the map covers, on its box and in the caption.
function updateCoverage() {
  const item = current();
  if (!item || !item.photo) return;
  const alpha = mapContext.getImageData(0, 0, mapCanvas.width, mapCanvas.height).data;
  const sx = mapCanvas.width / item.photo.width, sy = mapCanvas.height / item.photo.height;
  item.coverage = item.photo.faces.map((face) => {
    const [x0, y0, x1, y1] = [Math.floor(face.box[0] * sx), Math.floor(face.box[1] * sy),
                              Math.ceil(face.box[2] * sx), Math.ceil(face.box[3] * sy)];
    let on = 0, all = 0;
    for (let y = Math.max(0, y0); y < Math.min(mapCanvas.height, y1); y++) {
      for (let x = Math.max(0, x0); x < Math.min(mapCanvas.width, x1); x++) {
        all++;
        if (alpha[4 * (y * mapCanvas.width + x) + 3] >= MAP_ON) on++;
      }
    }
    return all ? on / all : 0;
  });
  const shares = item.coverage.map((share, index) =>
    (item.coverage.length > 1 ? `face ${index + 1} ` : "") + `${Math.round(share * 100)}%`);
  $("map-label").textContent = `map: ${shares.join(", ")} of the face box` +
    (shares.length > 1 ? "es" : "") + " (yellow). Paint where the mask is, erase where it is not.";
  drawBoxes();
}

// ----- the view: the photo fits the window; zoom and pan move it inside its frame

function fitView(reset = true) {
  const item = current();
  if (!item || !item.photo || $("views").hidden) return;
  const column = $("viewport").parentElement.clientWidth;
  const top = $("viewport").getBoundingClientRect().top + window.scrollY;
  const room = Math.max(200, window.innerHeight - top - 16);  // the photo stays above the fold
  view.fit = Math.min(column / item.photo.width, room / item.photo.height);
  const width = Math.floor(item.photo.width * view.fit), height = Math.floor(item.photo.height * view.fit);
  Object.assign($("viewport").style, {width: `${width}px`, height: `${height}px`});
  Object.assign($("stack").style, {width: `${width}px`, height: `${height}px`});
  Object.assign($("result").style, {width: `${width}px`, height: `${height}px`});
  if (reset) setZoom(1, 0, 0);
  else setZoom(view.zoom, view.x, view.y);
  drawBoxes();
}

function setZoom(zoom, x, y) {
  view.zoom = Math.min(MAX_ZOOM, Math.max(1, zoom));
  const frame = $("viewport");
  // Never pan the photo off its frame.
  view.x = Math.min(0, Math.max(frame.clientWidth * (1 - view.zoom), x));
  view.y = Math.min(0, Math.max(frame.clientHeight * (1 - view.zoom), y));
  $("stack").style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
  $("zoom-level").textContent = `${Math.round(view.zoom * 100)}%`;
  document.body.dataset.zoom = view.zoom.toFixed(3);
}

// Zoom by a factor around a point of the frame (CSS px from its corner): that point stays put.
function zoomBy(factor, at) {
  const frame = $("viewport");
  const point = at || {x: frame.clientWidth / 2, y: frame.clientHeight / 2};
  const zoom = Math.min(MAX_ZOOM, Math.max(1, view.zoom * factor)), ratio = zoom / view.zoom;
  setZoom(zoom, point.x - (point.x - view.x) * ratio, point.y - (point.y - view.y) * ratio);
}

// Each face's box, number and map share, on a canvas at the screen's resolution.
function drawBoxes() {
  const item = current();
  if (!item || !item.photo || $("views").hidden) return;
  // The canvas is zoomed with the photo: drawn at the zoomed resolution, its lines keep their screen size.
  const screen = window.devicePixelRatio || 1, pixel = screen * view.zoom;
  const width = $("stack").clientWidth, height = $("stack").clientHeight;
  boxCanvas.width = Math.round(width * pixel);
  boxCanvas.height = Math.round(height * pixel);
  const context = boxCanvas.getContext("2d");
  const sx = boxCanvas.width / item.photo.width, sy = boxCanvas.height / item.photo.height;
  const line = 2 * screen, letters = 14 * screen;
  context.lineWidth = line;
  context.strokeStyle = context.fillStyle = "#ffd400";
  context.font = `${letters}px sans-serif`;
  context.textBaseline = "bottom";
  item.photo.faces.forEach((face, index) => {
    const [x0, y0, x1, y1] = face.box;
    context.strokeRect(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy);
    const share = item.coverage ? Math.round(item.coverage[index] * 100) : 0;
    const label = `${index + 1}: map ${share}% of box`;
    context.fillText(label, x0 * sx + line, y0 * sy > letters ? y0 * sy - line : y1 * sy + letters);
  });
}
window.addEventListener("resize", () => fitView(false));

// ----- re-run, reset, download

async function rerun() {
  const item = current();
  if (!item || !item.photo || item.state === "busy") return;
  setItem(item, "busy", "re-running stage 2 on the edited map ...");
  const started = performance.now();
  const blob = await new Promise((resolve) => mapCanvas.toBlob(resolve, "image/png"));
  const refill = () => fetch(`/api/photos/${item.photo.id}/refill`, {method: "POST", body: blob,
                                                                     headers: {"Content-Type": "image/png"}});
  let response;
  try {
    response = await refill();
    if (response.status === 404) {  // the server keeps its last few photos only: send this one again
      item.photo.id = (await send(item.file)).id;
      response = await refill();
    }
  } catch (err) {
    return setItem(item, "ready", "", `the re-run failed: ${err.message}`);
  }
  if (!response.ok) return setItem(item, "ready", "", `the re-run failed: ${await errorOf(response)}`);
  const url = URL.createObjectURL(await response.blob());
  if (item.resultUrl !== item.firstResultUrl) URL.revokeObjectURL(item.resultUrl);
  item.resultUrl = url;
  countResult();
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  setItem(item, "ready", `re-ran stage 2 in ${seconds} s. Paint more, or download the result.`);
  if (item === current()) await loaded($("result"), url);
}

// Back to the first prediction: its map, its result and its status together (undo brings the map back).
function reset() {
  const item = current();
  if (!item || !item.photo || item.state === "busy") return;
  remember();
  writeAlpha(item.predicted);
  if (item.resultUrl !== item.firstResultUrl) URL.revokeObjectURL(item.resultUrl);
  item.resultUrl = item.firstResultUrl;
  $("result").src = item.resultUrl;
  setItem(item, "ready", "back to the predicted map and its result.");
}

function download() {
  const item = current();
  if (!item || !item.resultUrl || $("download").disabled) return;
  const link = document.createElement("a");
  link.href = item.resultUrl;
  link.download = `${item.name.replace(/\.[^.]*$/, "") || "photo"}-unmasked.png`;
  document.body.append(link);
  link.click();
  link.remove();
}

// Hold to see the photo as it was in the result's place (and no map over it).
function compare(before) {
  const item = current();
  if (!item || !item.photoUrl || $("views").hidden) return;
  document.body.dataset.compare = before ? "before" : "after";
  $("result").src = before ? item.photoUrl : item.resultUrl;
  $("result-label").textContent = before ? "Before: the photo as uploaded" : "The result";
}

// ----- painting: strokes in map pixels; the brush size is in screen pixels

function mapPoint(event) {
  const rect = mapCanvas.getBoundingClientRect();
  return {x: (event.clientX - rect.left) * mapCanvas.width / rect.width,
          y: (event.clientY - rect.top) * mapCanvas.height / rect.height,
          scale: mapCanvas.width / rect.width};
}

function paintTo(point) {
  const erase = document.querySelector("input[name=mode]:checked").value === "erase";
  mapContext.globalCompositeOperation = erase ? "destination-out" : "source-over";
  mapContext.strokeStyle = $("colour").value;
  mapContext.lineCap = mapContext.lineJoin = "round";
  mapContext.lineWidth = Number($("brush").value) * point.scale;
  mapContext.beginPath();
  mapContext.moveTo(stroke.x, stroke.y);
  mapContext.lineTo(point.x + 0.01, point.y);  // a click alone still leaves a dot
  mapContext.stroke();
  stroke = point;
}

function moveCursor(event) {
  const frame = $("viewport").getBoundingClientRect(), cursor = $("cursor"), size = Number($("brush").value);
  Object.assign(cursor.style, {left: `${event.clientX - frame.left}px`, top: `${event.clientY - frame.top}px`,
                               width: `${size}px`, height: `${size}px`});
  cursor.hidden = Boolean(pan) || document.body.dataset.space === "1";
}

mapCanvas.addEventListener("pointerdown", (event) => {
  const item = current();
  if (!item || item.state === "busy" || !item.photo) return;
  event.preventDefault();
  mapCanvas.setPointerCapture(event.pointerId);
  if (event.button === 1 || document.body.dataset.space === "1") {
    pan = {x: event.clientX, y: event.clientY};
    document.body.classList.add("panning");
    return;
  }
  if (event.button !== 0) return;
  remember();
  stroke = mapPoint(event);
  paintTo(stroke);
});
mapCanvas.addEventListener("pointermove", (event) => {
  moveCursor(event);
  if (pan) {
    setZoom(view.zoom, view.x + event.clientX - pan.x, view.y + event.clientY - pan.y);
    pan = {x: event.clientX, y: event.clientY};
  } else if (stroke) {
    paintTo(mapPoint(event));
  }
});
for (const end of ["pointerup", "pointercancel"]) {
  mapCanvas.addEventListener(end, () => {
    if (stroke) updateCoverage();
    stroke = pan = null;
    document.body.classList.remove("panning");
  });
}
mapCanvas.addEventListener("pointerleave", () => { $("cursor").hidden = true; });
mapCanvas.addEventListener("auxclick", (event) => event.preventDefault());
$("viewport").addEventListener("wheel", (event) => {
  event.preventDefault();
  const frame = $("viewport").getBoundingClientRect();
  zoomBy(event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, {x: event.clientX - frame.left, y: event.clientY - frame.top});
  drawBoxes();
}, {passive: false});

function setBrush(size) {
  $("brush").value = String(Math.round(size));
  $("brush-size").textContent = $("brush").value;
  $("cursor").style.width = $("cursor").style.height = `${$("brush").value}px`;
}

function setMode(mode) { document.querySelector(`input[name=mode][value=${mode}]`).checked = true; }

// ----- controls and keys

$("brush").addEventListener("input", () => setBrush(Number($("brush").value)));
$("opacity").addEventListener("input", () => {
  mapCanvas.style.opacity = $("show-map").checked ? String(Number($("opacity").value) / 100) : "0";
});
$("show-map").addEventListener("change", () => $("opacity").dispatchEvent(new Event("input")));
$("colour").addEventListener("input", () => { if (current() && current().photo) writeAlpha(readAlpha()); });
$("undo").addEventListener("click", () => undo("undo", "redo"));
$("redo").addEventListener("click", () => undo("redo", "undo"));
$("grow").addEventListener("click", () => growMap(1));
$("shrink").addEventListener("click", () => growMap(-1));
$("zoom-in").addEventListener("click", () => { zoomBy(ZOOM_STEP); drawBoxes(); });
$("zoom-out").addEventListener("click", () => { zoomBy(1 / ZOOM_STEP); drawBoxes(); });
$("zoom-fit").addEventListener("click", () => { setZoom(1, 0, 0); drawBoxes(); });
$("reset").addEventListener("click", reset);
$("rerun").addEventListener("click", () => rerun().catch((err) => setItem(current(), "ready", "", err.message)));
$("download").addEventListener("click", download);
$("previous").addEventListener("click", () => show(shown - 1));
$("next").addEventListener("click", () => show(shown + 1));
$("file").addEventListener("change", () => { addFiles([...$("file").files]); $("file").value = ""; });

const COMPARE_KEYS = ["\\", "c", "C"];
document.addEventListener("keydown", (event) => {
  if (event.target.matches && event.target.matches("input[type=number], input[type=text]")) return;
  const key = event.key, ctrl = event.ctrlKey || event.metaKey;
  if (ctrl && (key === "z" || key === "Z")) {
    undo(event.shiftKey ? "redo" : "undo", event.shiftKey ? "undo" : "redo");
  } else if (ctrl && (key === "y" || key === "Y")) {
    undo("redo", "undo");
  } else if (ctrl && key === "Enter") {
    $("rerun").click();
  } else if (ctrl || event.altKey) {
    return;
  } else if (key === "[" || key === "]") {
    const size = Number($("brush").value);
    setBrush(key === "]" ? Math.min(200, size * 1.2 + 1) : Math.max(2, size / 1.2 - 1));
  } else if (key === "b" || key === "B") {
    setMode("paint");
  } else if (key === "e" || key === "E") {
    setMode("erase");
  } else if (key === "+" || key === "=") {
    $("zoom-in").click();
  } else if (key === "-") {
    $("zoom-out").click();
  } else if (key === "0") {
    $("zoom-fit").click();
  } else if (key === "n" || key === "N") {
    show(shown + 1);
  } else if (key === "p" || key === "P") {
    show(shown - 1);
  } else if (key === " ") {
    document.body.dataset.space = "1";
  } else if (COMPARE_KEYS.includes(key)) {
    if (!event.repeat) compare(true);
  } else {
    return;
  }
  event.preventDefault();
});
document.addEventListener("keyup", (event) => {
  if (event.key === " ") document.body.dataset.space = "0";
  if (COMPARE_KEYS.includes(event.key)) compare(false);
});
window.addEventListener("blur", () => { document.body.dataset.space = "0"; compare(false); });

// The limits now: asking for them also starts the server's warm-up while a photo is being picked.
fetch("/api/limits").then((response) => response.json()).then((answer) => { limits = answer; }, () => {});

// Drop anywhere on the page, one photo or many.
document.addEventListener("dragover", (event) => { event.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  addFiles([...event.dataTransfer.files]);
});
render();
