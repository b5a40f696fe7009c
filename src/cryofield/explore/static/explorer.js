// cryofield explore: the page. Talks to the server's /api (cryofield/explore/server.py); plotly.js draws.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#ad494a", "#8ca252", "#de9ed6", "#e7ba52", "#6b6ecf"];
const LEVEL_PERCENTILES = ["90", "95", "98", "99", "99.5", "99.9"];
const $ = (id) => document.getElementById(id);
const state = {
  runs: [], run: 0, info: null, xs: null, ys: null, active: null, page: 0, pages: 1,
  map: null, meshes: new Map(), path: {start: null, end: null, maps: [], rows: [], frame: -1, timer: null},
};

// ---- requests ----------------------------------------------------------------------------------
function say(text, ok = false) {
  const box = $("message");
  box.textContent = text;
  box.className = ok ? "ok" : "";
}

async function api(path, body) {
  const options = body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
                                             headers: {"Content-Type": "application/json"}};
  const response = await fetch(`api/${path}`, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}
const json = async (path, body) => (await api(path, body)).json();
const floats = async (path) => new Float32Array(await (await api(path)).arrayBuffer());
const runPath = (rest) => `${state.run}/${rest}`;
const quote = (name) => encodeURIComponent(name);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function fromBase64(text, Type) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Type(bytes.buffer);
}

function options(select, values, chosen) {
  select.replaceChildren(...values.map((v) => new Option(v, v, false, v === chosen)));
}

// ---- runs and the scatter ----------------------------------------------------------------------
async function loadRuns() {
  state.runs = await json("runs");
  options($("run"), state.runs.map((r) => `${r.index}: ${r.name}`));
  $("run").onchange = () => openRun($("run").selectedIndex);
  setUpComparison();
  await openRun(0);
}

async function openRun(index) {
  stopPath();
  state.runs = await json("runs");  // the run's selections and files as they are now
  Object.assign(state, {run: index, info: state.runs[index], active: null, page: 0, pages: 1, map: null,
                        path: {start: null, end: null, maps: [], rows: [], frame: -1, timer: null}});
  $("thumbnails").replaceChildren();
  $("page").textContent = "";
  $("commands").textContent = "select particles, show a map or make a path";
  $("path-ends").textContent = "start: – end: –";
  for (const id of ["make-path", "play", "chimerax"]) $(id).disabled = true;
  const info = state.info;
  $("run-summary").textContent = `${info.particles} particles, zdim ${info.zdim}, ` +
    `${info.box} px at ${info.apix.toFixed(3)} A/px — ${info.path}`;
  $("notes").replaceChildren(...Object.values(info.notes).map((n) => {
    const li = document.createElement("li");
    li.textContent = n;
    return li;
  }));
  showSelections(info.selections);
  showExports(info.exports);
  showSavedMaps(info.saved_maps || {});
  if (!info.axes.length) {  // a homogeneous run: its one map
    Plotly.purge($("scatter"));
    delete $("scatter").dataset.bound;
    $("scatter").textContent = "no latent space in this run";
    await requestMap({z: null, label: "the run's map"});
    return;
  }
  options($("axis-x"), info.axes, info.default_axes[0]);
  options($("axis-y"), info.axes, info.default_axes[1]);
  options($("axis-z"), ["2-D", ...info.axes], "2-D");
  options($("colour"), ["none", ...info.colourings.map((c) => c.name)],
          info.colourings.length ? info.colourings[0].name : "none");
  for (const id of ["axis-x", "axis-y", "axis-z", "colour"]) $(id).onchange = drawScatter;
  $("pairs-panel").hidden = info.zdim < 2;
  Plotly.purge($("pairs-plot"));
  await drawScatter();
}

function colourScale(kind, values) {
  if (kind !== "category") return {colorscale: "Viridis", showscale: true};
  let top = 0;
  for (const v of values) top = Math.max(top, v);
  const k = top + 1;
  const scale = [];
  for (let i = 0; i < k; i++) {
    const colour = PALETTE[i % PALETTE.length];
    scale.push([i / k, colour], [(i + 1) / k, colour]);
  }
  return {colorscale: scale, cmin: -0.5, cmax: k - 0.5, showscale: true,
          colorbar: {tickvals: [...Array(Math.min(k, 30)).keys()], title: {text: ""}}};
}

