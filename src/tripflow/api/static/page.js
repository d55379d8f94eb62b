// The tripflow page: a map of the regions, a question form, the weekly series as a chart,
// the ingestions as they happen and the largest groups of similar trips. Plain JavaScript on
// the API's own endpoints; Leaflet (L) and uPlot are loaded before this file.
"use strict";

(() => {
  const AREA_PARAMETERS = ["bbox", "region", "datasource", "from", "to", "match"];
  const DEFAULT_MATCH = "both";
  const SHOWN_BATCHES = 10;
  // Degrees between graticule lines, the first that draws at most about a dozen on screen.
  const GRID_STEPS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30];
  const DAY_SECONDS = 86400;
  const GROUP_COLOR = "#7b3fa0";
  const GROUP_HIGHLIGHT = "#d2691e";

  const $ = (id) => document.getElementById(id);
  const form = $("ask");
  const bboxInput = $("bbox");
  const drawButton = $("draw");
  const numbers = new Intl.NumberFormat("en", { maximumFractionDigits: 3 });

  // What the page shows, kept in one place (window.tripflow, for a look from the console).
  const state = {
    map: null,
    chart: null,
    answer: null,
    regions: [],
    asked: 0,
    batches: new Map(),
    // The similar-trip groups: their page, and the region and datasource they follow.
    groups: { ready: false, asked: 0, limit: null, offset: 0, following: null, answer: null },
  };
  window.tripflow = state;

  class ApiError extends Error {
    constructor(status, problem, url) {
      super(problem && problem.detail ? problem.detail : `HTTP ${status} from ${url}`);
      this.status = status;
      this.problem = problem;
    }
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      throw new ApiError(response.status, body, url);
    }
    return body;
  }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  // --- errors --------------------------------------------------------------------------------

  // An API's problem (its title, detail and each invalid parameter) or a failed request, as
  // text in a box of the page.
  function showProblem(box, error) {
    box.replaceChildren();
    if (error instanceof ApiError && error.problem) {
      const problem = error.problem;
      box.append(element("strong", `${problem.status} ${problem.title}: `), problem.detail);
      if (Array.isArray(problem.invalid_params) && problem.invalid_params.length) {
        const list = element("ul");
        for (const item of problem.invalid_params) {
          const line = element("li");
          line.append(element("code", item.name), `: ${item.reason}`);
          list.append(line);
        }
        box.append(list);
      }
    } else {
      box.textContent = `The API could not be asked: ${error.message}`;
    }
    box.hidden = false;
  }

  function clearProblem(box) {
    box.hidden = true;
    box.replaceChildren();
  }

  const showError = (error) => showProblem($("error"), error);
  const clearError = () => clearProblem($("error"));

  // --- the map -------------------------------------------------------------------------------

  const map = L.map("map", { zoomSnap: 0.25, worldCopyJump: false }).setView([30, 10], 2);
  state.map = map;
  const graticule = L.layerGroup().addTo(map);
  const regionLayer = L.featureGroup().addTo(map);
  // Groups are drawn above the regions but let every click through to them.
  map.createPane("groups").style.zIndex = 450;
  map.getPane("groups").style.pointerEvents = "none";
  const groupLayer = L.layerGroup().addTo(map);
  let box = null;
  let drawMode = false;
  let drawStart = null;
  let lastPoint = null;
  let ignoreNextClick = false;

  function drawGraticule() {
    graticule.clearLayers();
    const view = map.getBounds();
    const span = Math.max(view.getEast() - view.getWest(), view.getNorth() - view.getSouth());
    const step = GRID_STEPS.find((size) => span / size <= 12) || 30;
    const style = { color: "#cfc9bb", weight: 1, interactive: false };
    const south = Math.max(-85, view.getSouth() - step);
    const north = Math.min(85, view.getNorth() + step);
    const west = Math.max(-180, view.getWest() - step);
    const east = Math.min(180, view.getEast() + step);
    for (let lon = Math.ceil(west / step) * step; lon <= east; lon += step) {
      graticule.addLayer(L.polyline([[south, lon], [north, lon]], style));
    }
    for (let lat = Math.ceil(south / step) * step; lat <= north; lat += step) {
      graticule.addLayer(L.polyline([[lat, west], [lat, east]], style));
    }
  }
  map.on("moveend", drawGraticule);
  drawGraticule();

  const Coordinates = L.Control.extend({
    options: { position: "bottomleft" },
    onAdd() {
      this.node = L.DomUtil.create("div", "coordinates");
      this.node.textContent = "lon, lat";
      return this.node;
    },
    show(latlng) {
      this.node.textContent = `${latlng.lng.toFixed(5)}, ${latlng.lat.toFixed(5)}`;
    },
  });
  const coordinates = new Coordinates().addTo(map);

  const clamp = (value, low, high) => Math.min(high, Math.max(low, value));
  const rounded = (value) => Number(value.toFixed(5));

  function bboxText(bounds) {
    return [
      rounded(clamp(bounds.getWest(), -180, 180)),
      rounded(clamp(bounds.getSouth(), -90, 90)),
      rounded(clamp(bounds.getEast(), -180, 180)),
      rounded(clamp(bounds.getNorth(), -90, 90)),
    ].join(",");
  }

  // The box typed in the field as map bounds, or null if it is not four numbers.
  function typedBounds() {
    const parts = bboxInput.value.split(",").map((part) => part.trim());
    if (parts.length !== 4 || parts.some((part) => part === "")) return null;
    const [minLon, minLat, maxLon, maxLat] = parts.map(Number);
    if (![minLon, minLat, maxLon, maxLat].every(Number.isFinite)) return null;
    return L.latLngBounds([minLat, minLon], [maxLat, maxLon]);
  }

  function showBox(bounds) {
    if (bounds === null) {
      if (box) box.remove();
      box = null;
    } else if (box) {
      box.setBounds(bounds);
    } else {
      box = L.rectangle(bounds, {
        className: "question-box",
        color: "#d2691e",
        weight: 2,
        dashArray: "6 4",
        fillOpacity: 0.08,
        interactive: false,
      }).addTo(map);
    }
  }

  function setDrawMode(on) {
    drawMode = on;
    drawButton.setAttribute("aria-pressed", String(on));
    map.getContainer().classList.toggle("drawing", on);
    if (on) map.dragging.disable();
    else map.dragging.enable();
  }

  function finishDrawing() {
    const start = drawStart;
    drawStart = null;
    setDrawMode(false);
    // The click that ends a drag must not also pick the region under it.
    ignoreNextClick = true;
    setTimeout(() => {
      ignoreNextClick = false;
    }, 0);
    const from = map.latLngToContainerPoint(start);
    const to = map.latLngToContainerPoint(lastPoint);
    if (Math.abs(from.x - to.x) < 3 && Math.abs(from.y - to.y) < 3) {
      showBox(typedBounds());
      return;
    }
    bboxInput.value = bboxText(L.latLngBounds(start, lastPoint));
    showBox(typedBounds());
    ask();
  }

  map.on("mousedown", (event) => {
    if (!drawMode) return;
    // A drag that draws must not also select the text it passes over.
    L.DomEvent.preventDefault(event.originalEvent);
    drawStart = lastPoint = event.latlng;
    showBox(L.latLngBounds(drawStart, drawStart));
  });
  map.on("mousemove", (event) => {
    coordinates.show(event.latlng);
    if (drawStart === null) return;
    lastPoint = event.latlng;
    showBox(L.latLngBounds(drawStart, lastPoint));
  });
  map.on("mouseup", (event) => {
    if (drawStart === null) return;
    lastPoint = event.latlng;
    finishDrawing();
  });
  // A drag released outside the map ends where the pointer last was on it.
  document.addEventListener("mouseup", () => {
    if (drawStart !== null) finishDrawing();
  });
  drawButton.addEventListener("click", () => setDrawMode(!drawMode));
  $("clear-box").addEventListener("click", () => {
    bboxInput.value = "";
    showBox(null);
    ask();
  });
  bboxInput.addEventListener("change", () => {
    const bounds = typedBounds();
    showBox(bounds);
    if (bounds && !map.getBounds().contains(bounds)) map.fitBounds(bounds, { padding: [20, 20] });
  });

  function regionBounds(region) {
    const [minLon, minLat, maxLon, maxLat] = region.bbox;
    return L.latLngBounds([minLat, minLon], [maxLat, maxLon]);
  }

  function highlightRegion() {
    const chosen = form.elements.region.value;
    regionLayer.eachLayer((layer) => {
      if (!layer.region) return;
      const selected = layer.region.name === chosen;
      layer.setStyle({ weight: selected ? 3 : 1.5, fillOpacity: selected ? 0.25 : 0.12 });
    });
  }

  // Names on the map, largest region first, each kept only where it overlaps no name
  // already placed (the others show on hover): a world view of close cities stays readable.
  function labelRegions() {
    const placed = [];
    const layers = [];
    regionLayer.eachLayer((layer) => {
      if (layer.region) layers.push(layer);
    });
    layers.sort((a, b) => b.region.trips - a.region.trips);
    for (const layer of layers) {
      const at = map.latLngToContainerPoint(layer.getBounds().getCenter());
      const text = `${layer.region.name} · ${numbers.format(layer.region.trips)} trips`;
      const width = 7 * text.length + 12;
      const free = placed.every(
        (other) => Math.abs(other.x - at.x) > (other.width + width) / 2 || Math.abs(other.y - at.y) > 22,
      );
      if (free) placed.push({ x: at.x, y: at.y, width });
      // Bound again only when it changes: a closed name fades out for a moment.
      const bound = layer.getTooltip();
      if (bound && bound.options.permanent === free && bound.getContent() === text) continue;
      layer.unbindTooltip();
      layer.bindTooltip(text, { permanent: free, direction: "center", className: "region-label" });
    }
  }
  map.on("zoomend", labelRegions);

  function drawRegions(regions, fit) {
    regionLayer.clearLayers();
    const most = Math.max(1, ...regions.map((region) => region.trips));
    for (const region of regions) {
      const bounds = regionBounds(region);
      const pick = () => {
        if (drawMode || ignoreNextClick) return;
        form.elements.region.value = region.name;
        highlightRegion();
        ask();
      };
      // The box around the region's trips, and a dot at its centre sized by its trips
      // (by area), which stays visible when the box is a few pixels wide.
      const extent = L.rectangle(bounds, {
        className: "region",
        color: "#1f5fbf",
        weight: 1.5,
        fillOpacity: 0.12,
      });
      extent.region = region;
      extent.on("click", pick);
      const dot = L.circleMarker(bounds.getCenter(), {
        className: "region-dot",
        radius: 4 + 14 * Math.sqrt(region.trips / most),
        color: "#1f5fbf",
        weight: 1,
        fillOpacity: 0.45,
      });
      dot.on("click", pick);
      regionLayer.addLayer(extent).addLayer(dot);
    }
    highlightRegion();
    // At once: Leaflet drops a view change asked for while it is animating another.
    if (fit && regions.length) {
      map.fitBounds(regionLayer.getBounds(), { padding: [30, 30], animate: false });
    }
    labelRegions();
  }

  // --- choices -------------------------------------------------------------------------------

  function fillSelect(select, names, anyLabel) {
    const chosen = select.value;
    const options = [new Option(anyLabel, "")];
    for (const [name, label] of names) options.push(new Option(label, name));
    // A name asked for (a shared link) stays choosable even if no trip has it yet.
    if (chosen && !names.some(([name]) => name === chosen)) options.push(new Option(chosen, chosen));
    select.replaceChildren(...options);
    select.value = chosen;
  }

  async function loadChoices(fit) {
    const [extents, datasources] = await Promise.all([
      getJson("/regions/extents"),
      getJson("/datasources"),
    ]);
    state.regions = extents.regions;
    const label = (item) => [item.name, `${item.name} (${numbers.format(item.trips)})`];
    fillSelect(form.elements.region, extents.regions.map(label), "any region");
    fillSelect(form.elements.datasource, datasources.datasources.map(label), "any datasource");
    drawRegions(extents.regions, fit);
  }

  // --- the question and its answer -----------------------------------------------------------

  function questionQuery() {
    const params = new URLSearchParams();
    for (const name of AREA_PARAMETERS) {
      const value = form.elements[name].value.trim();
      if (value && !(name === "match" && value === DEFAULT_MATCH)) params.set(name, value);
    }
    // Commas need no escaping in a query string, and the box reads better without it.
    return params.toString().replaceAll("%2C", ",");
  }

  function readLocation() {
    const params = new URLSearchParams(location.hash.slice(1));
    for (const name of AREA_PARAMETERS) {
      const value = params.get(name);
      if (value === null) continue;
      const field = form.elements[name];
      if (field.tagName === "SELECT" && ![...field.options].some((o) => o.value === value)) {
        field.append(new Option(value, value));
      }
      field.value = value;
    }
    showBox(typedBounds());
  }

  function weekSeconds(day) {
    return Date.parse(`${day}T00:00:00Z`) / 1000;
  }

  function isoDay(seconds) {
    return new Date(seconds * 1000).toISOString().slice(0, 10);
  }

  function makeChart(data) {
    const target = $("chart");
    return new uPlot(
      {
        width: Math.max(280, target.clientWidth),
        height: 240,
        tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"),
        scales: {
          // Half a week either side, so that the first and last bars are whole.
          x: { time: true, range: (u, low, high) => [low - 3.5 * DAY_SECONDS, high + 3.5 * DAY_SECONDS] },
          y: { range: (u, low, high) => [0, high > 0 ? high * 1.1 : 1] },
        },
        axes: [
          {
            // A tick on a Monday of the series every 90 pixels or more, as an ISO date.
            splits: (u) => {
              const weeks = u.data[0];
              const every = Math.ceil((weeks.length * 90 * devicePixelRatio) / u.bbox.width);
              return weeks.filter((_, index) => index % Math.max(1, every) === 0);
            },
            values: (u, splits) => splits.map(isoDay),
          },
          { label: "trips per week", size: 64 },
        ],
        series: [
          { label: "week of", value: (u, seconds) => (seconds == null ? "–" : isoDay(seconds)) },
          {
            label: "trips",
            stroke: "#1f5fbf",
            fill: "rgba(31, 95, 191, 0.35)",
            paths: uPlot.paths.bars({ size: [0.7, 48] }),
            points: { show: false },
          },
          {
            label: "weekly average",
            stroke: "#d2691e",
            width: 2,
            dash: [6, 4],
            points: { show: false },
          },
        ],
      },
      data,
      target,
    );
  }

  function showAnswer(answer) {
    state.answer = answer;
    $("trips").textContent = numbers.format(answer.trips);
    $("weeks").textContent = numbers.format(answer.weeks);
    $("weekly-average").textContent = numbers.format(answer.weekly_average);
    $("weekly-average").dataset.value = String(answer.weekly_average);
    $("span").textContent = answer.first_week
      ? `${answer.first_week} to ${answer.last_week}`
      : "no weeks";

    const data = [
      answer.series.map((week) => weekSeconds(week.week_start)),
      answer.series.map((week) => week.trips),
      answer.series.map(() => answer.weekly_average),
    ];
    $("chart").hidden = data[0].length === 0;
    if (state.chart === null && data[0].length) state.chart = makeChart(data);
    else if (state.chart !== null) state.chart.setData(data);

    const rows = answer.series.map((week) => {
      const row = element("tr");
      row.append(element("td", week.week), element("td", week.week_start));
      row.append(element("td", numbers.format(week.trips)));
      return row;
    });
    document.querySelector("#series tbody").replaceChildren(...rows);
  }

  async function ask() {
    const query = questionQuery();
    const url = `/weekly-average${query ? `?${query}` : ""}`;
    history.replaceState(null, "", query ? `#${query}` : location.pathname);
    highlightRegion();
    const source = $("source");
    source.textContent = `GET ${url}`;
    source.href = url;
    followQuestion();
    // Answers can come back out of order; only the latest question's is shown.
    const asked = ++state.asked;
    const section = $("answer");
    section.dataset.state = "asking";
    try {
      const answer = await getJson(url);
      if (asked !== state.asked) return;
      clearError();
      showAnswer(answer);
      section.dataset.state = "answered";
    } catch (error) {
      if (asked !== state.asked) return;
      showError(error);
      section.dataset.state = "error";
    }
    section.dataset.query = query;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    showBox(typedBounds());
    ask();
  });
  for (const name of ["region", "datasource", "from", "to", "match"]) {
    form.elements[name].addEventListener("change", () => ask());
  }
  form.elements.region.addEventListener("change", () => {
    const region = state.regions.find((item) => item.name === form.elements.region.value);
    if (region) map.fitBounds(regionBounds(region), { padding: [30, 30], maxZoom: 13 });
  });

  new ResizeObserver(() => {
    if (state.chart) state.chart.setSize({ width: Math.max(280, $("chart").clientWidth), height: 240 });
  }).observe($("chart"));

  // --- similar trips -------------------------------------------------------------------------

  const groupControls = $("group-controls");

  // Fill a select with the values a parameter's schema allows, its default chosen.
  function fillChoices(select, schema, label) {
    const options = schema.enum.map((value) => new Option(label(value), String(value)));
    select.replaceChildren(...options);
    select.value = String(schema.default);
  }

  function bucketLabel(minutes) {
    if (minutes % 60) return `${minutes} minutes`;
    return minutes === 60 ? "1 hour" : `${minutes / 60} hours`;
  }

  // The choices the API keeps (resolutions, bucket widths) and its defaults, as it
  // describes them; then the first page of groups.
  async function loadGroupControls() {
    const description = await getJson("/openapi.json");
    const schemas = new Map(
      description.paths["/trip-groups"].get.parameters.map((item) => [item.name, item.schema]),
    );
    fillChoices(groupControls.elements.resolution, schemas.get("resolution"), String);
    fillChoices(groupControls.elements.bucket, schemas.get("bucket"), bucketLabel);
    const least = schemas.get("min_trips");
    const minTrips = groupControls.elements.min_trips;
    minTrips.min = String(least.minimum);
    minTrips.max = String(least.maximum);
    minTrips.value = String(least.default);
    state.groups.limit = schemas.get("limit").default;
    state.groups.ready = true;
    loadGroups();
  }

  function questionKey() {
    return JSON.stringify([form.elements.region.value, form.elements.datasource.value]);
  }

  // A new region or datasource in the question starts the groups again from their first page.
  function followQuestion() {
    if (!state.groups.ready || state.groups.following === questionKey()) return;
    state.groups.offset = 0;
    loadGroups();
  }

  function groupQuery() {
    const params = new URLSearchParams();
    for (const name of ["region", "datasource"]) {
      const value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    params.set("resolution", groupControls.elements.resolution.value);
    params.set("bucket", groupControls.elements.bucket.value);
    // Left empty: the API's own default.
    const least = groupControls.elements.min_trips.value.trim();
    if (least) params.set("min_trips", least);
    params.set("limit", String(state.groups.limit));
    params.set("offset", String(state.groups.offset));
    return params.toString();
  }

  function cellColumn(cell) {
    const column = element("td", cell.cell, "cell");
    column.title = `centre ${cell.lon.toFixed(5)}, ${cell.lat.toFixed(5)}`;
    return column;
  }

  // One group on the map: a line between its cells' centres, as thick as its trips are
  // many among those shown, an open circle at the origin and a filled one at the destination.
  function drawGroup(group, most) {
    const style = { pane: "groups", color: GROUP_COLOR, interactive: false };
    const from = [group.origin.lat, group.origin.lon];
    const to = [group.destination.lat, group.destination.lon];
    const line = L.polyline([from, to], {
      ...style,
      className: "group-line",
      weight: 1.5 + 4.5 * Math.sqrt(group.trips / most),
      opacity: 0.75,
    });
    const origin = L.circleMarker(from, {
      ...style,
      className: "group-end group-origin",
      radius: 3.5,
      weight: 1.5,
      fillColor: "#ffffff",
      fillOpacity: 1,
    });
    const destination = L.circleMarker(to, {
      ...style,
      className: "group-end group-destination",
      radius: 3.5,
      weight: 1,
      fillOpacity: 1,
    });
    groupLayer.addLayer(line).addLayer(origin).addLayer(destination);
    return [line, origin, destination];
  }

  function highlightGroup(shapes, on) {
    for (const shape of shapes) {
      shape.setStyle({ color: on ? GROUP_HIGHLIGHT : GROUP_COLOR });
      if (on) shape.bringToFront();
    }
  }

  function groupRow(group, most) {
    const shapes = drawGroup(group, most);
    const row = element("tr");
    row.append(
      element("td", group.region),
      cellColumn(group.origin),
      cellColumn(group.destination),
      element("td", `${group.time_of_day.from}–${group.time_of_day.to}`),
      element("td", numbers.format(group.trips), "number"),
      element("td", numbers.format(group.weekly_average), "number"),
    );
    row.addEventListener("mouseenter", () => highlightGroup(shapes, true));
    row.addEventListener("mouseleave", () => highlightGroup(shapes, false));
    return row;
  }

  // Show a page of groups (null: none, after a problem): the table, the map, the paging.
  function showGroups(answer) {
    state.groups.answer = answer;
    groupLayer.clearLayers();
    const shown = answer ? answer.groups : [];
    const most = Math.max(1, ...shown.map((group) => group.trips));
    const rows = shown.map((group) => groupRow(group, most));
    document.querySelector("#group-table tbody").replaceChildren(...rows);
    $("group-table").hidden = rows.length === 0;

    const total = answer ? answer.total_groups : 0;
    const first = answer ? answer.offset : 0;
    let summary = "";
    if (answer && total === 0) {
      summary = `No group has ${numbers.format(answer.min_trips)} trips or more.`;
    } else if (answer) {
      const weeks = answer.weeks === 1 ? "1 week" : `${numbers.format(answer.weeks)} weeks`;
      summary =
        `${numbers.format(total)} groups of ${numbers.format(answer.trips)} trips; ` +
        `weekly averages over ${weeks}.`;
    }
    $("groups-summary").textContent = summary;
    $("groups-page").textContent = rows.length
      ? `${numbers.format(first + 1)}–${numbers.format(first + rows.length)} of ${numbers.format(total)}`
      : "";
    $("groups-previous").disabled = !answer || first === 0;
    $("groups-next").disabled = !answer || first + rows.length >= total;
  }

  async function loadGroups() {
    if (!state.groups.ready) return;
    state.groups.following = questionKey();
    const query = groupQuery();
    const url = `/trip-groups?${query}`;
    const source = $("groups-source");
    source.textContent = `GET ${url}`;
    source.href = url;
    const asked = ++state.groups.asked;
    const section = $("groups");
    section.dataset.state = "asking";
    try {
      const answer = await getJson(url);
      if (asked !== state.groups.asked) return;
      // Past the last page (fewer groups than when it was asked for): show the last one.
      if (answer.groups.length === 0 && answer.offset > 0 && answer.total_groups > 0) {
        const last = answer.total_groups - 1;
        state.groups.offset = last - (last % state.groups.limit);
        loadGroups();
        return;
      }
      clearProblem($("groups-error"));
      showGroups(answer);
      section.dataset.state = "answered";
    } catch (error) {
      if (asked !== state.groups.asked) return;
      showGroups(null);
      showProblem($("groups-error"), error);
      section.dataset.state = "error";
    }
    section.dataset.query = query;
  }

  function turnGroupPage(step) {
    state.groups.offset = Math.max(0, state.groups.offset + step * state.groups.limit);
    loadGroups();
  }

  $("groups-previous").addEventListener("click", () => turnGroupPage(-1));
  $("groups-next").addEventListener("click", () => turnGroupPage(1));
  groupControls.addEventListener("change", () => {
    state.groups.offset = 0;
    loadGroups();
  });
  groupControls.addEventListener("submit", (event) => {
    event.preventDefault();
    state.groups.offset = 0;
    loadGroups();
  });

  // --- ingestions, live ----------------------------------------------------------------------

  // Microseconds since the epoch of an ISO 8601 time with an offset (Date keeps milliseconds).
  function moment(text) {
    const fraction = /\.(\d+)/.exec(text);
    const micro = fraction ? Number(fraction[1].padEnd(6, "0").slice(0, 6)) : 0;
    return Date.parse(text.replace(/\.\d+/, "")) * 1000 + micro;
  }

  function fromList(batch) {
    return {
      batch_id: batch.batch_id,
      status: batch.status,
      files: batch.file_count,
      rows_read: batch.rows_read,
      rows_loaded: batch.rows_loaded,
      rows_rejected: batch.rows_rejected,
      rows_duplicate: batch.rows_duplicate,
      error: batch.error,
      at: batch.updated_at,
    };
  }

  // Keep a batch's state unless what is kept is newer (a list read after an event).
  function remember(batch) {
    const known = state.batches.get(batch.batch_id);
    if (known && moment(known.at) > moment(batch.at)) return false;
    state.batches.set(batch.batch_id, batch);
    return true;
  }

  function showBatches(changed) {
    const newest = [...state.batches.values()].sort((a, b) => b.batch_id - a.batch_id);
    for (const old of newest.slice(SHOWN_BATCHES)) state.batches.delete(old.batch_id);
    const items = newest.slice(0, SHOWN_BATCHES).map((batch) => {
      const item = element("li");
      item.dataset.batch = String(batch.batch_id);
      item.dataset.status = batch.status;
      if (batch.batch_id === changed) item.className = "changed";
      const files = batch.files === 1 ? "1 file" : `${batch.files} files`;
      item.append(element("strong", `Batch ${batch.batch_id}`), " ");
      item.append(element("span", batch.status, "status"), ` · ${files} `);
      if (batch.rows_read !== null) {
        const counts = ["read", "loaded", "rejected", "duplicate"]
          .map((name) => `${numbers.format(batch[`rows_${name}`] ?? 0)} ${name}`)
          .join(", ");
        item.append(element("span", counts, "counts"), " ");
      }
      const when = element("time", new Date(batch.at).toLocaleString());
      when.dateTime = batch.at;
      item.append(when);
      if (batch.error) item.append(element("div", batch.error, "batch-error"));
      return item;
    });
    $("batches").replaceChildren(...items);
    if (!items.length) $("batches").append(element("li", "No ingestion yet."));
  }

  function setLive(text, which) {
    $("live").textContent = text;
    $("live").dataset.state = which;
  }

  let refreshing = null;
  // A finished batch may have added trips: the map, the choices and the answer follow.
  function refreshData() {
    clearTimeout(refreshing);
    refreshing = setTimeout(() => {
      loadChoices(false).catch(showError);
      ask();
      loadGroups();
    }, 200);
  }

  function listen() {
    const stream = new EventSource("/ingestions/events");
    stream.addEventListener("open", async () => {
      setLive("live", "open");
      // Read after the stream opened, so no change falls between the list and the events.
      try {
        const body = await getJson(`/ingestions?limit=${SHOWN_BATCHES}`);
        body.ingestions.forEach((batch) => remember(fromList(batch)));
        showBatches(null);
      } catch (error) {
        showError(error);
      }
    });
    stream.addEventListener("batch", (message) => {
      const batch = JSON.parse(message.data);
      if (!remember(batch)) return;
      showBatches(batch.batch_id);
      if (batch.status === "done") refreshData();
    });
    stream.addEventListener("error", () => {
      if (stream.readyState === EventSource.CONNECTING) {
        setLive("reconnecting", "connecting");
        return;
      }
      // Closed for good (the API refused the stream, e.g. 503): try again in a while.
      setLive("not live, retrying", "closed");
      stream.close();
      setTimeout(listen, 10000);
    });
  }

  // --- start ---------------------------------------------------------------------------------

  readLocation();
  loadChoices(true)
    .catch(showError)
    .then(() => {
      const bounds = typedBounds();
      if (bounds) map.fitBounds(bounds, { padding: [30, 30], animate: false });
    });
  ask();
  loadGroupControls().catch((error) => {
    showProblem($("groups-error"), error);
    $("groups").dataset.state = "error";
  });
  listen();
})();
