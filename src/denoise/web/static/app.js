// The page of `denoise serve`: upload, choose, run, watch, compare, download.
// It talks to the JSON API of the same server only (see denoise/web/app.py).
import { Viewer } from "./viewer.js";

const $ = (id) => document.getElementById(id);
const newSlot = () => ({ job: null, state: "none", result: null, url: null, label: "" });
const state = {
  catalog: null, limits: null, input: null, inputUrl: null, reference: null,
  slots: { a: newSlot(), b: newSlot() }, timer: null,
};
const viewer = new Viewer($("viewer"));

// ------------------------------------------------------------------ helpers
async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new Error("the server cannot be reached: is 'denoise serve' still running?");
  }
  if (!response.ok) {
    let text = `the server answered ${response.status}`;
    try {
      const body = await response.json();
      if (body.error) text = body.error;
    } catch (e) { /* not JSON */ }
    const error = new Error(text);
    error.status = response.status;
    throw error;
  }
  return response;
}

function message(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
  clearTimeout(message.timer);
  if (text) message.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 12000 : 5000);
}

const mb = (bytes) => `${(bytes / 1048576).toFixed(1)} MB`;
const fmt = (v, digits, unit = "") => (v === null || v === undefined ? "–" : `${v.toFixed(digits)}${unit}`);

function describe(record) {
  const color = record.channels === 1 ? "gray" : "RGB";
  return `${record.name}: ${record.width}×${record.height}, ${record.format}, ${record.bit_depth}-bit ` +
    `${color}${record.alpha ? " + alpha" : ""}, ${mb(record.size_bytes)}`;
}

async function blobUrl(path) {
  const response = await api(path);
  return URL.createObjectURL(await response.blob());
}

// ------------------------------------------------------------------ models
function modelsFor(task) {
  const channels = state.input ? state.input.channels : null;
  return state.catalog.models.filter((m) => m.task === task &&
    (channels === null || m.channels === null || m.channels === channels));
}

function fillModels() {
  const task = $("task").value;
  const models = modelsFor(task);
  for (const id of ["model-a", "model-b"]) {
    const select = $(id);
    const keep = select.value;
    select.replaceChildren();
    if (id === "model-b") select.append(new Option("— none —", ""));
    for (const m of models) {
      const option = new Option(m.available ? m.name : `${m.name} (${m.status})`, m.name);
      option.disabled = !m.available;
      select.append(option);
    }
    const usable = models.filter((m) => m.available).map((m) => m.name);
    if (usable.includes(keep) || (id === "model-b" && keep === "")) select.value = keep;
    else if (id === "model-a") {
      const gray = state.input && state.input.channels === 1;
      const preferred = state.catalog.defaults[gray ? "gray" : "color"];
      select.value = usable.includes(preferred) ? preferred : (usable[0] || "");
    } else select.value = "";
  }
  showModels();
}

function model(name) {
  return state.catalog.models.find((m) => m.name === name) || null;
}

function cardText(m) {
  if (!m) return "";
  const parts = [m.description.replace(/\.?$/, ".")];
  if (m.card) parts.push(`Model card: ${m.card.replace(/\.?$/, ".")}`);
  const per = m.seconds_per_megapixel;
  if (per === null) parts.push("Speed here: not measured yet (shown after its first run).");
  else {
    const mp = state.input ? (state.input.width * state.input.height) / 1e6 : null;
    const guess = mp ? ` (about ${(per * mp * ($("ensemble").checked ? 8 : 1)).toFixed(1)} s for this image)` : "";
    parts.push(`Speed here: ${per.toFixed(2)} s per megapixel${guess}.`);
  }
  return parts.join(" ");
}

function showModels() {
  const chosen = [model($("model-a").value), model($("model-b").value)].filter(Boolean);
  $("card-a").textContent = cardText(model($("model-a").value));
  $("card-b").textContent = cardText(model($("model-b").value));
  const usesSigma = chosen.some((m) => m.uses_sigma);
  $("noise").hidden = !usesSigma;
  $("blind").hidden = usesSigma || chosen.length === 0;
  $("strength-row").hidden = !chosen.some((m) => m.noise_map);
  $("sigma").disabled = document.querySelector("input[name=sigma-mode]:checked").value !== "manual";
  $("run").disabled = !state.input || !$("model-a").value;
}

async function loadCatalog() {
  const catalog = await (await api("/api/models")).json();
  state.catalog = catalog;
  state.limits = catalog.limits;
  $("limits").textContent = catalog.limits.text;
  $("task").replaceChildren(...catalog.tasks.map((t) => new Option(t.label, t.id)));
  fillModels();
}

