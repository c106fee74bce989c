// avatarkit-fast live view: the face on a canvas and the sound through Web Audio,
// in sync by the audio clock.  No framework; the message format is in
// avatarkit_fast/cli/live/server.py and the manual (docs/cli.md, "The live view").
//
// The keyframe shown is the one of the sample being heard:
//   heard = AudioContext.currentTime - (baseLatency + outputLatency)
//   samples_heard = the conversation's samples scheduled before `heard`
//   frame = floor(samples_heard * fps / sample_rate)      (the controller's rule)
// Before a conversation's first sample is heard and after its last, the idle
// frame (zeros) is shown.  A keyframe not yet arrived holds the last one shown.
"use strict";

(function () {
  const FLOATS = 120;
  const LEAD = 0.12;          // s between starting a conversation and its first sample
  const MIN_AHEAD = 0.01;     // s: a chunk due sooner than this is late (an underrun)
  const BACKOFF = [0.25, 0.5, 1, 2, 4, 5];  // s between reconnection attempts

  // Offsets of the FLAME groups (the server sends them in `hello`; these are the defaults).
  let L = {translation: 0, rotation: 3, neck_pose: 6, jaw_pose: 9, eye_pose: 12, eye_lid: 18, expression: 20};

  const V = window.avatarkitViewer = {
    version: 1, connected: false, status: "connecting", reconnects: 0, connections: 0,
    audioState: "", audioPosition: 0, frameIndex: -1, framesDrawn: 0, fps: 25, sampleRate: 0,
    latency: 0, conversations: 0, conv: null, keyframesReceived: 0, samplesReceived: 0,
    framesHeld: 0, underruns: 0, interrupts: 0, ended: false, playing: false, startedAt: null,
    messages: 0, counters: {}, errors: [],
  };

  const face = document.getElementById("face");
  const fg = face.getContext("2d");
  const tl = document.getElementById("timeline");
  const tg = tl.getContext("2d");
  const statusEl = document.getElementById("status");
  const soundBtn = document.getElementById("sound");

  let ctx = null;
  function audio() {
    if (ctx === null) {
      ctx = new AudioContext({latencyHint: "interactive"});
      V.context = ctx;
      ctx.onstatechange = () => { V.audioState = ctx.state; showSoundButton(); };
      V.audioState = ctx.state;
    }
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    showSoundButton();
    return ctx;
  }
  function showSoundButton() {
    soundBtn.style.display = ctx !== null && ctx.state !== "running" ? "inline-block" : "none";
  }
  soundBtn.addEventListener("click", () => { audio().resume().catch(() => {}); });

  // -- one conversation --------------------------------------------------------

  let conv = null;

  function newConversation(id, rate, fps) {
    stopConversation();
    conv = {
      id, rate, fps, keyframes: [], nkf: 0, received: 0, pending: [], segments: [], sources: [],
      started: false, ended: false, cutAt: null, base: 0, peaks: [], interruptAt: null,
    };
    V.conv = id; V.sampleRate = rate; V.fps = fps; V.conversations += 1; V.ended = false;
    V.keyframesReceived = 0; V.samplesReceived = 0; V.framesHeld = 0; V.underruns = 0;
    V.startedAt = null; V.playing = false; V.frameIndex = -1; V.audioPosition = 0;
    audio();
  }

  function stopConversation() {
    if (conv === null) return;
    for (const s of conv.sources) { try { s.node.stop(); } catch (e) { /* already stopped */ } }
    conv.sources = [];
  }

  function onAudio(header, payload) {
    if (conv === null || header.conv !== conv.id) return;
    let offset = header.offset;
    let pcm = new Int16Array(payload);
    if (offset + pcm.length <= conv.received) return;   // had it (a resumed connection)
    if (offset < conv.received) { pcm = pcm.subarray(conv.received - offset); offset = conv.received; }
    const f = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) f[i] = pcm[i] / 32768;
    conv.received = offset + f.length;
    V.samplesReceived = conv.received;
    // Peaks for the timeline: one per 10 ms.
    const block = Math.max(1, Math.round(conv.rate / 100));
    for (let i = 0; i < f.length; i += block) {
      let m = 0;
      for (let j = i; j < Math.min(f.length, i + block); j++) m = Math.max(m, Math.abs(f[j]));
      conv.peaks[Math.floor((offset + i) / block)] = m;
    }
    conv.pending.push({offset, data: f});
    maybeStart();
    schedule();
  }

  function onKeyframes(header, payload) {
    if (conv === null || header.conv !== conv.id) return;
    const all = new Float32Array(payload);
    for (let i = 0; i < header.count; i++) {
      const k = all.slice(i * FLOATS, (i + 1) * FLOATS);
      for (let j = 0; j < FLOATS; j++) if (!Number.isFinite(k[j])) k[j] = 0;
      conv.keyframes[header.first + i] = k;
    }
    conv.nkf = Math.max(conv.nkf, header.first + header.count);
    V.keyframesReceived = conv.nkf;
    maybeStart();
    schedule();
  }

  // A conversation starts when its first keyframe is in (or it ended with audio
  // alone): the sound never runs ahead of a face that has not arrived yet.
  function maybeStart() {
    if (conv.started || conv.pending.length === 0) return;
    if (conv.nkf === 0 && !conv.ended) return;
    const c = audio();
    conv.started = true;
    conv.base = c.currentTime + LEAD;
    V.startedAt = conv.base;
  }

  function schedule() {
    if (!conv.started || ctx === null) return;
    while (conv.pending.length) {
      const chunk = conv.pending.shift();
      if (conv.cutAt !== null && chunk.offset >= conv.cutAt) continue;
      let when = conv.base + chunk.offset / conv.rate;
      const soonest = ctx.currentTime + MIN_AHEAD;
      if (when < soonest) {            // late: the rest of the conversation moves later
        conv.base += soonest - when;
        when = soonest;
        V.underruns += 1;
      }
      const buf = ctx.createBuffer(1, chunk.data.length, conv.rate);
      buf.copyToChannel(chunk.data, 0);
      const node = ctx.createBufferSource();
      node.buffer = buf;
      node.connect(ctx.destination);
      node.start(when);
      const entry = {node, when, offset: chunk.offset, n: chunk.data.length};
      node.onended = () => { const i = conv ? conv.sources.indexOf(entry) : -1; if (i >= 0) conv.sources.splice(i, 1); };
      conv.sources.push(entry);
      conv.segments.push({when, offset: chunk.offset, n: chunk.data.length});
    }
  }

  // An interrupt cuts the conversation at sample `at` (what was scheduled after it
  // is dropped), or, without `at`, at the sample being heard now: the sound and
  // the face stop at once.
  function onInterrupt(msg) {
    V.interrupts += 1;
    if (conv === null || msg.conv !== conv.id) return;
    const now = msg.at === undefined || msg.at === null;
    let at = msg.at;
    if (now) at = conv.started && ctx !== null ? Math.max(0, samplesHeard(ctx.currentTime - V.latency)) : 0;
    conv.cutAt = conv.interruptAt = at;
    for (const s of conv.sources) {
      if (now || s.offset >= at) { try { s.node.stop(); } catch (e) { /* not started */ } }
    }
    conv.pending = conv.pending.filter((c) => c.offset < at);
  }

  // Samples of the conversation heard at context time `t`; -1 before the first.
  function samplesHeard(t) {
    const segs = conv.segments;
    let lo = 0, hi = segs.length - 1, k = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (segs[mid].when <= t) { k = mid; lo = mid + 1; } else hi = mid - 1;
    }
    if (k < 0) return -1;
    const s = segs[k];
    let heard = Math.min(s.n, Math.floor((t - s.when) * conv.rate));
    if (conv.cutAt !== null) heard = Math.min(heard, Math.max(0, conv.cutAt - s.offset));
    return s.offset + heard;
  }

  // -- drawing -----------------------------------------------------------------

  const BG = "rgb(236,240,245)", SKIN = "rgb(244,205,170)", OUTLINE = "rgb(96,70,60)",
    LIP = "rgb(196,72,84)", MOUTH = "rgb(70,24,30)", TEETH = "rgb(250,250,246)", WHITE = "#fff",
    IRIS = "rgb(60,96,140)", PUPIL = "rgb(20,20,28)", LID = "rgb(228,186,150)", HAIR = "rgb(92,62,44)";
  const IDLE = new Float32Array(FLOATS);

  function clip(x, lo, hi) { return x < lo ? lo : x > hi ? hi : x; }
  function rotation(v) {  // Rodrigues: the rotation matrix of an axis-angle vector
    const th = Math.hypot(v[0], v[1], v[2]);
    if (th < 1e-9) return [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
    const k = [v[0] / th, v[1] / th, v[2] / th], s = Math.sin(th), c = 1 - Math.cos(th);
    const K = [[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]];
    const R = [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) {
      let kk = 0;
      for (let m = 0; m < 3; m++) kk += K[i][m] * K[m][j];
      R[i][j] += s * K[i][j] + c * kk;
    }
    return R;
  }
  function onSphere(x, y, lift) { return [x, y, Math.sqrt(Math.max(0, 1 - x * x - y * y)) + (lift || 0)]; }

  // The demo's face (avatarkit_fast/cli/face.py), drawn the same way: head pose =
  // rotation + neck_pose, translation shifts it; jaw_pose[0] opens the mouth
  // (widened by expression[0], smile by expression[1]); eye_lid closes the lids;
  // the eyes look along eye_pose.
  function drawFace(k) {
    const S = face.width, lw = 1;  // line widths in pixels, as the demo's pictures have them
    fg.fillStyle = BG; fg.fillRect(0, 0, S, S);
    const T = L.translation, Rr = L.rotation, N = L.neck_pose, J = L.jaw_pose, E = L.eye_pose,
      Ld = L.eye_lid, X = L.expression;
    const radius = S * 0.30, gain = 1.5;
    const cx = S / 2 + k[T] * S * 2, cy = S * 0.47 - k[T + 1] * S * 2;
    const pose = [0, 1, 2].map((i) => (k[Rr + i] + k[N + i]) * gain);
    const rot = rotation([-pose[0], pose[1], pose[2]]);
    const jaw = clip(k[J], -0.05, 0.6);
    const open = clip(0.5 * (1 - Math.exp(-Math.max(jaw, 0) / 0.14)) + 0.015 * k[X], 0, 0.55);
    const smile = clip(0.04 * k[X + 1], -0.12, 0.12);
    const width = 0.34 * (1 + clip(0.05 * k[X] - 0.6 * jaw, -0.25, 0.2));
    const project = (pts, R) => pts.map((p) => [
      cx + radius * (R[0][0] * p[0] + R[0][1] * p[1] + R[0][2] * p[2]),
      cy - radius * (R[1][0] * p[0] + R[1][1] * p[1] + R[1][2] * p[2])]);
    const path = (pts) => { fg.beginPath(); pts.forEach((p, i) => (i ? fg.lineTo(p[0], p[1]) : fg.moveTo(p[0], p[1]))); };
    const polygon = (pts, fill, stroke, w) => {
      path(pts); fg.closePath(); fg.fillStyle = fill; fg.fill();
      if (stroke) { fg.strokeStyle = stroke; fg.lineWidth = w; fg.stroke(); }
    };
    const line = (pts, stroke, w) => { path(pts); fg.strokeStyle = stroke; fg.lineWidth = w; fg.stroke(); };
    const ellipse = (x, y, rw, rh, fill, stroke, w) => {
      fg.beginPath(); fg.ellipse(x, y, rw, rh, 0, 0, 2 * Math.PI); fg.fillStyle = fill; fg.fill();
      if (stroke) { fg.strokeStyle = stroke; fg.lineWidth = w; fg.stroke(); }
    };

    const outline = [];
    for (let i = 0; i < 64; i++) {
      const a = 2 * Math.PI * i / 64;
      let y = Math.sin(a);
      if (y < 0) y *= 1.12 + open * 0.55;
      outline.push([0.92 * Math.cos(a), y, 0]);
    }
    const roll = rotation([0, 0, pose[2]]);
    polygon(project(outline, roll), SKIN, OUTLINE, 2 * lw);
    const hair = [];
    for (let i = 0; i < 24; i++) {
      const a = (0.05 + 0.9 * i / 23) * Math.PI;
      hair.push([0.92 * Math.cos(a), 0.55 + 0.45 * Math.sin(a), 0]);
    }
    hair.push([-0.9, 0.5, 0], [-0.6, 0.62, 0], [0, 0.68, 0], [0.6, 0.62, 0], [0.9, 0.5, 0]);
    polygon(project(hair, roll), HAIR);

    for (const side of [-1, 1]) {
      const eo = E + (side < 0 ? 0 : 3);
      const ex = 0.36 * side, ey = 0.12;
      const c = project([onSphere(ex, ey)], rot)[0];
      const rw = radius * 0.17, rh = radius * 0.11;
      ellipse(c[0], c[1], rw, rh, WHITE, OUTLINE, lw);
      const gx = clip(k[eo + 1] * 2.5 + pose[1] * 0.3, -0.6, 0.6) * rw;
      const gy = clip(-k[eo] * 2.5, -0.5, 0.5) * rh;
      const ir = rh * 0.85;
      ellipse(c[0] + gx, c[1] + gy, ir, ir, IRIS);
      ellipse(c[0] + gx, c[1] + gy, ir * 0.45, ir * 0.45, PUPIL);
      const lid = clip(k[Ld + (side < 0 ? 0 : 1)], 0, 1);
      if (lid > 0.02) {  // the upper lid comes down over the eye
        const top = c[1] - rh - lw, bottom = c[1] - rh + 2 * rh * lid;
        fg.fillStyle = LID; fg.fillRect(c[0] - rw - lw, top, 2 * (rw + lw), bottom - top);
        line([[c[0] - rw, bottom], [c[0] + rw, bottom]], OUTLINE, 2 * lw);
      }
      const by = ey + 0.2 + clip(0.02 * k[X + 2], -0.05, 0.08);
      line(project([onSphere(ex - 0.16, by - 0.02), onSphere(ex, by + 0.02), onSphere(ex + 0.16, by - 0.02)], rot),
        HAIR, 3 * lw);
    }
    line(project([onSphere(0, 0.05, 0.05), onSphere(-0.07, -0.17, 0.08), onSphere(0.07, -0.17, 0.08)], rot),
      OUTLINE, 2 * lw);

    const my = -0.42 - open * 0.15;
    const upper = [], lower = [], innerUp = [], innerLow = [];
    for (let i = 0; i < 17; i++) {
      const t = -1 + 2 * i / 16, x = t * width, curve = smile * t * t, bow = 0.035 * (1 - t * t);
      upper.push(onSphere(x, my + curve + bow + 0.05));
      innerUp.push(onSphere(x, my + curve + bow * 0.4 + 0.012));
      const drop = open * (1 - t * t) * 0.9;
      innerLow.push(onSphere(x, my + curve - 0.012 - drop));
      lower.push(onSphere(x, my + curve - 0.06 - drop * 1.05 - 0.03 * (1 - t * t)));
    }
    polygon(project(upper.concat(innerUp.slice().reverse()), rot), LIP);
    polygon(project(innerLow.concat(lower.slice().reverse()), rot), LIP);
    if (open > 0.01) {
      polygon(project(innerUp.concat(innerLow.slice().reverse()), rot), MOUTH);
      if (open > 0.06) {
        const teeth = [];
        for (let i = 0; i < 9; i++) { const t = -1 + 2 * i / 8; teeth.push(onSphere(t * width * 0.7, my + 0.01 - Math.abs(t) * 0.01)); }
        for (let i = 0; i < 9; i++) { const t = 1 - 2 * i / 8; teeth.push(onSphere(t * width * 0.7, my - Math.min(open * 0.25, 0.05))); }
        polygon(project(teeth, rot), TEETH);
      }
    }
  }

  function drawTimeline(heard) {
    const W = tl.width, H = tl.height;
    tg.fillStyle = "#ecf0f5"; tg.fillRect(0, 0, W, H);
    if (conv === null) return;
    const total = Math.max(4, conv.received / conv.rate, conv.nkf / conv.fps);
    const x = (sec) => sec / total * W;
    const block = Math.max(1, Math.round(conv.rate / 100));
    const mid = H * 0.35;
    tg.fillStyle = "rgb(110,130,170)";
    for (let i = 0; i < conv.peaks.length; i++) {
      const p = conv.peaks[i];
      if (!p) continue;
      const h = p * mid * 0.95;
      tg.fillRect(x(i * block / conv.rate), mid - h, Math.max(1, x(block / conv.rate)), 2 * h);
    }
    // Jaw opening of each keyframe received, at the frame's time.
    tg.strokeStyle = "rgb(196,72,84)"; tg.lineWidth = 1.5; tg.beginPath();
    let first = true;
    for (let i = 0; i < conv.nkf; i++) {
      const k = conv.keyframes[i];
      if (!k) { first = true; continue; }
      const y = H - 8 - clip(k[L.jaw_pose] / 0.4, 0, 1) * (H * 0.3);
      if (first) tg.moveTo(x(i / conv.fps), y); else tg.lineTo(x(i / conv.fps), y);
      first = false;
    }
    tg.stroke();
    if (conv.interruptAt !== null) {
      tg.fillStyle = "rgb(200,40,40)"; tg.fillRect(x(conv.interruptAt / conv.rate) - 1, 0, 2, H);
    }
    if (heard >= 0) { tg.fillStyle = "#222"; tg.fillRect(x(heard / conv.rate) - 1, 0, 2, H); }
    tg.fillStyle = "#333"; tg.font = "11px sans-serif";
    tg.fillText(`${(heard >= 0 ? heard / conv.rate : 0).toFixed(2)} s of ${total.toFixed(1)} s`, 4, 12);
  }

  // The frame for the sample heard now (the controller's rule), drawn every display frame.
  let lastShown = IDLE;
  function tick() {
    requestAnimationFrame(tick);
    let keyframe = IDLE, heard = -1;
    if (conv !== null && conv.started && ctx !== null) {
      V.latency = (ctx.baseLatency || 0) + (ctx.outputLatency || 0);
      heard = samplesHeard(ctx.currentTime - V.latency);
      const last = conv.cutAt !== null ? Math.min(conv.cutAt, conv.received) : conv.received;
      const over = heard >= last && (conv.ended || conv.cutAt !== null);
      if (heard >= 0 && !over) {
        const idx = Math.floor(heard * conv.fps / conv.rate);
        V.frameIndex = idx;
        V.audioPosition = heard / conv.rate;
        if (conv.keyframes[idx]) keyframe = lastShown = conv.keyframes[idx];
        else { keyframe = lastShown; V.framesHeld += 1; }   // not arrived yet: hold
        V.playing = true;
      } else if (over) {
        V.playing = false;
        V.audioPosition = last / conv.rate;
      }
    }
    drawFace(keyframe);
    drawTimeline(heard);
    V.framesDrawn += 1;
  }

  function renderCounters() {
    const rows = [
      ["conversation", V.conv || "—"], ["audio", V.audioState || "—"],
      ["position (s)", V.audioPosition.toFixed(3)], ["keyframe", V.frameIndex],
      ["frames drawn", V.framesDrawn], ["keyframes in", V.keyframesReceived],
      ["samples in", V.samplesReceived], ["frames held", V.framesHeld], ["underruns", V.underruns],
      ["interrupts", V.interrupts], ["latency (ms)", (V.latency * 1000).toFixed(1)],
      ["reconnects", V.reconnects],
    ];
    fill(document.getElementById("page-counters"), rows);
    fill(document.getElementById("source-counters"), Object.entries(V.counters));
  }
  function fill(table, rows) {
    table.replaceChildren(...rows.map(([k, v]) => {
      const tr = document.createElement("tr");
      const a = document.createElement("td"); a.textContent = k;
      const b = document.createElement("td"); b.className = "v";
      b.textContent = typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : String(v);
      tr.append(a, b);
      return tr;
    }));
  }

  // -- the connection ----------------------------------------------------------

  function setStatus(state, text) {
    V.status = state; V.connected = state === "connected";
    statusEl.dataset.state = state; statusEl.textContent = text;
  }

  let attempt = 0;
  function connect() {
    const url = new URL("ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      if (V.connections > 0) V.reconnects += 1;
      V.connections += 1; attempt = 0;
      setStatus("connected", "connected");
    };
    ws.onmessage = (ev) => {
      V.messages += 1;
      if (typeof ev.data === "string") onText(JSON.parse(ev.data));
      else onBinary(ev.data);
    };
    ws.onclose = () => {
      const wait = BACKOFF[Math.min(attempt, BACKOFF.length - 1)] * (0.8 + 0.4 * Math.random());
      attempt += 1;
      setStatus("disconnected", `the server went away; reconnecting in ${wait.toFixed(1)} s (attempt ${attempt})`);
      setTimeout(connect, wait * 1000);
    };
  }

  function onText(msg) {
    if (msg.type === "hello") {
      if (msg.layout) L = msg.layout;
      if (msg.title) { document.title = msg.title; document.getElementById("title").textContent = msg.title; }
    } else if (msg.type === "begin") {
      // The same conversation again after a reconnection: keep what was had.
      if (conv === null || conv.id !== msg.conv) newConversation(msg.conv, msg.sample_rate, msg.fps);
    } else if (msg.type === "end") {
      if (conv !== null && conv.id === msg.conv) { conv.ended = true; V.ended = true; maybeStart(); schedule(); }
    } else if (msg.type === "interrupt") {
      onInterrupt(msg);
    } else if (msg.type === "counters") {
      V.counters = msg.counters;
      document.getElementById("source-title").textContent = `Counters (${msg.source})`;
    }
  }

  function onBinary(buf) {
    const h = new DataView(buf).getUint32(0, true);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, h)));
    const payload = buf.slice(4 + h);
    if (header.type === "audio") onAudio(header, payload);
    else if (header.type === "keyframes") onKeyframes(header, payload);
  }

  // The keyframes of the conversation as received (null where one is missing): for tests and debugging.
  V.receivedKeyframes = () => conv === null ? [] : Array.from({length: conv.nkf},
    (_, i) => (conv.keyframes[i] ? Array.from(conv.keyframes[i]) : null));
  window.addEventListener("error", (ev) => V.errors.push(String(ev.message)));
  setInterval(renderCounters, 200);
  requestAnimationFrame(tick);
  connect();
})();
