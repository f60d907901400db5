// boxal's annotation page: leases queries, shows each on a canvas, sends the answer, keeps the next one ready.
// It uses only the public REST API (v1) with the token it was given: a worked example for other frontends.

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const HANDLE = 7; // handle half-size in canvas pixels
const BUFFER = 3; // queries kept leased ahead, so the next one is on screen at once

const state = {
  token: sessionStorage.getItem("boxal.token") || "",
  annotator: sessionStorage.getItem("boxal.annotator") || "",
  project: null,
  queue: [], // leased queries waiting, each with its image preloaded
  current: null, // the query on screen
  image: null, // HTMLImageElement of the current query
  box: null, // box query: [x1, y1, x2, y2] in image pixels, as edited
  label: null,
  boxes: [], // image query: [{bbox, label}]; review query: the model's boxes carry their box_id
  selected: -1,
  view: { x: 0, y: 0, scale: 1 }, // canvas = (image - [x, y]) * scale
  drag: null,
  shownAt: 0,
  busy: false,
  leasing: null,
  history: [], // the last answers given on this page, newest last: what undo brings back
  correcting: null, // the query being answered again (its new answer is sent as a correction)
  points: [], // the learning curve's points
  polling: null, // while a round trains: the timer that follows it
};
window.boxal = state; // read by the browser tests to know where things are drawn

// --- the API ----------------------------------------------------------------------------------------------