// ------------------------------------------------------------------ uploads
async function upload(file, kind) {
  message("");
  if (!file) return;
  const info = $(kind === "input" ? "input-info" : "reference-info");
  if (state.limits && file.size > state.limits.max_upload_bytes) {
    message(`${file.name} is ${mb(file.size)}; this server takes ${state.limits.text}`);
    return;
  }
  info.textContent = `uploading ${file.name} (${mb(file.size)})…`;
  try {
    const response = await api(`/api/uploads?name=${encodeURIComponent(file.name)}`, {
      method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" },
    });
    const record = await response.json();
    info.textContent = describe(record);
    if (kind === "reference") {
      state.reference = record;
      checkReference();
      return;
    }
    if (active().length) await cancel(); // the jobs of the previous image are of no use now
    state.input = record;
    state.inputUrl = await blobUrl(record.preview);
    for (const key of ["a", "b"]) resetSlot(key);
    const est = record.sigma_estimate;
    $("sigma-estimate").textContent = est === null ? "image too small to estimate" : est.toFixed(1);
    $("input-sigma").textContent = est === null ? "–" : `${est.toFixed(1)} est.`;
    if (est !== null && document.querySelector("input[name=sigma-mode]:checked").value === "estimated") {
      $("sigma").value = String(Math.max(1, Math.round(est)));
      $("sigma-value").textContent = $("sigma").value;
    }
    fillModels();
    checkReference();
    await refreshViewer();
    document.body.dataset.input = "ready";
  } catch (e) {
    info.textContent = "";
    message(`Upload refused: ${e.message}`);
  }
}

function checkReference() {
  const ref = state.reference;
  const input = state.input;
  if (ref && input && (ref.width !== input.width || ref.height !== input.height || ref.channels !== input.channels)) {
    message(`The clean reference (${ref.width}×${ref.height}) does not match the input (${input.width}×${input.height}); ` +
      "metrics need the same size and channels", "warning");
  }
}

function resetSlot(key) {
  const slot = state.slots[key];
  if (slot.url) URL.revokeObjectURL(slot.url);
  state.slots[key] = newSlot();
  const row = $(`row-${key}`);
  row.dataset.state = "none";
  for (const cell of row.querySelectorAll("td:not(:last-child)")) cell.textContent = "–";
  row.querySelector(".model").textContent = "";
  $(`download-${key}`).disabled = true;
  $(`download-${key}`).textContent = "Download";
  $("input-psnr").textContent = "–";
  $("input-ssim").textContent = "–";
}

// ------------------------------------------------------------------ jobs
function jobRequest(name) {
  const manual = document.querySelector("input[name=sigma-mode]:checked").value === "manual";
  const m = model(name);
  return {
    upload: state.input.id, model: name, ensemble: $("ensemble").checked,
    sigma: manual && m.uses_sigma ? Number($("sigma").value) : null,
    strength: m.noise_map ? Number($("strength").value) : null,
    reference: state.reference ? state.reference.id : null,
  };
}

async function run() {
  message("");
  if (active().length) await cancel(); // a new run replaces the one still going
  const plan = [["a", $("model-a").value], ["b", $("model-b").value]].filter(([, name]) => name);
  for (const [key, name] of plan) {
    resetSlot(key);
    const slot = state.slots[key];
    try {
      const response = await api("/api/jobs", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(jobRequest(name)),
      });
      slot.job = await response.json();
      slot.state = slot.job.state;
      slot.label = `${key.toUpperCase()}: ${slot.job.model}`;
      $(`row-${key}`).dataset.state = slot.state;
      $(`row-${key}`).querySelector(".model").textContent = slot.job.model;
    } catch (e) {
      message(`Model ${key.toUpperCase()} (${name}) was refused: ${e.message}`);
    }
  }
  $("cancel").disabled = !active().length;
  if (active().length && !state.timer) state.timer = setInterval(poll, 300);
}

const active = () => Object.entries(state.slots).filter(([, s]) =>
  s.job && ["queued", "running", "cancelling"].includes(s.state));

async function poll() {
  for (const [key, slot] of active()) {
    try {
      slot.job = await (await api(`/api/jobs/${slot.job.id}`)).json();
    } catch (e) {
      slot.state = "failed";
      message(`Job ${key.toUpperCase()}: ${e.message}`);
      continue;
    }
    slot.state = slot.job.state;
    $(`row-${key}`).dataset.state = slot.state;
    if (slot.state === "done") await finished(key, slot);
    else if (slot.state === "failed") message(`Model ${key.toUpperCase()} failed: ${slot.job.error}`);
  }
  showProgress();
  if (!active().length) {
    clearInterval(state.timer);
    state.timer = null;
    $("cancel").disabled = true;
  }
}

