<?php
// A chat room that keeps no state: readers subscribe to the room's channel, a sender's message
// is one part addressed to the channel. Reconnecting readers resume from their Last-Event-ID.
$room = preg_replace('/[^a-z0-9-]/', '', $_GET['room'] ?? 'lobby');
$token = $_SERVER['MULTIPLEX_TOKEN'];
$boundary = 'room' . bin2hex(random_bytes(8));
header("Content-Type: application/x-multiplex; boundary=$boundary");
header("X-Token: $token");
if ($_SERVER['REQUEST_METHOD'] === 'GET') {
    $since = $_SERVER['HTTP_LAST_EVENT_ID'] ?? '';
    header('Multiplex-Hold: stream');
    header('Multiplex-Content-Type: text/event-stream');
    header("Multiplex-Channel: room-$room" . (ctype_digit($since) ? "; since=$since" : ''));
    echo "--$boundary--\r\n";
    exit;
}
$text = str_replace(["\r", "\n"], ' ', file_get_contents('php://input'));
// ?binary=<value>: the message part says Multiplex-Binary: <value> (for a WebSocket, a binary message).
$binary = isset($_GET['binary']) ? 'Multiplex-Binary: ' . preg_replace('/[^A-Za-z0-9]/', '', $_GET['binary']) . "\r\n" : '';
header('Multiplex-Content-Type: text/plain');
echo "--$boundary\r\nMultiplex-Channel: room-$room\r\n$binary\r\ndata: $text\n\n\r\n";
echo "--$boundary\r\nMultiplex-Token: $token\r\n\r\nsent\r\n";
echo "--$boundary--\r\n";
