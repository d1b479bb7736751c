// The session list: each session's start in the viewer's time zone; copy a session's caption share link.

import { localizeTimes } from "./lines.js";

localizeTimes();

async function copy(text) {
  if (navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the selection-based copy (e.g. clipboard permission refused)
    }
  }
  const field = document.createElement("textarea");
  field.value = text;
  field.setAttribute("readonly", "");
  field.style.position = "fixed";
  field.style.opacity = "0";
  document.body.append(field);
  field.select();
  const ok = document.execCommand("copy");
  field.remove();
  return ok;
}

for (const button of document.querySelectorAll("[data-copy-link]")) {
  button.addEventListener("click", async () => {
    const ok = await copy(button.dataset.copyLink);
    const status = button.parentElement.querySelector(".copy-status");
    status.textContent = ok ? "Link copied." : `Copy this link: ${button.dataset.copyLink}`;
    setTimeout(() => {
      status.textContent = "";
    }, 4000);
  });
}
