// Small helpers shared by the pages.

export function pageConfig() {
  const node = document.getElementById("page-config");
  return node ? JSON.parse(node.textContent) : {};
}

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) return meta.content;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** Show a readable problem in a region with role="alert"; older ones go after a while. */
export function showProblem(container, text, { keepMs = 15000 } = {}) {
  const item = document.createElement("p");
  item.className = "problem";
  item.textContent = text;
  container.append(item);
  while (container.children.length > 3) container.firstElementChild.remove();
  if (keepMs) setTimeout(() => item.remove(), keepMs);
  return item;
}