async function api(method, path, body, { keepalive = false } = {}) {
  const response = await fetch(path, {
    method,
    keepalive,
    headers: { Authorization: `Bearer ${state.token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch { data = null; }
  }
  return { status: response.status, ok: response.ok, data };
}

function say(text, bad = false) {
  const message = $("message");
  message.textContent = text;
  message.className = bad ? "bad" : "";
}

// --- signing in and choosing a project ---------------------------------------------------------------------

async function signIn(event) {
  event?.preventDefault();
  const token = event ? $("token").value.trim() : state.token;
  if (!token) return;
  state.token = token;
  state.annotator = (event ? $("annotator").value.trim() : state.annotator) || "ui";
  const projects = await api("GET", "/v1/projects?limit=1000");
  if (!projects.ok) {
    $("signin-error").textContent = projects.data?.detail || `sign-in failed (${projects.status})`;
    sessionStorage.removeItem("boxal.token");
    return;
  }
  sessionStorage.setItem("boxal.token", token);
  sessionStorage.setItem("boxal.annotator", state.annotator);
  $("signin").hidden = true;
  $("signout").hidden = false;
  $("project-picker").hidden = false;
  const picker = $("project");
  picker.innerHTML = "";
  for (const project of projects.data.items) {
    picker.append(new Option(`${project.name} (#${project.id})`, project.id));
  }
  if (!projects.data.items.length) {
    $("signin").hidden = false;
    $("signin-error").textContent = "this token sees no project";
    return;
  }
  const remembered = sessionStorage.getItem("boxal.project");
  if (remembered && [...picker.options].some((o) => o.value === remembered)) picker.value = remembered;
  await openProject(Number(picker.value));
}

async function openProject(id) {
  await releaseAll();
  sessionStorage.setItem("boxal.project", String(id));
  const response = await api("GET", `/v1/projects/${id}`);
  if (!response.ok) return say(response.data?.detail || "cannot open the project", true);
  state.project = response.data;
  const picker = $("class-picker");
  picker.innerHTML = "";
  state.project.classes.forEach((name, i) => picker.append(new Option(i < 9 ? `${i + 1} ${name}` : name, name)));
  $("class-options").replaceChildren(...state.project.classes.map((name) => new Option(name, name)));
  state.history = [];
  state.correcting = null;
  $("undo").disabled = true;
  $("work").hidden = false;
  await refreshProgress();
  await next();
}

async function refreshProgress() {
  const project = await api("GET", `/v1/projects/${state.project.id}`);
  if (project.ok) {
    state.project = project.data;
    const boxes = project.data.settings.round_budget === "boxes";
    const used = boxes ? project.data.boxes_this_round : project.data.answers_this_round;
    const needed = Math.max(0, project.data.settings.round_size - used);
    $("progress").textContent = `round ${project.data.round} · ${needed} ${boxes ? "boxes" : "answers"} still needed this round`;
    $("notice").textContent = project.data.notice || "";
    $("notice").hidden = !project.data.notice;
  }
  const curve = await api("GET", `/v1/projects/${state.project.id}/curve?limit=1000`);
  if (curve.ok) {
    state.points = curve.data.points;
    drawChart();
    showClasses(curve.data.points);
    const last = curve.data.points[curve.data.points.length - 1];
    const warning = [last?.warning, last?.note].filter(Boolean).join(" ");
    $("warning").textContent = warning;
    $("warning").hidden = !warning;
    if (last?.unit) $("progress").textContent += ` · serving ${last.unit}: ${last.unit_reason || ""}`;
  }
  await followTraining();
}

// While a round trains, the header says which and how far ("retraining round 3, 42%"), looking again every
// few seconds; annotators go on with the previous round's queries meanwhile.
async function followTraining() {
  const rounds = await api("GET", `/v1/projects/${state.project.id}/rounds?limit=1000`);
  const latest = rounds.ok ? rounds.data.items[rounds.data.items.length - 1] : null;
  const busy = latest && (latest.state === "training" || latest.state === "scoring");
  let text = "";
  if (busy) {
    const job = latest.job_id ? await api("GET", `/v1/jobs/${latest.job_id}`) : null;
    const progress = job?.ok ? job.data.progress || {} : {};
    const share = progress.fraction !== undefined ? `, ${Math.round(100 * progress.fraction)}%` : "";
    text = `retraining round ${latest.round}${share} (${progress.stage || latest.state})`;
  }
  $("training").textContent = text;
  $("training").hidden = !busy;
  if (busy && !state.polling) state.polling = setInterval(() => state.project && refreshProgress(), 5000);
  if (!busy && state.polling) { clearInterval(state.polling); state.polling = null; }
}

// Per class, the latest evaluated round: AP on the test split and the boxes behind it (class names are the
// project's own text: set as text, never as markup)
function showClasses(points) {
  const latest = [...points].reverse().find((p) => p.per_class && p.per_class.length);
  $("classes").hidden = !latest;
  if (!latest) return;
  $("classes-title").textContent = `per class, round ${latest.round}`;
  const fixed = (v) => (v === null || v === undefined ? "–" : v.toFixed(3));
  const rows = latest.per_class.map((c) => {
    const row = document.createElement("tr");
    for (const value of [c.class, fixed(c.ap50), fixed(c.ap), c.labeled, c.noisy, c.queued, c.test_boxes]) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.append(cell);
    }
    return row;
  });
  $("class-rows").replaceChildren(...rows);
}

// The learning curve: mAP@0.5 (test split) of every evaluated round against the cost axis chosen, with
// axes, each round a point (its figures in a tooltip). Drawn as SVG text and shapes; numbers only.
function drawChart() {
  const usable = state.points.filter((p) => p.map50 !== null && p.map50 !== undefined);
  $("curve").hidden = usable.length === 0;
  if (!usable.length) return;
  const axis = $("curve-axis").value;
  const svg = $("chart");
  const w = 330, h = 190, left = 38, right = 10, top = 12, bottom = 30;
  const xs = usable.map((p) => p[axis]), ys = usable.map((p) => p.map50);
  const xMax = Math.max(...xs, 1), yMax = Math.min(1, Math.max(...ys, 0.05) * 1.15);
  const X = (v) => left + (v / xMax) * (w - left - right);
  const Y = (v) => h - bottom - (v / yMax) * (h - top - bottom);
  const tick = (v) => (axis === "seconds" ? `${Math.round(v / 60)} min` : String(Math.round(v)));
  const xTicks = [0, xMax / 2, xMax], yTicks = [0, yMax / 2, yMax];
  const line = usable.map((p) => `${X(p[axis])},${Y(p.map50)}`).join(" ");
  svg.innerHTML = `
    <line x1="${left}" y1="${h - bottom}" x2="${w - right}" y2="${h - bottom}" stroke="#9aa3af"/>
    <line x1="${left}" y1="${top}" x2="${left}" y2="${h - bottom}" stroke="#9aa3af"/>
    ${xTicks.map((v) => `<text class="x-tick" x="${X(v)}" y="${h - bottom + 12}" text-anchor="middle">${tick(v)}</text>`).join("")}
    ${yTicks.map((v) => `<text class="y-tick" x="${left - 4}" y="${Y(v) + 3}" text-anchor="end">${v.toFixed(2)}</text>`).join("")}
    <text x="${(left + w - right) / 2}" y="${h - 4}" text-anchor="middle">${axis === "seconds" ? "annotator time" : "ground-truth boxes obtained"}</text>
    <polyline points="${line}" fill="none" stroke="#0b72e7" stroke-width="2"/>
    ${usable.map((p) => `<circle class="round-point" cx="${X(p[axis])}" cy="${Y(p.map50)}" r="3.5" fill="#0b72e7"><title>round ${Number(p.round)}: mAP@0.5 ${Number(p.map50).toFixed(3)} at ${Number(p.boxes_obtained)} boxes, ${Math.round(Number(p.seconds) / 60)} min</title></circle>`).join("")}`;
}

// --- leasing, preloading, releasing ------------------------------------------------------------------------

async function loadImage(query) {
  const response = await fetch(query.image.url, { headers: { Authorization: `Bearer ${state.token}` } });
  if (!response.ok) throw new Error(`image ${query.image.id}: ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  const image = new Image();
  image.src = url;
  await image.decode();
  return image;
}

async function fill() {
  if (state.leasing || state.queue.length >= BUFFER) return state.leasing;
  state.leasing = (async () => {
    const response = await api("POST", `/v1/projects/${state.project.id}/queries`,
      { k: BUFFER - state.queue.length + 1, annotator: state.annotator });
    if (!response.ok) { say(response.data?.detail || `could not lease (${response.status})`, true); return; }
    for (const query of response.data.queries) {
      try {
        query.img = await loadImage(query);
        state.queue.push(query);
      } catch (error) {
        say(String(error), true);
        await api("DELETE", `/v1/projects/${state.project.id}/queries/${query.query_id}`);
      }
    }
  })();
  try { await state.leasing; } finally { state.leasing = null; }
}

async function next() {
  state.current = null;
  if (!state.queue.length) await fill();
  const query = state.queue.shift();
  if (!query) {
    $("empty").hidden = false;
    canvas.hidden = true;
    setTimeout(() => { if (!state.current && state.project) next(); }, 4000);
    return;
  }
  $("empty").hidden = true;
  canvas.hidden = false;
  show(query);
  fill(); // keep the next ones ready in the background
}

async function releaseAll() {
  const held = [...state.queue, ...(state.current ? [state.current] : [])];
  state.queue = [];
  state.current = null;
  if (!state.project) return;
  await Promise.all(held.map((q) => api("DELETE", `/v1/projects/${state.project.id}/queries/${q.query_id}`,
    null, { keepalive: true }).catch(() => null)));
}

// --- showing a query ---------------------------------------------------------------------------------------

function show(query) {
  if (document.activeElement instanceof HTMLButtonElement) document.activeElement.blur();
  state.current = query;
  state.image = query.img;
  state.shownAt = performance.now();
  state.selected = -1;
  const boxUnit = query.unit === "box";
  $("box-actions").hidden = !boxUnit;
  $("image-actions").hidden = boxUnit;
  if (boxUnit) {
    state.box = [...query.bbox];
    state.label = query.label;
    $("class-picker").value = query.label;
    const [x1, y1, x2, y2] = query.bbox;
    const margin = Math.max(x2 - x1, y2 - y1, 48); // the box with its context around it
    fitView(Math.max(0, x1 - margin), Math.max(0, y1 - margin),
      Math.min(query.image.width, x2 + margin), Math.min(query.image.height, y2 + margin));
    $("query-info").textContent = `box query · predicted ${query.label} (${(query.score ?? 0).toFixed(2)}) · ` +
      `informativeness ${fmt(query.informativeness)} · round ${query.round} · image ${query.image.external_id}`;
  } else {
    state.boxes = [];
    state.label = state.project.classes[0];
    $("class-picker").value = state.label;
    fitView(0, 0, query.image.width, query.image.height);
    if (query.unit === "review") {
      useHints(); // the model's boxes, each to keep, fix (move it, change its class) or delete
      $("query-info").textContent = `image review · keep, fix or delete each of the model's ` +
        `${query.predictions?.length ?? 0} boxes and draw what is missing · round ${query.round} · ` +
        `image ${query.image.external_id}`;
    } else {
      $("query-info").textContent = `image query · label every object · ${query.predictions?.length ?? 0} ` +
        `model boxes shown dashed · round ${query.round} · image ${query.image.external_id}`;
    }
  }
  say(state.correcting?.query_id === query.query_id
    ? `answering query ${query.query_id} again (it was ${state.correcting.answer.action}): the new answer replaces it`
    : "");
  draw();
  canvas.focus();
}

const fmt = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(3));

