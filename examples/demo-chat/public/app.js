// The demo chat page: one EventSource per room, messages posted with fetch; user text only via textContent.
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

  let source = null;
  let current = null; // { room, nick }

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

  function connect(room, nick) {
    disconnect();
    current = { room, nick };
    messages.replaceChildren();
    roomTitle.textContent = '#' + room;
    who.textContent = 'as ' + nick;
    joinForm.hidden = true;
    chat.hidden = false;
    setStatus('connecting');

    // A reload resumes where the last page left off: muxgate replays what was missed meanwhile.
    const lastId = sessionStorage.getItem('last-event-id:' + room);
    const url = '/events?room=' + encodeURIComponent(room) + '&nick=' + encodeURIComponent(nick)
      + (lastId ? '&since=' + encodeURIComponent(lastId) : '');
    source = new EventSource(url);
    source.onopen = () => setStatus('connected');
    source.onerror = () => {
      setStatus(source.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting');
    };
    const remember = (event) => {
      if (event.lastEventId) sessionStorage.setItem('last-event-id:' + room, event.lastEventId);
    };
    source.addEventListener('welcome', (event) => {
      const data = parse(event);
      if (!data) return;
      addNotice('welcome', (data.resumed ? 'Back in #' : 'Welcome to #') + data.room + ', ' + data.nick + '.', data.at);
      textInput.focus();
    });
    source.addEventListener('join', (event) => {
      remember(event);
      const data = parse(event);
      if (data) addNotice('join', data.nick + ' joined', data.at);
    });
    source.addEventListener('leave', (event) => {
      remember(event);
      const data = parse(event);
      // A reload of this very page also closes a stream: not worth telling oneself.
      if (data && data.nick !== nick) addNotice('leave', data.nick + ' left', data.at);
    });
    source.addEventListener('message', (event) => {
      remember(event);
      const data = parse(event);
      if (data) addMessage(data);
    });
    source.addEventListener('muxgate-gap', () => {
      addNotice('gap', 'Some messages were missed while you were away.', Date.now());
    });
  }

  function disconnect() {
    if (source) source.close();
    source = null;
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

  sendForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = textInput.value;
    if (!current || text.trim() === '') return;
    sendButton.disabled = true;
    try {
      const response = await fetch('/send', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ room: current.room, nick: current.nick, text }),
      });
      const answer = await response.json().catch(() => null);
      if (!response.ok || !answer || answer.ok !== true) {
        throw new Error((answer && answer.error) || 'HTTP ' + response.status);
      }
      textInput.value = '';
    } catch (error) {
      addNotice('error', 'Not sent: ' + error.message);
    } finally {
      sendButton.disabled = false;
      textInput.focus();
    }
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