async function colourValues(colour) {
  // the marker colours of a colouring: values and their scale
  if (colour === "none") return {color: "#3b6ea8"};
  const response = await api(runPath(`colour/${quote(colour)}`));
  const values = new Float32Array(await response.arrayBuffer());
  const marker = Object.assign({color: values}, colourScale(response.headers.get("X-Kind"), values));
  marker.colorbar = Object.assign(marker.colorbar || {}, {title: {text: colour}});
  return marker;
}

async function drawScatter() {
  const x = $("axis-x").value, y = $("axis-y").value, z = $("axis-z").value, colour = $("colour").value;
  say("loading the points…", true);
  [state.xs, state.ys] = await Promise.all([floats(runPath(`axis/${quote(x)}`)),
                                           floats(runPath(`axis/${quote(y)}`))]);
  state.is3d = z !== "2-D";
  const marker = Object.assign({size: state.xs.length > 50000 ? 2 : 4, opacity: 0.7}, await colourValues(colour));
  const plot = $("scatter");
  let traces, layout;
  if (state.is3d) {  // a 3-D view: turn and click; selections are drawn in 2-D
    const zs = await floats(runPath(`axis/${quote(z)}`));
    traces = [{type: "scatter3d", mode: "markers", x: state.xs, y: state.ys, z: zs,
               marker: Object.assign(marker, {size: 2}),
               hovertemplate: "particle %{pointNumber}<extra></extra>"}];
    layout = {margin: {l: 0, r: 0, t: 0, b: 0}, showlegend: false, uirevision: `${x}|${y}|${z}`,
              scene: {xaxis: {title: {text: x}}, yaxis: {title: {text: y}}, zaxis: {title: {text: z}}}};
  } else {
    const trace = {type: "scattergl", mode: "markers", x: state.xs, y: state.ys, marker,
                   hovertemplate: "particle %{pointNumber}<br>%{x:.3g}, %{y:.3g}<extra></extra>"};
    traces = [trace, ...pathTraces()];
    layout = {margin: {l: 50, r: 10, t: 10, b: 45}, dragmode: "lasso", hovermode: "closest", showlegend: false,
              xaxis: {title: {text: x}}, yaxis: {title: {text: y}}, uirevision: `${x}|${y}`};
  }
  await Plotly.react(plot, traces, layout, {displaylogo: false, responsive: true});
  plot.dataset.points = String(state.xs.length);
  plot.dataset.colour = colour;
  plot.dataset.view = state.is3d ? "3d" : "2d";
  if (!plot.dataset.bound) {
    plot.on("plotly_selecting", (event) => {  // the count while the lasso or box is drawn
      if (event && event.points) $("selection-count").textContent = `selecting: ${event.points.length} particles`;
    });
    plot.on("plotly_selected", (event) => select(event).catch((e) => say(e.message)));
    plot.on("plotly_click", (event) => clickPoint(event).catch((e) => say(e.message)));
    plot.dataset.bound = "1";
  }
  if (state.active && !state.is3d) await highlight(state.active);  // the new trace keeps the selection shown
  say(`${state.xs.length} particles` + (state.is3d ? " (3-D: drag to turn; select in 2-D)" : ""), true);
}

async function drawPairs() {
  // every pair of latent dimensions as small panels, on at most 20,000 random particles
  const info = state.info, dims = Math.min(info.zdim, 8);
  const zs = await Promise.all([...Array(dims).keys()].map((i) => floats(runPath(`axis/z${i + 1}`))));
  const n = zs[0].length, keep = Math.min(n, 20000);
  const rows = n === keep ? [...Array(n).keys()] : [...Array(keep)].map(() => Math.floor(Math.random() * n));
  const colour = await colourValues($("colour").value);
  const pick = (values) => rows.map((r) => values[r]);
  const colours = colour.color instanceof Float32Array ? pick(colour.color) : colour.color;
  const traces = [], layout = {grid: {rows: dims - 1, columns: dims - 1, pattern: "independent"}, showlegend: false,
                               height: Math.max(320, 180 * (dims - 1)), margin: {l: 40, r: 10, t: 10, b: 30}};
  for (let i = 0; i < dims - 1; i++) {
    for (let j = i + 1; j < dims; j++) {
      const k = i * (dims - 1) + (j - 1) + 1;  // the panel: row i, column j - 1
      const suffix = k === 1 ? "" : String(k);
      traces.push({type: "scattergl", mode: "markers", x: pick(zs[j]), y: pick(zs[i]), xaxis: `x${suffix}`,
                   yaxis: `y${suffix}`, hoverinfo: "skip",
                   marker: Object.assign({}, colour, {color: colours, size: 2, showscale: false})});
      layout[`xaxis${suffix}`] = {title: {text: i === j - 1 ? `z${j + 1}` : ""}};
      layout[`yaxis${suffix}`] = {title: {text: j === i + 1 ? `z${i + 1}` : ""}};
    }
  }
  await Plotly.react($("pairs-plot"), traces, layout, {displaylogo: false, responsive: true});
  $("pairs-plot").dataset.panels = String(traces.length);
}