function fitView(x1, y1, x2, y2) {
  const scale = Math.min(canvas.width / (x2 - x1), canvas.height / (y2 - y1));
  const cx = (x1 + x2) / 2, cy = (y1 + y2) / 2;
  state.view = { x: cx - canvas.width / 2 / scale, y: cy - canvas.height / 2 / scale, scale };
}

const toCanvas = ([x, y]) => [(x - state.view.x) * state.view.scale, (y - state.view.y) * state.view.scale];
const toImage = ([x, y]) => [x / state.view.scale + state.view.x, y / state.view.scale + state.view.y];
state.toCanvas = toCanvas; // for the browser tests

function handles(bbox) {
  const [x1, y1] = toCanvas([bbox[0], bbox[1]]), [x2, y2] = toCanvas([bbox[2], bbox[3]]);
  const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
  return { nw: [x1, y1], n: [mx, y1], ne: [x2, y1], e: [x2, my], se: [x2, y2], s: [mx, y2], sw: [x1, y2], w: [x1, my] };
}

function draw() {
  const query = state.current;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#222";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!query) return;
  const { x, y, scale } = state.view;
  ctx.imageSmoothingEnabled = scale < 4;
  ctx.drawImage(state.image, 0, 0, state.image.naturalWidth, state.image.naturalHeight,
    -x * scale, -y * scale, query.image.width * scale, query.image.height * scale);
  if (query.unit === "box") {
    if (moved()) drawBox(query.bbox, "rgba(255,255,255,0.45)", [4, 4]);
    drawBox(state.box, "#2ee66b", [], state.label, true);
  } else {
    for (const hint of query.predictions || []) drawBox(hint.bbox, "rgba(255,210,0,0.7)", [5, 4]);
    state.boxes.forEach((b, i) => drawBox(b.bbox, i === state.selected ? "#2ee66b" : "#4fc3f7", [], b.label,
      i === state.selected));
  }
}

