// mailscan dashboard: accounts, scans with live progress, task history and findings.
// It talks to /graphql over HTTP for queries and mutations, and over one websocket
// (graphql-transport-ws) for the myScans subscription, which carries the progress of every
// task of the signed-in user. Every value from the server is written with textContent.
"use strict";

const TOKEN_KEY = "mailscan.token";
const MONTH_CHOICES = [1, 3, 6, 12, 24, 60, 120, 240];
const ACTIVE = new Set(["QUEUED", "RUNNING", "CANCELLING"]);
// Maximum delay between two websocket reconnection attempts, in milliseconds.
const MAX_RECONNECT_DELAY_MS = 30000;

const TASK_FIELDS = `id accountId accountLabel months status phase percent processed total
  attempts createdAt startedAt finishedAt nextRetryAt
  error { code message retryable }
  summary { messages newsletters flagged findings { kind count } topSenders { address messages } }`;

const PROBLEM_FIELDS = `
  ... on InvalidInput { code message field }
  ... on NotFound { code message }
  ... on ScanAlreadyRunning { code message taskId }
  ... on QuotaExceeded { code message retryAfterSeconds }
  ... on InvalidState { code message }`;

const QUERIES = {
  accounts: `query Accounts { accounts { id label host port security username folders } }`,
  history: `query History($after: String) {
    taskHistory(first: 20, after: $after) {
      edges { node { ${TASK_FIELDS} } }
      pageInfo { hasNextPage endCursor }
    } }`,
  task: `query Task($id: ID!) { task(id: $id) { ${TASK_FIELDS} } }`,
  findings: `query Findings($taskId: ID!, $after: String) {
    scanFindings(taskId: $taskId, first: 50, after: $after) {
      edges { node { id kind detail folder uid subject senderAddress date } }
      pageInfo { hasNextPage endCursor }
    } }`,
  connect: `mutation Connect($input: ImapAccountInput!) {
    connectImapAccount(input: $input) {
      __typename
      ... on ConnectAccountSuccess { account { id } }
      ... on InvalidInput { code message field }
    } }`,
  start: `mutation Start($accountId: ID!, $months: Int!) {
    startScan(accountId: $accountId, months: $months) {
      __typename
      ... on StartScanSuccess { task { ${TASK_FIELDS} } }
      ${PROBLEM_FIELDS}
    } }`,
  cancel: `mutation Cancel($taskId: ID!) {
    cancelScan(taskId: $taskId) {
      __typename
      ... on CancelScanSuccess { task { ${TASK_FIELDS} } }
      ... on NotFound { code message }
      ... on InvalidState { code message }
    } }`,
  myScans: `subscription MyScans { myScans {
    taskId status phase percent processed total etaSeconds messagesPerSecond sequence message
  } }`,
};

const state = {
  token: null,
  // Task id -> {task, row}; rows are kept and updated in place.
  tasks: new Map(),
  historyCursor: null,
  findings: { taskId: null, cursor: null },
  socket: null,
  reconnectDelayMs: 1000,
};

const $ = (selector) => document.querySelector(selector);

// --- small helpers -------------------------------------------------------------------------

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function button(text, onClick, className) {
  const node = element("button", text, className);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

function showStatus(message, isError) {
  const status = $("#status");
  status.textContent = message || "";
  status.classList.toggle("error", Boolean(isError));
}

function formatDate(value) {
  return value ? new Date(value).toLocaleString() : "";
}

function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const rounded = Math.max(0, Math.round(seconds));
  if (rounded < 60) return `${rounded} s`;
  const minutes = Math.floor(rounded / 60);
  if (minutes < 60) return `${minutes} min ${rounded % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function progressText(progress) {
  const parts = [`${Math.floor(progress.percent)}%`, progress.phase.toLowerCase()];
  if (progress.total) parts.push(`${progress.processed}/${progress.total} messages`);
  if (ACTIVE.has(progress.status) && progress.etaSeconds !== null && progress.etaSeconds !== undefined) {
    parts.push(`ETA ${formatSeconds(progress.etaSeconds)}`);
  }
  if (progress.messagesPerSecond) parts.push(`${Math.round(progress.messagesPerSecond)} msg/s`);
  return parts.join(" · ");
}

// --- GraphQL over HTTP ----------------------------------------------------------------------

class ApiError extends Error {}

async function graphql(query, variables) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${state.token}` },
    body: JSON.stringify({ query, variables: variables || {} }),
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    throw new ApiError(`the server returned HTTP ${response.status} without JSON`);
  }
  if (response.status === 401) {
    signOut();
    throw new ApiError(`sign-in rejected: ${body.errors[0].message}`);
  }
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    const code = first.extensions && first.extensions.code;
    throw new ApiError(code ? `${code}: ${first.message}` : first.message);
  }
  return body.data;
}

