/* MedLens page script: upload, live job progress (SSE), follow-ups, delete, window/level.
   Hand-written, no dependencies, no inline handlers (the CSP forbids inline script). */
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  const FRIENDLY = {
    unsupported_media_type: "This file is not a PNG, JPEG or DICOM image.",
    request_too_large: "The upload is too large.",
    image_too_large: "The image is too large.",
    invalid_image: "The image could not be read.",
    truncated_image: "The image file is incomplete (truncated).",
    unsupported_dicom: "This DICOM file cannot be used.",
    no_pixel_data: "This DICOM file holds no image.",
    image_refused: "This does not look like a chest X-ray.",
    deidentification_blocked: "The image was not stored because it may carry burned-in patient details.",
    rate_limited: "Too many requests; please wait a moment.",
    queue_full: "MedLens is busy; please try again in a few minutes.",
    model_not_available: "The AI models are not installed on this server yet.",
    unauthorized: "Please sign in again.",
    forbidden: "This action was refused; reload the page and try again.",
    incomplete_options: "The comparison is not complete.",
  };

  async function api(method, url, body, headers) {
    const opts = { method, headers: Object.assign({ "X-CSRF-Token": csrf }, headers || {}), credentials: "same-origin" };
    if (body instanceof FormData) opts.body = body;
    else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
    const res = await fetch(url, opts);
    let data = null;
    const type = res.headers.get("content-type") || "";
    if (type.includes("json")) data = await res.json();
    if (!res.ok) {
      const err = (data && data.error) || {};
      const e = new Error(err.message || ("Request failed (" + res.status + ")"));
      e.code = err.code || (res.status === 413 ? "request_too_large" : "");
      e.status = res.status;
      throw e;
    }
    return data;
  }

  function showError(box, err) {
    box.textContent = "";
    const title = document.createElement("strong");
    title.textContent = FRIENDLY[err.code] || "Something went wrong.";
    const detail = document.createElement("p");
    detail.textContent = err.message;
    box.append(title, detail);
    box.hidden = false;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  // A file's view selector (also used by upload_options.js for prior images).
  window.MedLensViewSelect = (value, label) => {
    const sel = document.createElement("select");
    sel.className = "view-select"; sel.setAttribute("aria-label", label); sel.dataset.testid = "file-view";
    [["auto", "view: auto"], ["frontal", "frontal"], ["lateral", "lateral"]].forEach(([v, text]) => {
      const o = document.createElement("option"); o.value = v; o.textContent = text; sel.append(o);
    });
    sel.value = value || "auto";
    return sel;
  };

  // ---- upload ---------------------------------------------------------------------
  const form = $("#upload-form");
  if (form) {
    const input = $("#file-input"), zone = $("#dropzone"), list = $("#file-list");
    const submit = $("#submit-btn"), errorBox = $("#upload-error");
    let files = [];
    let views = []; // one per file: "auto" | "frontal" | "lateral" (the API's `view` field)
    let idemKey = uuid();
    const render = () => {
      list.textContent = "";
      files.forEach((f, i) => {
        const li = document.createElement("li");
        const name = document.createElement("span");
        name.textContent = f.name + " · " + (f.size / 1024).toFixed(0) + " KB";
        const view = window.MedLensViewSelect(views[i], "View of " + f.name);
        view.addEventListener("change", () => { views[i] = view.value; idemKey = uuid(); });
        const rm = document.createElement("button");
        rm.type = "button"; rm.className = "link"; rm.textContent = "remove";
        rm.addEventListener("click", () => { files.splice(i, 1); views.splice(i, 1); idemKey = uuid(); render(); });
        li.append(name, view, rm);
        list.append(li);
      });
      submit.disabled = files.length === 0;
    };
    const add = (fileList) => {
      const added = Array.from(fileList);
      files = files.concat(added); views = views.concat(added.map(() => "auto"));
      idemKey = uuid(); errorBox.hidden = true; render();
    };
    zone.addEventListener("click", () => input.click());
    zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
    input.addEventListener("change", () => { add(input.files); input.value = ""; });
    ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
    zone.addEventListener("drop", (e) => { if (e.dataTransfer && e.dataTransfer.files) add(e.dataTransfer.files); });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!files.length) return;
      const data = new FormData();
      files.forEach((f, i) => { data.append("files", f, f.name); data.append("view", views[i] || "auto"); });
      ["indication", "age", "sex", "language"].forEach((k) => { const v = form.elements[k].value.trim(); if (v) data.append(k, v); });
      submit.disabled = true; submit.textContent = "Uploading…"; errorBox.hidden = true;
      try {
        if (window.MedLensUploadOptions) await window.MedLensUploadOptions.append(form, data, api); // upload_options.js
        const study = await api("POST", "/v1/studies", data, { "Idempotency-Key": idemKey });
        window.location.assign("/studies/" + encodeURIComponent(study.id));
      } catch (err) {
        showError(errorBox, err);
        submit.disabled = false; submit.textContent = "Interpret";
      }
    });
  }

  // ---- delete -------------------------------------------------------------------------
  $$("[data-delete]").forEach((btn) => btn.addEventListener("click", async () => {
    if (!window.confirm("Delete this study, its images and its report? This cannot be undone.")) return;
    btn.disabled = true;
    try {
      await api("DELETE", "/v1/studies/" + encodeURIComponent(btn.dataset.delete));
      if (btn.dataset.redirect) { window.location.assign(btn.dataset.redirect); return; }
      const row = btn.closest("tr"); if (row) row.remove();
    } catch (err) { btn.disabled = false; window.alert(err.message); }
  }));

  // ---- job events (SSE) ------------------------------------------------------------------
  function follow(jobId, handlers) {
    const es = new EventSource("/v1/jobs/" + encodeURIComponent(jobId) + "/events");
    const on = (name, fn) => es.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
    on("progress", (d) => handlers.progress && handlers.progress(d));
    on("token", (d) => handlers.token && handlers.token(d.text || ""));
    on("done", (d) => { es.close(); handlers.done && handlers.done(d); });
    on("failed", (d) => { es.close(); handlers.failed && handlers.failed(d); });
    es.onerror = () => { if (es.readyState === EventSource.CLOSED && handlers.lost) handlers.lost(); };
    return es;
  }

  const progress = $("#progress");
  if (progress) {
    const bar = $("#progress-bar"), stage = $("#progress-stage"), stream = $("#stream");
    const setProgress = (p) => {
      const pct = Math.max(0, Math.min(100, Math.round((p || 0) * 100)));
      bar.style.width = pct + "%";
      progress.querySelector("[role=progressbar]").setAttribute("aria-valuenow", String(pct));
    };
    follow(progress.dataset.jobId, {
      // d.estimate: this stage's median time on this machine (none without earlier runs)
      progress: (d) => { setProgress(d.progress); if (d.stage) stage.textContent = d.stage + (d.estimate ? " — " + d.estimate : ""); },
      token: (t) => { stream.textContent += t; stream.scrollTop = stream.scrollHeight; },
      done: () => { setProgress(1); stage.textContent = "Done. Loading the result…"; window.location.reload(); },
      failed: (d) => { stage.textContent = "Failed: " + (d.error || "unknown error"); progress.classList.add("failed"); },
    });
  }

  // ---- follow-up questions ------------------------------------------------------------------
  const conv = $("#conversation");
  if (conv) {
    const msgs = $("#messages"), fform = $("#followup-form"), ferr = $("#followup-error");
    const bubble = (role, text) => {
      const div = document.createElement("div");
      div.className = "msg msg-" + role;
      const who = document.createElement("span");
      who.className = "msg-role"; who.textContent = role === "user" ? "You" : "MedLens";
      const p = document.createElement("p"); p.textContent = text;
      div.append(who, p); msgs.append(div);
      return p;
    };
    const stream = (jobId) => {
      const p = bubble("assistant", "");
      p.classList.add("pending");
      const btn = fform.querySelector("button");
      btn.disabled = true;
      follow(jobId, {
        token: (t) => { p.textContent += t; },
        done: (d) => {
          p.classList.remove("pending");
          const answer = d.result && d.result.answer;
          if (answer) p.textContent = answer;
          btn.disabled = false;
        },
        failed: (d) => { p.classList.remove("pending"); p.textContent = "No answer: " + (d.error || "the job failed"); btn.disabled = false; },
      });
    };
    const pending = $("#pending-followup");
    if (pending) stream(pending.dataset.jobId);
    fform.addEventListener("submit", async (e) => {
      e.preventDefault();
      const q = fform.elements.question.value.trim();
      if (!q) return;
      ferr.hidden = true;
      try {
        const res = await api("POST", "/v1/studies/" + encodeURIComponent(conv.dataset.study) + "/messages", { content: q });
        bubble("user", q);
        fform.elements.question.value = "";
        stream(res.job.id);
      } catch (err) { showError(ferr, err); }
    });
  }

  // ---- DICOM window / level ---------------------------------------------------------------------
  $$(".wl").forEach(async (box) => {
    const frame = box.closest(".image-frame"), img = $("img", frame), base = frame.dataset.imageUrl;
    let w;
    try { w = await api("GET", box.dataset.windowUrl); } catch (err) { return; }
    if (!w) return;
    const c = $(".wl-center", box), ww = $(".wl-width", box), span = Math.max(w.max - w.min, 1);
    c.min = String(w.min); c.max = String(w.max); c.value = String(w.center);
    ww.min = String(span / 256); ww.max = String(span * 2); ww.value = String(w.width);
    box.hidden = false;
    let timer = null;
    const update = () => {
      clearTimeout(timer);
      timer = setTimeout(() => { img.src = base + "?wc=" + encodeURIComponent(c.value) + "&ww=" + encodeURIComponent(ww.value); }, 150);
    };
    c.addEventListener("input", update); ww.addEventListener("input", update);
    $(".wl-reset", box).addEventListener("click", () => { c.value = String(w.center); ww.value = String(w.width); img.src = base; });
  });
})();