// ---- commands ----------------------------------------------------------------------------------
async function showCommands() {
  const query = new URLSearchParams();
  if (state.active) query.set("selection", state.active);
  if (state.map !== null) query.set("map", state.map);
  if (state.path.start !== null && state.path.end !== null) {
    query.set("start", state.path.start);
    query.set("end", state.path.end);
  }
  const lines = await json(runPath(`commands?${query}`));
  const box = $("commands");
  box.classList.toggle("muted", !lines.length);
  if (!lines.length) { box.textContent = "select particles, show a map or make a path"; return; }
  box.replaceChildren(...lines.map((line) => {
    const item = document.createElement("div");
    item.classList.toggle("not-ready", !line.ready);
    const what = document.createElement("span");
    what.textContent = line.what + (line.ready ? "" : " (export the selection as .txt first)");
    const code = document.createElement("code");
    code.textContent = line.command;
    item.append(what, code);
    return item;
  }));
}

// ---- selections --------------------------------------------------------------------------------
async function select(event) {
  if (!event || !event.points || !event.points.length) return;  // also the events of clearing a selection
  const x = $("axis-x").value, y = $("axis-y").value;
  let body;
  if (event.lassoPoints) body = {x, y, polygon: event.lassoPoints.x.map((v, i) => [v, event.lassoPoints.y[i]])};
  else if (event.range) body = {x, y, x_range: event.range.x, y_range: event.range.y};
  else return;
  const result = await json(runPath("select"), body);
  activate(result.name, result.count);
  showSelections(result.selections);
}

async function highlight(name) {
  // plotly keeps a drawn selection as a shape that takes the pointer: drop it, and show the points instead
  const plot = $("scatter");
  if (!plot.data) return;
  const rows = new Int32Array(await (await api(runPath(`selection/${quote(name)}`))).arrayBuffer());
  await Plotly.relayout(plot, {selections: []});
  await Plotly.restyle(plot, {selectedpoints: [Array.from(rows)], unselected: {marker: {opacity: 0.15}}}, [0]);
}

function activate(name, count) {
  state.active = name;
  state.page = 0;
  highlight(name).catch((e) => say(e.message));
  const line = $("selection-count");
  line.textContent = `${name}: ${count} particles selected`;
  line.dataset.count = String(count);
  line.dataset.name = name;
  for (const row of $("selections").querySelectorAll("tr")) {
    row.classList.toggle("active", row.dataset.name === name);
  }
  showThumbnails().catch((e) => say(e.message));
  showCommands().catch((e) => say(e.message));
}

function showSelections(selections) {
  const names = Object.keys(selections);
  $("selections").tBodies[0].replaceChildren(...names.map((name) => {
    const row = document.createElement("tr");
    row.dataset.name = name;
    row.classList.toggle("active", name === state.active);
    const label = document.createElement("td");
    const link = document.createElement("a");
    link.href = "#";
    link.textContent = name;
    link.onclick = (e) => { e.preventDefault(); activate(name, selections[name]); };
    label.append(link);
    const count = document.createElement("td");
    count.textContent = `${selections[name]} particles`;
    row.append(label, count);
    return row;
  }));
  options($("combine-a"), names, $("combine-a").value || names[0]);
  options($("combine-b"), names, $("combine-b").value || names[names.length - 1]);
}

async function combine() {
  const result = await json(runPath("combine"), {a: $("combine-a").value, b: $("combine-b").value,
                                                  operation: $("combine-op").value});
  showSelections(result.selections);
  activate(result.name, result.count);
}

function showExports(files) {
  $("exports").replaceChildren(...files.map((name) => {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = `api/${runPath(`files/${quote(name)}`)}`;
    link.textContent = name;
    li.append(link);
    return li;
  }));
}

