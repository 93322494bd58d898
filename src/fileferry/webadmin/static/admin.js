// Live figures for the dashboard: small same-origin fetches of the API every
// second. The page works without this script (reload to refresh); data is put
// in with textContent only, never as HTML.
"use strict";

function human(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = n, i = 0;
  while (size >= 1024 && i < units.length - 1) { size /= 1024; i++; }
  return i === 0 ? n + " B" : size.toFixed(1) + " " + units[i];
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function renderTransfers(list) {
  const body = document.getElementById("transfers-body");
  if (!body) return;
  const rows = [];
  for (const t of list) {
    const tr = document.createElement("tr");
    cell(tr, String(t.session));
    cell(tr, t.user || "-");
    cell(tr, t.command);
    cell(tr, t.path, "path");
    cell(tr, String(t.bytes), "bytes");
    cell(tr, human(t.rate) + "/s");
    const td = cell(tr, "");
    const bar = document.createElement("progress");
    if (t.size) {
      bar.max = t.size;
      bar.value = t.bytes;
      td.appendChild(bar);
      td.appendChild(document.createTextNode(" " + t.percent + "%"));
    } else {
      td.appendChild(bar);
    }
    rows.push(tr);
  }
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell(tr, "No transfer is running.");
    td.colSpan = 7;
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function ago(seconds) {
  const s = Math.floor(seconds);
  if (s < 120) return s + " s";
  if (s < 7200) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h";
}

// A bucket's figure is counted in the background; the page shows how old it is.
function renderStorage(st) {
  if (!st || st.kind !== "bucket" || st.used === null) return;
  setText("storage-used", (st.complete ? "" : "at least ") + human(st.used));
  setText("storage-objects", st.objects);
  setText("storage-age", ago(st.age_seconds));
}

function setText(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = String(value);
}

async function refresh() {
  try {
    const [transfers, status] = await Promise.all([
      fetch("/api/v1/transfers", { credentials: "same-origin" }),
      fetch("/api/v1/status", { credentials: "same-origin" }),
    ]);
    if (transfers.ok) renderTransfers(await transfers.json());
    if (status.ok) {
      const s = await status.json();
      setText("sessions-count", s.sessions);
      setText("logins-count", s.logins_last_hour);
      setText("failures-count", s.failed_logins_last_hour);
      setText("bans-count", s.bans);
      renderStorage(s.storage);
    }
  } catch (e) {
    // The server went away or the session ended: the next tick tries again.
  }
}

setInterval(refresh, 1000);
refresh();