function drawBox(bbox, color, dash, label, withHandles = false) {
  const [x1, y1] = toCanvas([bbox[0], bbox[1]]), [x2, y2] = toCanvas([bbox[2], bbox[3]]);
  ctx.setLineDash(dash);
  ctx.lineWidth = 2;
  ctx.strokeStyle = color;
  ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  ctx.setLineDash([]);
  if (label) {
    ctx.font = "13px system-ui";
    const width = ctx.measureText(label).width + 8;
    ctx.fillStyle = color;
    ctx.fillRect(x1, y1 - 18, width, 18);
    ctx.fillStyle = "#111";
    ctx.fillText(label, x1 + 4, y1 - 5);
  }
  if (withHandles) {
    ctx.fillStyle = "#fff";
    for (const [hx, hy] of Object.values(handles(bbox))) ctx.fillRect(hx - HANDLE / 2, hy - HANDLE / 2, HANDLE, HANDLE);
  }
}

const moved = () => state.current?.unit === "box" &&
  (state.box.some((v, i) => Math.abs(v - state.current.bbox[i]) > 0.5) || state.label !== state.current.label);

// --- editing with the mouse --------------------------------------------------------------------------------

function pointer(event) {
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * (canvas.width / rect.width), (event.clientY - rect.top) * (canvas.height / rect.height)];
}