async function exportSelection() {
  if (!state.active) throw new Error("select particles first (lasso or box)");
  const result = await json(runPath("export"), {selection: state.active, name: $("export-name").value,
                                                 format: $("export-format").value});
  showExports(result.exports);
  say(`wrote ${result.files.join(", ")} into the run's explore/ folder`, true);
  await showCommands();
}

// ---- particles ---------------------------------------------------------------------------------
async function showThumbnails() {
  if (!state.active) return;
  const per = 24;
  const result = await json(runPath(`thumbnails?selection=${quote(state.active)}&page=${state.page}&per=${per}`));
  const pages = Math.max(1, Math.ceil(result.total / per));
  state.pages = pages;
  $("page").textContent = `page ${state.page + 1} of ${pages} (${result.total} particles)`;
  $("thumbnails").replaceChildren(...result.items.map((item) => {
    const figure = document.createElement("figure");
    const image = new Image();
    image.src = item.png;
    image.alt = `particle ${item.row}`;
    const details = Object.entries(item.meta).map(([k, v]) => `${k} ${v.toPrecision(5)}`);
    image.title = [`particle ${item.row} (input row ${item.input_row})`, ...details].join("\n");
    const caption = document.createElement("figcaption");
    caption.textContent = String(item.row);
    figure.append(image, caption);
    return figure;
  }));
}

async function turnPage(step) {
  const page = Math.min(Math.max(0, state.page + step), (state.pages || 1) - 1);
  if (page === state.page) return;
  state.page = page;
  await showThumbnails();
}

// ---- maps --------------------------------------------------------------------------------------
async function clickPoint(event) {
  const point = event.points && event.points.find((p) => p.curveNumber === 0);
  if (!point) return;
  const row = point.pointNumber;
  const mode = $("click-mode").value;
  if (mode === "map") return requestMap({row});
  state.path[mode] = row;
  $("path-ends").textContent = `start: ${state.path.start ?? "–"} end: ${state.path.end ?? "–"}`;
  $("make-path").disabled = state.path.start === null || state.path.end === null;
  if (mode === "start") $("click-mode").value = "end";
  await showCommands();
}

async function waitForMap(job, status) {
  while (job.state === "queued" || job.state === "running") {
    if (status) {
      status.textContent = job.state === "queued" ? `${job.label}: waiting (${job.ahead} maps ahead)`
                                                  : `${job.label}: rendering…`;
      status.dataset.state = job.state;
    }
    await sleep(250);
    job = await json(runPath(`map/${job.id}`));
  }
  if (job.state === "failed") throw new Error(`map ${job.id} failed: ${job.error}`);
  return job;
}

async function requestMap(body) {
  const status = $("map-status");
  const job = await waitForMap(await json(runPath("map"), body), status);
  state.map = job.id;
  await drawMap(job.id);
  status.textContent = `${job.label}: map ${job.id}`;
  status.dataset.state = "done";
  status.dataset.map = String(job.id);
  $("chimerax").disabled = false;
  await showCommands();
}

async function meshOf(id, levelIndex) {
  const key = `${state.run}:${id}:${levelIndex}`;
  if (!state.meshes.has(key)) {
    const first = await json(runPath(`map/${id}/mesh`));  // its levels, at the 99th percentile
    const level = first.levels[LEVEL_PERCENTILES[levelIndex]];
    state.meshes.set(key, levelIndex === 3 ? first : await json(runPath(`map/${id}/mesh?level=${level}`)));
    if (state.meshes.size > 64) state.meshes.delete(state.meshes.keys().next().value);  // the oldest
  }
  return state.meshes.get(key);
}

