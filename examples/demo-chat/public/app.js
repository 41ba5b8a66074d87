// The demo chat page: one WebSocket per room (EventSource and fetch where WebSocket fails, or with ?transport=sse);
// user text only via textContent.
'use strict';

(function () {
  const ROOM_PATTERN = /^[a-z0-9-]{1,40}$/;
  const MAX_ITEMS = 500;

  const $ = (id) => document.getElementById(id);
  const joinForm = $('join-form');
  const nickInput = $('nick');
  const roomInput = $('room');
  const joinError = $('join-error');
  const chat = $('chat');
  const roomTitle = $('room-title');
  const who = $('who');
  const messages = $('messages');
  const sendForm = $('send-form');
  const textInput = $('text');
  const sendButton = $('send');
  const statusBadge = $('status');
  const transportSwitch = $('transport');

  const TRANSPORT_NAMES = { websocket: 'WebSocket', sse: 'SSE' };
  const RECONNECT_MS = 2000;

  let source = null; // the EventSource, or the WebSocket
  let current = null; // { room, nick, transport }
  let reconnectTimer = null;
  let isSending = false;
  // ?transport=websocket or sse holds to one; otherwise WebSocket first, SSE if it never opens.
  let chosenTransport = new URLSearchParams(location.search).get('transport');
  let hasWebSocketOpened = false;

  function roomFromHash() {
    const room = location.hash.slice(1).toLowerCase();
    return ROOM_PATTERN.test(room) ? room : null;
  }

  function setStatus(state) {
    statusBadge.dataset.state = state;
    statusBadge.textContent = state === 'idle' ? 'not connected' : state;
  }

  function formatTime(at) {
    const date = new Date(typeof at === 'number' ? at : Date.now());
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function nickHue(nick) {
    let hash = 0;
    for (let i = 0; i < nick.length; i++) hash = (hash * 31 + nick.charCodeAt(i)) | 0;
    return Math.abs(hash) % 360;
  }

  function isNearBottom() {
    return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
  }

  function append(item) {
    const stick = isNearBottom();
    messages.appendChild(item);
    while (messages.children.length > MAX_ITEMS) messages.firstElementChild.remove();
    if (stick) messages.scrollTop = messages.scrollHeight;
  }

  function timeElement(at) {
    const time = document.createElement('time');
    time.className = 'time';
    if (typeof at === 'number') time.dateTime = new Date(at).toISOString();
    time.textContent = formatTime(at);
    return time;
  }

  function addMessage(data) {
    const item = document.createElement('li');
    item.className = 'message';
    item.dataset.event = 'message';
    if (current && data.nick === current.nick) item.classList.add('mine');
    item.style.setProperty('--hue', String(nickHue(String(data.nick))));

    const meta = document.createElement('div');
    meta.className = 'meta';
    const nick = document.createElement('span');
    nick.className = 'nick';
    nick.textContent = String(data.nick);
    meta.append(nick, timeElement(data.at));

    const text = document.createElement('p');
    text.className = 'text';
    text.textContent = String(data.text);

    item.append(meta, text);
    append(item);
  }

  function addNotice(kind, text, at) {
    const item = document.createElement('li');
    item.className = 'notice ' + kind;
    item.dataset.event = kind;
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    item.append(body, timeElement(at));
    append(item);
  }

  function parse(event) {
    try {
      return JSON.parse(event.data);
    } catch {
      return null;
    }
  }

  function remember(room, id) {
    if (id) sessionStorage.setItem('last-event-id:' + room, id);
  }

  /** One event from the room, whichever transport brought it: `id` is muxgate's channel id. */
  function onEvent(name, data, id) {
    if (!current) return;
    if (name === 'join' || name === 'leave' || name === 'message') remember(current.room, id);
    if (!data) return;
    if (name === 'welcome') {
      addNotice('welcome', (data.resumed ? 'Back in #' : 'Welcome to #') + data.room + ', ' + data.nick + '.', data.at);
      textInput.focus();
    } else if (name === 'join') {
      addNotice('join', data.nick + ' joined', data.at);
    } else if (name === 'leave') {
      // A reload of this very page also closes a stream: not worth telling oneself.
      if (data.nick !== current.nick) addNotice('leave', data.nick + ' left', data.at);
    } else if (name === 'message') {
      addMessage(data);
    } else if (name === 'sent') {
      sendDone(true);
    } else if (name === 'rejected') {
      sendDone(false, String(data.error));
    }
  }

  function eventsUrl(room, nick, since) {
    return '/events?room=' + encodeURIComponent(room) + '&nick=' + encodeURIComponent(nick)
      + (since ? '&since=' + encodeURIComponent(since) : '');
  }

  function useTransport(transport) {
    current.transport = transport;
    transportSwitch.dataset.transport = transport;
    transportSwitch.textContent = TRANSPORT_NAMES[transport];
    transportSwitch.title = 'Switch to ' + TRANSPORT_NAMES[transport === 'websocket' ? 'sse' : 'websocket'];
  }

  function openEventSource(room, nick) {
    useTransport('sse');
    // A reload resumes where the last page left off: muxgate replays what was missed meanwhile.
    source = new EventSource(eventsUrl(room, nick, sessionStorage.getItem('last-event-id:' + room)));
    const opened = source;
    source.onopen = () => setStatus('connected');
    source.onerror = () => {
      if (source === opened) setStatus(source.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting');
    };
    for (const name of ['welcome', 'join', 'leave', 'message']) {
      source.addEventListener(name, (event) => onEvent(name, parse(event), event.lastEventId));
    }
    source.addEventListener('muxgate-gap', () => {
      addNotice('gap', 'Some messages were missed while you were away.', Date.now());
    });
  }

  /** Each message is one part: the text of an SSE event, with its id line, as an EventSource gets it. */
  function parseMessage(text) {
    let name = 'message';
    let data = '';
    let id = '';
    for (const line of text.split('\n')) {
      if (line.startsWith('event: ')) name = line.slice(7);
      else if (line.startsWith('data: ')) data = line.slice(6);
      else if (line.startsWith('id: ')) id = line.slice(4);
    }
    return { name, data: parse({ data }), id };
  }

  function openWebSocket(room, nick) {
    useTransport('websocket');
    // As an EventSource, it resumes where the last page or connection left off.
    const since = sessionStorage.getItem('last-event-id:' + room);
    const socket = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + eventsUrl(room, nick, since));
    source = socket;
    socket.onopen = () => {
      hasWebSocketOpened = true;
      setStatus('connected');
    };
    socket.onmessage = (event) => {
      if (typeof event.data !== 'string') return;
      const message = parseMessage(event.data);
      if (message.name === 'muxgate-gap') return void addNotice('gap', 'Some messages were missed while you were away.', Date.now());
      onEvent(message.name, message.data, message.id);
    };
    socket.onclose = () => {
      if (source !== socket) return;
      source = null;
      if (isSending) sendDone(false, 'the connection closed');
      if (!hasWebSocketOpened && !chosenTransport) {
        addNotice('fallback', 'WebSocket is not available here: using Server-Sent Events.', Date.now());
        return openEventSource(room, nick);
      }
      // A WebSocket does not reconnect by itself: this page does, from the last id it saw.
      setStatus('reconnecting');
      reconnectTimer = setTimeout(() => openWebSocket(room, nick), RECONNECT_MS);
    };
  }

  function connect(room, nick) {
    disconnect();
    current = { room, nick, transport: null };
    messages.replaceChildren();
    roomTitle.textContent = '#' + room;
    who.textContent = 'as ' + nick;
    joinForm.hidden = true;
    chat.hidden = false;
    setStatus('connecting');
    if (chosenTransport === 'sse' || typeof WebSocket !== 'function') openEventSource(room, nick);
    else openWebSocket(room, nick);
  }

  function disconnect() {
    const closing = source;
    source = null;
    if (closing) closing.close();
    clearTimeout(reconnectTimer);
    if (isSending) sendDone(false, 'left the room');
    current = null;
    setStatus('idle');
  }

  joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const nick = nickInput.value.trim();
    const room = roomInput.value.trim().toLowerCase();
    if (nick.length < 1 || nick.length > 40) return showJoinError('Pick a nickname of 1 to 40 characters.');
    if (!ROOM_PATTERN.test(room)) return showJoinError('Room names use lowercase letters, digits and dashes.');
    joinError.hidden = true;
    try {
      localStorage.setItem('muxgate-chat-nick', nick);
    } catch {
      // Storage may be disabled; the nickname is only a convenience.
    }
    if (location.hash.slice(1) !== room) history.replaceState(null, '', '#' + room);
    sessionStorage.setItem('muxgate-chat-joined', room);
    connect(room, nick);
  });

  function showJoinError(text) {
    joinError.textContent = text;
    joinError.hidden = false;
  }

  $('leave').addEventListener('click', () => {
    sessionStorage.removeItem('muxgate-chat-joined');
    disconnect();
    chat.hidden = true;
    joinForm.hidden = false;
    nickInput.focus();
  });

  transportSwitch.addEventListener('click', () => {
    if (!current) return;
    chosenTransport = current.transport === 'websocket' ? 'sse' : 'websocket';
    const url = new URL(location.href);
    url.searchParams.set('transport', chosenTransport);
    history.replaceState(null, '', url);
    connect(current.room, current.nick);
  });

  function sendDone(isSent, error) {
    if (!isSending) return;
    isSending = false;
    if (isSent) textInput.value = '';
    else addNotice('error', 'Not sent: ' + error);
    sendButton.disabled = false;
    textInput.focus();
  }

  async function post(text) {
    const sending = current;
    try {
      const response = await fetch('/send', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ room: sending.room, nick: sending.nick, text }),
      });
      const answer = await response.json().catch(() => null);
      if (!response.ok || !answer || answer.ok !== true) {
        throw new Error((answer && answer.error) || 'HTTP ' + response.status);
      }
      // An answer for a page that has since left or switched is not for the send in progress now.
      if (current === sending) sendDone(true);
    } catch (error) {
      if (current === sending) sendDone(false, error.message);
    }
  }

  sendForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = textInput.value;
    if (!current || isSending || text.trim() === '') return;
    isSending = true;
    sendButton.disabled = true;
    if (current.transport === 'sse') return void post(text);
    // Over the WebSocket, the line itself is the message; the backend answers `sent` or `rejected` to this page only.
    if (source && source.readyState === WebSocket.OPEN) source.send(text);
    else sendDone(false, 'not connected');
  });

  window.addEventListener('hashchange', () => {
    const room = roomFromHash();
    if (!room) return;
    roomInput.value = room;
    if (current && current.room !== room) connect(room, current.nick);
  });

  try {
    nickInput.value = localStorage.getItem('muxgate-chat-nick') || '';
  } catch {
    // Storage may be disabled.
  }
  roomInput.value = roomFromHash() || 'lobby';
  // A reload of a page that had joined goes straight back into its room, resuming where it was.
  if (nickInput.value && sessionStorage.getItem('muxgate-chat-joined') === roomInput.value) {
    connect(roomInput.value, nickInput.value);
  } else {
    (nickInput.value ? roomInput : nickInput).focus();
  }
})();
