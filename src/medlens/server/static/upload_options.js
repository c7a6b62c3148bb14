/* MedLens upload form: "ask for boxes" and "compare with a previous study" (issue 20).
   app.js's submit handler awaits MedLensUploadOptions.append(form, data, api) before posting. */
"use strict";
(function () {
  const box = document.getElementById("study-options");
  if (!box) return;
  // The API's field names (server/services/prior_fields.py). Prior images uploaded here are
  // first stored as their own study (same de-identification), then named by its id.
  const FIELDS = { ground: "ground", priorStudy: "prior_study_id", priorDate: "prior_date",
                   priorReport: "prior_report" };
  const $$ = (sel) => Array.from(box.querySelectorAll(sel));
  const panes = $$("[data-prior-pane]");
  const select = box.querySelector("select[name=prior_study]");
  const priorInput = document.getElementById("prior-input"), priorList = document.getElementById("prior-list");
  let priorFiles = [];
  let priorViews = []; // one per prior file, as for the current images (app.js)

  const mode = () => (box.querySelector("input[name=prior_mode]:checked") || {}).value || "none";
  const showPanes = () => {
    const m = mode();
    panes.forEach((p) => { p.hidden = !(p.dataset.priorPane === m || (p.dataset.priorPane === "any" && m !== "none")); });
  };
  $$("input[name=prior_mode]").forEach((r) => r.addEventListener("change", showPanes));
  showPanes();

  // Only the studies of the same patient alias, where one was given.
  const filter = box.querySelector("input[name=prior_patient]");
  if (filter && select) filter.addEventListener("input", () => {
    const want = filter.value.trim().toLowerCase();
    let first = null;
    Array.from(select.options).forEach((o) => {
      const ok = !want || (o.dataset.patient || "").toLowerCase() === want;
      o.hidden = !ok; o.disabled = !ok;
      if (ok && !first) first = o;
    });
    if (select.selectedOptions[0] && select.selectedOptions[0].disabled) select.value = first ? first.value : "";
  });
  // The prior's date follows the chosen study unless the user typed one.
  const dateInput = box.querySelector("input[name=prior_date]");
  if (select) select.addEventListener("change", () => {
    const o = select.selectedOptions[0];
    if (o && dateInput && !dateInput.dataset.touched) dateInput.value = o.dataset.date || "";
  });
  if (dateInput) dateInput.addEventListener("input", () => { dateInput.dataset.touched = "1"; });

  const renderPriors = () => {
    priorList.textContent = "";
    priorFiles.forEach((f, i) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = "prior: " + f.name + " · " + (f.size / 1024).toFixed(0) + " KB";
      const view = window.MedLensViewSelect(priorViews[i], "View of prior " + f.name);
      view.addEventListener("change", () => { priorViews[i] = view.value; });
      const rm = document.createElement("button");
      rm.type = "button"; rm.className = "link"; rm.textContent = "remove";
      rm.setAttribute("aria-label", "Remove prior " + f.name);
      rm.addEventListener("click", () => { priorFiles.splice(i, 1); priorViews.splice(i, 1); renderPriors(); });
      li.append(name, view, rm);
      priorList.append(li);
    });
  };
  if (priorInput) priorInput.addEventListener("change", () => {
    const added = Array.from(priorInput.files);
    priorFiles = priorFiles.concat(added); priorViews = priorViews.concat(added.map(() => "auto"));
    priorInput.value = ""; renderPriors();
  });

  const incomplete = (msg) => Object.assign(new Error(msg), { code: "incomplete_options" });

  window.MedLensUploadOptions = {
    /** Adds the options to the upload (uploading prior images first, with `api` from app.js);
        throws an Error with a user message when the comparison is incomplete. */
    async append(form, data, api) {
      if (box.querySelector("input[name=ground]").checked) data.append(FIELDS.ground, "true");
      const m = mode();
      if (m === "none") return;
      let priorId;
      if (m === "study") {
        if (!select || !select.value) throw incomplete("Choose the previous study to compare with.");
        priorId = select.value;
      } else {
        if (!priorFiles.length) throw incomplete("Add the prior image(s), or choose \u201cNo comparison\u201d.");
        const prior = new FormData();
        priorFiles.forEach((f, i) => { prior.append("files", f, f.name); prior.append("view", priorViews[i] || "auto"); });
        const lang = form.elements.language && form.elements.language.value;
        if (lang) prior.append("language", lang);
        priorId = (await api("POST", "/v1/studies", prior)).id;
      }
      data.append(FIELDS.priorStudy, priorId);
      const date = dateInput.value.trim(), report = box.querySelector("textarea[name=prior_report]").value.trim();
      if (date) data.append(FIELDS.priorDate, date);
      if (report) data.append(FIELDS.priorReport, report);
    },
  };
})();
