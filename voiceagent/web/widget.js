/* voiceagent voice widget: one <script> tag gives any page a "talk to us" button.

     <script src="https://agent.example.com/widget.js" data-lang="zh" async></script>

   data-lang     "zh" | "en": the widget's own words (default: the browser's language)
   data-speech   "auto" | "zh" | "en": the language the agent expects the caller to speak (default auto)
   data-title    the panel's title
   data-open     "true": the panel starts open

   The agent lives where widget.js came from: the call is a WebRTC session negotiated by
   POST /api/webrtc/offer (the offer carries its gathered ICE candidates), the transcript and the
   agent's state arrive on the "events" data channel, and when the microphone is refused the same
   agent answers in text through POST /api/chat. No third-party code, no CDN.

   The page can watch window.voiceagentWidget (state, transcript, the peer connection and both
   audio streams) and the "voiceagent:event" DOM events dispatched on document. */
(function () {
  "use strict";
  if (window.voiceagentWidget) return; // loaded twice: one widget

  var script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  var BASE = new URL(script && script.src ? script.src : "/widget.js", location.href).origin;
  var data = (script && script.dataset) || {};
  var LANG = data.lang === "en" || data.lang === "zh" ? data.lang
    : ((navigator.language || "zh").toLowerCase().indexOf("zh") === 0 ? "zh" : "en");
  var SPEECH = ["zh", "en"].indexOf(data.speech) >= 0 ? data.speech : "auto";

  var STRINGS = {
    zh: {
      title: "在线语音客服", call: "语音通话", hangup: "挂断", send: "发送",
      placeholder: "输入您的问题…", you: "您", agent: "客服", human: "人工客服",
      states: { idle: "点击开始通话", connecting: "正在连接…", listening: "正在听", thinking: "正在思考",
                speaking: "正在说话", human: "已转接人工客服", ended: "通话已结束" },
      micRefused: "无法使用麦克风，请用文字和我们交流。",
      noWebrtc: "此浏览器不支持语音通话，请用文字交流。",
      busy: "线路繁忙，请稍后再试，或用文字交流。",
      failed: "连接失败：", connectingHuman: "正在为您转接人工客服…",
      handoffFailed: "人工客服暂时无法接听。留下电话，我们会尽快给您回电。",
      callbackPhone: "手机号码", callbackSubmit: "请回电给我", callbackDone: "已登记回电，工单号 ",
      callbackError: "登记失败，请检查号码后重试。", open: "联系客服", close: "关闭", keypad: "按键",
      rate: "请为本次服务打分：", star: "星", rated: "谢谢您的评价！"
    },
    en: {
      title: "Talk to us", call: "Start a voice call", hangup: "Hang up", send: "Send",
      placeholder: "Type your question…", you: "You", agent: "Agent", human: "Colleague",
      states: { idle: "Press to start a call", connecting: "Connecting…", listening: "Listening",
                thinking: "Thinking", speaking: "Speaking", human: "Connected to a colleague",
                ended: "Call ended" },
      micRefused: "The microphone is not available: you can type to us instead.",
      noWebrtc: "This browser cannot make voice calls: you can type to us instead.",
      busy: "All our lines are busy: please try again shortly, or type to us.",
      failed: "Could not connect: ", connectingHuman: "Connecting you to a colleague…",
      handoffFailed: "No colleague could take the call right now. Leave your number and we will call you back.",
      callbackPhone: "Phone number", callbackSubmit: "Call me back", callbackDone: "Callback booked, ticket ",
      callbackError: "That did not work: please check the number and try again.", open: "Contact us",
      close: "Close", keypad: "Keypad",
      rate: "How did we do?", star: " stars", rated: "Thank you for rating us!"
    }
  };
  var T = STRINGS[LANG];
  // Who the shopper is, as the shop's backend signed it (data-customer-token, or a global the shop
  // sets): the chat trusts nothing else, and the widget never sends a customer id of its own.
  function customerToken() {
    return data.customerToken || window.VOICEAGENT_CUSTOMER_TOKEN || null;
  }

  // ---- the panel, in a shadow root so the shop's styles and ours never mix ---------------------
  var host = document.createElement("div");
  host.id = "voiceagent-widget";
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" +
    ":host{all:initial}*{box-sizing:border-box;font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei',sans-serif}" +
    ".fab{position:fixed;right:20px;bottom:20px;z-index:2147483000;border:0;border-radius:28px;padding:14px 20px;" +
    "background:#e4393c;color:#fff;font-size:15px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25)}" +
    ".panel{position:fixed;right:20px;bottom:20px;z-index:2147483001;width:340px;max-width:calc(100vw - 40px);" +
    "height:480px;max-height:calc(100vh - 40px);background:#fff;border-radius:12px;display:none;flex-direction:column;" +
    "box-shadow:0 8px 30px rgba(0,0,0,.3);overflow:hidden;color:#222;font-size:14px}" +
    ".panel.open{display:flex}.head{background:#e4393c;color:#fff;padding:10px 12px;display:flex;align-items:center;gap:8px}" +
    ".head b{flex:1}.x{background:none;border:0;color:#fff;font-size:20px;cursor:pointer}" +
    ".bar{display:flex;align-items:center;gap:8px;padding:8px 12px;border-bottom:1px solid #eee}" +
    ".state{flex:1;color:#555}.state[data-s=speaking]{color:#e4393c}.state[data-s=listening]{color:#2a8a3e}" +
    ".meter{width:70px;height:8px;background:#eee;border-radius:4px;overflow:hidden}" +
    ".meter i{display:block;height:100%;width:0;background:#2a8a3e;transition:width 60ms linear}" +
    ".log{flex:1;overflow-y:auto;padding:10px 12px;display:flex;flex-direction:column;gap:6px}" +
    ".m{max-width:85%;padding:7px 10px;border-radius:10px;line-height:1.4;white-space:pre-wrap;word-break:break-word}" +
    ".m.caller{align-self:flex-end;background:#e4393c;color:#fff}.m.caller.partial{opacity:.6}" +
    ".m.agent{align-self:flex-start;background:#f1f1f1}.m.note{align-self:center;background:none;color:#888;font-size:12px}" +
    ".controls{display:flex;gap:8px;padding:10px 12px;border-top:1px solid #eee}" +
    ".controls button,.text button,.cb button{border:0;border-radius:6px;padding:9px 12px;cursor:pointer;font-size:14px}" +
    ".go{flex:1;background:#2a8a3e;color:#fff}.end{flex:1;background:#c62828;color:#fff;display:none}" +
    ".keys{background:#eee}.pad{display:none;grid-template-columns:repeat(3,1fr);gap:4px;padding:0 12px 8px}" +
    ".pad.open{display:grid}.pad button{padding:6px;border:1px solid #ddd;background:#fafafa;border-radius:4px;cursor:pointer}" +
    ".text,.cb{display:none;gap:6px;padding:8px 12px;border-top:1px solid #eee}.text.open,.cb.open{display:flex}" +
    ".text input,.cb input{flex:1;padding:8px;border:1px solid #ccc;border-radius:6px;font-size:14px}" +
    ".text button,.cb button{background:#e4393c;color:#fff}" +
    "</style>" +
    "<button class=fab part=button></button>" +
    "<div class=panel role=dialog>" +
    " <div class=head><b class=title></b><button class=x aria-label=close>×</button></div>" +
    " <div class=bar><span class=state data-s=idle></span><div class=meter title=mic><i></i></div></div>" +
    " <div class=log aria-live=polite></div>" +
    " <div class=pad></div>" +
    " <form class=cb><input class=phone type=tel autocomplete=tel><button type=submit></button></form>" +
    " <form class=text><input class=q autocomplete=off><button type=submit></button></form>" +
    " <div class=controls><button class=go></button><button class=end></button><button class=keys></button></div>" +
    "</div>";
  var $ = function (sel) { return root.querySelector(sel); };
  var fab = $(".fab"), panel = $(".panel"), log = $(".log"), stateEl = $(".state"), meterEl = $(".meter i");
  var goBtn = $(".go"), endBtn = $(".end"), keysBtn = $(".keys"), pad = $(".pad");
  var textForm = $(".text"), textInput = $(".q"), cbForm = $(".cb"), cbPhone = $(".phone");
  fab.textContent = T.open;
  $(".title").textContent = data.title || T.title;
  $(".x").setAttribute("aria-label", T.close);
  goBtn.textContent = T.call;
  endBtn.textContent = T.hangup;
  keysBtn.textContent = T.keypad;
  textInput.placeholder = T.placeholder;
  $(".text button").textContent = T.send;
  cbPhone.placeholder = T.callbackPhone;
  $(".cb button").textContent = T.callbackSubmit;
  "123456789*0#".split("").forEach(function (d) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = d;
    b.onclick = function () { sendEvent({ type: "dtmf", digit: d }); };
    pad.appendChild(b);
  });

  // ---- state shared with the page (and the tests) ---------------------------------------------
  var W = window.voiceagentWidget = {
    lang: LANG, state: "idle", sessionId: null, callId: null, chatId: null,
    transcript: [], events: [], pc: null, localStream: null, remoteStream: null, audio: null,
    start: start, hangup: hangup, open: openPanel, sendText: sendText
  };

  function emit(type, detail) {
    W.events.push({ type: type, detail: detail, t: performance.now() });
    document.dispatchEvent(new CustomEvent("voiceagent:event", { detail: { type: type, data: detail } }));
  }

  function setState(s) {
    W.state = s;
    stateEl.dataset.s = s;
    stateEl.textContent = T.states[s] || s;
    var inCall = ["connecting", "listening", "thinking", "speaking", "human"].indexOf(s) >= 0;
    goBtn.style.display = inCall ? "none" : "";
    endBtn.style.display = inCall ? "block" : "none";
    emit("state", s);
  }

  function line(role, text, cls) {
    var p = document.createElement("div");
    p.className = "m " + role + (cls ? " " + cls : "");
    p.textContent = text;
    log.appendChild(p);
    log.scrollTop = log.scrollHeight;
    return p;
  }

  function note(text) { return line("note", text); }

  // caller partials update one bubble until the final; the agent's pieces of a turn share one
  var partialEl = null, agentTurns = {};
  function onTranscript(m) {
    if (m.role === "caller") {
      if (!partialEl) partialEl = line("caller", "", "partial");
      partialEl.textContent = m.text;
      if (m.final) {
        partialEl.classList.remove("partial");
        W.transcript.push({ role: "caller", text: m.text, language: m.language });
        partialEl = null;
      }
    } else {
      var key = String(m.turn);
      var entry = agentTurns[key];
      if (!entry) {
        entry = agentTurns[key] = { role: "agent", text: "", turn: m.turn, el: line("agent", "") };
        W.transcript.push(entry);
      }
      entry.text = entry.text ? entry.text + (/^[\u3000-\u9fff]/.test(m.text) ? "" : " ") + m.text : m.text;
      entry.el.textContent = entry.text;
      log.scrollTop = log.scrollHeight;
    }
  }

  function onMessage(ev) {
    var m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    emit("message", m);
    if (m.type === "hello") { W.callId = m.call_id; }
    else if (m.type === "state") { if (W.state !== "human" || m.state === "ended") setState(m.state); }
    else if (m.type === "transcript") { onTranscript(m); }
    else if (m.type === "handoff") {
      if (m.status === "connecting") note(T.connectingHuman);
      else if (m.status === "failed") { note(T.handoffFailed); cbForm.classList.add("open"); }
    }
    else if (m.type === "ended") { W.callId = m.call_id || W.callId; }
    if (m.type === "state" && m.state === "ended") teardown();
  }

  function sendEvent(obj) {
    if (W.channel && W.channel.readyState === "open") W.channel.send(JSON.stringify(obj));
  }

  // ---- the voice call ------------------------------------------------------------------------
  async function start() {
    openPanel();
    if (["connecting", "listening", "thinking", "speaking", "human"].indexOf(W.state) >= 0) return;
    if (!window.RTCPeerConnection || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return textOnly(T.noWebrtc);
    }
    setState("connecting");
    try {
      W.localStream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }
      });
    } catch (e) {
      setState("idle");
      return textOnly(T.micRefused);
    }
    meter(W.localStream);
    var pc = W.pc = new RTCPeerConnection({ iceServers: [] });
    W.localStream.getAudioTracks().forEach(function (t) { pc.addTrack(t, W.localStream); });
    var channel = W.channel = pc.createDataChannel("events");
    channel.onmessage = onMessage;
    pc.ontrack = function (e) {
      W.remoteStream = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
      var audio = W.audio = W.audio || new Audio();
      audio.autoplay = true;
      audio.srcObject = W.remoteStream;
      var p = audio.play();
      if (p && p.catch) p.catch(function () {});
      emit("remote-audio", true);
    };
    pc.onconnectionstatechange = function () {
      emit("connection", pc.connectionState);
      if (pc.connectionState === "failed") { note(T.failed + "ICE"); teardown(); setState("ended"); }
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 3000);
      var r = await fetch(BASE + "/api/webrtc/offer", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", language: SPEECH,
                               page_language: LANG })
      });
      var body = await r.json().catch(function () { return {}; });
      if (!r.ok) throw Object.assign(new Error(body.detail || ("HTTP " + r.status)), { status: r.status });
      W.sessionId = body.session_id;
      await pc.setRemoteDescription({ type: "answer", sdp: body.sdp });
    } catch (e) {
      teardown();
      setState("idle");
      return textOnly(e.status === 503 ? T.busy : T.failed + e.message);
    }
  }

  function gathered(pc, limitMs) {
    // no trickle: the offer carries every candidate gathered (on a LAN or loopback this takes ms)
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === "complete") return resolve();
      var done = function () { if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); } };
      var t = setTimeout(resolve, limitMs);
      pc.addEventListener("icegatheringstatechange", done);
    });
  }

  function hangup() {
    sendEvent({ type: "hangup" });
    if (W.sessionId) fetch(BASE + "/api/webrtc/" + W.sessionId, { method: "DELETE" }).catch(function () {});
    setTimeout(teardown, 300); // let the hangup message leave first
    setState("ended");
    if (W.sessionId) offerRating(W.sessionId);
  }

  // ---- 1-5 stars after a call or a chat (POST /api/ratings); text set with textContent only ----
  var ratedIds = {};
  function offerRating(id) {
    if (!id || ratedIds[id] || root.querySelector(".rating")) return;
    var box = document.createElement("div");
    box.className = "rating";
    var label = document.createElement("span");
    label.textContent = T.rate;
    box.appendChild(label);
    [1, 2, 3, 4, 5].forEach(function (n) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = "\u2605".repeat(n);
      b.title = n + T.star;
      b.setAttribute("aria-label", n + T.star);
      b.onclick = function () {
        ratedIds[id] = true;
        fetch(BASE + "/api/ratings", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ session_id: id, stars: n })
        }).catch(function () {});
        box.textContent = T.rated;
        emit("rating", { stars: n });
      };
      box.appendChild(b);
    });
    panel.appendChild(box);
  }

  function teardown() {
    if (W.pc) { try { W.pc.close(); } catch (e) {} }
    if (W.localStream) W.localStream.getTracks().forEach(function (t) { t.stop(); });
    if (W._meterStop) { W._meterStop(); W._meterStop = null; } // teardown runs twice on a hang-up
    W.pc = null;
    meterEl.style.width = "0";
  }

  function meter(stream) {
    // the microphone level, so the caller sees they are heard
    try {
      var ctx = new (window.AudioContext || window.webkitAudioContext)();
      var analyser = ctx.createAnalyser();
      analyser.fftSize = 512;
      ctx.createMediaStreamSource(stream).connect(analyser);
      var buf = new Float32Array(analyser.fftSize), running = true;
      W._meterStop = function () { running = false; ctx.close(); };
      (function tick() {
        if (!running) return;
        analyser.getFloatTimeDomainData(buf);
        var sum = 0;
        for (var i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
        var rms = Math.sqrt(sum / buf.length);
        W.micLevel = rms;
        meterEl.style.width = Math.min(100, Math.round(rms * 400)) + "%";
        setTimeout(tick, 50);
      })();
    } catch (e) { /* no Web Audio: no meter, the call still works */ }
  }

  // ---- text fallback (the chat API, same agent) -----------------------------------------------
  function textOnly(reason) {
    note(reason);
    textForm.classList.add("open");
    textInput.focus();
    emit("text-fallback", reason);
  }

  async function sendText(text) {
    text = (text || "").trim();
    if (!text) return;
    W.chatId = W.chatId || (Math.random().toString(36).slice(2) + Date.now().toString(36));
    line("caller", text);
    W.transcript.push({ role: "caller", text: text, channel: "chat" });
    try {
      var r = await fetch(BASE + "/api/chat", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(customerToken() ? { session_id: W.chatId, text: text, customer_token: customerToken() }
                                             : { session_id: W.chatId, text: text })
      });
      var j = await r.json();
      var reply = j.reply || j.detail || "";
      if (typeof reply !== "string") reply = T.failed + r.status;
      line("agent", reply);
      W.transcript.push({ role: "agent", text: reply, channel: "chat" });
      if (j.handoff) { note(T.handoffFailed); cbForm.classList.add("open"); }
    } catch (e) {
      note(T.failed + e.message);
    }
  }

  textForm.onsubmit = function (e) {
    e.preventDefault();
    var t = textInput.value;
    textInput.value = "";
    sendText(t);
  };

  cbForm.onsubmit = async function (e) {
    e.preventDefault();
    try {
      var r = await fetch(BASE + "/api/callbacks", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ phone: cbPhone.value, session_id: W.sessionId || W.chatId, language: LANG })
      });
      var j = await r.json();
      if (!r.ok) throw new Error(String(r.status));
      note(T.callbackDone + j.ticket_id);
      cbForm.classList.remove("open");
      emit("callback", j);
    } catch (err) {
      note(T.callbackError);
    }
  };

  // ---- open / close --------------------------------------------------------------------------
  function openPanel() {
    panel.classList.add("open");
    fab.style.display = "none";
  }
  fab.onclick = openPanel;
  $(".x").onclick = function () {
    if (W.chatId && !ratedIds[W.chatId] && !root.querySelector(".rating")) { offerRating(W.chatId); return; }
    panel.classList.remove("open");
    fab.style.display = "";
  };
  goBtn.onclick = start;
  endBtn.onclick = hangup;
  keysBtn.onclick = function () { pad.classList.toggle("open"); };
  window.addEventListener("pagehide", function () { if (W.pc) hangup(); });

  setState("idle");
  (document.body ? Promise.resolve() : new Promise(function (r) { document.addEventListener("DOMContentLoaded", r); }))
    .then(function () {
      document.body.appendChild(host);
      if (data.open === "true") openPanel();
    });
})();
