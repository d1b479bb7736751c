// The upload page: send a file with upload progress, follow the job, show the transcript.

import { el, formatSeconds } from "./lines.js";
import { csrfToken } from "./page.js";

const $ = (id) => document.getElementById(id);
const form = $("upload-form");
const input = $("file");
const drop = $("drop-zone");
const chosen = $("chosen-file");
const problems = $("problems");
const POLL_MS = 1000;

function showError(text) {
  problems.textContent = text;
  problems.hidden = !text;
}

function setProgress(id, fraction, label) {
  const bar = $(id);
  bar.value = Math.round(fraction * 100);
  bar.textContent = `${Math.round(fraction * 100)}%`;
  $(`${id}-label`).textContent = label;
  bar.closest(".progress-block").hidden = false;
}

function showChosen() {
  const file = input.files[0];
  chosen.textContent = file ? `${file.name} (${(file.size / 1e6).toFixed(1)} MB)` : "";
}
input.addEventListener("change", showChosen);
showChosen(); // a file picked before this module ran
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("dragging");
  });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, () => drop.classList.remove("dragging"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  if (event.dataTransfer.files.length) {
    input.files = event.dataTransfer.files;
    input.dispatchEvent(new Event("change"));
  }
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  showError("");
  if (!input.files.length) {
    showError("Choose an audio file first.");
    input.focus();
    return;
  }
  $("result").hidden = true;
  $("job-progress").closest(".progress-block").hidden = true;
  const data = new FormData();
  data.append("file", input.files[0]);
  data.append("language", $("language").value);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs/");
  xhr.setRequestHeader("X-CSRFToken", csrfToken());
  xhr.setRequestHeader("Accept", "application/json");
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) setProgress("upload-progress", e.loaded / e.total, "Uploading…");
  });
  xhr.addEventListener("load", () => {
    $("upload-button").disabled = false;
    let body = {};
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      // not JSON: reported below
    }
    if (xhr.status !== 202) {
      showError(`The upload was refused: ${body.error || body.detail || xhr.statusText || xhr.status}`);
      return;
    }
    setProgress("upload-progress", 1, "Uploaded.");
    follow(body.id);
  });
  xhr.addEventListener("error", () => {
    $("upload-button").disabled = false;
    showError("The upload failed: the connection was lost.");
  });
  $("upload-button").disabled = true;
  setProgress("upload-progress", 0, "Uploading…");
  xhr.send(data);
});

async function follow(jobId) {
  setProgress("job-progress", 0, "Queued…");
  for (;;) {
    const response = await fetch(`/api/jobs/${jobId}/`, { credentials: "same-origin" });
    if (!response.ok) {
      showError(`Could not read the job's progress (${response.status}).`);
      return;
    }
    const job = await response.json();
    const label = { queued: "Queued…", running: "Transcribing…", done: "Done.", failed: "Failed." }[job.status];
    setProgress("job-progress", job.progress / 100, `${label} ${job.progress}%`);
    if (job.status === "failed") {
      showError(`The transcription failed: ${job.error_message || job.error_code}`);
      return;
    }
    if (job.status === "done") {
      await showTranscript(job);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function showTranscript(job) {
  const response = await fetch(`/api/jobs/${job.id}/transcript?format=json`, { credentials: "same-origin" });
  if (!response.ok) {
    showError(`Could not load the transcript (${response.status}).`);
    return;
  }
  const transcript = await response.json();
  $("segments").replaceChildren(
    ...transcript.segments.map((s) =>
      el(
        "li",
        { class: "segment" },
        el("span", { class: "when", text: `${formatSeconds(s.start)} – ${formatSeconds(s.end)}` }),
        " ",
        el("span", { class: "text", text: s.text }),
      ),
    ),
  );
  for (const link of document.querySelectorAll("#job-exports a[data-format]")) {
    link.href = `/api/jobs/${job.id}/transcript?format=${link.dataset.format}&download=1`;
  }
  $("result-meta").textContent = [
    job.original_filename,
    job.audio_duration_s ? `${formatSeconds(job.audio_duration_s)} long` : "",
    job.detected_language ? `language: ${job.detected_language}` : "",
    job.model ? `model: ${job.model}` : "",
  ]
    .filter(Boolean)
    .join(" · ");
  $("result").hidden = false;
  $("result-heading").focus();
}
