// al4dstem labeller page. All state lives in the server (the label file); this page only shows
// it and posts answers, so a reload resumes and closing the page loses nothing.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const KEYS = { h: "h", v: "v", n: "n", s: "s" };
const CLASS_OF_KEY = { n: 0, v: 1, h: 2 };
const GALLERY_SIZE = 6;
const THUMB = 64;
const DEFAULTS = {
  // tuned on simulated scans at the default ghost strength (0.02): noise goes dark, ghosts stay
  enhanced: { log: true, gamma: 0.5, low: 85, high: 99 },
  raw: { log: true, gamma: 1.0, low: 1, high: 99.9 },
};

// Exposed for tests and for the curious: key press -> next pattern drawn, milliseconds.
window.al4dstemLatencies = [];
window.al4dstemTimings = []; // the same, split: {total, saved (server reply), drawn (pixels ready)}

const $ = (id) => document.getElementById(id);
let info = null;            // /api/info: classes, colours, shapes
let state = null;           // the session's last state
let survey = null;          // maps and the ghost overlay
let prediction = null;      // the model's probabilities over the scan
let shown = null;           // [x, y] of the pattern on screen
let browsing = false;       // true: the person picked `shown` on the map or in the gallery
let busy = false;           // an answer is on its way
let pressedAt = null;       // performance.now() of the key press waiting for its next pattern
let savedAt = null;         // ... and of its reply (the row is on disk)
let zoomCentre = null;      // [row, col] the zoom window is centred on
const patterns = new Map(); // "x,y,kind,size" -> Promise<{rows, cols, data}>
const loaded = new Map();   // the same key -> the pattern, once it has arrived (drawn without waiting)
let drawSerial = 0;

// ------------------------------------------------------------------ talking to the server

async function api(path, body) {
  const options = { headers: { "X-Al4dstem-Token": TOKEN }, cache: "no-store" };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let payload = null;
  try { payload = await response.json(); } catch (e) { payload = { error: `HTTP ${response.status}` }; }
  return { ok: response.ok, status: response.status, body: payload };
}

function fetchPattern(x, y, kind, size) {
  const key = `${x},${y},${kind},${size || 0}`;
  if (!patterns.has(key)) {
    const url = `/api/pattern?x=${x}&y=${y}&kind=${kind}` + (size ? `&size=${size}` : "");
    const promise = fetch(url, { headers: { "X-Al4dstem-Token": TOKEN } }).then(async (r) => {
      if (!r.ok) throw new Error(`pattern x=${x} y=${y}: HTTP ${r.status}`);
      const [rows, cols] = r.headers.get("X-Shape").split(",").map(Number);
      const image = { rows, cols, data: new Float32Array(await r.arrayBuffer()) };
      loaded.set(key, image);
      return image;
    });
    promise.catch(() => patterns.delete(key));
    patterns.set(key, promise);
    if (patterns.size > 400) {
      const oldest = patterns.keys().next().value;
      patterns.delete(oldest);
      loaded.delete(oldest);
    }
  }
  return patterns.get(key);
}

function say(text, error) {
  const el = $("status");
  el.textContent = text || "";
  el.classList.toggle("error", !!error);
}

// ------------------------------------------------------------------ contrast

function contrast() {
  return {
    kind: $("kind").value, log: $("log").checked, gamma: +$("gamma").value,
    low: +$("low").value, high: +$("high").value, lut: $("lut").value,
  };
}

function resetContrast() {
  const d = DEFAULTS[$("kind").value];
  $("log").checked = d.log; $("gamma").value = d.gamma; $("low").value = d.low; $("high").value = d.high;
  showOutputs();
}

function showOutputs() {
  $("gamma-out").textContent = (+$("gamma").value).toFixed(2);
  $("low-out").textContent = $("low").value;
  $("high-out").textContent = $("high").value;
}