// Run an action started by the user; show its failure instead of throwing.
async function attempt(action) {
  try {
    await action();
  } catch (error) {
    showStatus(error.message, true);
  }
}

// --- sign-in -------------------------------------------------------------------------------

function userFromToken(token) {
  return token.startsWith("dev:") ? token.slice(4) : "token holder";
}

function signIn(token, remember) {
  state.token = token;
  if (remember) localStorage.setItem(TOKEN_KEY, token);
  $("#user-name").textContent = userFromToken(token);
  $("#sign-in").hidden = true;
  $("#signed-in").hidden = false;
  showStatus("");
  attempt(async () => {
    await Promise.all([loadAccounts(), loadHistory(true)]);
    connectLive();
  });
}

function signOut() {
  localStorage.removeItem(TOKEN_KEY);
  state.token = null;
  const socket = state.socket;
  state.socket = null;
  if (socket) socket.close(1000, "signed out");
  state.tasks.clear();
  $("#tasks tbody").replaceChildren();
  $("#accounts tbody").replaceChildren();
  $("#findings").hidden = true;
  $("#signed-in").hidden = true;
  $("#sign-in").hidden = false;
}

// --- accounts ------------------------------------------------------------------------------

async function loadAccounts() {
  const data = await graphql(QUERIES.accounts);
  const body = $("#accounts tbody");
  body.replaceChildren(...data.accounts.map(accountRow));
  $("#no-accounts").hidden = data.accounts.length > 0;
}

function accountRow(account) {
  const row = element("tr");
  row.dataset.accountId = account.id;
  row.append(
    element("td", account.label),
    element("td", `${account.host}:${account.port} (${account.security})`),
    element("td", account.username),
    element("td", account.folders.join(", ")),
  );

  const months = element("select");
  months.setAttribute("aria-label", `Months to scan in ${account.label}`);
  for (const count of MONTH_CHOICES) {
    const option = element("option", count === 1 ? "last month" : `last ${count} months`);
    option.value = String(count);
    months.append(option);
  }
  months.value = "3";
  const scan = button("Scan", () =>
    attempt(() => startScan(account.id, Number(months.value))),
  );
  scan.setAttribute("aria-label", `Scan ${account.label}`);
  const cell = element("td");
  const actions = element("div", null, "actions");
  actions.append(months, scan);
  cell.append(actions);
  row.append(cell);
  return row;
}

async function connectAccount(form) {
  const fields = new FormData(form);
  const folders = String(fields.get("folders") || "INBOX")
    .split(",")
    .map((name) => name.trim())
    .filter(Boolean);
  const input = {
    host: String(fields.get("host")).trim(),
    port: Number(fields.get("port")),
    security: String(fields.get("security")),
    username: String(fields.get("username")),
    password: String(fields.get("password")),
    folders: folders.length ? folders : ["INBOX"],
    label: String(fields.get("label") || "").trim() || null,
  };
  const data = await graphql(QUERIES.connect, { input });
  const result = data.connectImapAccount;
  if (result.__typename !== "ConnectAccountSuccess") {
    showStatus(`${result.code} (${result.field}): ${result.message}`, true);
    return;
  }
  form.reset();
  $("#connect").open = false;
  showStatus(`Account ${input.label || input.username} connected.`);
  await loadAccounts();
}

// --- tasks ---------------------------------------------------------------------------------

async function loadHistory(fromStart) {
  const after = fromStart ? null : state.historyCursor;
  const data = await graphql(QUERIES.history, { after });
  const page = data.taskHistory;
  for (const edge of page.edges) upsertTask(edge.node, false);
  state.historyCursor = page.pageInfo.endCursor;
  $("#more-tasks").hidden = !page.pageInfo.hasNextPage;
  $("#no-tasks").hidden = state.tasks.size > 0;
}

