// The sync engine's console: the one script its pages use. The pages work without it; it adds
// the charts, keeps live parts of a page fresh, and asks before an action that cannot be undone.
//
// Live parts: a page with a `data-refresh="<ms>"` element fetches itself again on that period
// and swaps in the new content of each element marked `data-live` (by id), so what refreshes
// keeps its size and place. The overview refreshes always; other pages only while something
// on them is marked `data-awaiting` (a delivery in flight, a replay not yet landed).
"use strict";

(function () {
  const SERIES = {
    accepted: "#1f5fbf",
    delivered: "#1d7a3d",
    failed: "#b3261e",
    superseded: "#8a5a00",
  };
  const charts = new Map();

  function overviewData(doc) {
    const node = doc.getElementById("overview-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  function chartData(overview, series) {
    const xs = overview.minutes.map((m) => m.at / 1000);
    const ys = overview.minutes.map((m) => m[series]);
    return [xs, ys];
  }

  function drawCharts(overview) {
    if (!overview || typeof uPlot === "undefined") return;
    for (const figure of document.querySelectorAll(".chart[data-series]")) {
      const series = figure.dataset.series;
      const data = chartData(overview, series);
      const existing = charts.get(series);
      if (existing) {
        existing.setData(data);
        continue;
      }
      const plot = figure.querySelector(".plot");
      const chart = new uPlot(
        {
          width: plot.clientWidth,
          height: plot.clientHeight,
          legend: { show: false },
          cursor: { drag: { x: false, y: false } },
          scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
          axes: [{ stroke: "#566074" }, { stroke: "#566074", size: 48 }],
          series: [
            {},
            { label: series, stroke: SERIES[series], fill: SERIES[series] + "22", width: 2, points: { show: false } },
          ],
        },
        data,
        plot
      );
      charts.set(series, chart);
      new ResizeObserver(() => chart.setSize({ width: plot.clientWidth, height: plot.clientHeight })).observe(plot);
    }
  }

  function refreshPeriod() {
    const marker = document.querySelector("[data-refresh]");
    return marker ? Number(marker.dataset.refresh) : 0;
  }

  function wantsRefresh() {
    return document.getElementById("overview-data") !== null || document.querySelector("[data-awaiting]") !== null;
  }

  async function refresh() {
    let response;
    try {
      response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    } catch (e) {
      return true; // the engine did not answer: try again next period
    }
    if (response.redirected && new URL(response.url).pathname === "/console/login") {
      window.location.assign(response.url); // the session ended
      return false;
    }
    if (!response.ok) return true;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const live of document.querySelectorAll("[data-live][id]")) {
      const fresh = doc.getElementById(live.id);
      if (fresh && fresh.innerHTML !== live.innerHTML) {
        // Keep what the operator ticked across the swap.
        const ticked = new Set([...live.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.id));
        live.innerHTML = fresh.innerHTML;
        for (const id of ticked) {
          const box = document.getElementById(id);
          if (box) box.checked = true;
        }
      }
    }
    drawCharts(overviewData(doc));
    return true;
  }

  function startRefreshing() {
    const period = refreshPeriod();
    if (!period) return;
    const tick = async () => {
      if (!wantsRefresh()) return;
      if (document.visibilityState === "visible" && !(await refresh())) return;
      window.setTimeout(tick, period);
    };
    window.setTimeout(tick, period);
  }

  function wireForms() {
    document.addEventListener("submit", (event) => {
      const button = event.submitter;
      const ask = (button && button.dataset.confirm) || event.target.dataset.confirm;
      if (ask && !window.confirm(ask)) event.preventDefault();
    });
    document.addEventListener("change", (event) => {
      if (event.target.id !== "select-all") return;
      for (const box of document.querySelectorAll("input[name=ids]")) box.checked = event.target.checked;
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    drawCharts(overviewData(document));
    wireForms();
    startRefreshing();
  });
})();