function showProgress() {
  const running = active();
  const bar = $("progress");
  const text = $("progress-text");
  if (!running.length) {
    const done = Object.entries(state.slots).filter(([, s]) => s.job);
    text.textContent = done.map(([k, s]) => `${k.toUpperCase()}: ${s.state}`).join(", ") || "no job yet";
    bar.max = 1;
    bar.value = done.length && done.every(([, s]) => s.state === "done") ? 1 : 0;
    return;
  }
  const [key, slot] = running.find(([, s]) => s.state !== "queued") || running[0];
  const job = slot.job;
  const name = `${key.toUpperCase()} (${job.model})`;
  if (slot.state === "queued") {
    const ahead = job.ahead;
    text.textContent = `${name}: waiting in the queue, place ${job.position} (${ahead} job${ahead === 1 ? "" : "s"} ahead)`;
    bar.removeAttribute("value");
  } else if (slot.state === "cancelling") {
    text.textContent = `${name}: cancelling after the current tile…`;
  } else {
    bar.max = Math.max(1, job.total);
    bar.value = job.done;
    text.textContent = job.total ? `${name}: running, tiles ${job.done} / ${job.total}` : `${name}: starting…`;
  }
}

async function finished(key, slot) {
  const r = slot.job.result;
  slot.result = r;
  slot.url = await blobUrl(r.preview);
  const row = $(`row-${key}`);
  row.querySelector(".model").textContent = r.model;
  row.querySelector(".sigma").textContent = r.sigma === null ? "blind" : `${r.sigma.toFixed(1)}${r.sigma_estimated ? " est." : ""}`;
  row.querySelector(".time").textContent = `${r.seconds.toFixed(1)} s`;
  row.querySelector(".psnr").textContent = fmt(r.psnr, 2, " dB");
  row.querySelector(".ssim").textContent = fmt(r.ssim, 4);
  if (r.input_psnr !== null) {
    $("input-psnr").textContent = fmt(r.input_psnr, 2, " dB");
    $("input-ssim").textContent = fmt(r.input_ssim, 4);
  }
  $(`download-${key}`).disabled = false;
  if (key === "a") $("right").value = "a";
  if (key === "b" && state.slots.a.state === "done") { $("left").value = "a"; $("right").value = "b"; }
  await loadCatalog().catch(() => {}); // the speed just measured
  await refreshViewer();
  row.dataset.state = "done";
}

async function cancel() {
  for (const [key, slot] of active()) {
    try {
      slot.job = await (await api(`/api/jobs/${slot.job.id}/cancel`, { method: "POST" })).json();
      slot.state = slot.job.state;
      $(`row-${key}`).dataset.state = slot.state;
    } catch (e) {
      message(`Cancel ${key.toUpperCase()}: ${e.message}`);
    }
  }
  showProgress();
}

async function download(key) {
  const slot = state.slots[key];
  if (!slot.result) return;
  const button = $(`download-${key}`);
  try {
    const response = await api(slot.result.download);
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = slot.result.filename;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    button.textContent = "Downloaded";
    message(`${slot.result.filename} downloaded; it is now deleted from the server`, "info");
  } catch (e) {
    message(`Download ${key.toUpperCase()}: ${e.message}`);
  }
}

// ------------------------------------------------------------------ viewer
function imageFor(which) {
  if (which === "input") return [state.inputUrl, state.input ? `input: ${state.input.name}` : ""];
  const slot = state.slots[which];
  return [slot.url, slot.url ? slot.label || which.toUpperCase() : ""];
}

async function refreshViewer() {
  const [leftUrl, leftLabel] = imageFor($("left").value);
  const [rightUrl, rightLabel] = imageFor($("right").value);
  await viewer.show("left", leftUrl, leftLabel);
  await viewer.show("right", rightUrl || leftUrl, rightUrl ? rightLabel : leftLabel);
}

// ------------------------------------------------------------------ wiring
function wire() {
  $("file").addEventListener("change", (e) => upload(e.target.files[0], "input"));
  $("reference").addEventListener("change", (e) => upload(e.target.files[0], "reference"));
  for (const target of [$("drop"), $("viewer")]) {
    target.addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
    target.addEventListener("dragleave", () => $("drop").classList.remove("over"));
    target.addEventListener("drop", (e) => {
      e.preventDefault();
      $("drop").classList.remove("over");
      upload(e.dataTransfer.files[0], "input");
    });
  }
  $("task").addEventListener("change", fillModels);
  for (const id of ["model-a", "model-b", "ensemble"]) $(id).addEventListener("change", showModels);
  for (const radio of document.querySelectorAll("input[name=sigma-mode]")) radio.addEventListener("change", showModels);
  $("sigma").addEventListener("input", () => { $("sigma-value").textContent = $("sigma").value; });
  $("strength").addEventListener("input", () => { $("strength-value").textContent = Number($("strength").value).toFixed(2); });
  $("run").addEventListener("click", run);
  $("cancel").addEventListener("click", cancel);
  $("download-a").addEventListener("click", () => download("a"));
  $("download-b").addEventListener("click", () => download("b"));
  for (const id of ["left", "right"]) $(id).addEventListener("change", refreshViewer);
  $("zoom").addEventListener("change", () => viewer.setZoom($("zoom").value === "fit" ? "fit" : Number($("zoom").value)));
  viewer.onZoom = (zoom) => { $("zoom").value = String(zoom); };
}

wire();
loadCatalog().then(() => { document.body.dataset.ready = "yes"; })
  .catch((e) => message(`Cannot load the models: ${e.message}`));
