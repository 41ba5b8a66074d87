<?php
// The muxgate chat as one PHP script behind php-fpm: the scenario of the original mod_multiplex
// proposal. PHP keeps no state and no connection open: muxgate holds the browsers' streams and
// keeps each room's readers in a channel. Run muxgate with MUX_SCRIPT_FILENAME pointing here.

const PAGE_DIR = __DIR__ . '/../demo-chat/public';

$token = $_SERVER['MULTIPLEX_TOKEN'];
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);

/** One SSE event; json_encode keeps the data on one line. */
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

if (isset($_SERVER['MULTIPLEX_EVENT'])) {
    // muxgate's close event for a reader's stream (MUX_EVENTS=close): tell the room.
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
        // Hold this browser as an SSE stream in the room's channel; a reconnecting browser resumes.
        if (!$isValid) return fail(400, 'room must match [a-z0-9-]{1,40}; nick 1 to 40 characters');
        $since = $_SERVER['HTTP_LAST_EVENT_ID'] ?? $_GET['since'] ?? '';
        $resumed = ctype_digit($since);
        $at = time() * 1000;
        $parts = [["Multiplex-Token: $token", sse('welcome', compact('room', 'nick', 'token', 'resumed', 'at'))]];
        if (!$resumed) $parts[] = ["Multiplex-Channel: room-$room", sse('join', compact('room', 'nick', 'at'))];
        multiplex($parts, [
            'Multiplex-Hold' => 'stream',
            'Multiplex-Content-Type' => 'text/event-stream',
            'Multiplex-Keep-Alive' => '20',
            'Multiplex-Channel' => "room-$room" . ($resumed ? "; since=$since" : ''),
        ]);
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
