// The upload page: send a file with upload progress, follow the job, show the transcript; and the
// list of recent uploads, kept live: while any of them is queued or running the page reads
// /api/jobs/ every LIST_POLL_MS and shows each one's status and progress, then, once done, the link
// to its transcript page and its exports.

import { colourClass, el, formatSeconds, labelDisplayName, labelNumber, localizeTimes } from "./lines.js";
import { csrfToken, pageConfig } from "./page.js";

const config = pageConfig();

const $ = (id) => document.getElementById(id);
const form = $("upload-form");
const input = $("file");
const drop = $("drop-zone");
const chosen = $("chosen-file");
const problems = $("problems");
const POLL_MS = 1000;
const LIST_POLL_MS = 2000;
const STATUS_NAMES = { queued: "Queued", running: "Running", done: "Done", failed: "Failed" };

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
  data.append("diarize", $("diarize").checked ? "true" : "false");
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
    refreshJobs(); // (the new job heads the list, and keeps it polling)
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
    if (job.status === "done" || job.status === "failed") refreshJobs();
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
        { class: s.speaker_label ? `segment ${colourClass(labelNumber(s.speaker_label))}` : "segment" },
        el("span", { class: "when", text: `${formatSeconds(s.start)} – ${formatSeconds(s.end)}` }),
        " ",
        // (a job with "Identify speakers": each segment's voice, "Speaker 1", "Speaker 2", ...)
        s.speaker_label ? el("span", { class: "who", text: labelDisplayName(s.speaker_label) }) : null,
        s.speaker_label ? " " : null,
        el("span", { class: "text", text: s.text }),
      ),
    ),
  );
  for (const link of document.querySelectorAll("#job-exports a[data-format]")) {
    link.href = `/api/jobs/${job.id}/transcript?format=${link.dataset.format}&download=1`;
  }
  $("result-page").href = job.page_url || `/jobs/${job.id}/transcript/`;
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

// --- the recent uploads ------------------------------------------------------------------------

const recent = $("recent-jobs");
let listTimer = 0;

function jobItem(job) {
  const name = job.original_filename || job.id;
  const item = el(
    "li",
    { class: "job", "data-job-id": job.id, "data-status": job.status },
    el("span", { class: "job-name", text: name }),
    " · ",
    el("span", { class: `badge ${job.status}`, text: STATUS_NAMES[job.status] || job.status }),
  );
  if (job.status === "running") {
    item.append(
      " ",
      el("progress", { max: 100, value: job.progress, "aria-label": `Transcription of ${name}` }),
      " ",
      el("span", { class: "job-progress", text: `${job.progress}%` }),
    );
  }
  item.append(" · ", el("time", { dateTime: job.created_at, "data-format": "datetime", text: job.created_at }));
  if (job.status === "done") {
    const links = el("span", { class: "job-links" }, "· ");
    links.append(el("a", { class: "open", href: job.page_url || `/jobs/${job.id}/transcript/`, text: "Open transcript" }));
    links.append(" · ", el("span", { class: "help", text: "Download:" }), " ");
    for (const [format, label] of config.exportMenu || []) {
      links.append(
        el("a", {
          href: `/api/jobs/${job.id}/transcript?format=${format}&download=1`,
          download: "",
          text: label,
          "aria-label": `${label} of ${name}`,
        }),
        " ",
      );
    }
    item.append(" ", links);
  }
  if (job.status === "failed") {
    item.append(" ", el("span", { class: "job-error", text: `· ${job.error_message || job.error_code}` }));
  }
  return item;
}

function showJobs(jobs) {
  const items = jobs.map(jobItem);
  recent.replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: "No uploads yet." })]));
  localizeTimes(recent);
}

/** Read the recent uploads once; again in LIST_POLL_MS while any is queued or running. */
async function refreshJobs() {
  clearTimeout(listTimer);
  listTimer = 0;
  let jobs;
  try {
    const response = await fetch("/api/jobs/", { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(response.statusText);
    jobs = (await response.json()).results.slice(0, config.recentJobs || 10);
  } catch {
    // A blip: try again a little later, while the list has something to follow.
    if (recent.querySelector('[data-status="queued"], [data-status="running"]')) {
      listTimer = setTimeout(refreshJobs, LIST_POLL_MS * 2);
    }
    return;
  }
  showJobs(jobs);
  if (jobs.some((job) => job.status === "queued" || job.status === "running")) {
    listTimer = setTimeout(refreshJobs, LIST_POLL_MS);
  }
}

localizeTimes(recent);
if (recent.querySelector('[data-status="queued"], [data-status="running"]')) {
  listTimer = setTimeout(refreshJobs, LIST_POLL_MS);
}
