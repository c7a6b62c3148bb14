/* MedLens radiologist review: save a version, sign, add an addendum (then reload the
   server-rendered page). No dependencies, no inline handlers (CSP). */
"use strict";
(function () {
  const panel = document.getElementById("review");
  if (!panel) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const base = "/v1/studies/" + panel.dataset.study + "/report";
  const errorBox = document.getElementById("review-error");

  async function send(method, url, body) {
    const res = await fetch(url, {
      method, credentials: "same-origin", body: JSON.stringify(body || {}),
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
    });
    const data = (res.headers.get("content-type") || "").includes("json") ? await res.json() : null;
    if (!res.ok) throw new Error((data && data.error && data.error.message) || ("Request failed (" + res.status + ")"));
    return data;
  }

  function fail(err) {
    errorBox.textContent = err.message;
    errorBox.hidden = false;
  }

  const form = document.getElementById("review-form");
  let saved = null;  // the version this page saved, so Sign signs exactly that one

  function content() {
    const reviews = Array.from(form.querySelectorAll("tr[data-label]")).map((row) => {
      const picked = row.querySelector("input[type=radio]:checked");
      return {
        label: row.dataset.label,
        verdict: picked ? picked.value : null,
        comment: row.querySelector("input:not([type=radio])").value.trim(),
      };
    });
    return {
      findings: form.elements.findings.value,
      impression: form.elements.impression.value,
      finding_reviews: reviews,
      base_version: saved !== null ? saved : Number(form.dataset.baseVersion),
    };
  }

  async function save() {
    const version = await send("PUT", base, content());
    saved = version.version;
    return saved;
  }

  if (form) {
    let dirty = Number(form.dataset.baseVersion) === 0;  // the AI draft is not a version yet
    form.addEventListener("input", () => { dirty = true; });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try { await save(); window.location.reload(); } catch (err) { fail(err); }
    });
    document.getElementById("review-sign").addEventListener("click", async () => {
      if (!window.confirm("Sign this report? The signed text is frozen; later changes become addenda.")) return;
      try {
        const version = dirty ? await save() : Number(form.dataset.baseVersion);
        await send("POST", base + "/sign", { version });
        window.location.reload();
      } catch (err) { fail(err); }
    });
  }

  const addendum = document.getElementById("addendum-form");
  if (addendum) {
    addendum.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await send("POST", base + "/addenda", { text: addendum.elements.text.value });
        window.location.reload();
      } catch (err) { fail(err); }
    });
  }
})();
