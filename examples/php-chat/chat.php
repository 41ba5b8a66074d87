<?php
// The muxgate chat as one PHP script behind php-fpm: the scenario of the original mod_multiplex
// proposal. PHP keeps no state and no connection open: muxgate holds the browsers' WebSockets and
// SSE streams and keeps each room's readers in a channel. Run muxgate with MUX_SCRIPT_FILENAME
// pointing here.

const PAGE_DIR = __DIR__ . '/../demo-chat/public';

$token = $_SERVER['MULTIPLEX_TOKEN'];
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);

/**
 * One SSE event; json_encode keeps the data on one line. Every part is one, whichever the reader's
 * transport: a room's part reaches its SSE and WebSocket readers alike, and the page reads a
 * WebSocket message as an event's text.
 */
function sse(string $event, array $data): string {
    return "event: $event\ndata: " . json_encode($data) . "\n\n";
}

/** Answers with an application/x-multiplex body: each part goes to tokens or to a channel. */
function multiplex(array $parts, array $headers = []): void {
    $boundary = bin2hex(random_bytes(16));
    header("Content-Type: application/x-multiplex; boundary=$boundary");
    foreach ($headers as $name => $value) header("$name: $value");
    foreach ($parts as [$target, $body]) echo "--$boundary\r\n$target\r\n\r\n$body\r\n";
    echo "--$boundary--\r\n";
}

function fail(int $status, string $error): void {
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode(['error' => $error]);
}

$room = $_GET['room'] ?? '';
$nick = $_GET['nick'] ?? '';
$isValid = preg_match('/^[a-z0-9-]{1,40}$/', $room) && $nick !== '' && strlen($nick) <= 40;

if (($_SERVER['MULTIPLEX_EVENT'] ?? '') === 'message') {
    // A message from a WebSocket held at /events?room=&nick=: the chat line itself. It goes to the
    // room, and the sender alone is answered `sent`, or `rejected` with why (an error status would
    // make muxgate close the connection).
    $text = file_get_contents('php://input');
    $error = match (true) {
        $path !== '/events' || !$isValid => 'the connection has no valid room and nick',
        !str_starts_with($_SERVER['CONTENT_TYPE'] ?? '', 'text/') => 'messages must be text',
        $text === '' || strlen($text) > 2000 => 'text must be 1 to 2000 bytes',
        default => null,
    };
    if ($error !== null) {
        multiplex([["Multiplex-Token: $token", sse('rejected', ['error' => $error])]]);
        exit;
    }
    multiplex([
        ["Multiplex-Channel: room-$room", sse('message', ['nick' => $nick, 'text' => $text, 'at' => time() * 1000])],
        ["Multiplex-Token: $token", sse('sent', ['at' => time() * 1000])],
    ]);
    exit;
}

if (isset($_SERVER['MULTIPLEX_EVENT'])) {
    // muxgate's close event for a reader's stream or WebSocket (MUX_EVENTS=close): tell the room.
    if ($path === '/events' && $isValid && $_SERVER['MULTIPLEX_REASON'] !== 'shutdown') {
        multiplex([["Multiplex-Channel: room-$room", sse('leave', ['room' => $room, 'nick' => $nick, 'at' => time() * 1000])]]);
    }
    exit;
}

switch ($_SERVER['REQUEST_METHOD'] . ' ' . $path) {
    case 'GET /':
        header('Content-Type: text/html; charset=utf-8');
        readfile(PAGE_DIR . '/index.html');
        break;
    case 'GET /app.js':
        header('Content-Type: text/javascript; charset=utf-8');
        readfile(PAGE_DIR . '/app.js');
        break;
    case 'GET /style.css':
        header('Content-Type: text/css; charset=utf-8');
        readfile(PAGE_DIR . '/style.css');
        break;

    case 'GET /events':
        // Hold this browser in the room's channel: a WebSocket opening (MULTIPLEX_TRANSPORT) is
        // accepted by the same held answer as an SSE stream, its messages the same SSE events with
        // their ids. A reconnecting EventSource sends Last-Event-ID, a reconnecting page ?since=.
        if (!$isValid) return fail(400, 'room must match [a-z0-9-]{1,40}; nick 1 to 40 characters');
        $since = $_SERVER['HTTP_LAST_EVENT_ID'] ?? $_GET['since'] ?? '';
        $resumed = ctype_digit($since);
        $at = time() * 1000;
        $parts = [["Multiplex-Token: $token", sse('welcome', compact('room', 'nick', 'token', 'resumed', 'at'))]];
        if (!$resumed) $parts[] = ["Multiplex-Channel: room-$room", sse('join', compact('room', 'nick', 'at'))];
        $headers = [
            'Multiplex-Hold' => 'stream',
            'Multiplex-Keep-Alive' => '20', // an SSE comment on a stream, a ping on a WebSocket
            'Multiplex-Channel' => "room-$room" . ($resumed ? "; since=$since" : ''),
            'Multiplex-Content-Type' => 'text/event-stream',
        ];
        multiplex($parts, $headers);
        break;

    case 'POST /send':
        // One part to everyone in the room, and the sender's own answer.
        $message = json_decode(file_get_contents('php://input'), true);
        $room = $message['room'] ?? '';
        $text = $message['text'] ?? '';
        $nick = $message['nick'] ?? '';
        if (!preg_match('/^[a-z0-9-]{1,40}$/', $room) || !is_string($text) || $text === '' || strlen($text) > 2000
            || !is_string($nick) || $nick === '' || strlen($nick) > 40) {
            return fail(400, 'expected JSON {"room", "nick", "text"}');
        }
        multiplex([
            ["Multiplex-Channel: room-$room", sse('message', ['nick' => $nick, 'text' => $text, 'at' => time() * 1000])],
            ["Multiplex-Token: $token", '{"ok":true}'],
        ], ['Multiplex-Content-Type' => 'application/json']);
        break;

    default:
        fail(404, 'not found');
}
