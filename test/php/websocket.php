<?php
// A WebSocket backend for the tests: accepts or refuses openings as the query string says, answers each message as its
// text asks, and logs messages and close events to EVENT_LOG for the test to read.
$token = $_SERVER['MULTIPLEX_TOKEN'];
$event = $_SERVER['MULTIPLEX_EVENT'] ?? '';
$log = getenv('EVENT_LOG');
$boundary = 'ws' . bin2hex(random_bytes(8));
parse_str($_SERVER['QUERY_STRING'] ?? '', $query);
$room = $query['room'] ?? 'lobby';

function part(string $boundary, string $headers, string $body): string {
    return "--$boundary\r\n$headers\r\n\r\n$body\r\n";
}

if ($event === 'close') {
    if ($log) file_put_contents($log, "close $token {$_SERVER['MULTIPLEX_REASON']} " . ($_SERVER['MULTIPLEX_CLOSE_CODE'] ?? '-') . "\n", FILE_APPEND | LOCK_EX);
    exit;
}

if ($event === 'message') {
    $message = file_get_contents('php://input');
    $kind = $_SERVER['CONTENT_TYPE'] === 'application/octet-stream' ? 'binary' : 'text';
    // The first 32 bytes name a message well enough; the length tells the rest.
    if ($log) file_put_contents($log, "message $token $kind " . strlen($message) . ' ' . bin2hex(substr($message, 0, 32)) . "\n", FILE_APPEND | LOCK_EX);
    if (isset($query['slow'])) usleep((int) $query['slow'] * 1000);
    // Taken without a word: the sender is not sent an echo of everything it floods.
    if (isset($query['quiet'])) { http_response_code(204); exit; }
    if ($message === 'refuse') { http_response_code(403); echo "go away\n"; exit; }
    if ($message === 'fail') { http_response_code(500); echo "broken\n"; exit; }
    if ($message === 'plain') { echo "not multiplexed\n"; exit; }
    header("Content-Type: application/x-multiplex; boundary=$boundary");
    if ($message === 'quit') {
        echo part($boundary, "Multiplex-Token: $token\r\nMultiplex-Close: true", 'bye');
    } elseif (str_starts_with($message, 'room:')) {
        echo part($boundary, "Multiplex-Channel: $room", substr($message, 5));
    } elseif ($kind === 'binary') {
        echo part($boundary, "Multiplex-Token: $token\r\nMultiplex-Binary: true", $message);
    } else {
        echo part($boundary, "Multiplex-Token: $token", "echo: $message");
    }
    echo "--$boundary--\r\n";
    exit;
}

// An opening.
if ($log) file_put_contents($log, "open $token " . ($_SERVER['MULTIPLEX_TRANSPORT'] ?? '-') . ' ' . ($_SERVER['HTTP_SEC_WEBSOCKET_PROTOCOL'] ?? '-') . "\n", FILE_APPEND | LOCK_EX);
if (($_SERVER['MULTIPLEX_TRANSPORT'] ?? '') !== 'websocket' && !isset($query['sse'])) { http_response_code(400); echo "not a WebSocket\n"; exit; }
if (isset($query['refuse'])) { http_response_code(403); header('X-Refused: yes'); echo "no entry\n"; exit; }
header("Content-Type: application/x-multiplex; boundary=$boundary");
header('Multiplex-Hold: stream');
header("Multiplex-Channel: $room" . (isset($query['since']) ? "; since={$query['since']}" : ''));
header('Set-Cookie: seen=1');
if (isset($query['protocol'])) header("Sec-WebSocket-Protocol: {$query['protocol']}");
if (isset($query['ping'])) header("Multiplex-Keep-Alive: {$query['ping']}");
if (isset($query['sse'])) header('Multiplex-Content-Type: text/event-stream');
echo part($boundary, "Multiplex-Token: $token", "welcome $token");
echo "--$boundary--\r\n";