function hit(bbox, point) {
  for (const [name, [hx, hy]] of Object.entries(handles(bbox))) {
    if (Math.abs(point[0] - hx) <= HANDLE + 3 && Math.abs(point[1] - hy) <= HANDLE + 3) return name;
  }
  const [x1, y1] = toCanvas([bbox[0], bbox[1]]), [x2, y2] = toCanvas([bbox[2], bbox[3]]);
  return point[0] > x1 && point[0] < x2 && point[1] > y1 && point[1] < y2 ? "move" : null;
}

canvas.addEventListener("mousedown", (event) => {
  if (!state.current) return;
  const point = pointer(event);
  if (state.current.unit === "box") {
    const part = hit(state.box, point);
    if (part) state.drag = { part, start: toImage(point), original: [...state.box] };
  } else {
    const index = state.boxes.findIndex((b, i) => i === state.selected && hit(b.bbox, point)) >= 0 ? state.selected
      : state.boxes.findIndex((b) => hit(b.bbox, point));
    if (index >= 0) {
      state.selected = index;
      state.label = state.boxes[index].label;
      $("class-picker").value = state.label;
      state.drag = { part: hit(state.boxes[index].bbox, point), start: toImage(point), original: [...state.boxes[index].bbox] };
    } else {
      const [x, y] = clampPoint(toImage(point));
      state.boxes.push({ bbox: [x, y, x, y], label: $("class-picker").value });
      state.selected = state.boxes.length - 1;
      state.drag = { part: "se", start: [x, y], original: [x, y, x, y], creating: true };
    }
  }
  draw();
});

window.addEventListener("mousemove", (event) => {
  if (!state.drag) return;
  const [x, y] = toImage(pointer(event));
  const dx = x - state.drag.start[0], dy = y - state.drag.start[1];
  let [x1, y1, x2, y2] = state.drag.original;
  const part = state.drag.part;
  if (part === "move") { x1 += dx; x2 += dx; y1 += dy; y2 += dy; }
  if (part.includes("w")) x1 += dx;
  if (part.includes("e")) x2 += dx;
  if (part.includes("n")) y1 += dy;
  if (part.includes("s") && part !== "move") y2 += dy;
  const bbox = normalise([x1, y1, x2, y2], part === "move");
  if (state.current.unit === "box") state.box = bbox; else state.boxes[state.selected].bbox = bbox;
  draw();
});

window.addEventListener("mouseup", () => {
  if (state.drag?.creating) {
    const b = state.boxes[state.selected].bbox;
    if (b[2] - b[0] < 2 || b[3] - b[1] < 2) { state.boxes.splice(state.selected, 1); state.selected = -1; }
  }
  state.drag = null;
  draw();
});

function clampPoint([x, y]) {
  const { width, height } = state.current.image;
  return [Math.min(Math.max(x, 0), width), Math.min(Math.max(y, 0), height)];
}

