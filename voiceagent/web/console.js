/* The operator console (/console): live calls with their transcripts, listen-in and takeover over
   WebRTC, alerts, call history beside the recordings, the dashboard, campaigns.

   Plain JS, no build step, no third-party code. The page runs under a strict CSP (no inline script or
   style), and everything that came from a call or a person (transcripts, names, notes, alert
   messages) enters the DOM as text: textContent / createTextNode only, never innerHTML.

   Routes: /api/ops/... (../shared/SPEC.md "Operator side"). The session is the va_session cookie;
   the csrf token from login (or /me) is kept in memory and sent as X-CSRF-Token on every POST.
   A 401 from anywhere returns to the login form.

   Tests and the lead's end-to-end test read window.consoleState (see STATE below). */
(function () {
  "use strict";

  // ---- every UI string, both languages ----------------------------------------------------------
  var STRINGS = {
    zh: {
      consoleTitle: "坐席监控台", name: "用户名", password: "密码", login: "登录", logout: "退出",
      loginFailed: "用户名或密码错误", loginLocked: "尝试次数过多，请稍后再试", loginError: "登录失败：",
      langSwitch: "English", tabLive: "实时通话", tabHistory: "通话记录", tabDashboard: "数据看板", tabCampaigns: "外呼活动",
      alerts: "告警", noAlerts: "暂无告警", ack: "确认", liveCalls: "实时通话", noLiveCalls: "当前没有通话",
      colChannel: "渠道", colStarted: "开始", colLanguage: "语言", colState: "状态", colEmotion: "情绪",
      colIntent: "意图", colSupervisor: "主管", colWorker: "节点", colCustomer: "客户", colDuration: "时长", colOutcome: "结果",
      colPeakAnger: "最高愤怒", colHandoffReason: "转人工原因", colRating: "评分", colRecording: "录音",
      colName: "名称", colContacts: "联系人", colAttempts: "拨打次数", colProgress: "进度", colOutcomes: "结果",
      colScript: "话术", colAnswered: "接通", colConverted: "转化", colRate: "转化率", colCi: "95% 区间",
      call: "通话", close: "关闭", pickACall: "点击左侧的通话查看实时转写",
      listen: "监听", stopListening: "停止监听", takeover: "接管", release: "交还",
      speakingWithCaller: "您正在与客户通话（已接管，AI 客服已静音）",
      anotherSupervisor: "另一位主管正在接管这通电话", callNotLive: "这通电话已经结束",
      micRefused: "无法使用麦克风：", rtcFailed: "连接失败：", callEnded: "通话结束",
      supervisedBy: "主管接管：", supervisorLeft: "主管已交还", handoffTo: "转人工：",
      reconnecting: "连接中断，正在重连…", stageFailed: "环节出错：", hungUp: "挂断方：", from: "从", to: "到", text: "文字", intentHint: "如 order.status",
      textHint: "转写中的文字", any: "全部", search: "搜索", prev: "上一页", next: "下一页",
      pageOf: function (a, b, n) { return "第 " + a + "–" + b + " 条，共 " + n + " 条"; },
      noRecording: "没有录音", rating: "客户评分", handoffSummary: "转人工摘要", noHandoff: "没有转人工",
      notRated: "未评分", period: "时间范围", h24: "24 小时", d7: "7 天", d30: "30 天", perHour: "每小时通话",
      handoffReasons: "转人工原因", noCampaigns: "还没有外呼活动", pause: "暂停", resume: "继续", stop: "停止",
      fig: { calls: "通话数", resolved_rate: "AI 独立解决率", handoff_rate: "转人工率", aht_s: "平均处理时长",
             anger_rate: "愤怒通话占比", satisfaction: "满意度", campaign_conversion: "外呼转化率" },
      series: { calls: "通话", handoffs: "转人工", angry: "愤怒" },
      roles: { agent: "坐席", supervisor: "主管", admin: "管理员" },
      levels: { 1: "关注", 2: "预警", 3: "危机", 4: "重大危机" },
      states: { listening: "在听", thinking: "思考中", speaking: "说话中", supervised: "主管接管",
                transferring: "转接中", ended: "已结束" },
      handoffKeys: { reason: "原因", detail: "详情", target: "转给", caller: "客户", order: "订单", intents: "意图",
                     emotion: "情绪", tried: "已尝试", created_at: "时间" },
      you: "客户", agent: "AI", s: "秒", m: "分", h: "小时"
    },
    en: {
      consoleTitle: "Operator console", name: "Name", password: "Password", login: "Log in", logout: "Log out",
      loginFailed: "Wrong name or password", loginLocked: "Too many tries: wait a moment", loginError: "Login failed: ",
      langSwitch: "中文", tabLive: "Live calls", tabHistory: "History", tabDashboard: "Dashboard", tabCampaigns: "Campaigns",
      alerts: "Alerts", noAlerts: "No open alerts", ack: "Acknowledge", liveCalls: "Live calls", noLiveCalls: "No calls right now",
      colChannel: "Channel", colStarted: "Started", colLanguage: "Language", colState: "State", colEmotion: "Emotion",
      colIntent: "Intent", colSupervisor: "Supervisor", colWorker: "Worker", colCustomer: "Customer", colDuration: "Duration",
      colOutcome: "Outcome", colPeakAnger: "Peak anger", colHandoffReason: "Handoff reason", colRating: "Rating",
      colRecording: "Recording", colName: "Name", colContacts: "Contacts", colAttempts: "Attempts",
      colProgress: "Progress", colOutcomes: "Outcomes", colScript: "Script", colAnswered: "Answered",
      colConverted: "Converted", colRate: "Rate", colCi: "95% interval",
      call: "Call", close: "Close", pickACall: "Pick a call on the left to follow it live",
      listen: "Listen", stopListening: "Stop listening", takeover: "Take over", release: "Release",
      speakingWithCaller: "You are speaking with the caller (taken over; the agent is silent)",
      anotherSupervisor: "Another supervisor holds this call", callNotLive: "This call has ended",
      micRefused: "The microphone is not available: ", rtcFailed: "Could not connect: ", callEnded: "Call ended",
      supervisedBy: "Taken over by ", supervisorLeft: "Supervisor released the call", handoffTo: "Handoff: ",
      reconnecting: "Connection lost, reconnecting…", stageFailed: "A stage failed: ", hungUp: "Hung up by ", from: "From", to: "To", text: "Text",
      intentHint: "e.g. order.status", textHint: "words in the transcript", any: "Any", search: "Search",
      prev: "Previous", next: "Next",
      pageOf: function (a, b, n) { return a + "–" + b + " of " + n; },
      noRecording: "No recording", rating: "Caller's rating", handoffSummary: "Handoff summary",
      noHandoff: "No handoff", notRated: "Not rated", period: "Period", h24: "24 hours", d7: "7 days", d30: "30 days",
      perHour: "Calls per hour", handoffReasons: "Handoff reasons", noCampaigns: "No campaigns yet",
      pause: "Pause", resume: "Resume", stop: "Stop",
      fig: { calls: "Calls", resolved_rate: "Resolved without a person", handoff_rate: "Handoff rate",
             aht_s: "Average handling time", anger_rate: "Angry calls", satisfaction: "Satisfaction",
             campaign_conversion: "Campaign conversion" },
      series: { calls: "Calls", handoffs: "Handoffs", angry: "Angry" },
      roles: { agent: "agent", supervisor: "supervisor", admin: "admin" },
      levels: { 1: "Notice", 2: "Warning", 3: "Crisis", 4: "Major crisis" },
      states: { listening: "listening", thinking: "thinking", speaking: "speaking", supervised: "supervised",
                transferring: "transferring", ended: "ended" },
      handoffKeys: { reason: "Reason", detail: "Detail", target: "Target", caller: "Caller", order: "Order",
                     intents: "Intents", emotion: "Emotion", tried: "Tried", created_at: "At" },
      you: "Caller", agent: "Agent", s: "s", m: "m", h: "h"
    }
  };
  var EMOTIONS = {
    zh: { angry: "生气", anxious: "焦虑", hesitant: "犹豫", neutral: "平静", satisfied: "满意" },
    en: { angry: "angry", anxious: "anxious", hesitant: "hesitant", neutral: "neutral", satisfied: "satisfied" }
  };
  var OUTCOMES = {
    zh: { resolved: "已解决", handoff: "转人工", unresolved: "未解决", error: "出错", machine: "答录机" },
    en: { resolved: "resolved", handoff: "handoff", unresolved: "unresolved", error: "error", machine: "machine" }
  };
  var ROLE_RANK = { agent: 1, supervisor: 2, admin: 3 };
  var MAX_BUBBLES = 500;   // per open call: a console left open for hours stays small
  var MAX_ALERTS = 200;
  var HISTORY_PAGE = 50;

  function pickLang() {
    var saved = null;
    try { saved = localStorage.getItem("va_console_lang"); } catch (e) { /* storage off */ }
    if (saved === "zh" || saved === "en") return saved;
    return (navigator.language || "zh").toLowerCase().indexOf("zh") === 0 ? "zh" : "en";
  }

  // ---- state shared with the page's tests -------------------------------------------------------
  var STATE = window.consoleState = {
    lang: pickLang(), operator: null, calls: [], openCallId: null, openCall: null, listening: false,
    takenOver: false, lastEvent: null, alerts: [], transcript: [], tab: "live", sse: "closed",
    listenerId: null, error: null, history: null, dashboard: null, campaigns: null
  };
  var T = STRINGS[STATE.lang];
  var csrf = null;                       // in memory only
  var liveCalls = new Map();             // call_id -> call summary
  var alerts = new Map();                // id -> alert
  var opsEvents = null, callEvents = null, opsRetry = null, callRetry = null;
  var listenPc = null, takeoverPc = null, micStream = null;
  var historyOffset = 0, dashHours = 24, openCampaign = null;

  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // ---- language --------------------------------------------------------------------------------
  function applyLang() {
    T = STRINGS[STATE.lang];
    document.documentElement.lang = STATE.lang;
    document.title = T.consoleTitle;
    document.querySelectorAll("[data-t]").forEach(function (node) {
      var s = label(node.getAttribute("data-t"));
      if (typeof s === "string") node.textContent = s;
    });
    document.querySelectorAll("[data-tp]").forEach(function (node) {
      node.placeholder = T[node.getAttribute("data-tp")] || "";
    });
    document.querySelectorAll(".lang-toggle").forEach(function (b) { b.textContent = T.langSwitch; });
    if (STATE.operator) showOperator();
    renderLive();
    renderAlerts();
    if (STATE.openCall) renderCallHead();
    if (STATE.dashboard) renderDashboard(STATE.dashboard);
    if (STATE.history) renderHistory(STATE.history);
  }

  function label(key) {
    // "emo_angry" / "out_resolved": the option lists share the emotion and outcome names
    if (key.indexOf("emo_") === 0) return EMOTIONS[STATE.lang][key.slice(4)];
    if (key.indexOf("out_") === 0) return OUTCOMES[STATE.lang][key.slice(4)];
    return T[key];
  }

  function toggleLang() {
    STATE.lang = STATE.lang === "zh" ? "en" : "zh";
    try { localStorage.setItem("va_console_lang", STATE.lang); } catch (e) { /* storage off */ }
    applyLang();
  }

  function emotionName(e) { return e ? (EMOTIONS[STATE.lang][e] || e) : ""; }
  function outcomeName(o) { return o ? (OUTCOMES[STATE.lang][o] || o) : ""; }
  function stateName(s) { return s ? (T.states[s] || s) : ""; }
  function channelName(c) { return c && typeof c === "object" ? (c.kind || "") : (c || ""); }

  // ---- time ----------------------------------------------------------------------------------------
  function toMs(t) {
    if (t === null || t === undefined || t === "") return NaN;
    if (typeof t === "number") return t < 1e11 ? t * 1000 : t;  // epoch seconds or ms
    return Date.parse(t);
  }

  function since(t) {
    var ms = Date.now() - toMs(t);
    if (!isFinite(ms)) return "";
    return duration(Math.max(0, ms / 1000));
  }

  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "";
    s = Math.round(s);
    if (s < 60) return s + T.s;
    if (s < 3600) return Math.floor(s / 60) + T.m + (s % 60 ? " " + (s % 60) + T.s : "");
    return Math.floor(s / 3600) + T.h + " " + Math.floor((s % 3600) / 60) + T.m;
  }

  function clock(t) {
    var ms = toMs(t);
    if (!isFinite(ms)) return t ? String(t) : "";
    var d = new Date(ms);
    return d.toLocaleString(STATE.lang === "zh" ? "zh-CN" : "en-GB", { month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function pct(x) { return x === null || x === undefined || !isFinite(x) ? "–" : (x * 100).toFixed(1) + "%"; }

  // ---- HTTP --------------------------------------------------------------------------------------
  function ApiError(status, detail) { this.status = status; this.detail = detail; this.message = detail; }
  ApiError.prototype = Object.create(Error.prototype);

  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
    return fetch(path, { method: method, headers: headers, credentials: "same-origin",
                         body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        var type = r.headers.get("content-type") || "";
        var parsed = type.indexOf("json") >= 0 ? r.json().catch(function () { return null; }) : Promise.resolve(null);
        return parsed.then(function (data) {
          if (r.ok) return data;
          var detail = data && (data.detail || data.error) ? String(data.detail || data.error) : r.status + " " + r.statusText;
          if (r.status === 401 && path !== "/api/ops/login") loggedOut();
          throw new ApiError(r.status, detail);
        });
      });
  }

  function showError(node, err) {
    STATE.error = err ? String(err.detail || err.message || err) : null;
    if (node) node.textContent = STATE.error || "";
  }

  // ---- login / logout ----------------------------------------------------------------------------
  function showLogin() {
    $("app").hidden = true;
    $("login-view").hidden = false;
    $("login-name").focus();
  }

  function loggedOut() {
    // the session is gone (401 anywhere, or logout): stop everything that talks to the server
    stopAll();
    csrf = null;
    STATE.operator = null;
    forgetPages();
    showLogin();
  }

  function forgetPages() {
    // the next operator on this browser starts from nothing the last one opened
    STATE.history = STATE.dashboard = STATE.campaigns = null;
    openCampaign = null;
    ["history-body", "record-transcript", "record-handoff", "dash-cards", "dash-chart", "dash-reasons",
     "campaigns-body", "campaign-outcomes", "campaign-verdicts"].forEach(function (id) { clear($(id)); });
    clear($("campaign-scripts").querySelector("tbody"));
    $("record-audio").pause();
    $("record-audio").removeAttribute("src");
    $("record-panel").hidden = true;
    $("campaign-report").hidden = true;
    $("history-page").textContent = "";
    $("history-filters").reset();
  }

  function stopAll() {
    closeOpsEvents();
    closeCall();
    liveCalls.clear();
    alerts.clear();
    syncCalls();
    syncAlerts();
  }

  function loggedIn(me) {
    csrf = me.csrf || csrf;
    STATE.operator = { name: me.name, role: me.role };
    $("login-view").hidden = true;
    $("app").hidden = false;
    $("login-error").textContent = "";
    $("login-password").value = "";
    showOperator();
    showTab(STATE.tab || "live");
    loadLive();
    loadAlerts();
    openOpsEvents();
  }

  function showOperator() {
    $("operator-name").textContent = STATE.operator.name;
    $("operator-role").textContent = T.roles[STATE.operator.role] || STATE.operator.role;
  }

  function can(role) { return !!STATE.operator && (ROLE_RANK[STATE.operator.role] || 0) >= ROLE_RANK[role]; }

  function onLogin(ev) {
    ev.preventDefault();
    var btn = $("login-submit");
    btn.disabled = true;
    api("POST", "/api/ops/login", { name: $("login-name").value, password: $("login-password").value })
      .then(loggedIn)
      .catch(function (err) {
        $("login-error").textContent = err.status === 401 ? T.loginFailed
          : err.status === 429 ? T.loginLocked : T.loginError + (err.detail || err.message);
      })
      .then(function () { btn.disabled = false; });
  }

  function onLogout() {
    api("POST", "/api/ops/logout", {}).catch(function () { /* gone already */ }).then(loggedOut);
  }

  // ---- tabs --------------------------------------------------------------------------------------
  function showTab(name) {
    STATE.tab = name;
    ["live", "history", "dashboard", "campaigns"].forEach(function (t) { $("tab-" + t).hidden = t !== name; });
    document.querySelectorAll("#tabs button").forEach(function (b) {
      b.classList.toggle("active", b.getAttribute("data-tab") === name);
      b.setAttribute("aria-selected", b.getAttribute("data-tab") === name ? "true" : "false");
    });
    if (name === "history" && !STATE.history) loadHistory(0);
    if (name === "dashboard") loadDashboard(dashHours);
    if (name === "campaigns") loadCampaigns();
  }

  // ---- live calls --------------------------------------------------------------------------------
  function syncCalls() { STATE.calls = Array.from(liveCalls.values()); }

  function loadLive() {
    return api("GET", "/api/ops/calls?live=1").then(function (list) {
      liveCalls.clear();
      (list || []).forEach(function (c) { if (c && c.call_id) liveCalls.set(String(c.call_id), c); });
      syncCalls();
      renderLive();
    }).catch(function () { /* 401 handled; else the SSE brings it */ });
  }

  function renderLive() {
    var body = $("live-calls-body");
    if (!body) return;
    clear(body);
    STATE.calls.forEach(function (c) {
      var tr = el("tr");
      tr.setAttribute("data-call-id", c.call_id);
      if (c.call_id === STATE.openCallId) tr.className = "selected";
      tr.appendChild(el("td", null, channelName(c.channel)));
      var started = el("td", "since", since(c.started_at));
      started.setAttribute("data-started", c.started_at === undefined ? "" : String(c.started_at));
      tr.appendChild(started);
      tr.appendChild(el("td", null, c.language || ""));
      tr.appendChild(el("td", "state", stateName(c.state)));
      tr.appendChild(el("td", c.emotion === "angry" ? "emo-angry" : null, emotionName(c.emotion)));
      tr.appendChild(el("td", null, c.intent || ""));
      tr.appendChild(el("td", "worker", c.worker || ""));  // the worker the call lives on (many behind Kamailio)
      tr.appendChild(el("td", c.supervisor ? "emo-angry" : null, c.supervisor || ""));
      tr.addEventListener("click", function () { openCall(c.call_id); });
      body.appendChild(tr);
    });
    $("live-empty").hidden = STATE.calls.length > 0;
    $("live-count").textContent = STATE.calls.length ? "(" + STATE.calls.length + ")" : "";
  }

  function tickSince() {
    document.querySelectorAll("#live-calls-body td.since").forEach(function (td) {
      var raw = td.getAttribute("data-started");
      td.textContent = since(/^\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw);
    });
  }

  // ---- the operator event stream: calls and alerts ----------------------------------------------
  function openOpsEvents() {
    closeOpsEvents();
    var es = opsEvents = new EventSource("/api/ops/events");
    var opened = false;
    es.onopen = function () {
      setConn("up");
      if (opened) { loadLive(); loadAlerts(); }  // reconnected: what was missed in between
      opened = true;
    };
    es.onmessage = function (m) { onOpsEvent(parse(m.data)); };
    named(es, ["call_started", "call_updated", "call_ended", "alert"], onOpsEvent);
    es.onerror = function () {
      setConn("down");
      if (es.readyState !== EventSource.CLOSED) return;  // the browser retries on its own
      // refused (401 after a restart, or a proxy error): ask who we are, then start again
      opsEvents = null;
      clearTimeout(opsRetry);
      opsRetry = setTimeout(function () {
        api("GET", "/api/ops/me").then(function (me) {
          csrf = me.csrf || csrf;
          loadLive(); loadAlerts(); openOpsEvents();
        }).catch(function (err) {
          if (err.status !== 401 && STATE.operator) opsRetry = setTimeout(openOpsEvents, 5000);
        });
      }, 2000);
    };
    STATE.sse = "connecting";
  }

  function closeOpsEvents() {
    clearTimeout(opsRetry);
    if (opsEvents) { opsEvents.close(); opsEvents = null; }
    setConn(null);
  }

  function setConn(s) {
    STATE.sse = s || "closed";
    var c = $("conn-state");
    c.className = "conn" + (s ? " " + s : "");
    c.title = s === "down" ? T.reconnecting : "";
  }

  function named(es, types, handler) {
    // a server may also name its events (`event: caller`): the same handler, "type" filled in
    types.forEach(function (type) {
      es.addEventListener(type, function (m) {
        var ev = parse(m.data);
        if (ev && typeof ev === "object" && !ev.type) ev.type = type;
        handler(ev);
      });
    });
  }

  function parse(text) {
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function onOpsEvent(ev) {
    if (!ev || typeof ev !== "object") return;
    STATE.lastEvent = ev;
    if (ev.type === "call_started" || ev.type === "call_updated") {
      var c = ev.call;
      if (!c || !c.call_id) return;
      var id = String(c.call_id);
      liveCalls.set(id, Object.assign({}, liveCalls.get(id) || {}, c));
      syncCalls();
      renderLive();
      if (id === STATE.openCallId) { STATE.openCall = Object.assign({}, STATE.openCall || {}, c); renderCallHead(); }
    } else if (ev.type === "call_ended") {
      liveCalls.delete(String(ev.call_id));
      syncCalls();
      renderLive();
    } else if (ev.type === "alert") {
      addAlert(ev.alert);
    }
  }

  // ---- alerts ------------------------------------------------------------------------------------
  function syncAlerts() {
    STATE.alerts = Array.from(alerts.values()).sort(function (a, b) {
      return (b.level - a.level) || (toMs(b.at) - toMs(a.at));
    });
  }

  function loadAlerts() {
    return api("GET", "/api/ops/alerts").then(function (list) {
      alerts.clear();
      (list || []).forEach(function (a) { if (a && a.id !== undefined && !a.acked_by) alerts.set(String(a.id), a); });
      syncAlerts();
      renderAlerts();
    }).catch(function () { /* 401 handled */ });
  }

  function addAlert(a) {
    if (!a || a.id === undefined) return;
    if (a.acked_by) alerts.delete(String(a.id));  // acknowledged elsewhere
    else alerts.set(String(a.id), a);
    while (alerts.size > MAX_ALERTS) alerts.delete(alerts.keys().next().value);  // oldest first
    syncAlerts();
    renderAlerts();
  }

  function renderAlerts() {
    var list = $("alerts-list");
    if (!list) return;
    clear(list);
    STATE.alerts.forEach(function (a) {
      var level = Math.min(4, Math.max(1, Number(a.level) || 1));
      var li = el("li", "alert level-" + level);
      li.setAttribute("data-alert-id", String(a.id));
      li.appendChild(el("span", "lvl", T.levels[level]));
      if (a.kind) li.appendChild(el("span", "kind", a.kind));
      var msg = el("span", "msg", a.message || "");
      msg.title = a.message || "";
      li.appendChild(msg);
      if (a.call_id) {
        var link = el("a", "call-link", String(a.call_id).slice(0, 12));
        link.addEventListener("click", function () { showTab("live"); openCall(String(a.call_id)); });
        li.appendChild(link);
      }
      li.appendChild(el("span", "at", clock(a.at)));
      if (can("supervisor")) {
        var b = el("button", "ack", T.ack);
        b.type = "button";
        b.addEventListener("click", function () { ackAlert(a.id, b); });
        li.appendChild(b);
      }
      list.appendChild(li);
    });
    $("alerts-none").hidden = STATE.alerts.length > 0;
  }

  function ackAlert(id, button) {
    button.disabled = true;
    api("POST", "/api/ops/alerts/" + encodeURIComponent(id) + "/ack", {}).then(function () {
      alerts.delete(String(id));
      syncAlerts();
      renderAlerts();
    }).catch(function (err) {
      button.disabled = false;
      button.title = String(err.detail || err.message);
    });
  }

  // ---- one live call: its panel and transcript ----------------------------------------------------
  function openCall(id) {
    id = String(id);
    if (STATE.openCallId === id && callEvents) return;
    closeCall();
    STATE.openCallId = id;
    STATE.openCall = Object.assign({ call_id: id }, liveCalls.get(id) || {});
    STATE.openCall.ended = false;
    $("call-panel").hidden = false;
    $("call-placeholder").hidden = true;
    showError($("call-error"), null);
    renderCallHead();
    renderLive();
    openCallEvents(id);
  }

  function openCallEvents(id) {
    var es = callEvents = new EventSource("/api/ops/calls/" + encodeURIComponent(id) + "/events");
    es.onmessage = function (m) { onCallEvent(parse(m.data)); };
    named(es, ["snapshot", "caller", "agent", "partial", "state", "handoff", "supervisor", "alert", "ended"], onCallEvent);
    es.onerror = function () {
      if (es.readyState !== EventSource.CLOSED || STATE.openCallId !== id || STATE.openCall.ended) return;
      // refused (404 once the call is gone, or 401): check before trying again
      callEvents = null;
      clearTimeout(callRetry);
      callRetry = setTimeout(function () {
        if (STATE.openCallId !== id) return;
        api("GET", "/api/ops/calls?live=1").then(function (list) {
          var live = (list || []).some(function (c) { return String(c.call_id) === id; });
          if (live) openCallEvents(id);
          else callEnded({});
        }).catch(function () { /* 401 handled */ });
      }, 2000);
    };
  }

  function closeCall() {
    clearTimeout(callRetry);
    if (callEvents) { callEvents.close(); callEvents = null; }
    stopListening();
    if (STATE.takenOver) closeTakeover();
    STATE.openCallId = null;
    STATE.openCall = null;
    STATE.transcript = [];
    var panel = $("call-panel");
    if (panel) {
      panel.hidden = true;
      $("call-placeholder").hidden = false;
      clear($("transcript"));
    }
  }

  function renderCallHead() {
    var c = STATE.openCall;
    if (!c) return;
    $("call-id").textContent = c.call_id;
    $("call-channel").textContent = channelName(c.channel) + (c.language ? " · " + c.language : "");
    var st = c.ended ? "ended" : (c.supervisor ? "supervised" : c.state);
    $("call-state").textContent = stateName(st);
    $("call-state").setAttribute("data-state", st || "");
    $("call-supervisor").hidden = !c.supervisor;
    $("call-supervisor").textContent = c.supervisor ? T.supervisedBy + c.supervisor : "";
    var live = !c.ended;
    $("listen-btn").hidden = STATE.listening || STATE.takenOver || !live;
    $("stop-listen-btn").hidden = !STATE.listening;
    $("takeover-btn").hidden = !can("supervisor") || STATE.takenOver || !live;
    $("release-btn").hidden = !STATE.takenOver;
    $("takeover-banner").hidden = !STATE.takenOver;
  }

  function onCallEvent(ev) {
    if (!ev || typeof ev !== "object") return;
    STATE.lastEvent = ev;
    var c = STATE.openCall;
    if (!c) return;
    switch (ev.type) {
      case "snapshot": {
        // on every (re)connect: the call and its latest events, so the transcript is redrawn whole
        if (ev.call && ev.call.call_id) Object.assign(c, ev.call);
        c.ended = false;
        clear($("transcript"));
        STATE.transcript = [];
        (Array.isArray(ev.events) ? ev.events : []).forEach(function (e) {
          // alerts are the bar's business (acknowledged ones must not come back); an end is not replayed
          if (e && typeof e === "object" && ["snapshot", "alert", "ended"].indexOf(e.type) < 0) onCallEvent(e);
        });
        (Array.isArray(ev.turns) ? ev.turns : []).forEach(function (t) {
          if (t.role === "agent") addAgent(t); else addCaller(t);
        });
        break;
      }
      case "caller": {
        var turn = ev.turn || ev;
        addCaller(turn);
        c.emotion = turn.emotion || c.emotion;
        c.intent = turn.intent || c.intent;
        break;
      }
      case "agent": addAgent(ev.turn || ev); break;
      case "partial": setPartial(ev.text); break;
      case "state": c.state = ev.state; break;
      case "handoff": addNote(T.handoffTo + [ev.reason, ev.target].filter(Boolean).join(" → "), true); break;
      case "supervisor":
        c.supervisor = ev.active ? (ev.operator || "?") : null;
        addNote(ev.active ? T.supervisedBy + (ev.operator || "") : T.supervisorLeft, ev.active);
        break;
      case "alert": addAlert(ev.alert); break;
      case "error": addNote(T.stageFailed + (ev.stage || ""), true); break;
      case "hangup": addNote(T.hungUp + (ev.by || "") + (ev.reason ? " (" + ev.reason + ")" : ""), false); break;
      case "ended": callEnded(ev); return;
      default: return;
    }
    renderCallHead();
  }

  function callEnded(ev) {
    var c = STATE.openCall;
    if (!c || c.ended) return;
    c.ended = true;
    setPartial(null);
    addNote(T.callEnded + (ev.outcome ? " · " + outcomeName(typeof ev.outcome === "object"
      ? (ev.outcome.kind || ev.outcome.ended_by || "") : ev.outcome) : ""), false);
    if (callEvents) { callEvents.close(); callEvents = null; }
    stopListening();
    if (STATE.takenOver) closeTakeover();
    liveCalls.delete(c.call_id);
    syncCalls();
    renderLive();
    renderCallHead();
  }

  function bubble(cls, text) {
    var log = $("transcript");
    var partial = log.querySelector(".bubble.partial");
    var b = el("div", "bubble " + cls);
    b.appendChild(el("span", "text", text || ""));
    if (partial && cls.indexOf("partial") < 0) log.insertBefore(b, partial);
    else log.appendChild(b);
    while (log.childElementCount > MAX_BUBBLES) log.removeChild(log.firstElementChild);
    var nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    if (nearBottom || cls.indexOf("partial") < 0) log.scrollTop = log.scrollHeight;
    return b;
  }

  function remember(entry) {
    STATE.transcript.push(entry);
    if (STATE.transcript.length > MAX_BUBBLES) STATE.transcript.splice(0, STATE.transcript.length - MAX_BUBBLES);
  }

  function chip(text, cls) { return el("span", "chip" + (cls ? " " + cls : ""), text); }

  function addCaller(t) {
    setPartial(null);
    var b = bubble("caller", t.text);
    var meta = el("span", "meta");
    if (t.intent) meta.appendChild(chip(t.intent, "intent"));
    if (t.emotion) {
      var anger = typeof t.anger === "number" ? " " + t.anger.toFixed(2) : "";
      meta.appendChild(chip(emotionName(t.emotion) + anger, "emo-" + t.emotion));
    }
    if (meta.firstChild) b.appendChild(meta);
    remember({ role: "caller", text: t.text || "", intent: t.intent || null, emotion: t.emotion || null });
  }

  function addAgent(t) {
    bubble("agent" + (t.interrupted ? " interrupted" : ""), t.text);
    remember({ role: "agent", text: t.text || "", interrupted: !!t.interrupted });
  }

  function addNote(text, warn) { bubble("note" + (warn ? " warn" : ""), text); }

  function setPartial(text) {
    var log = $("transcript");
    var p = log.querySelector(".bubble.partial");
    if (!text) { if (p) log.removeChild(p); return; }
    if (!p) p = bubble("caller partial", "");
    p.firstChild.textContent = text;
  }

  // ---- WebRTC: listen-in and takeover -------------------------------------------------------------
  function iceComplete(pc, limitMs) {
    // no trickle: the server takes the whole offer with its candidates (as widget.js does)
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === "complete") return resolve();
      var t = setTimeout(resolve, limitMs);
      pc.addEventListener("icegatheringstatechange", function () {
        if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
      });
    });
  }

  function negotiate(path, mic) {
    var pc = new RTCPeerConnection({ iceServers: [] });
    if (mic) pc.addTransceiver(mic.getAudioTracks()[0], { direction: "sendrecv", streams: [mic] });
    else pc.addTransceiver("audio", { direction: "recvonly" });
    pc.ontrack = function (e) {
      var audio = $("call-audio");
      audio.srcObject = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
      var played = audio.play();
      if (played && played.catch) played.catch(function () { /* autoplay refused: the click will retry */ });
    };
    var ready = pc.createOffer()
      .then(function (offer) { return pc.setLocalDescription(offer); })
      .then(function () { return iceComplete(pc, 3000); })
      .then(function () {
        return api("POST", path, { sdp: pc.localDescription.sdp, type: pc.localDescription.type });
      })
      .then(function (answer) {
        return pc.setRemoteDescription({ type: answer.type || "answer", sdp: answer.sdp }).then(function () { return answer; });
      });
    return { pc: pc, ready: ready };
  }

  function callPath(action) { return "/api/ops/calls/" + encodeURIComponent(STATE.openCallId) + "/" + action; }

  function rtcError(err) {
    if (err && err.status === 409) return T.anotherSupervisor;
    if (err && err.status === 404) return T.callNotLive;
    return T.rtcFailed + String((err && (err.detail || err.message)) || err);
  }

  function startListening() {
    if (STATE.listening || !STATE.openCallId) return;
    showError($("call-error"), null);
    var n = negotiate(callPath("listen"), null);
    listenPc = n.pc;
    STATE.listening = true;
    renderCallHead();
    watchPc(n.pc, stopListening);
    n.ready.then(function (answer) { STATE.listenerId = answer.listener_id || null; })
      .catch(function (err) {
        if (listenPc === n.pc) stopListening();
        showError($("call-error"), rtcError(err));
      });
  }

  function stopListening() {
    if (listenPc) { try { listenPc.close(); } catch (e) { /* closed */ } }
    listenPc = null;
    STATE.listening = false;
    STATE.listenerId = null;
    if (!takeoverPc) stopAudio();
    if (STATE.openCall) renderCallHead();
  }

  function stopAudio() {
    var audio = $("call-audio");
    if (audio) { audio.pause(); audio.srcObject = null; }
  }

  function watchPc(pc, onGone) {
    pc.addEventListener("connectionstatechange", function () {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        if (pc === listenPc || pc === takeoverPc) {
          onGone();
          if (pc.connectionState === "failed") showError($("call-error"), T.rtcFailed + pc.connectionState);
        }
      }
    });
  }

  function takeOver() {
    if (STATE.takenOver || !STATE.openCallId || !can("supervisor")) return;
    showError($("call-error"), null);
    var button = $("takeover-btn");
    button.disabled = true;
    navigator.mediaDevices.getUserMedia({ audio: true }).then(function (mic) {
      micStream = mic;
      stopListening();  // the takeover leg carries the caller: one audio path at a time
      var n = negotiate(callPath("takeover"), mic);
      takeoverPc = n.pc;
      watchPc(n.pc, function () {
        // the supervisor's leg died (network): give the call back to the agent rather than to silence
        var id = STATE.openCallId;
        closeTakeover();
        if (id) api("POST", "/api/ops/calls/" + encodeURIComponent(id) + "/release", {}).catch(function () { /* ended */ });
      });
      return n.ready.then(function () {
        STATE.takenOver = true;
        renderCallHead();
      });
    }).catch(function (err) {
      closeTakeover();
      var micErr = err && (err.name === "NotAllowedError" || err.name === "NotFoundError");
      showError($("call-error"), micErr ? T.micRefused + err.name : rtcError(err));
    }).then(function () { button.disabled = false; if (STATE.openCall) renderCallHead(); });
  }

  function release() {
    if (!STATE.openCallId) return;
    var button = $("release-btn");
    button.disabled = true;
    api("POST", callPath("release"), {}).catch(function (err) {
      if (err.status !== 404) showError($("call-error"), err);  // 404: the call ended meanwhile
    }).then(function () {
      closeTakeover();
      button.disabled = false;
    });
  }

  function closeTakeover() {
    if (takeoverPc) { try { takeoverPc.close(); } catch (e) { /* closed */ } }
    takeoverPc = null;
    if (micStream) micStream.getTracks().forEach(function (t) { t.stop(); });
    micStream = null;
    STATE.takenOver = false;
    if (!listenPc) stopAudio();
    if (STATE.openCall) renderCallHead();
  }

  // ---- history -----------------------------------------------------------------------------------
  function dayBound(value, end) {
    if (!value) return null;
    var d = new Date(value + (end ? "T23:59:59.999" : "T00:00:00"));  // the operator's own day
    return isFinite(d.getTime()) ? d.toISOString() : null;
  }

  function loadHistory(offset) {
    historyOffset = Math.max(0, offset);
    var q = new URLSearchParams();
    var from = dayBound($("f-from").value, false), to = dayBound($("f-to").value, true);
    if (from) q.set("from", from);
    if (to) q.set("to", to);
    [["intent", "f-intent"], ["outcome", "f-outcome"], ["emotion", "f-emotion"], ["customer", "f-customer"],
     ["q", "f-q"]].forEach(function (p) {
      var v = $(p[1]).value.trim();
      if (v) q.set(p[0], v);
    });
    q.set("limit", String(HISTORY_PAGE));
    q.set("offset", String(historyOffset));
    return api("GET", "/api/ops/calls?" + q.toString()).then(function (page) {
      STATE.history = page;
      renderHistory(page || { total: 0, calls: [] });
    }).catch(function (err) { if (err.status !== 401) $("history-page").textContent = String(err.detail); });
  }

  function renderHistory(page) {
    var body = $("history-body");
    clear(body);
    (page.calls || []).forEach(function (c) {
      var tr = el("tr");
      tr.setAttribute("data-call-id", c.call_id);
      var cells = [clock(c.started_at), channelName(c.channel), c.language, c.customer_id, duration(c.duration_s),
                   c.intent, outcomeName(c.outcome), emotionName(c.emotion),
                   typeof c.peak_anger === "number" ? c.peak_anger.toFixed(2) : "", c.handoff_reason,
                   c.rating === null || c.rating === undefined ? "" : String(c.rating), c.recording ? "♪" : ""];
      cells.forEach(function (v, i) {
        tr.appendChild(el("td", i === 7 && c.emotion === "angry" ? "emo-angry" : null, v === undefined || v === null ? "" : v));
      });
      tr.addEventListener("click", function () { openRecord(c.call_id); });
      body.appendChild(tr);
    });
    var total = Number(page.total) || 0;
    var shown = (page.calls || []).length;
    $("history-page").textContent = shown ? T.pageOf(historyOffset + 1, historyOffset + shown, total) : T.pageOf(0, 0, total);
    $("history-prev").disabled = historyOffset <= 0;
    $("history-next").disabled = historyOffset + shown >= total;
  }

  function openRecord(id) {
    return api("GET", "/api/ops/calls/" + encodeURIComponent(id)).then(function (rec) {
      $("record-panel").hidden = false;
      $("record-id").textContent = id;
      var log = $("record-transcript");
      clear(log);
      (rec.turns || []).slice(0, 2000).forEach(function (t) {
        var b = el("div", "bubble " + (t.role === "agent" ? "agent" : "caller"));
        b.appendChild(el("span", "text", t.text || ""));
        if (t.role !== "agent" && (t.intent || t.emotion)) {
          var meta = el("span", "meta");
          if (t.intent) meta.appendChild(chip(t.intent, "intent"));
          if (t.emotion) meta.appendChild(chip(emotionName(t.emotion), "emo-" + t.emotion));
          b.appendChild(meta);
        }
        log.appendChild(b);
      });
      var audio = $("record-audio");
      audio.pause();
      if (rec.recording) {
        audio.src = "/api/ops/calls/" + encodeURIComponent(id) + "/recording";
        audio.hidden = false;
        $("record-no-audio").hidden = true;
      } else {
        audio.removeAttribute("src");
        audio.hidden = true;
        $("record-no-audio").hidden = false;
      }
      var rating = rec.rating;
      if (rating && typeof rating === "object") rating = rating.score !== undefined ? rating.score : rating.value;
      $("record-rating").textContent = rating === null || rating === undefined ? T.notRated
        : "★".repeat(Math.max(0, Math.min(5, Math.round(Number(rating)) || 0))) + " " + rating;
      renderHandoff(rec.handoff);
      $("record-panel").scrollIntoView({ block: "nearest" });
    }).catch(function (err) { if (err.status !== 401) $("history-page").textContent = String(err.detail); });
  }

  function renderHandoff(h) {
    var dl = $("record-handoff");
    clear(dl);
    if (!h) { dl.appendChild(el("dd", "muted", T.noHandoff)); return; }
    var keys = T.handoffKeys;
    Object.keys(keys).forEach(function (k) {
      var v = h[k];
      if (v === null || v === undefined || v === "" || (Array.isArray(v) && !v.length)) return;
      dl.appendChild(el("dt", null, keys[k]));
      dl.appendChild(el("dd", null, summarize(k, v)));
    });
  }

  function summarize(key, v) {
    if (key === "emotion" && typeof v === "object") {
      return emotionName(v.now) + (typeof v.peak_anger === "number" ? " · peak " + v.peak_anger.toFixed(2) : "");
    }
    if (key === "caller" && typeof v === "object") {
      return [v.name, v.customer_id, v.tier, v.phone].filter(Boolean).join(" · ");
    }
    if (key === "order" && typeof v === "object") {
      return [v.order_id, v.status, v.product, v.tracking_no].filter(Boolean).join(" · ");
    }
    if (Array.isArray(v)) return v.map(function (x) { return typeof x === "object" ? JSON.stringify(x) : String(x); }).join(", ");
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  // ---- dashboard ---------------------------------------------------------------------------------
  function loadDashboard(hours) {
    dashHours = hours;
    document.querySelectorAll("button.period").forEach(function (b) {
      b.classList.toggle("active", Number(b.getAttribute("data-hours")) === hours);
    });
    return api("GET", "/api/ops/dashboard?hours=" + hours).then(function (d) {
      STATE.dashboard = d;
      renderDashboard(d);
    }).catch(function () { /* 401 handled */ });
  }

  function renderDashboard(d) {
    var cards = $("dash-cards");
    clear(cards);
    var sat = d.satisfaction || {};
    var figures = [
      ["calls", d.calls === undefined ? "–" : String(d.calls)],
      ["resolved_rate", pct(d.resolved_rate)],
      ["handoff_rate", pct(d.handoff_rate)],
      ["aht_s", d.aht_s === null || d.aht_s === undefined ? "–" : duration(d.aht_s)],
      ["anger_rate", pct(d.anger_rate)],
      ["satisfaction", sat.avg === null || sat.avg === undefined ? "–" : Number(sat.avg).toFixed(2) + " / 5 (" + (sat.n || 0) + ")"],
      ["campaign_conversion", pct(d.campaign_conversion)]
    ];
    figures.forEach(function (f) {
      var card = el("div", "figure");
      card.setAttribute("data-figure", f[0]);
      card.appendChild(el("div", "v", f[1]));
      card.appendChild(el("div", "k", T.fig[f[0]]));
      cards.appendChild(card);
    });
    drawChart($("dash-chart"), d.series || []);
    var legend = $("dash-legend");
    clear(legend);
    ["calls", "handoffs", "angry"].forEach(function (s) {
      var span = el("span");
      span.appendChild(el("i", "s-" + s));
      span.appendChild(document.createTextNode(T.series[s]));
      legend.appendChild(span);
    });
    var reasons = $("dash-reasons");
    clear(reasons);
    var entries = Object.keys(d.handoff_reasons || {}).map(function (k) { return [k, Number(d.handoff_reasons[k]) || 0]; })
      .sort(function (a, b) { return b[1] - a[1]; });
    var top = entries.length ? entries[0][1] : 0;
    entries.forEach(function (e) { reasons.appendChild(barRow(e[0], e[1], top)); });
  }

  function barRow(label, value, max) {
    var li = el("li");
    li.appendChild(el("span", "label", label));
    var bar = el("span", "bar");
    bar.style.width = (max ? Math.round(300 * value / max) : 0) + "px";
    li.appendChild(bar);
    li.appendChild(el("span", "n", String(value)));
    return li;
  }

  var SVG = "http://www.w3.org/2000/svg";

  function svgEl(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    return e;
  }

  function drawChart(box, series) {
    // calls, handoffs and angry calls per hour: three polylines on one axis, no library
    clear(box);
    var W = 800, H = 220, L = 36, R = 10, TOP = 10, B = 24;
    var svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img" });
    var max = 1;
    series.forEach(function (p) { max = Math.max(max, Number(p.calls) || 0, Number(p.handoffs) || 0, Number(p.angry) || 0); });
    var n = series.length;
    var x = function (i) { return L + (n <= 1 ? (W - L - R) / 2 : i * (W - L - R) / (n - 1)); };
    var y = function (v) { return TOP + (H - TOP - B) * (1 - (Number(v) || 0) / max); };
    svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, "class": "axis" }));
    svg.appendChild(svgEl("line", { x1: L, y1: TOP, x2: L, y2: H - B, "class": "axis" }));
    var top = svgEl("text", { x: 2, y: TOP + 8 });
    top.textContent = String(max);
    svg.appendChild(top);
    var zero = svgEl("text", { x: 2, y: H - B });
    zero.textContent = "0";
    svg.appendChild(zero);
    if (n) {
      [[0, "start"], [n - 1, "end"]].forEach(function (p) {
        var t = svgEl("text", { x: x(p[0]), y: H - 6, "text-anchor": p[1] });
        t.textContent = clock(series[p[0]].t);
        svg.appendChild(t);
      });
      ["calls", "handoffs", "angry"].forEach(function (key) {
        var pts = series.map(function (p, i) { return x(i).toFixed(1) + "," + y(p[key]).toFixed(1); }).join(" ");
        svg.appendChild(svgEl("polyline", { points: pts, "class": "s-" + key, "data-series": key }));
      });
    }
    box.appendChild(svg);
  }

  // ---- campaigns ---------------------------------------------------------------------------------
  function loadCampaigns() {
    return api("GET", "/api/ops/campaigns").then(function (list) {
      STATE.campaigns = list || [];
      var body = $("campaigns-body");
      clear(body);
      STATE.campaigns.forEach(function (c) {
        var tr = el("tr");
        tr.setAttribute("data-campaign", c.name);
        var outcomes = c.outcomes || {};
        var pending = Number(outcomes.pending) || 0;
        tr.appendChild(el("td", null, c.name));
        tr.appendChild(el("td", null, c.state));
        tr.appendChild(el("td", null, String(c.contacts === undefined ? "" : c.contacts)));
        tr.appendChild(el("td", null, String(c.attempts === undefined ? "" : c.attempts)));
        tr.appendChild(el("td", null, c.contacts ? pct((c.contacts - pending) / c.contacts) : "–"));
        tr.appendChild(el("td", null, Object.keys(outcomes).map(function (k) { return k + " " + outcomes[k]; }).join(", ")));
        tr.addEventListener("click", function () { loadCampaign(c.name); });
        body.appendChild(tr);
      });
      $("campaigns-empty").hidden = STATE.campaigns.length > 0;
      if (openCampaign) loadCampaign(openCampaign);
    }).catch(function (err) {
      if (err.status !== 401) { $("campaigns-empty").hidden = false; $("campaigns-empty").textContent = String(err.detail); }
    });
  }

  function loadCampaign(name) {
    openCampaign = name;
    return api("GET", "/api/ops/campaigns/" + encodeURIComponent(name)).then(function (r) {
      $("campaign-report").hidden = false;
      $("campaign-name").textContent = r.name;
      $("campaign-state").textContent = r.state;
      var outcomes = r.outcomes || {};
      var done = r.contacts ? (r.contacts - (Number(outcomes.pending) || 0)) / r.contacts : 0;
      $("campaign-progress").firstElementChild.style.width = Math.round(done * 100) + "%";
      $("campaign-progress").title = pct(done);
      var ul = $("campaign-outcomes");
      clear(ul);
      var max = 0;
      Object.keys(outcomes).forEach(function (k) { max = Math.max(max, Number(outcomes[k]) || 0); });
      Object.keys(outcomes).forEach(function (k) { if (outcomes[k]) ul.appendChild(barRow(k, outcomes[k], max)); });
      var body = $("campaign-scripts").querySelector("tbody");
      clear(body);
      Object.keys(r.scripts || {}).forEach(function (sid) {
        var s = r.scripts[sid] || {};
        var ci = Array.isArray(s.ci95) ? s.ci95.map(function (v) { return Number(v).toFixed(2); }).join("–") : "";
        var tr = el("tr");
        [sid, s.contacts, s.answered, s.converted, pct(s.conversion_rate), ci].forEach(function (v) {
          tr.appendChild(el("td", null, v === undefined || v === null ? "" : String(v)));
        });
        body.appendChild(tr);
      });
      var verdicts = $("campaign-verdicts");
      clear(verdicts);
      ((r.experiment && r.experiment.comparison) || []).forEach(function (c) {
        if (c && c.verdict) verdicts.appendChild(el("li", null, c.verdict));
      });
      document.querySelectorAll(".campaign-action").forEach(function (b) {
        var a = b.getAttribute("data-action");
        var ok = can("supervisor") && ((a === "pause" && r.state === "running") || (a === "resume" && r.state === "paused")
          || (a === "stop" && r.state !== "stopped" && r.state !== "done"));
        b.hidden = !ok;
      });
    }).catch(function () { /* 401 handled */ });
  }

  function campaignAction(action) {
    if (!openCampaign) return;
    api("POST", "/api/ops/campaigns/" + encodeURIComponent(openCampaign) + "/" + action, {})
      .then(loadCampaigns).catch(function () { /* 401 handled */ });
  }

  // ---- start -------------------------------------------------------------------------------------
  function wire() {
    $("login-form").addEventListener("submit", onLogin);
    $("login-lang").addEventListener("click", toggleLang);
    $("lang-toggle").addEventListener("click", toggleLang);
    $("logout").addEventListener("click", onLogout);
    document.querySelectorAll("#tabs button").forEach(function (b) {
      b.addEventListener("click", function () { showTab(b.getAttribute("data-tab")); });
    });
    $("call-close").addEventListener("click", function () { closeCall(); renderLive(); });
    $("listen-btn").addEventListener("click", startListening);
    $("stop-listen-btn").addEventListener("click", stopListening);
    $("takeover-btn").addEventListener("click", takeOver);
    $("release-btn").addEventListener("click", release);
    $("history-filters").addEventListener("submit", function (e) { e.preventDefault(); loadHistory(0); });
    $("history-prev").addEventListener("click", function () { loadHistory(historyOffset - HISTORY_PAGE); });
    $("history-next").addEventListener("click", function () { loadHistory(historyOffset + HISTORY_PAGE); });
    $("record-close").addEventListener("click", function () { $("record-audio").pause(); $("record-panel").hidden = true; });
    document.querySelectorAll("button.period").forEach(function (b) {
      b.addEventListener("click", function () { loadDashboard(Number(b.getAttribute("data-hours"))); });
    });
    document.querySelectorAll(".campaign-action").forEach(function (b) {
      b.addEventListener("click", function () { campaignAction(b.getAttribute("data-action")); });
    });
    window.addEventListener("pagehide", function () { stopListening(); closeTakeover(); });
    setInterval(tickSince, 1000);
  }

  function start() {
    wire();
    applyLang();
    api("GET", "/api/ops/me").then(loggedIn).catch(function () { showLogin(); });
  }

  // what the lead's end-to-end test (and a curious operator) can drive
  // the WebRTC legs' states ("new" ... "connected"), null when there is none
  Object.defineProperty(STATE, "listenConnection", { enumerable: true,
    get: function () { return listenPc ? listenPc.connectionState : null; } });
  Object.defineProperty(STATE, "takeoverConnection", { enumerable: true,
    get: function () { return takeoverPc ? takeoverPc.connectionState : null; } });
  STATE.open = openCall;
  STATE.listen = startListening;
  STATE.stopListening = stopListening;
  STATE.takeOver = takeOver;
  STATE.release = release;
  STATE.setLang = function (l) { if (l !== STATE.lang) toggleLang(); };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
