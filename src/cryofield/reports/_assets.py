"""The style sheet and scripts of the HTML report, inlined into every page (no file is fetched at view time)."""

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d2733;
       margin: 0 auto; max-width: 1280px; padding: 0 24px 48px; }
h1 { font-size: 22px; margin: 24px 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #d5dbe3; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
nav a { margin-right: 14px; }
.muted, .caption, figcaption { color: #5b6675; font-size: 12.5px; }
table.settings { border-collapse: collapse; font-size: 12.5px; }
table.settings td { padding: 2px 10px 2px 0; vertical-align: top; border-bottom: 1px solid #eef1f4; }
table.settings td.key { color: #5b6675; white-space: nowrap; }
table.settings td.value { font-family: ui-monospace, Menlo, Consolas, monospace; word-break: break-all; }
.columns { display: flex; flex-wrap: wrap; gap: 0 32px; align-items: flex-start; }
.plot { width: 100%; min-height: 300px; }
.half { flex: 1 1 560px; min-width: 0; }
.third { flex: 1 1 360px; min-width: 0; }
.selection { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; margin: 4px 0 12px; }
.selection code { background: #f2f4f7; padding: 3px 6px; border-radius: 3px; font-size: 12px; }
button { font: inherit; padding: 4px 10px; border-radius: 4px; border: 1px solid #8796a8; background: #f4f7fb;
         cursor: pointer; }
button:disabled { cursor: default; color: #a0a8b3; border-color: #d5dbe3; }
.maps { display: flex; flex-wrap: wrap; gap: 14px 22px; }
figure.map { margin: 0; }
.figures figure { display: inline-block; margin: 6px; vertical-align: top; }
.figures img { width: 100%; max-width: 560px; }
figure.map img, .strip img { display: block; image-rendering: pixelated; }
.tiles { display: grid; font-size: 11px; color: #5b6675; text-align: center; }
.strip { display: grid; grid-template-columns: 110px auto; gap: 4px 8px; align-items: center; margin-bottom: 8px; }
.strip .label { font-size: 12px; color: #5b6675; text-align: right; }
details { margin: 6px 0 14px; }
pre.selftest { white-space: pre-wrap; font-size: 11px; }
.surface { max-width: 720px; }
"""

#: Runs before plotly.js: in self-test mode (URL fragment ``#selftest``) every console error and uncaught
#: exception is also written into the page, so that a headless browser's DOM dump shows them.
ERROR_CAPTURE_JS = """
window.__reportErrors = [];
if (window.location.hash === "#selftest") {
  const original = console.error.bind(console);
  console.error = function (...args) {
    window.__reportErrors.push(args.map(String).join(" "));
    original(...args);
  };
  window.addEventListener("error", function (e) { window.__reportErrors.push("Uncaught " + e.message); });
  window.addEventListener("unhandledrejection", function (e) {
    window.__reportErrors.push("Unhandled rejection " + String(e.reason));
  });
}
"""

#: The latent scatter plots and their lasso/box selection -> ``cryofield filter --polygon`` JSON file.
#: Each figure is drawn by its own inline script, before the figures after it exist: one beside others
#: in a row was drawn at the row's full width and showed only part of itself (2 of 6 cluster bars).
#: Once the page is laid out, every figure is fitted to its box.
FIT_FIGURES_JS = """
window.addEventListener("load", function () {
  document.querySelectorAll(".plotly-graph-div").forEach(function (div) { Plotly.Plots.resize(div); });
});
"""

LATENT_JS = r"""
(function () {
  "use strict";
  const dataElement = document.getElementById("latent-data");
  const selftest = window.location.hash === "#selftest";
  const status = document.getElementById("selftest-status");

  function webglAvailable() {
    try {
      const canvas = document.createElement("canvas");
      return !!(window.WebGLRenderingContext && canvas.getContext("webgl"));
    } catch (e) {
      return false;
    }
  }

  // Even-odd rule, as matplotlib's Path.contains_points that `cryofield filter --polygon` uses.
  function inside(polygon, x, y) {
    let result = false;
    for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
      const xi = polygon[i][0], yi = polygon[i][1], xj = polygon[j][0], yj = polygon[j][1];
      if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) result = !result;
    }
    return result;
  }

  // The lasso's path, or the box's corners, in the plot's data coordinates.
  function polygonOf(event) {
    if (!event) return null;
    const lasso = event.lassoPoints;
    if (lasso && lasso.x && lasso.y && lasso.x.length >= 3) {
      return lasso.x.map(function (x, i) { return [Number(x), Number(lasso.y[i])]; });
    }
    const range = event.range;
    if (range && range.x && range.y) {
      const x0 = Number(range.x[0]), x1 = Number(range.x[1]), y0 = Number(range.y[0]), y1 = Number(range.y[1]);
      return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
    }
    return null;
  }

  function selectionText(state) {
    return JSON.stringify({space: state.space, vertices: state.polygon}) + "\n";
  }

  function download(state) {
    if (!state.polygon) return;
    const text = selectionText(state);
    if (selftest) {  // record what would be saved instead of saving it
      document.getElementById("selftest-output-" + state.space).textContent = text;
      return;
    }
    const url = URL.createObjectURL(new Blob([text], {type: "application/json"}));
    const link = document.createElement("a");
    link.href = url;
    link.download = "selection.json";
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(url); link.remove(); }, 0);
  }

  function describe(state) {
    const shown = state.x.length;
    if (!state.polygon) {
      state.countElement.textContent = "Draw a lasso (or box) around particles to select them.";
      return;
    }
    let text = state.count + " of the " + shown + " particles shown are selected";
    if (shown < state.total) {
      const estimate = Math.round(state.count * state.total / shown);
      text += " (about " + estimate + " of all " + state.total + "; `cryofield filter` counts them exactly)";
    }
    state.countElement.textContent = text + ".";
  }

  function onSelected(state, event) {
    const polygon = polygonOf(event);
    if (!polygon) {
      onDeselect(state);
      return;
    }
    let count = 0;
    for (let i = 0; i < state.x.length; i++) if (inside(polygon, state.x[i], state.y[i])) count++;
    state.polygon = polygon;
    state.count = count;
    state.button.disabled = false;
    describe(state);
  }

  function onDeselect(state) {
    state.polygon = null;
    state.count = 0;
    state.button.disabled = true;
    describe(state);
  }

  function traces(space, type, palette, clusterName) {
    const n = space.x.length;
    const size = n <= 1000 ? 6 : n <= 5000 ? 4 : 3;
    const groups = new Map();
    for (let i = 0; i < n; i++) {
      const k = space.cluster ? space.cluster[i] : -1;
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(i);
    }
    const keys = Array.from(groups.keys()).sort(function (a, b) { return a - b; });
    const out = keys.map(function (k) {
      const members = groups.get(k);
      const label = k < 0 ? "particles" : clusterName + " " + k;
      return {
        type: type, mode: "markers", name: label + " (" + members.length + ")",
        x: members.map(function (i) { return space.x[i]; }), y: members.map(function (i) { return space.y[i]; }),
        customdata: members.map(function (i) { return space.row[i]; }),
        marker: {size: size, opacity: 0.7, color: k < 0 ? "#4c72b0" : palette[k % palette.length]},
        hovertemplate: "latent row %{customdata}<br>" + label + "<br>(%{x:.4g}, %{y:.4g})<extra></extra>",
      };
    });
    if (space.centers && space.centers.x.length) {
      out.push({type: "scatter", mode: "text", name: "on-data centres", x: space.centers.x, y: space.centers.y,
                text: space.centers.label, textfont: {size: 13, color: "#111"}, hoverinfo: "skip",
                showlegend: false});
    }
    return out;
  }

  function selftestEvent(state, kind) {
    const xs = state.x.slice().sort(function (a, b) { return a - b; });
    const ys = state.y.slice().sort(function (a, b) { return a - b; });
    const q = function (values, p) { return values[Math.floor(p * (values.length - 1))]; };
    const cx = q(xs, 0.5), cy = q(ys, 0.5);
    const rx = Math.max(q(xs, 0.75) - q(xs, 0.25), 1e-9), ry = Math.max(q(ys, 0.75) - q(ys, 0.25), 1e-9);
    if (kind === "box") return {points: [], range: {x: [cx - rx / 2, cx + rx / 2], y: [cy - ry / 2, cy + ry / 2]}};
    const px = [], py = [];
    for (let i = 0; i < 8; i++) {
      px.push(cx + rx * Math.cos(Math.PI * i / 4));
      py.push(cy + ry * Math.sin(Math.PI * i / 4));
    }
    return {points: [], lassoPoints: {x: px, y: py}};
  }

  // A lasso drawn with the mouse: plotly's own drag handling turns the pointer's path into plotly_selected.
  function dragLasso(state) {
    return new Promise(function (resolve) {
      state.gd.scrollIntoView();
      const drag = state.gd.querySelector(".nsewdrag");
      const box = drag.getBoundingClientRect();
      const cx = box.left + box.width / 2, cy = box.top + box.height / 2, r = 0.3 * Math.min(box.width, box.height);
      const path = [];
      for (let i = 0; i <= 16; i++) path.push([cx + r * Math.cos(Math.PI * i / 8), cy + r * Math.sin(Math.PI * i / 8)]);
      const fire = function (target, type, point) {
        target.dispatchEvent(new MouseEvent(type, {bubbles: true, cancelable: true, view: window, clientX: point[0],
                                                   clientY: point[1], button: 0, buttons: type === "mouseup" ? 0 : 1}));
      };
      onDeselect(state);
      fire(drag, "mousedown", path[0]);
      let i = 1;
      const step = function () {
        if (i < path.length) {
          fire(document, "mousemove", path[i++]);
          setTimeout(step, 10);
          return;
        }
        fire(document, "mouseup", path[path.length - 1]);
        setTimeout(resolve, 300);
      };
      setTimeout(step, 10);
    });
  }

  function record(state, id) {
    const output = document.getElementById(id);
    output.dataset.count = String(state.count);
    output.dataset.shown = String(state.x.length);
    output.textContent = state.polygon ? selectionText(state) : "";
  }

  function runSelftest(states) {
    // 1. a plotly_selected event as a lasso (PCA) or a box (UMAP) sends, then the download button
    states.forEach(function (state, i) {
      state.gd.emit("plotly_selected", selftestEvent(state, i % 2 === 0 ? "lasso" : "box"));
      record(state, "selftest-output-" + state.space);
      state.button.click();  // writes what it would save over the record: the same text
    });
    // 2. a lasso drawn by mouse events, one plot after the other
    return states.reduce(function (done, state) {
      return done.then(function () { return dragLasso(state); }).then(function () {
        record(state, "selftest-drag-" + state.space);
      });
    }, Promise.resolve());
  }

  function finish(message) {
    if (!status) return;
    const errors = document.getElementById("selftest-errors");
    if (errors) errors.textContent = window.__reportErrors.join("\n");
    status.dataset.trace = type;
    status.textContent = message;
  }

  const type = webglAvailable() ? "scattergl" : "scatter";  // SVG where WebGL is missing
  if (!dataElement) {
    if (selftest) finish("ok");
    return;
  }
  const data = JSON.parse(dataElement.textContent);
  const states = [];
  const drawn = data.spaces.map(function (space) {
    const gd = document.getElementById("scatter-" + space.space);
    const state = {space: space.space, x: space.x, y: space.y, total: data.particles, polygon: null, count: 0, gd: gd,
                   button: document.getElementById("download-" + space.space),
                   countElement: document.getElementById("count-" + space.space)};
    states.push(state);
    state.button.addEventListener("click", function () { download(state); });
    describe(state);
    const layout = {
      dragmode: "lasso", height: 480, margin: {l: 60, r: 10, t: 36, b: 50}, hovermode: "closest",
      title: {text: space.title, font: {size: 14}}, xaxis: {title: {text: space.xlabel}, zeroline: false},
      yaxis: {title: {text: space.ylabel}, zeroline: false}, legend: {itemsizing: "constant", font: {size: 11}},
      plot_bgcolor: "#fbfcfd",
    };
    return Plotly.newPlot(gd, traces(space, type, data.palette, data.clusters), layout,
                          {displaylogo: false, responsive: true}).then(function () {
      gd.on("plotly_selected", function (event) { onSelected(state, event); });
      gd.on("plotly_deselect", function () { onDeselect(state); });
    });
  });
  Promise.all(drawn).then(function () {
    if (!selftest) return null;
    return runSelftest(states).then(function () { finish("ok"); });
  }).catch(function (error) {
    console.error(error);
    if (selftest) finish("error: " + error);
  });
})();
"""
