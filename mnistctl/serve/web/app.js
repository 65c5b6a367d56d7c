// mnistctl serve: draw a digit or a number on the canvas (mouse, pen or touch) or drop a photo; every
// change is sent to POST /predict, which reads it exactly as `mnistctl predict` reads a file. Each digit
// found is boxed on the drawing with its reading.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
const INK = 20; // stroke width on the 280 px tall canvas: about MNIST's stroke once a digit is scaled to 20 px
const boxes = $("boxes").getContext("2d");
let classes = [];
let drawing = false;
let dirty = false; // the canvas changed since the last request was sent
let inFlight = false;
let hasInk = false;
let last = null;
let generation = 0; // bumped by Clear, a new stroke and an upload: answers about an older picture are dropped

function blank() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  hasInk = false;
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left) * (pad.width / box.width), y: (event.clientY - box.top) * (pad.height / box.height) };
}

function stroke(from, to) {
  ctx.strokeStyle = "#111";
  ctx.lineWidth = INK;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
  hasInk = true;
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  $("preview").hidden = true; // from now on the answer is about the drawing
  generation++;
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = point(event);
  stroke(last, last);
  changed();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const p = point(event);
  stroke(last, p);
  last = p;
  changed();
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    changed();
  });
}

$("clear").addEventListener("click", () => {
  generation++;
  blank();
  drawBoxes([]);
  dirty = false;
  showIdle("draw a digit to start");
});

function changed() {
  dirty = true;
  if (!inFlight) sendCanvas();
}

function sendCanvas() {
  if (!dirty || !hasInk) return;
  dirty = false;
  inFlight = true;
  pad.toBlob((blob) => {
    predict(blob, "canvas.png", true).finally(() => {
      inFlight = false;
      if (dirty) setTimeout(sendCanvas, 60); // drawing went on meanwhile: read the newer picture
    });
  }, "image/png");
}

async function predict(blob, name, onCanvas = false) {
  const asked = generation;
  const form = new FormData();
  form.append("file", blob, name);
  let body;
  try {
    const response = await fetch("/predict?input=true", { method: "POST", body: form });
    body = await response.json();
  } catch (err) {
    showError("the server did not answer: is mnistctl serve still running?");
    return;
  }
  if (asked !== generation) return;
  if (body.error) {
    showError(body.error);
  } else {
    show(body, onCanvas);
  }
}

function showIdle(text) {
  $("digit").textContent = "–";
  $("confidence").textContent = text;
  $("unsure").hidden = true;
  $("error").hidden = true;
  drawSeen(null);
  bars({});
  digitList([]);
  drawBoxes([]);
}

function showError(message) {
  showIdle("no prediction");
  $("error").textContent = message;
  $("error").hidden = false;
}

function show(result, onCanvas) {
  $("error").hidden = true;
  const several = result.digits.length > 1;
  $("digit").textContent = result.number;
  if (several) {
    const least = Math.min(...result.digits.map((d) => d.confidence));
    $("confidence").textContent = `${result.digits.length} digits · the least sure ${(100 * least).toFixed(1)}%`;
  } else {
    $("confidence").textContent = `${(100 * result.confidence).toFixed(1)}% sure`;
  }
  const unsure = $("unsure");
  unsure.hidden = !result.unsure;
  unsure.textContent = result.unsure ? `unsure: ${result.reasons.join(", ")}` : "";
  drawSeen(result.inputs || null);
  bars(several ? {} : result.probabilities, several ? null : result.prediction);
  $("bars").hidden = several;
  digitList(several ? result.digits : []);
  drawBoxes(onCanvas ? result.digits : []);
}

// the 28x28 input of each digit, side by side, light ink on black
function drawSeen(inputs) {
  const canvas = $("seen");
  const count = inputs ? inputs.length : 1;
  canvas.width = 28 * count;
  canvas.style.width = `${84 * count}px`;
  const seen = canvas.getContext("2d");
  for (let k = 0; k < count; k++) {
    const image = seen.createImageData(28, 28);
    for (let i = 0; i < 28 * 28; i++) {
      const v = inputs ? inputs[k][Math.floor(i / 28)][i % 28] : 0;
      image.data.set([v, v, v, 255], 4 * i);
    }
    seen.putImageData(image, 28 * k, 0);
  }
}

// each digit of a number with its confidence (unsure ones marked)
function digitList(digits) {
  const list = $("digits");
  list.replaceChildren();
  list.hidden = digits.length === 0;
  for (const d of digits) {
    const item = document.createElement("li");
    item.className = d.unsure ? "unsure" : "";
    const label = document.createElement("b");
    label.textContent = d.prediction;
    item.append(label, `${(100 * d.confidence).toFixed(1)}%${d.unsure ? " ?" : ""}`);
    list.append(item);
  }
}

// a box around each digit found on the drawing, its reading above it
function drawBoxes(digits) {
  boxes.clearRect(0, 0, pad.width, pad.height);
  boxes.lineWidth = 3;
  boxes.font = "bold 22px system-ui, sans-serif";
  for (const d of digits) {
    if (!d.box) continue;
    const [x0, y0, x1, y1] = d.box;
    const colour = d.unsure ? "#c98a00" : "#2f6fed";
    boxes.strokeStyle = colour;
    boxes.fillStyle = colour;
    boxes.strokeRect(x0 - 4, y0 - 4, x1 - x0 + 8, y1 - y0 + 8);
    boxes.fillText(d.prediction, x0 - 2, Math.max(20, y0 - 8));
  }
}

function bars(probabilities, top) {
  const list = $("bars");
  list.replaceChildren();
  for (const c of classes) {
    const p = probabilities[c] || 0;
    const item = document.createElement("li");
    item.className = c === top ? "top" : "";
    item.dataset.class = c;
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = c;
    label.title = c;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(100 * p).toFixed(1)}%`;
    item.append(label, track, pct);
    list.append(item);
  }
}

// a photo: chosen with the file picker or dropped on the box
const drop = $("drop");
function upload(file) {
  if (!file) return;
  generation++;
  blank(); // from now on the answer is about the photo
  dirty = false;
  const preview = $("preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  predict(file, file.name);
}
$("file").addEventListener("change", (event) => upload(event.target.files[0]));
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  upload(event.dataTransfer.files[0]);
});

async function start() {
  $("origin").textContent = window.location.origin;
  blank();
  try {
    const info = await (await fetch("/model")).json();
    classes = info.classes;
    const accuracy = info.test_accuracy == null ? "" : ` · ${(100 * info.test_accuracy).toFixed(2)}% test accuracy`;
    $("model").textContent = `${info.source} · ${info.dataset}${accuracy} · mnistctl ${info.version}`;
  } catch (err) {
    $("model").textContent = "the model could not be read from the server";
  }
  showIdle("draw a digit to start");
  document.body.dataset.ready = "true";
}
start();