function normalise([x1, y1, x2, y2], keepSize) {
  const { width, height } = state.current.image;
  if (keepSize) { // a moved box keeps its size and stays inside the image
    const w = x2 - x1, h = y2 - y1;
    x1 = Math.min(Math.max(x1, 0), width - w); y1 = Math.min(Math.max(y1, 0), height - h);
    return [x1, y1, x1 + w, y1 + h].map(round);
  }
  [x1, x2] = [Math.min(x1, x2), Math.max(x1, x2)];
  [y1, y2] = [Math.min(y1, y2), Math.max(y1, y2)];
  return [Math.max(0, x1), Math.max(0, y1), Math.min(width, x2), Math.min(height, y2)].map(round);
}

const round = (v) => Math.round(v * 10) / 10;

// --- answering ---------------------------------------------------------------------------------------------

async function answer(label) {
  if (!state.current || state.busy) return;
  state.busy = true;
  const query = state.current;
  const correct = state.correcting?.query_id === query.query_id;
  const body = { labels: [{ query_id: query.query_id, duration_ms: Math.round(performance.now() - state.shownAt),
    ...label, ...(correct ? { correct: true } : {}) }] };
  try {
    const response = await api("POST", `/v1/projects/${state.project.id}/labels`, body);
    let text, bad = false;
    if (response.status === 409) {
      text = `Not recorded: ${response.data?.detail || "this query was taken meanwhile"}. Moving on.`;
      bad = true;
    } else if (!response.ok) {
      say(response.data?.detail || `the answer was refused (${response.status})`, true);
      return; // stay on this query so it can be corrected
    } else {
      const what = correct ? `${label.action} recorded in place of ${state.correcting.answer.action}` : `${label.action} recorded`;
      text = response.data.round_started ? `${what}; round ${response.data.round} has started training` : what;
      state.history.push({ query, answer: label });
      state.history = state.history.slice(-20);
    }
    if (correct) state.correcting = null;
    $("undo").disabled = state.history.length === 0;
    await next();
    say(text, bad); // after the next query is on screen, which clears the message
    refreshProgress();
  } finally {
    state.busy = false;
  }
}

function acceptOrAdjust() {
  if (state.current?.unit !== "box") return;
  if (!moved()) return answer({ action: "accept" });
  const [x1, y1, x2, y2] = state.box;
  if (x2 - x1 < 1 || y2 - y1 < 1) return say("the box is too small to send", true);
  return answer({ action: "adjust", bbox: state.box, label: state.label });
}

function submitImage() {
  const query = state.current;
  if (!query || query.unit === "box") return;
  const drawn = (boxes) => boxes.map((b) => ({ bbox: b.bbox, label: b.label }));
  if (query.unit !== "review") return answer({ action: "label_all", boxes: drawn(state.boxes) });
  // each of the model's boxes: still there as it was (accept), changed (adjust) or deleted (background)
  const reviewed = (query.predictions || []).map((hint) => {
    const kept = state.boxes.find((b) => b.box_id === hint.box_id);
    if (!kept) return { box_id: hint.box_id, action: "background" };
    const same = kept.label === hint.label && kept.bbox.every((v, i) => Math.abs(v - hint.bbox[i]) < 0.5);
    return same ? { box_id: hint.box_id, action: "accept" }
      : { box_id: hint.box_id, action: "adjust", bbox: kept.bbox, label: kept.label };
  });
  return answer({ action: "review", reviewed, boxes: drawn(state.boxes.filter((b) => b.box_id === undefined)) });
}

async function skip() {
  if (!state.current) return;
  const query = state.current;
  await api("DELETE", `/v1/projects/${state.project.id}/queries/${query.query_id}`);
  say("skipped: the query went back to the pool");
  await next();
}

// Undo: the last answer's query comes back on screen; answering it again sends a correction (the server
// keeps both in its log, and trains on the new one). The query on screen goes back to the front of the queue.
function undo() {
  const last = state.history.pop();
  $("undo").disabled = state.history.length === 0;
  if (!last || state.busy) return;
  if (state.current) state.queue.unshift(state.current);
  state.correcting = { query_id: last.query.query_id, answer: last.answer };
  show(last.query);
}