async function startScan(accountId, months) {
  const data = await graphql(QUERIES.start, { accountId, months });
  const result = data.startScan;
  if (result.__typename === "StartScanSuccess") {
    upsertTask(result.task, true);
    showStatus(`Scan of ${result.task.accountLabel} queued.`);
    return;
  }
  let message = `${result.code}: ${result.message}`;
  if (result.retryAfterSeconds) message += ` Try again in ${formatSeconds(result.retryAfterSeconds)}.`;
  showStatus(message, true);
}

async function cancelScan(taskId) {
  const data = await graphql(QUERIES.cancel, { taskId });
  const result = data.cancelScan;
  if (result.__typename === "CancelScanSuccess") {
    upsertTask(result.task, false);
    showStatus("Cancellation requested.");
    return;
  }
  showStatus(`${result.code}: ${result.message}`, true);
}

async function refreshTask(taskId, newest) {
  const data = await graphql(QUERIES.task, { id: taskId });
  if (data.task) upsertTask(data.task, newest);
}

// Insert or update the row of a task; new tasks go first when `newest`, else last.
function upsertTask(task, newest) {
  let entry = state.tasks.get(task.id);
  if (!entry) {
    entry = { task, row: taskRow(task) };
    state.tasks.set(task.id, entry);
    const body = $("#tasks tbody");
    if (newest) body.prepend(entry.row);
    else body.append(entry.row);
    $("#no-tasks").hidden = true;
  }
  entry.task = { ...entry.task, ...task };
  renderTask(entry);
}

function taskRow(task) {
  const row = element("tr");
  row.dataset.taskId = task.id;
  const progress = element("progress");
  progress.max = 100;
  progress.setAttribute("aria-label", `Progress of the scan of ${task.accountLabel}`);
  const progressCell = element("td");
  progressCell.append(progress, element("div", "", "progress-text"));
  row.append(
    element("td", task.accountLabel),
    element("td", task.months),
    element("td", formatDate(task.createdAt)),
    element("td", "", "status"),
    progressCell,
    element("td", "", "result"),
    element("td", "", "actions-cell"),
  );
  return row;
}

function renderTask(entry) {
  const { task, row } = entry;
  const status = row.querySelector(".status");
  status.textContent = task.status;
  status.className = `status status-${task.status}`;
  row.dataset.status = task.status;

  const progress = row.querySelector("progress");
  progress.value = task.percent;
  progress.setAttribute("aria-valuetext", `${Math.floor(task.percent)}%`);
  row.querySelector(".progress-text").textContent = progressText(task);

  const result = row.querySelector(".result");
  result.replaceChildren();
  if (task.error) {
    const retry = task.error.retryable && ACTIVE.has(task.status) ? " (retrying)" : "";
    result.append(element("div", `${task.error.code}: ${task.error.message}${retry}`, "error"));
  }
  if (task.summary) result.append(summaryBlock(task.summary));

  const actions = element("div", null, "actions");
  if (ACTIVE.has(task.status)) {
    const cancel = button("Cancel", () => attempt(() => cancelScan(task.id)), "secondary");
    cancel.disabled = task.status === "CANCELLING";
    cancel.setAttribute("aria-label", `Cancel the scan of ${task.accountLabel}`);
    actions.append(cancel);
  }
  if (task.summary || task.status === "CANCELLED" || task.status === "FAILED") {
    const show = button("Findings", () => attempt(() => showFindings(task, true)), "secondary");
    show.setAttribute("aria-label", `Findings of the scan of ${task.accountLabel}`);
    actions.append(show);
  }
  row.querySelector(".actions-cell").replaceChildren(actions);
}

function summaryBlock(summary) {
  const block = element("div");
  block.append(
    element("div", `${summary.messages} messages, ${summary.newsletters} newsletters, ${summary.flagged} flagged`),
  );
  if (summary.findings.length) {
    const counts = summary.findings.map((item) => `${item.kind} ${item.count}`).join(", ");
    block.append(element("div", `Findings: ${counts}`));
  }
  if (summary.topSenders.length) {
    const senders = summary.topSenders.slice(0, 3).map((item) => `${item.address} (${item.messages})`);
    block.append(element("div", `Top senders: ${senders.join(", ")}`, "help"));
  }
  return block;
}

// --- findings ------------------------------------------------------------------------------

