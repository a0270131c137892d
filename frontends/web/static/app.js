// Cadenza's operator page: the live parts, from the server-sent event stream.
// Agent output and everything else received is inserted as text (textContent, text nodes):
// never as markup.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;
const running = document.getElementById("running");
const finished = document.getElementById("finished");
const notices = document.getElementById("notices");
const idle = document.getElementById("idle");
const clocks = new Map(); // turn id -> {elapsed, deadlineIn, at}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

function control(action, turnId, label) {
  const form = el("form");
  form.method = "post";
  form.action = "/" + action;
  const turn = el("input");
  turn.type = "hidden";
  turn.name = "turn";
  turn.value = turnId;
  form.append(turn, el("button", action, label));
  return form;
}

function card(turn) {
  const article = el("article", "turn");
  article.dataset.turn = turn.id;
  const head = el("div", "head");
  head.append(el("span", "chat", turn.chat));
  if (turn.session) head.append(" ", el("span", "session", "@" + turn.session));
  head.append(" ", el("span", "agent", turn.agent), " ", el("span", "elapsed"));
  const deadline = el("div", "deadline");
  deadline.append(el("div", "bar"), el("span", "deadline-text"));
  const controls = el("div", "controls");
  controls.append(control("stop", turn.id, "Stop"), control("extend", turn.id, "Extend"));
  article.append(head, el("p", "prompt", turn.prompt), deadline, el("p", "activity"),
    el("pre", "answer"), el("p", "outcome"), controls);
  fill(article, turn);
  return article;
}

function fill(article, turn) {
  article.querySelector(".answer").textContent = turn.text || "";
  article.querySelector(".activity").textContent = turn.activity || "";
  setDeadline(article, turn);
  if (turn.outcome) end(article, turn);
}

function setDeadline(article, info) {
  clocks.set(article.dataset.turn, {
    elapsed: info.elapsed, deadlineIn: info.deadline_in, at: performance.now()});
  const deadline = article.querySelector(".deadline");
  deadline.classList.toggle("warned", Boolean(info.warning));
  deadline.querySelector(".deadline-text").textContent = info.text || info.warning || "";
  tick(article);
}

function end(article, turn) {
  clocks.delete(turn.id);
  article.classList.add("ended", turn.outcome);
  article.querySelector(".outcome").textContent =
    turn.outcome + (turn.outcome_text ? ": " + turn.outcome_text : "");
  const controls = article.querySelector(".controls");
  if (controls) controls.remove();
  article.querySelector(".elapsed").textContent = hms(turn.elapsed);
}

function hms(seconds) {
  return new Date(Math.max(seconds, 0) * 1000).toISOString().substring(11, 19);
}

function tick(article) {
  const clock = clocks.get(article.dataset.turn);
  if (!clock) return;
  const passed = (performance.now() - clock.at) / 1000;
  const elapsed = clock.elapsed + passed;
  article.querySelector(".elapsed").textContent = hms(elapsed);
  const bar = article.querySelector(".bar");
  if (clock.deadlineIn === null || clock.deadlineIn === undefined) {
    bar.style.width = "0";
    return;
  }
  const left = Math.max(clock.deadlineIn - passed, 0);
  bar.style.width = Math.min(100, (100 * elapsed) / (elapsed + left || 1)).toFixed(1) + "%";
}

function find(id) {
  return document.querySelector(`article[data-turn="${CSS.escape(id)}"]`);
}

function note(notice) {
  // as pages.notice_item: files by their names, the text unless it is one of them
  const names = notice.files || [];
  const item = el("li", notice.kind, names.includes(notice.text) ? "" : notice.text);
  item.append(...names.map((name) => el("span", "file", name)));
  notices.prepend(item);
}

function updateIdle() {
  if (idle) idle.hidden = running.children.length > 0;
}

const handlers = {
  snapshot(message) {
    running.replaceChildren(...message.running.map(card));
    finished.replaceChildren(...message.finished.map(card));
    notices.replaceChildren();
    message.notices.forEach(note);
  },
  turn(message) {
    if (!find(message.id)) running.append(card(message));
  },
  text(message) {
    const article = find(message.id);
    if (!article) return;
    const answer = article.querySelector(".answer");
    answer.append(document.createTextNode(message.text));
    answer.scrollTop = answer.scrollHeight;
  },
  activity(message) {
    const article = find(message.id);
    if (article) article.querySelector(".activity").textContent = message.activity;
  },
  deadline(message) {
    const article = find(message.id);
    if (article) setDeadline(article, message);
  },
  end(message) {
    const article = find(message.id) || card(message);
    end(article, message);
    finished.prepend(article);
  },
  notice: note,
};

function connect() {
  const stream = new EventSource("/events");
  stream.onmessage = (event) => {
    const message = JSON.parse(event.data);
    const handler = handlers[message.type];
    if (handler) handler(message);
    updateIdle();
  };
  stream.onerror = async () => {
    // logged out (401) or Cadenza restarting: find out which
    const answer = await fetch("/snapshot", {credentials: "same-origin"}).catch(() => null);
    if (answer && answer.status === 401) window.location.assign("/login");
  };
}

async function post(form) {
  const answer = await fetch(form.action, {
    method: "POST", body: new FormData(form), credentials: "same-origin",
    headers: {"X-CSRF-Token": csrf}});
  if (answer.status === 401) window.location.assign("/login");
  return answer;
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!running || form.classList.contains("logout")) return;
  event.preventDefault();
  const answer = await post(form);
  if (form.id === "send" && answer.ok) form.reset();
  if (!answer.ok) {
    const body = await answer.json().catch(() => ({message: answer.statusText}));
    note({kind: "error", text: body.message});
  }
});

if (running) {
  connect();
  setInterval(() => running.querySelectorAll("article").forEach(tick), 1000);
}
