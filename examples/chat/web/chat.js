// The chat page: asks GET /chat/ROOM?nick=NAME whether it may join (a browser
// cannot read why a WebSocket upgrade was refused), then opens the socket at
// the same URL. Protocol: examples/chat/README.md.
//
// User data only ever reaches the page as text (textContent), never parsed as HTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    roomTitle: $('room-title'),
    join: $('join'),
    joinForm: $('join-form'),
    joinError: $('join-error'),
    joinButton: $('join-button'),
    nick: $('nick'),
    room: $('room'),
    chat: $('chat'),
    messages: $('messages'),
    sendForm: $('send-form'),
    text: $('text'),
    counter: $('counter'),
    sendButton: $('send-button'),
    members: $('members'),
    memberCount: $('member-count'),
    leave: $('leave'),
  };

  const kBackoffFirstMs = 500;
  const kBackoffMaxMs = 8000;

  let session = null;     // {room, nick} while in a room
  let ws = null;          // the current socket
  let wanted = false;     // stay connected (reconnect when the server goes away)
  let attempt = 0;        // reconnect attempts since the last welcome
  let retryTimer = null;
  let maxChars = 2000;

  // Events of one server run are numbered per room (seq). A restart starts a
  // new run (instance) and numbering anew.
  let instance = null;
  let floor = 0;          // events numbered up to here came with the welcome
  let membersSeq = 0;     // the member list shown is as of this event
  let seen = new Set();   // seq of the events shown, in this instance

  // ------------------------------------------------------------ helpers

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function timeEl(ts) {
    const d = new Date(ts);
    const t = el('time', '', d.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'}));
    t.dateTime = d.toISOString();
    t.title = d.toLocaleString();
    return t;
  }

  function nickColor(nick) {
    let h = 0;
    for (const c of nick.toLowerCase()) h = (h * 31 + c.codePointAt(0)) % 360;
    return `hsl(${h}, 55%, 38%)`;
  }

  const isMe = (nick) => session && nick.toLowerCase() === session.nick.toLowerCase();

  function nearBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  // Inserts `item` in seq order among the items of this instance (events of
  // one room may arrive slightly out of order across the server's loops).
  function insert(item, seq) {
    const stick = nearBottom();
    if (seq !== undefined) {
      item.dataset.seq = String(seq);
      item.dataset.instance = instance;
    }
    let after = ui.messages.lastElementChild;
    while (seq !== undefined && after && after.dataset.instance === instance &&
           after.dataset.seq !== undefined && Number(after.dataset.seq) > seq) {
      after = after.previousElementSibling;
    }
    if (after) after.after(item); else ui.messages.prepend(item);
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function showMessage(m) {
    const li = el('li', isMe(m.nick) ? 'msg own' : 'msg');
    const meta = el('div', 'meta');
    const nick = el('span', 'nick', m.nick);
    nick.style.color = nickColor(m.nick);
    meta.append(nick, timeEl(m.ts));
    li.append(meta, el('div', 'text', m.text));
    insert(li, m.seq);
  }

  // kind: join | leave | system | error
  function notice(kind, text, ts = Date.now(), seq = undefined) {
    const li = el('li', `notice ${kind}`);
    li.append(timeEl(ts), el('span', 'what', text));
    insert(li, seq);
  }

  function showMembers(list, seq) {
    if (seq < membersSeq) return;
    membersSeq = seq;
    ui.members.replaceChildren(...list.map((nick) => {
      const li = el('li', isMe(nick) ? 'me' : '', nick);
      return li;
    }));
    ui.memberCount.textContent = String(list.length);
  }

  function setComposer(enabled) {
    ui.text.disabled = !enabled;
    ui.sendButton.disabled = !enabled;
    if (enabled) ui.text.focus();
  }

  function showJoin(error) {
    ui.chat.hidden = true;
    ui.join.hidden = false;
    ui.roomTitle.textContent = '';
    ui.joinError.hidden = !error;
    ui.joinError.textContent = error || '';
    ui.joinButton.disabled = false;
  }

  function showChat() {
    ui.join.hidden = true;
    ui.chat.hidden = false;
    ui.roomTitle.textContent = `# ${session.room}`;
    ui.text.placeholder = `Message #${session.room}`;
  }

  const urlOf = (room, nick) =>
    `/chat/${encodeURIComponent(room)}?nick=${encodeURIComponent(nick)}`;

  // The middleware's verdict: {ok: true} or {ok: false, reason, message}.
  // Throws when the server cannot be reached.
  async function check(room, nick) {
    const res = await fetch(urlOf(room, nick), {cache: 'no-store'});
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    if (!body || typeof body !== 'object') body = {message: `The server answered ${res.status}.`};
    body.ok = res.ok && body.ok === true;
    return body;
  }

  // ------------------------------------------------------------ joining

  async function join(room, nick) {
    ui.joinError.hidden = true;
    ui.joinButton.disabled = true;
    setStatus('connecting', 'Checking nickname…');
    let verdict;
    try {
      verdict = await check(room, nick);
    } catch {
      setStatus('offline', 'Server unreachable');
      showJoin('The server cannot be reached. Is it running?');
      return;
    }
    if (!verdict.ok) {
      setStatus('idle', 'Not connected');
      showJoin(verdict.message || 'The server refused this nickname.');
      return;
    }
    session = {room, nick};
    wanted = true;
    attempt = 0;
    ui.messages.replaceChildren();
    ui.members.replaceChildren();
    ui.memberCount.textContent = '';
    instance = null;
    seen = new Set();
    if (location.hash !== `#${room}`) history.replaceState(null, '', `#${room}`);
    showChat();
    connect();
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    setStatus('connecting', 'Connecting…');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const sock = new WebSocket(`${scheme}//${location.host}${urlOf(session.room, session.nick)}`);
    ws = sock;
    sock.onmessage = (ev) => {
      if (sock !== ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      handle(msg);
    };
    sock.onclose = (ev) => {
      if (sock !== ws) return;
      ws = null;
      closed(ev);
    };
  }

  function closed(ev) {
    setComposer(false);
    if (!wanted) return;
    // 1001: the server is shutting down; 1006: the connection dropped (or the
    // server could not be reached); 1011-1013: a server-side failure or overload.
    if ([1001, 1006, 1011, 1012, 1013].includes(ev.code)) {
      if (attempt === 0) {
        notice('system', ev.code === 1001 ? 'The server went away.' : 'The connection was lost.');
      }
      retryLater();
      return;
    }
    // The server closed us on purpose (1008 rate limit, 1009 too big...):
    // reconnecting would just repeat it.
    wanted = false;
    const why = ev.reason || `code ${ev.code}`;
    notice('error', `Disconnected by the server: ${why}.`);
    setStatus('offline', `Disconnected: ${why}`);
    showJoin(`You were disconnected: ${why}.`);
  }

  function retryLater() {
    const base = Math.min(kBackoffMaxMs, kBackoffFirstMs * 2 ** attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    attempt += 1;
    setStatus('reconnecting', `Server went away — reconnecting in ${Math.ceil(delay / 1000)} s…`);
    retryTimer = setTimeout(reconnect, delay);
  }

  async function reconnect() {
    retryTimer = null;
    if (!wanted) return;
    setStatus('connecting', 'Reconnecting…');
    let verdict;
    try {
      verdict = await check(session.room, session.nick);
    } catch {
      retryLater();  // still down
      return;
    }
    if (!wanted) return;
    if (!verdict.ok) {
      wanted = false;
      setStatus('offline', 'Not connected');
      showJoin(verdict.message || 'The server refused this nickname.');
      return;
    }
    connect();
  }

  function leave() {
    wanted = false;
    clearTimeout(retryTimer);
    retryTimer = null;
    if (ws) {
      const sock = ws;
      ws = null;
      sock.close(1000, 'leaving');
    }
    session = null;
    setStatus('idle', 'Not connected');
    showJoin('');
  }

  // ------------------------------------------------------------ protocol

  function handle(msg) {
    switch (msg.type) {
      case 'welcome': {
        const restarted = instance !== null && instance !== msg.instance;
        const returning = instance !== null;
        if (instance !== msg.instance) {
          for (const item of ui.messages.children) item.classList.add('stale');
          seen = new Set();
          instance = msg.instance;
        }
        if (restarted) notice('system', 'The server restarted: older messages are gone from the room.');
        for (const m of msg.history) {
          if (!seen.has(m.seq)) {
            seen.add(m.seq);
            showMessage(m);
          }
        }
        floor = msg.seq;
        membersSeq = 0;
        showMembers(msg.members, msg.seq);
        notice('join', returning ? `Reconnected to #${msg.room}.` : `You joined #${msg.room} as ${msg.nick}.`,
               msg.ts, msg.seq);
        maxChars = msg.limits?.maxChars ?? maxChars;
        ui.text.maxLength = maxChars;
        attempt = 0;
        setStatus('online', `Connected as ${msg.nick}`);
        setComposer(true);
        break;
      }
      case 'message':
        if (msg.seq <= floor || seen.has(msg.seq)) return;
        seen.add(msg.seq);
        showMessage(msg);
        break;
      case 'join':
      case 'leave':
        if (msg.seq <= floor || seen.has(msg.seq)) return;
        seen.add(msg.seq);
        notice(msg.type, `${msg.nick} ${msg.type === 'join' ? 'joined' : 'left'}.`, msg.ts, msg.seq);
        showMembers(msg.members, msg.seq);
        break;
      case 'error':
        notice('error', msg.message || msg.code);
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------ wiring

  ui.joinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    join(ui.room.value.trim() || 'lobby', ui.nick.value.trim());
  });

  ui.sendForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = ui.text.value;
    if (!text.trim() || !ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({type: 'message', text}));
    ui.text.value = '';
    updateCounter();
  });

  function updateCounter() {
    const left = maxChars - ui.text.value.length;
    ui.counter.textContent = left < 200 ? String(left) : '';
    ui.counter.classList.toggle('over', left < 0);
  }
  ui.text.addEventListener('input', updateCounter);
  ui.leave.addEventListener('click', leave);

  const fromHash = decodeURIComponent(location.hash.slice(1));
  if (fromHash) ui.room.value = fromHash;
  ui.nick.focus();
})();