function percentiles(values, ps) {
  // a sorted sample (at most 65536 values) is plenty for display levels
  const step = Math.max(1, Math.floor(values.length / 65536));
  const sample = new Float32Array(Math.ceil(values.length / step));
  for (let i = 0, j = 0; i < values.length; i += step, j++) sample[j] = values[i];
  sample.sort();
  return ps.map((p) => sample[Math.min(sample.length - 1, Math.max(0, Math.round((p / 100) * (sample.length - 1))))]);
}

let LUTS = null;
function luts() {
  if (LUTS) return LUTS;
  const grey = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) grey[3 * i] = grey[3 * i + 1] = grey[3 * i + 2] = i;
  const inferno = new Uint8Array(256 * 3);
  const cmap = (info && info.colormap) || [];
  for (let i = 0; i < 256; i++) for (let k = 0; k < 3; k++) inferno[3 * i + k] = cmap.length ? cmap[i][k] : i;
  LUTS = { grey, inferno };
  return LUTS;
}

// Paint `image` rows r0..r1, cols c0..c1 into a canvas with levels measured in that window
// (leaving out the central beam), so zooming in keeps faint disks visible. Kept lean: it runs
// between a key press and the next pattern on screen.
function paint(canvas, image, view, settings, beam) {
  const [r0, r1, c0, c1] = view;
  const w = c1 - c0, h = r1 - r0;
  const source = settings.log ? logged(image) : image.data;
  const values = new Float32Array(w * h);
  const measured = new Float32Array(w * h);
  let m = 0;
  const br = beam ? beam.row : -1e9, bc = beam ? beam.col : -1e9, reach2 = beam ? (2 * beam.radius) ** 2 : 0;
  for (let r = r0, i = 0; r < r1; r++) {
    const dr2 = (r - br) * (r - br);
    for (let c = c0; c < c1; c++, i++) {
      const v = source[r * image.cols + c];
      values[i] = v;
      if (dr2 + (c - bc) * (c - bc) > reach2) measured[m++] = v;
    }
  }
  const [lo, hiRaw] = percentiles(m > 16 ? measured.subarray(0, m) : values, [settings.low, settings.high]);
  const hi = hiRaw > lo ? hiRaw : lo + 1e-6;
  const lut = luts()[settings.lut] || luts().grey;
  const steps = 4096, ramp = new Uint16Array(steps); // value step -> colour-map index, gamma applied once
  for (let k = 0; k < steps; k++) ramp[k] = 3 * Math.round(Math.pow(k / (steps - 1), settings.gamma) * 255);
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  const out = ctx.createImageData(w, h);
  const pixels = out.data, scale = (steps - 1) / (hi - lo);
  for (let i = 0; i < values.length; i++) {
    let t = (values[i] - lo) * scale;
    t = t <= 0 ? 0 : t >= steps - 1 ? steps - 1 : t | 0;
    const k = ramp[t];
    pixels[4 * i] = lut[k]; pixels[4 * i + 1] = lut[k + 1]; pixels[4 * i + 2] = lut[k + 2]; pixels[4 * i + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
}

function logged(image) {
  // log1p of the non-negative part, once per pattern
  if (!image.logged) {
    const out = new Float32Array(image.data.length);
    for (let i = 0; i < out.length; i++) {
      const v = image.data[i];
      out[i] = v > 0 && Number.isFinite(v) ? Math.log1p(v) : 0;
    }
    image.logged = out;
  }
  return image.logged;
}

function zoomWindow(rows, cols) {
  const zoom = +$("zoom").value;
  if (zoom <= 1) return [0, rows, 0, cols];
  const h = Math.max(8, Math.round(rows / zoom)), w = Math.max(8, Math.round(cols / zoom));
  const centre = zoomCentre || beamCentre() || [rows / 2, cols / 2];
  const r0 = Math.min(Math.max(0, Math.round(centre[0] - h / 2)), rows - h);
  const c0 = Math.min(Math.max(0, Math.round(centre[1] - w / 2)), cols - w);
  return [r0, r0 + h, c0, c0 + w];
}

function beam() {
  return survey && survey.overlay && survey.overlay.beam ? survey.overlay.beam : null;
}

function beamCentre() {
  const b = beam();
  return b ? [b.row, b.col] : null;
}

// ------------------------------------------------------------------ the pattern

async function show(position, why) {
  if (!position) return;
  const [x, y] = position;
  shown = [x, y];
  const serial = ++drawSerial;
  $("where").textContent = `x=${x} y=${y}` + (browsing ? " (picked)" : "");
  document.body.dataset.position = `${x},${y}`;
  const settings = contrast();
  let image = loaded.get(`${x},${y},${settings.kind},0`); // prefetched: draw at once
  if (!image) {
    try {
      image = await fetchPattern(x, y, settings.kind);
    } catch (e) {
      say(String(e.message || e), true);
      return;
    }
    if (serial !== drawSerial) return; // a newer pattern was asked for meanwhile
  }
  const view = zoomWindow(image.rows, image.cols);
  paint($("pattern"), image, view, settings, beam());
  drawOverlay(view);
  const [r0, r1, c0, c1] = view;
  $("pattern-note").textContent = `${image.rows} × ${image.cols}` +
    (r1 - r0 < image.rows ? `, rows ${r0}–${r1 - 1}, cols ${c0}–${c1 - 1}` : "") + ` · ${settings.kind}`;
  document.body.dataset.drawn = String(+(document.body.dataset.drawn || 0) + 1);
  // A redraw of the awaited pattern (the survey or a retrained model arriving meanwhile) also
  // ends the wait: its newer serial made the "next" call above give up before drawing.
  if (pressedAt !== null && why !== "browse") {
    const t0 = pressedAt, saved = savedAt, drawn = performance.now();
    pressedAt = null;
    // the frame after this one is the first that can show the new pixels
    requestAnimationFrame(() => {
      const total = performance.now() - t0;
      window.al4dstemLatencies.push(total);
      window.al4dstemTimings.push({ total, saved: saved === null ? null : saved - t0, drawn: drawn - t0 });
    });
  }
  drawMap();
  showGuess();
}

function redraw() {
  if (shown) show(shown, "redraw");
  drawGallery();
}

function drawOverlay(view) {
  const svg = $("overlay");
  const [r0, r1, c0, c1] = view;
  svg.setAttribute("viewBox", `${c0} ${r0} ${c1 - c0} ${r1 - r0}`);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const overlay = survey && survey.overlay;
  if (!$("show-overlay").checked || !overlay || !overlay.ghosts || !info) return;
  const radius = Math.max(2, 2 * overlay.disk_radius);
  for (const [name, points] of Object.entries(overlay.ghosts)) {
    const colour = info.colors[info.classes.indexOf(name)];
    for (const [row, col] of points) {
      if (row < r0 - radius || row > r1 + radius || col < c0 - radius || col > c1 + radius) continue;
      const circle = document.createElementNS("http://www.w3.org/2000/svg", "circle");
      circle.setAttribute("cx", col + 0.5);
      circle.setAttribute("cy", row + 0.5);
      circle.setAttribute("r", radius);
      circle.setAttribute("stroke", colour);
      svg.appendChild(circle);
    }
  }
}

function prefetch() {
  if (!state) return;
  const kind = $("kind").value;
  for (const [x, y] of (state.queue || []).slice(0, 3)) {
    fetchPattern(x, y, kind).then((image) => { if ($("log").checked) logged(image); }).catch(() => {});
  }
}

// ------------------------------------------------------------------ answers

async function answer(key) {
  if (!state || state.stopped || !shown) return;
  if (busy) { say("saving the last answer…"); return; }
  busy = true;
  savedAt = null;
  pressedAt = performance.now(); // cleared when the next pattern is drawn (see show)
  const was = shown;
  let reply;
  try {
    reply = key === "u" ? await api("/api/undo", {}) : await api("/api/answer", { x: was[0], y: was[1], label: key });
  } catch (e) {
    reply = { ok: false, status: 0, body: { error: `not saved: the labeller is not reachable (${e.message || e})` } };
  }
  busy = false;
  savedAt = performance.now();
  if (!reply.ok) {
    pressedAt = null;
    say(reply.body.error || `HTTP ${reply.status}`, true);
    return;
  }
  browsing = false;
  if (key === "u") say(reply.body.message || "took back the last answer");
  else say(`saved ${labelName(key)} at x=${was[0]} y=${was[1]}`);
  applyState(reply.body);
}

function labelName(key) {
  return key === "s" ? "skip" : info.classes[CLASS_OF_KEY[key]];
}

async function quit() {
  if (!state || state.stopped) return;
  const reply = await api("/api/quit", {});
  if (reply.ok) applyState(reply.body);
  else say(reply.body.error || `HTTP ${reply.status}`, true);
}

// ------------------------------------------------------------------ state

function applyState(s) {
  if (state && s.version < state.version && !s.stopped) return; // a late reply: we know newer
  const before = state;
  state = s;
  document.body.dataset.version = String(s.version);
  document.body.dataset.done = String(s.done);
  const p = $("progress");
  p.setAttribute("aria-valuemax", String(s.budget));
  p.setAttribute("aria-valuenow", String(s.done));
  $("progress-fill").style.width = `${Math.min(100, (100 * s.done) / s.budget)}%`;
  $("progress-text").textContent = `${s.done} of ${s.budget} labelled` + (s.skips ? ` · ${s.skips} skipped` : "");
  if (s.stopped) {
    finished(s);
    return;
  }
  if (s.message && (!before || before.message !== s.message)) say(s.message);
  const target = browsing ? shown : s.current;
  if (target && (!shown || target[0] !== shown[0] || target[1] !== shown[1] || !before)) {
    show(target, "next");
  } else if (!target) {
    $("where").textContent = s.retraining ? "training the model…" : "choosing the next patterns…";
  } else {
    drawMap();
  }
  prefetch();
  drawGallery();
  if (s.model && $("map-kind").value !== "bright-field" && $("map-kind").value !== "ghosts") loadPrediction();
}

function finished(s) {
  document.body.dataset.stopped = s.stopped;
  const reasons = { budget: "Budget reached", exhausted: "Nothing more to propose", quit: "Labelling stopped" };
  $("finished-title").textContent = reasons[s.stopped] || "Labelling finished";
  $("finished-text").textContent = `${s.done} of ${s.budget} labelled` + (s.skips ? `, ${s.skips} skipped` : "") +
    (s.stopped === "quit" ? ". Run the same command again to go on." : ".");
  $("finished").hidden = false;
}

async function follow() {
  // Long-poll the state: rounds, retraining and other views change it without us asking.
  for (;;) {
    if (state && state.stopped) return;
    try {
      const since = state ? `?since=${state.version}` : "";
      const reply = await api(`/api/state${since}`);
      if (!reply.ok) throw new Error(reply.body.error || `HTTP ${reply.status}`);
      if (!state || reply.body.version !== state.version) applyState(reply.body);
      if ($("status").textContent.startsWith("not connected")) say("");
    } catch (e) {
      if (state && state.stopped) return;
      say(`not connected to the labeller (${e.message || e}); retrying…`, true);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

// ------------------------------------------------------------------ the scan map

function mapImage(kind) {
  const [rows, cols] = info.scan_shape;
  const rgb = new Uint8ClampedArray(rows * cols * 4);
  const put = (i, r, g, b) => { rgb[4 * i] = r; rgb[4 * i + 1] = g; rgb[4 * i + 2] = b; rgb[4 * i + 3] = 255; };
  const maps = (survey && survey.maps) || {};
  const flat = (m) => m.flat().map((v) => (v === null ? NaN : v));
  const levels = (vals) => {
    const finite = Float32Array.from(vals.filter(Number.isFinite));
    return finite.length ? percentiles(finite, [1, 99]) : [0, 1];
  };
  const norm = (v, [lo, hi]) => (Number.isFinite(v) ? Math.min(1, Math.max(0, (v - lo) / (hi - lo || 1))) : 0);
  let note = "";
  if (kind === "ghosts" && maps["dark-field vertical"] && maps["dark-field horizontal"]) {
    const v = flat(maps["dark-field vertical"]), h = flat(maps["dark-field horizontal"]);
    const lv = levels(v), lh = levels(h);
    const cv = hexRgb(info.colors[1]), ch = hexRgb(info.colors[2]);
    for (let i = 0; i < v.length; i++) {
      const a = norm(v[i], lv), b = norm(h[i], lh);
      put(i, Math.min(255, a * cv[0] + b * ch[0]), Math.min(255, a * cv[1] + b * ch[1]), Math.min(255, a * cv[2] + b * ch[2]));
    }
    note = "vertical ghosts in the vertical colour, horizontal in the horizontal";
  } else if ((kind === "prediction" || kind === "uncertainty") && prediction && prediction.probs) {
    const colours = info.colors.map(hexRgb);
    prediction.probs.forEach((p, i) => {
      if (p[0] === null) { put(i, 0, 0, 0); return; }
      if (kind === "prediction") {
        put(i, ...[0, 1, 2].map((k) => p[0] * colours[0][k] + p[1] * colours[1][k] + p[2] * colours[2][k]));
      } else {
        const e = -p.reduce((s, q) => s + (q > 0 ? q * Math.log(q) : 0), 0) / Math.log(3);
        put(i, 255 * e, 255 * e, 255 * e);
      }
    });
    note = (prediction.fresh ? "" : "an older model; ") + (kind === "uncertainty" ? "bright = uncertain" : "class colours");
  } else {
    const bf = maps["bright-field"];
    if (kind === "prediction" || kind === "uncertainty") {
      note = state && state.model ? "predicting…" : "no model yet: showing the bright field";
    } else if (kind === "ghosts") {
      note = survey ? "no ghost dark field (lattice not found): showing the bright field" : "reading the scan…";
    } else if (!survey) {
      note = "reading the scan…";
    }
    if (bf) {
      const v = flat(bf), l = levels(v);
      for (let i = 0; i < v.length; i++) { const g = 40 + 160 * norm(v[i], l); put(i, g, g, g); }
    } else {
      for (let i = 0; i < rows * cols; i++) put(i, 40, 40, 40);
    }
  }
  return { image: new ImageData(rgb, cols, rows), note };
}

function hexRgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

let mapCache = { key: null, bitmap: null, note: "" };
function drawMap() {
  if (!info) return;
  const kind = $("map-kind").value;
  const [rows, cols] = info.scan_shape;
  const key = `${kind},${survey ? 1 : 0},${prediction ? prediction.serial : 0}`;
  if (mapCache.key !== key) {
    const { image, note } = mapImage(kind);
    const off = document.createElement("canvas");
    off.width = cols; off.height = rows;
    off.getContext("2d").putImageData(image, 0, 0);
    mapCache = { key, bitmap: off, note };
  }
  $("map-note").textContent = mapCache.note;
  const canvas = $("map");
  // square cells, as wide as the column allows and at most about a third of the window high
  const room = $("map-box").clientWidth || 400;
  const cell = Math.max(1, Math.min(room / cols, Math.max(60, 0.32 * window.innerHeight) / rows));
  const dpr = window.devicePixelRatio || 1;
  const w = Math.round(cell * cols * dpr), h = Math.round(cell * rows * dpr);
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  canvas.style.width = `${Math.round(cell * cols)}px`;
  canvas.style.height = `${Math.round(cell * rows)}px`;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(mapCache.bitmap, 0, 0, w, h);
  const sx = w / cols, sy = h / rows;
  const mark = Math.max(2, Math.min(sx, sy));
  for (const [x, y, label] of (state && state.labels) || []) {
    const left = x * sx + (sx - mark) / 2, top = y * sy + (sy - mark) / 2;
    ctx.fillStyle = "#000"; // a dark edge keeps every marker visible on any map
    ctx.fillRect(left - dpr, top - dpr, mark + 2 * dpr, mark + 2 * dpr);
    ctx.fillStyle = label === "skip" ? info.skip_color : info.colors[label];
    ctx.fillRect(left, top, mark, mark);
    if (label === "skip") { // a cross, so a skip never reads as a class
      ctx.strokeStyle = "#000";
      ctx.lineWidth = dpr;
      ctx.beginPath();
      ctx.moveTo(left, top); ctx.lineTo(left + mark, top + mark);
      ctx.moveTo(left + mark, top); ctx.lineTo(left, top + mark);
      ctx.stroke();
    }
  }
  for (const [x, y] of (state && state.queue) || []) {
    ctx.strokeStyle = "rgba(255,255,255,0.45)";
    ctx.lineWidth = 1;
    ctx.strokeRect(x * sx + 0.5, y * sy + 0.5, Math.max(1, sx - 1), Math.max(1, sy - 1));
  }
  if (shown) {
    const pad = Math.max(2, mark / 2);
    ctx.strokeStyle = info.current_color;
    ctx.lineWidth = Math.max(1.5, dpr * 1.5);
    ctx.strokeRect(shown[0] * sx - pad, shown[1] * sy - pad, sx + 2 * pad, sy + 2 * pad);
  }
}

function mapClick(event) {
  if (!info) return;
  const canvas = $("map");
  const [rows, cols] = info.scan_shape;
  const rect = canvas.getBoundingClientRect();
  const x = Math.floor(((event.clientX - rect.left) / rect.width) * cols);
  const y = Math.floor(((event.clientY - rect.top) / rect.height) * rows);
  if (x < 0 || y < 0 || x >= cols || y >= rows) return;
  browse([x, y]);
}

function browse(position) {
  browsing = !(state && state.current && state.current[0] === position[0] && state.current[1] === position[1]);
  pressedAt = null;
  show(position, "browse");
}

async function loadSurvey() {
  const reply = await api("/api/survey?wait=1");
  if (reply.ok && reply.body.ready) {
    survey = reply.body;
    document.body.dataset.survey = "ready";
    if (survey.error) say(`scan maps unavailable: ${survey.error}`, true);
    else if (survey.overlay && survey.overlay.note) say(survey.overlay.note);
    if (!zoomCentre) zoomCentre = beamCentre();
    redraw();
    drawMap();
  } else {
    setTimeout(loadSurvey, 1000);
  }
}

let predictionSerial = 0;
let predictionTimer = null;
async function loadPrediction() {
  if (predictionTimer) return;
  const reply = await api("/api/prediction");
  if (!reply.ok) return;
  const found = reply.body;
  if (found.probs) {
    prediction = { ...found, serial: ++predictionSerial };
    drawMap();
  }
  if (found.error) say(found.error, true);
  if (found.model && (!found.fresh || found.running)) {
    predictionTimer = setTimeout(() => { predictionTimer = null; loadPrediction(); }, 1500);
  }
}

// ------------------------------------------------------------------ gallery and guess

let galleryKey = "";
function drawGallery() {
  if (!info || !state) return;
  const settings = contrast();
  const key = JSON.stringify([state.labels.length, state.version, settings]);
  if (key === galleryKey) return;
  galleryKey = key;
  const gallery = $("gallery");
  gallery.replaceChildren();
  info.classes.forEach((name, cls) => {
    const row = document.createElement("div");
    row.className = "gallery-row";
    const recent = state.labels.filter((l) => l[2] === cls).reverse();
    const title = document.createElement("span");
    title.className = "name";
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.style.background = info.colors[cls];
    title.append(chip, `${name} ${recent.length}`);
    row.append(title);
    if (!recent.length) {
      const empty = document.createElement("span");
      empty.className = "empty";
      empty.textContent = "none labelled yet";
      row.append(empty);
    }
    for (const [x, y] of recent.slice(0, GALLERY_SIZE)) {
      const canvas = document.createElement("canvas");
      canvas.title = `x=${x} y=${y}: click to show`;
      canvas.style.borderColor = info.colors[cls];
      canvas.addEventListener("click", () => browse([x, y]));
      row.append(canvas);
      fetchPattern(x, y, settings.kind, THUMB).then((image) => {
        paint(canvas, image, [0, image.rows, 0, image.cols], settings, null);
      }).catch(() => {});
    }
    gallery.append(row);
  });
}

async function showGuess() {
  const box = $("guess");
  if (!state || !state.model || !shown) { box.hidden = true; return; }
  const at = shown;
  const reply = await api(`/api/guess?x=${at[0]}&y=${at[1]}`);
  if (!shown || at[0] !== shown[0] || at[1] !== shown[1]) return;
  if (!reply.ok || !reply.body.probs) {
    box.hidden = false;
    box.textContent = state.retraining ? "model: retraining…" : "model: no guess";
    return;
  }
  box.hidden = false;
  box.replaceChildren("model's guess");
  reply.body.probs.forEach((p, cls) => {
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = `${Math.round(100 * p)}%`;
    fill.style.background = info.colors[cls];
    const text = document.createElement("span");
    text.textContent = `${info.classes[cls]} ${Math.round(100 * p)}%`;
    bar.append(fill, text);
    box.append(bar);
  });
}

// ------------------------------------------------------------------ wiring

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target && event.target.tagName === "SELECT") return;
  const key = event.key.toLowerCase();
  if (key in KEYS || key === "u") {
    event.preventDefault();
    answer(key);
  } else if (key === "q") {
    event.preventDefault();
    quit();
  } else if (key === "z") {
    const z = $("zoom");
    z.selectedIndex = (z.selectedIndex + 1) % z.options.length;
    redraw();
  } else if (key === "g") {
    $("show-overlay").checked = !$("show-overlay").checked;
    redraw();
  } else if (key === "escape") {
    if (state && state.current) { browsing = false; show(state.current, "browse"); }
  }
}

function legend() {
  const box = $("legend");
  box.replaceChildren();
  const item = (colour, text, outline) => {
    const span = document.createElement("span");
    const chip = document.createElement("span");
    chip.className = "chip";
    if (outline) { chip.style.border = `2px solid ${colour}`; } else { chip.style.background = colour; }
    span.append(chip, text);
    box.append(span);
  };
  info.classes.forEach((name, cls) => item(info.colors[cls], name));
  item(info.skip_color, "skipped");
  item(info.current_color, "shown", true);
}

async function boot() {
  resetContrast();
  document.addEventListener("keydown", onKey);
  document.querySelectorAll("button.answer").forEach((b) => {
    b.addEventListener("click", () => answer(b.dataset.key));
  });
  $("quit").addEventListener("click", quit);
  $("map").addEventListener("click", mapClick);
  $("pattern-box").addEventListener("click", (event) => {
    if (!shown || +$("zoom").value <= 1) return;
    const canvas = $("pattern");
    const rect = canvas.getBoundingClientRect();
    const svg = $("overlay").viewBox.baseVal;
    zoomCentre = [svg.y + ((event.clientY - rect.top) / rect.height) * svg.height,
                  svg.x + ((event.clientX - rect.left) / rect.width) * svg.width];
    redraw();
  });
  for (const id of ["log", "gamma", "low", "high", "lut", "zoom", "show-overlay"]) {
    $(id).addEventListener("input", () => { showOutputs(); redraw(); });
  }
  $("kind").addEventListener("change", () => { resetContrast(); redraw(); });
  $("reset-contrast").addEventListener("click", () => { resetContrast(); redraw(); });
  $("map-kind").addEventListener("change", () => {
    if ($("map-kind").value === "prediction" || $("map-kind").value === "uncertainty") loadPrediction();
    drawMap();
  });
  window.addEventListener("resize", drawMap);
  for (;;) {
    try {
      const reply = await api("/api/info");
      if (!reply.ok) throw new Error(reply.body.error || `HTTP ${reply.status}`);
      info = reply.body;
      break;
    } catch (e) {
      say(`cannot reach the labeller (${e.message || e}); retrying…`, true);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  info.classes.forEach((name, cls) => {
    const button = document.querySelector(`button.answer[data-key="${name[0]}"]`);
    if (button) button.style.borderLeftColor = info.colors[cls];
  });
  legend();
  applyState(info.state);
  loadSurvey();
  follow();
}

boot();