async function drawMap(id) {
  const levelIndex = Number($("level").value);
  const view = await meshOf(id, levelIndex);
  const xyz = fromBase64(view.vertices, Float32Array), faces = fromBase64(view.faces, Int32Array);
  const pick = (array, offset) => array.filter((_, i) => i % 3 === offset);
  const trace = {type: "mesh3d", x: pick(xyz, 0), y: pick(xyz, 1), z: pick(xyz, 2),
                 i: pick(faces, 0), j: pick(faces, 1), k: pick(faces, 2), color: "#9fb7d4", flatshading: false,
                 lighting: {ambient: 0.45, diffuse: 0.8, specular: 0.2}, hoverinfo: "skip"};
  const side = view.box * state.info.apix;
  const range = [0, side];
  const layout = {margin: {l: 0, r: 0, t: 0, b: 0}, uirevision: "map",
                  scene: {aspectmode: "cube", xaxis: {range, title: {text: "x (A)"}},
                          yaxis: {range, title: {text: "y (A)"}}, zaxis: {range, title: {text: "z (A)"}}}};
  await Plotly.react($("mesh"), [trace], layout, {displaylogo: false, responsive: true});
  $("mesh").dataset.faces = String(faces.length / 3);
  $("mesh").dataset.map = String(id);
  $("level-value").textContent = `${LEVEL_PERCENTILES[levelIndex]}th percentile = ${view.level.toPrecision(4)}`;
  $("slices").replaceChildren(...view.slices.map((png, i) => {
    const figure = document.createElement("figure");
    const image = new Image();
    image.src = png;
    image.alt = `central slice ${"zyx"[i]}`;
    const caption = document.createElement("figcaption");
    caption.textContent = `slice ${"zyx"[i]}`;
    figure.append(image, caption);
    return figure;
  }));
  const link = $("download");
  link.href = `api/${runPath(`map/${id}/mrc`)}`;
  link.hidden = false;
}

// ---- paths and ChimeraX ------------------------------------------------------------------------
function pathTraces() {
  // the path's particles on the scatter, and the frame shown; neither takes clicks or selections
  const rows = state.path.rows || [];
  const at = (values, list) => list.map((row) => values[row]);
  const frame = state.path.frame >= 0 && rows.length ? [rows[state.path.frame]] : [];
  const common = {type: "scatter", hoverinfo: "skip", showlegend: false};
  return [Object.assign({mode: "lines+markers", x: at(state.xs, rows), y: at(state.ys, rows),
                         line: {color: "#c0392b", width: 2}, marker: {size: 6, color: "#c0392b"}}, common),
          Object.assign({mode: "markers", x: at(state.xs, frame), y: at(state.ys, frame),
                         marker: {size: 16, color: "rgba(0,0,0,0)", line: {color: "#c0392b", width: 3}}}, common)];
}

async function drawPathOnScatter() {
  if (!state.xs || state.is3d) return;
  const [path, here] = pathTraces();
  await Plotly.restyle($("scatter"), {x: [path.x, here.x], y: [path.y, here.y]}, [1, 2]);
}

async function makePath() {
  stopPath();
  const status = $("map-status");
  const result = await json(runPath("path"), {start: state.path.start, end: state.path.end,
                                               frames: Number($("frames").value)});
  const done = [];
  for (const job of result.maps) done.push(await waitForMap(job, status));
  state.path.maps = done.map((job) => job.id);
  state.path.rows = result.rows;
  status.textContent = `path of ${done.length} maps from particle ${state.path.start} to ${state.path.end}, ` +
    result.how;
  status.dataset.state = "done";
  $("play").disabled = false;
  $("chimerax").disabled = false;
  await showFrame(0);
}

async function showFrame(frame) {
  state.path.frame = frame;
  state.map = state.path.maps[frame];
  await drawMap(state.map);
  const label = $("frame");
  label.textContent = `frame ${frame + 1} of ${state.path.maps.length} (particle ${state.path.rows[frame]})`;
  label.dataset.frame = String(frame);
  await drawPathOnScatter();
}

function stopPath() {
  clearTimeout(state.path.timer);
  state.path.timer = null;
  $("play").textContent = "play";
}

async function playPath() {
  if (state.path.timer !== null) return stopPath();
  $("play").textContent = "pause";
  const step = async () => {
    await showFrame((state.path.frame + 1) % state.path.maps.length);
    if ($("play").textContent === "pause") state.path.timer = setTimeout(() => step().catch((e) => say(e.message)),
                                                                         400);
  };
  state.path.timer = setTimeout(() => step().catch((e) => say(e.message)), 0);
}

async function writeScript() {
  const maps = state.path.maps.length ? state.path.maps : [state.map];
  const level = (await meshOf(maps[0], Number($("level").value))).level;
  const result = await json(runPath("chimerax"), {maps, name: $("script-name").value, level});
  showExports(result.exports);
  say(`wrote ${result.file}: open it in ChimeraX (open ${result.file})`, true);
}