async function showFindings(task, fromStart) {
  if (fromStart) state.findings = { taskId: task.id, cursor: null };
  const data = await graphql(QUERIES.findings, {
    taskId: state.findings.taskId,
    after: state.findings.cursor,
  });
  const page = data.scanFindings;
  const section = $("#findings");
  const body = section.querySelector("tbody");
  if (fromStart) {
    body.replaceChildren();
    $("#findings-title").textContent = `Findings of the scan of ${task.accountLabel}`;
  }
  for (const edge of page.edges) {
    const finding = edge.node;
    const row = element("tr");
    row.append(
      element("td", finding.kind),
      element("td", finding.detail),
      element("td", finding.senderAddress || ""),
      element("td", finding.subject || ""),
      element("td", formatDate(finding.date)),
    );
    body.append(row);
  }
  state.findings.cursor = page.pageInfo.endCursor;
  $("#more-findings").hidden = !page.pageInfo.hasNextPage;
  $("#no-findings").hidden = body.children.length > 0;
  section.hidden = false;
  if (fromStart) $("#findings-title").scrollIntoView({ behavior: "smooth" });
}

// --- live progress over graphql-transport-ws -----------------------------------------------

function setLive(live) {
  const badge = $("#live-state");
  badge.textContent = live ? "live" : "offline";
  badge.classList.toggle("live", live);
}

function connectLive() {
  const url = new URL("/graphql", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(url, "graphql-transport-ws");
  state.socket = socket;

  socket.addEventListener("open", () => {
    const payload = { authorization: `Bearer ${state.token}` };
    socket.send(JSON.stringify({ type: "connection_init", payload }));
  });
  socket.addEventListener("message", (event) => onSocketMessage(socket, JSON.parse(event.data)));
  socket.addEventListener("close", (event) => onSocketClose(socket, event));
}

function onSocketMessage(socket, message) {
  switch (message.type) {
    case "connection_ack":
      state.reconnectDelayMs = 1000;
      setLive(true);
      socket.send(JSON.stringify({ id: "my-scans", type: "subscribe", payload: { query: QUERIES.myScans } }));
      break;
    case "ping":
      socket.send(JSON.stringify({ type: "pong" }));
      break;
    case "next":
      if (message.payload.errors) showStatus(message.payload.errors[0].message, true);
      if (message.payload.data) attempt(() => applyProgress(message.payload.data.myScans));
      break;
    case "error":
      showStatus(`live updates failed: ${message.payload[0].message}`, true);
      break;
    default:
      break;
  }
}

function onSocketClose(socket, event) {
  if (state.socket !== socket) return;
  setLive(false);
  if (event.code === 4401 || event.code === 4403) {
    showStatus(`Live updates rejected the sign-in (close code ${event.code}); sign in again.`, true);
    return;
  }
  const delay = state.reconnectDelayMs;
  state.reconnectDelayMs = Math.min(delay * 2, MAX_RECONNECT_DELAY_MS);
  window.setTimeout(() => {
    if (state.socket !== socket || !state.token) return;
    // The terminal events of tasks that ended while the socket was closed were lost, so reload.
    attempt(() => loadHistory(true));
    connectLive();
  }, delay);
}

async function applyProgress(progress) {
  const entry = state.tasks.get(progress.taskId);
  if (!entry) {
    // A task started elsewhere (another tab, the CLI): read it whole.
    await refreshTask(progress.taskId, true);
    return;
  }
  entry.task = { ...entry.task, ...progress };
  renderTask(entry);
  if (!ACTIVE.has(progress.status)) {
    // The event carries no summary or error; the task document has them.
    await refreshTask(progress.taskId, false);
  }
}

// --- start ---------------------------------------------------------------------------------

function start() {
  $("#sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#token").value.trim().replace(/^Bearer\s+/i, "");
    if (token) signIn(token, $("#remember").checked);
  });
  $("#sign-out").addEventListener("click", signOut);
  $("#connect-form").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(() => connectAccount(event.target));
  });
  $("#more-tasks").addEventListener("click", () => attempt(() => loadHistory(false)));
  $("#more-findings").addEventListener("click", () =>
    attempt(() => showFindings(state.tasks.get(state.findings.taskId).task, false)),
  );

  const remembered = localStorage.getItem(TOKEN_KEY);
  if (remembered) signIn(remembered, true);
}

start();
