/* MedLens study page: box toggles, sentence ↔ box highlighting, one window/level for a
   prior/current pair. The boxes themselves are server-rendered SVG (study_view.html). */
"use strict";
(function () {
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const linked = (key) => $$('[data-finding="' + CSS.escape(key) + '"]');

  // ---- per-finding toggles -------------------------------------------------------------
  $$("input[data-toggle]").forEach((box) => box.addEventListener("change", () => {
    $$('svg.overlay .region[data-finding="' + CSS.escape(box.dataset.toggle) + '"]')
      .forEach((g) => { g.classList.toggle("off", !box.checked); g.setAttribute("aria-hidden", String(!box.checked)); });
  }));

  // ---- hover / focus: a sentence, its box(es) and its table row light up together -------
  const sources = $$("svg.overlay .region, .sentence[data-finding], .findings-table tr[data-finding]");
  const on = (el) => linked(el.dataset.finding).forEach((x) => x.classList.add("hl"));
  const off = (el) => linked(el.dataset.finding).forEach((x) => x.classList.remove("hl"));
  sources.forEach((el) => {
    el.addEventListener("mouseenter", () => on(el));
    el.addEventListener("mouseleave", () => off(el));
    el.addEventListener("focus", () => on(el));
    el.addEventListener("blur", () => off(el));
  });
  // Enter on a box jumps to its sentence and back, so the link works without a mouse.
  const jump = (el, selector) => {
    const target = $$(selector).find((x) => x.dataset.finding === el.dataset.finding && !x.classList.contains("off"));
    if (target) { target.focus(); if (target.scrollIntoView) target.scrollIntoView({ block: "nearest" }); }
  };
  $$("svg.overlay .region").forEach((g) => g.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); jump(g, ".sentence[data-finding]"); }
  }));
  $$(".sentence[data-finding]").forEach((s) => s.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); jump(s, "svg.overlay .region"); }
  }));

  // ---- one window/level for the prior and the current image ----------------------------
  const shared = document.querySelector(".wl-shared");
  if (!shared) return;
  const imgs = $$(".pair .image-frame").map((f) => ({ img: f.querySelector("img"), base: f.dataset.imageUrl }));
  const get = async (url) => {
    const res = await fetch(url, { credentials: "same-origin" });
    return res.ok ? res.json() : null;
  };
  Promise.all(shared.dataset.windowUrls.split(" ").filter(Boolean).map((u) => get(u).catch(() => null)))
    .then((found) => {
      const ws = found.filter(Boolean);
      if (!ws.length) return;
      const lo = Math.min(...ws.map((w) => w.min)), hi = Math.max(...ws.map((w) => w.max));
      const first = ws[0], span = Math.max(hi - lo, 1);
      const c = shared.querySelector(".wl-center"), ww = shared.querySelector(".wl-width");
      c.min = String(lo); c.max = String(hi); c.value = String(first.center);
      ww.min = String(span / 256); ww.max = String(span * 2); ww.value = String(first.width);
      shared.hidden = false;
      let timer = null;
      const update = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          const q = "?wc=" + encodeURIComponent(c.value) + "&ww=" + encodeURIComponent(ww.value);
          imgs.forEach((x) => { x.img.src = x.base + q; });
        }, 150);
      };
      c.addEventListener("input", update); ww.addEventListener("input", update);
      shared.querySelector(".wl-reset").addEventListener("click", () => {
        c.value = String(first.center); ww.value = String(first.width);
        imgs.forEach((x) => { x.img.src = x.base; });
      });
    });
})();