function findClass(text) {
  const wanted = text.trim().toLowerCase();
  if (!wanted) return null;
  const classes = state.project.classes;
  return classes.find((c) => c.toLowerCase() === wanted)
    ?? (classes.filter((c) => c.toLowerCase().startsWith(wanted)).length === 1 ? classes.find((c) => c.toLowerCase().startsWith(wanted)) : null)
    ?? (classes.filter((c) => c.toLowerCase().includes(wanted)).length === 1 ? classes.find((c) => c.toLowerCase().includes(wanted)) : null);
}

function pickSearched() {
  const name = findClass($("class-search").value);
  if (!name) return say(`no single class matches "${$("class-search").value}"`, true);
  setLabel(name);
  $("class-search").value = "";
  canvas.focus();
}

function setLabel(name) {
  state.label = name;
  $("class-picker").value = name;
  if (state.current && state.current.unit !== "box" && state.selected >= 0) state.boxes[state.selected].label = name;
  draw();
}

// --- wiring ------------------------------------------------------------------------------------------------

$("signin-form").addEventListener("submit", signIn);
$("signout").addEventListener("click", async () => {
  await releaseAll();
  sessionStorage.clear();
  location.reload();
});
$("project").addEventListener("change", (e) => openProject(Number(e.target.value)));
$("class-picker").addEventListener("change", (e) => setLabel(e.target.value));
$("accept").addEventListener("click", acceptOrAdjust);
$("background").addEventListener("click", () => answer({ action: "background" }));
$("duplicate").addEventListener("click", () => answer({ action: "duplicate" }));
$("skip").addEventListener("click", skip);
$("skip-image").addEventListener("click", skip);
$("submit-image").addEventListener("click", submitImage);
$("use-hints").addEventListener("click", useHints);
$("delete-box").addEventListener("click", deleteSelected);
$("help-button").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
$("undo").addEventListener("click", undo);
$("curve-axis").addEventListener("change", drawChart);
$("class-search").addEventListener("keydown", (event) => {
  if (event.key === "Enter") { event.preventDefault(); pickSearched(); }
  if (event.key === "Escape") { $("class-search").value = ""; canvas.focus(); }
});
$("class-search").addEventListener("change", () => { if (findClass($("class-search").value)) pickSearched(); });
for (const button of document.querySelectorAll("aside button")) {
  button.addEventListener("click", () => button.blur()); // keys keep going to the canvas, not the button
}

function useHints() {
  if (!state.current || state.current.unit === "box") return;
  state.boxes = (state.current.predictions || []).map((h) => ({ bbox: [...h.bbox], label: h.label, box_id: h.box_id ?? undefined }));
  state.selected = state.boxes.length ? 0 : -1;
  draw();
}

function deleteSelected() {
  if (!state.current || state.current.unit === "box" || state.selected < 0) return;
  state.boxes.splice(state.selected, 1);
  state.selected = -1;
  draw();
}

document.addEventListener("keydown", (event) => {
  if (!state.current || event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
  const key = event.key.toLowerCase();
  const box = state.current.unit === "box";
  if (key === "?") { $("help").hidden = !$("help").hidden; return; }
  if (key === "/") { event.preventDefault(); $("class-search").focus(); return; }
  if (key === "u" && !event.ctrlKey) return undo();
  if (key === "z" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); return undo(); }
  if (/^[1-9]$/.test(key) && state.project.classes[Number(key) - 1]) return setLabel(state.project.classes[Number(key) - 1]);
  if (key === "s") return skip();
  if (box && (key === "a" || key === "enter")) return acceptOrAdjust();
  if (box && key === "b") return answer({ action: "background" });
  if (box && key === "d") return answer({ action: "duplicate" });
  if (!box && key === "enter") return submitImage();
  if (!box && key === "p") return useHints();
  if (!box && (key === "delete" || key === "backspace")) { event.preventDefault(); return deleteSelected(); }
});

// Leases are given back when the page closes, so others get them at once rather than after the TTL.
window.addEventListener("pagehide", () => { releaseAll(); });

if (state.token) signIn();