// ---- maps the analyses saved -------------------------------------------------------------------
function showSavedMaps(groups) {
  const names = Object.keys(groups);
  $("saved-none").hidden = names.length > 0;
  $("saved-controls").hidden = names.length === 0;
  options($("saved-group"), names, names[0]);
  const list = () => {
    const files = groups[$("saved-group").value] || [];
    $("saved-maps").replaceChildren(...files.map((file, i) => {
      const button = document.createElement("button");
      button.textContent = String(i);
      button.title = file;
      button.onclick = () => requestMap({file}).catch((e) => say(e.message));
      return button;
    }));
  };
  $("saved-group").onchange = list;
  list();
  $("play-saved").onclick = () => playSaved(groups[$("saved-group").value] || []).catch((e) => say(e.message));
}

async function playSaved(files) {
  // a saved group as a movie, through the path player
  stopPath();
  const jobs = [];
  for (const file of files) jobs.push(await json(runPath("map"), {file}));
  const done = [];
  for (const job of jobs) done.push(await waitForMap(job, $("map-status")));
  state.path.maps = done.map((job) => job.id);
  state.path.rows = [];
  $("map-status").textContent = `${$("saved-group").value}: ${done.length} maps`;
  $("map-status").dataset.state = "done";
  $("play").disabled = false;
  $("chimerax").disabled = false;
  await showFrame(0);
  await playPath();
}

// ---- two runs ----------------------------------------------------------------------------------
function setUpComparison() {
  if (state.runs.length < 2) return;
  $("compare-panel").hidden = false;
  const names = state.runs.map((r) => `${r.index}: ${r.name}`);
  options($("compare-a"), names, names[0]);
  options($("compare-b"), names, names[1]);
}

async function compareRuns() {
  const a = $("compare-a").selectedIndex, b = $("compare-b").selectedIndex;
  const result = await json(`compare?a=${a}&b=${b}&k=${Number($("compare-k").value)}`);
  const labels = fromBase64(result.labels_a, Int32Array);
  const line = $("compare-result");
  line.textContent = `${(100 * result.agreement).toFixed(1)} % of the particles in matched clusters (k = ${result.k})`;
  $("compare-plots").hidden = false;  // shown before drawing, so that the plots take their boxes' sizes
  const colours = colourScale("category", labels);
  for (const [side, index] of [["a", a], ["b", b]]) {
    const run = state.runs[index];
    const [x, y] = await Promise.all(run.default_axes.map((axis) => floats(`${index}/axis/${quote(axis)}`)));
    const trace = {type: "scattergl", mode: "markers", x, y, hoverinfo: "skip",
                   marker: Object.assign({size: 3, color: labels, opacity: 0.7}, colours, {showscale: false})};
    const layout = {title: {text: `${run.name} (${side.toUpperCase()})`}, margin: {l: 40, r: 10, t: 40, b: 40},
                    xaxis: {title: {text: run.default_axes[0]}}, yaxis: {title: {text: run.default_axes[1]}}};
    await Plotly.react($(`compare-scatter-${side}`), [trace], layout, {displaylogo: false, responsive: true});
  }
  // the server orders B's columns by their match to A's clusters: agreement lies on the diagonal
  const matched = result.mapping.filter((j) => j >= 0);
  const columns = result.confusion[0].length;
  const rest = [...Array(columns).keys()].filter((j) => !matched.includes(j));
  await Plotly.react($("compare-matrix"), [{type: "heatmap", z: result.confusion, colorscale: "Blues", reversescale: true,
                                            x: [...matched, ...rest].map((j) => `B${j}`),
                                            y: result.confusion.map((_, i) => `A${i}`)}],
                     {title: {text: "particles in both"}, margin: {l: 50, r: 10, t: 40, b: 40},
                      yaxis: {autorange: "reversed"}}, {displaylogo: false, responsive: true});
  line.dataset.agreement = String(result.agreement);  // once everything is drawn
}

// ---- wiring ------------------------------------------------------------------------------------
function on(id, handler) {
  $(id).onclick = () => handler().catch((e) => say(e.message));
}
on("combine", combine);
on("export", exportSelection);
on("map-mean", () => (state.active ? requestMap({selection: state.active})
                                   : Promise.reject(new Error("select particles first"))));
on("prev-page", () => turnPage(-1));
on("next-page", () => turnPage(1));
on("make-path", makePath);
on("play", playPath);
on("chimerax", writeScript);
on("compare", compareRuns);
on("pairs", drawPairs);
$("level").oninput = () => { if (state.map !== null) drawMap(state.map).catch((e) => say(e.message)); };
loadRuns().catch((e) => say(e.message));
